package authgate

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

func TestMetricsAtCaddyMetricsEndpoint(t *testing.T) {
	s := setupSite(t, testidp.Options{AccessTokenTTL: 5 * time.Minute}, "", "")
	b := newBrowser(t)
	s.login(t, b)
	advanceClock(t, 6*time.Minute)
	if resp, _ := b.api("GET", s.origin+"/refresh-me"); resp.StatusCode != 200 {
		t.Fatalf("refresh request: %d", resp.StatusCode)
	}
	newBrowser(t).api("GET", s.origin+"/anonymous")

	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		`authgate_logins_total{provider="corp",reason="",result="started"}`,
		`authgate_logins_total{provider="corp",reason="",result="completed"}`,
		`authgate_refreshes_total{provider="corp",result="ok"}`,
		fmt.Sprintf(`authgate_requests_total{decision="allowed",site="127.0.0.1:%d"}`, s.port),
		fmt.Sprintf(`authgate_requests_total{decision="unauthenticated",site="127.0.0.1:%d"}`, s.port),
		`authgate_provider_request_duration_seconds_bucket{endpoint="token",provider="corp"`,
		`authgate_provider_request_duration_seconds_bucket{endpoint="discovery",provider="corp"`,
		`authgate_provider_request_duration_seconds_bucket{endpoint="jwks",provider="corp"`,
		`authgate_provider_request_duration_seconds_bucket{endpoint="userinfo",provider="corp"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
			for _, l := range strings.Split(text, "\n") {
				if strings.HasPrefix(l, "authgate_provider_request_duration_seconds_count") {
					t.Log(l)
				}
			}
		}
	}
}

// logLines reads a JSON log file into records.
func logLines(t *testing.T, path string) (raw string, recs []map[string]any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			recs = append(recs, m)
		}
	}
	return string(b), recs
}

func TestLogsCarryEventsButNeverSecrets(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	port := freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := newIDP(t, testidp.Options{RotateRefreshTokens: true, Clients: []testidp.Client{{
		ID: "app", Secret: "app-secret-value-xyz", RedirectURIs: []string{origin + "/oauth2/callback"},
	}}})
	be := newBackend(t)
	startCaddy(t, fmt.Sprintf(`{
	%s
	log {
		output file %s
		format json
		level DEBUG
	}
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret-value-xyz
		}
	}
}
%s {
	authgate {
		deny email bob@*
	}
	reverse_proxy %s
}
# A site that passes the access token on: sessions then carry it, and
# the scan below can look for it.
http://127.0.0.1:%d {
	authgate {
		pass_access_token
	}
	respond "token passer"
}
`, globalPrelude, logFile, testKey, idp.Issuer(), origin, be.URL, freePort(t)))

	secrets := map[string]string{"session key": testKey, "client secret": "app-secret-value-xyz"}
	b := newBrowser(t)
	var code string
	b.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/oauth2/callback" {
			code = r.URL.Query().Get("code")
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	resp, body := b.get(origin + "/")
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s %v", resp.StatusCode, body, b.hops)
	}
	secrets["authorization code"] = code
	if ref := backendSaw(t, body).Headers.Get("Referer"); strings.Contains(ref, "code=") {
		t.Errorf("the backend got the callback URL as Referer: %s", ref)
	}
	for _, c := range b.cookies(origin) {
		secrets["cookie "+c.Name] = c.Value
		var sess Session
		codec, _ := newCookieCodec([]string{testKey}, time.Hour)
		if _, err := codec.decode(c.Name, c.Value, &sess); err == nil {
			secrets["refresh token"] = sess.RefreshToken
			secrets["access token"] = sess.AccessToken
			if sess.IDToken != "" {
				secrets["id token"] = sess.IDToken
			}
		}
	}
	// Refresh, a failed callback, a denial, a bearer attempt and logout.
	advanceClock(t, 6*time.Minute)
	if resp, _ := b.api("GET", origin+"/after"); resp.StatusCode != 200 {
		t.Fatalf("refresh: %d", resp.StatusCode)
	}
	for _, c := range b.cookies(origin) {
		secrets["refreshed cookie "+c.Name] = c.Value
	}
	newBrowser(t).api("GET", origin+"/oauth2/callback?code=stolen-code-123456&state=forged-state-123456")
	idp.SetUserClaims("alice", map[string]any{"email": "bob@other.test"})
	bob := newBrowser(t)
	if resp, _ := bob.get(origin + "/"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("denied user: %d", resp.StatusCode)
	}
	b.get(origin + "/oauth2/logout")

	raw, recs := logLines(t, logFile)
	for what, v := range secrets {
		if len(v) < 8 {
			t.Fatalf("test setup: %s not captured (%q)", what, v)
		}
		if strings.Contains(raw, v) {
			for _, line := range strings.Split(raw, "\n") {
				if strings.Contains(line, v) {
					t.Errorf("the log contains the %s: %.300s", what, line)
					break
				}
			}
		}
	}
	if strings.Contains(raw, "stolen-code-123456") || strings.Contains(raw, "forged-state-123456") {
		t.Error("the log contains a callback's code or state")
	}
	events := map[string]map[string]any{}
	for _, r := range recs {
		if msg, _ := r["msg"].(string); msg != "" {
			if _, seen := events[msg]; !seen {
				events[msg] = r
			}
		}
	}
	for msg, fields := range map[string][]string{
		"login started": {"provider", "request_id"},
		"login":         {"provider", "user_id", "request_id"},
		"refresh":       {"provider", "user_id", "result", "request_id"},
		"login failed":  {"reason", "request_id"},
		"denied":        {"provider", "user_id", "request_id"},
		"logout":        {"provider", "user_id", "result", "request_id"},
	} {
		rec, ok := events[msg]
		if !ok {
			t.Errorf("no %q log line", msg)
			continue
		}
		for _, f := range fields {
			if v, _ := rec[f].(string); v == "" {
				t.Errorf("%q log line lacks %s: %v", msg, f, rec)
			}
		}
	}
	if !strings.Contains(raw, "client_secret is written literally") {
		t.Error("no warning about the literal client secret")
	}
}

func TestStartupValidation(t *testing.T) {
	adapt := func(t *testing.T, caddyfile string) []byte {
		t.Helper()
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
		if err != nil {
			t.Fatalf("adapt: %v", err)
		}
		return out
	}
	validate := func(t *testing.T, caddyfile string) error {
		t.Helper()
		var cfg caddy.Config
		if err := json.Unmarshal(adapt(t, caddyfile), &cfg); err != nil {
			t.Fatal(err)
		}
		return caddy.Validate(&cfg)
	}
	site := func(global string) string {
		return "{\n\tadmin off\n\tauthgate {\n" + global + "\n\t}\n}\nhttp://127.0.0.1:1 {\n\tauthgate\n\trespond ok\n}\n"
	}
	provider := "\t\tprovider corp {\n\t\t\tissuer http://127.0.0.1:1/never\n\t\t\tclient_id app\n\t\t}"
	for _, tc := range []struct{ name, global, want string }{
		{"short key", "\t\tsession_keys too-short\n" + provider, "session key 1 is 9 bytes; at least 32 are needed"},
		{"missing key", "\t\tsession_keys {env.AUTHGATE_SURELY_UNSET_KEY}\n" + provider, "key 1 is empty (is its environment variable or file set?)"},
		{"no provider", "\t\tsession_keys " + testKey, "no authgate settings"},
		{"bad same_site at run time", "\t\tsession_keys " + testKey + "\n" + provider + "\n\t\tsession_lifetime 1s", "session_lifetime 1s is too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(t, site(tc.global))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}

	t.Run("a group rule on a group keep_groups drops", func(t *testing.T) {
		cfg := func(rule string) string {
			return "{\n\tadmin off\n\tauthgate {\n\t\tsession_keys " + testKey + "\n" +
				"\t\tprovider corp {\n\t\t\tissuer http://127.0.0.1:1/never\n\t\t\tclient_id app\n\t\t\tkeep_groups app-*\n\t\t}\n\t}\n}\n" +
				"http://127.0.0.1:1 {\n\tauthgate {\n\t\t" + rule + "\n\t}\n\trespond ok\n}\n"
		}
		// A deny that can never match would let in whom it names.
		for _, tc := range []struct{ rule, want string }{
			{"deny group contractors", "rule 1 (deny group contractors) can never match: provider corp keeps only the groups matching app-*"},
			{"allow group staff", "rule 1 (allow group staff) can never match"},
			{"deny group contract*", "rule 1 (deny group contract*) may miss groups that are dropped: contract* is not within a kept pattern"},
			{"deny group *-contractors", "may miss groups that are dropped"},
			{"deny claim groups banned", "rule 1 (deny claim groups banned) reads the groups claim, which keep_groups narrows"},
			{"allow group app-admin", ""},
			{"deny group app-contract*", ""}, // within app-*
			{"deny group app-?", ""},
			{"allow group *admin*", ""}, // an allow that misses only turns users away
			{"deny claim department sales", ""},
		} {
			err := validate(t, cfg(tc.rule))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%s: %v", tc.rule, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("%s: %v, want an error containing %q", tc.rule, err, tc.want)
			}
		}
	})

	t.Run("unreachable provider: start does not hang and other sites serve", func(t *testing.T) {
		dead := freePort(t) // nothing listens here
		port, other := freePort(t), freePort(t)
		start := time.Now()
		startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		provider down {
			issuer http://127.0.0.1:%d/realms/x
			client_id app
			timeout 2s
		}
	}
}
http://127.0.0.1:%d {
	authgate
	respond "protected"
}
http://127.0.0.1:%d {
	respond "other site" 200
}
`, globalPrelude, testKey, dead, port, other))
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("start took %s with an unreachable provider", d)
		}
		b := newBrowser(t)
		if resp, body := b.get(fmt.Sprintf("http://127.0.0.1:%d/", other)); resp.StatusCode != 200 || body != "other site" {
			t.Errorf("other site: %d %q", resp.StatusCode, body)
		}
		resp, body := b.get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Sign-in service unavailable") || !strings.Contains(body, "request-id") {
			t.Errorf("protected site with its provider down: %d %s", resp.StatusCode, body)
		}
	})
}

func TestHandleErrorsReplacesPages(t *testing.T) {
	s := setupSiteWith(t, siteConfig{
		handler:   "error_pages caddy\n\t\tallow group nobody-has-this",
		siteExtra: "handle_errors {\n\t\trespond \"custom page: {http.auth.authgate.reason} ({err.status_code}) ref {http.auth.authgate.request_id}\"\n\t}",
	})
	b := newBrowser(t)
	resp, body := b.get(s.origin + "/")
	if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(body, "custom page: forbidden (403) ref ") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	u, _ := url.Parse(s.origin)
	resp, body = newBrowser(t).api("GET", u.String()+"/oauth2/callback?code=x&state=y")
	if resp.StatusCode != 400 || !strings.HasPrefix(body, "custom page: login_expired (400)") {
		t.Errorf("callback without login: %d %q", resp.StatusCode, body)
	}
}

// TestSiteLabelsBounded: the site label names the first maxSiteLabels
// hosts and counts every later one as "other", however many Host headers a
// client invents; counts survive the metrics being registered anew.
func TestSiteLabelsBounded(t *testing.T) {
	prev := currentMetrics.Load()
	t.Cleanup(func() { currentMetrics.Store(prev) })
	reg := prometheus.NewRegistry()
	registerMetrics(reg)

	var s siteLabels
	const hosts = maxSiteLabels + 50
	for i := range hosts {
		host := fmt.Sprintf("h%d.example.test", i)
		s.count(host, decisionAllowed)
		s.count(host, decisionDenied)
	}
	s.count("h0.example.test", decisionAllowed)

	series := requestSeries(t, reg)
	// Each named site, and "other", has all its decisions' series, from
	// zero.
	if want := numDecisions * (maxSiteLabels + 1); len(series) != want {
		t.Errorf("%d series, want %d: %d named sites and other, with %d decisions each", len(series), want, maxSiteLabels, numDecisions)
	}
	if got := series["other/allowed"]; got != 50 {
		t.Errorf("other/allowed = %v, want 50", got)
	}
	if got := series["h0.example.test/allowed"]; got != 2 {
		t.Errorf("h0/allowed = %v, want 2", got)
	}

	// A new configuration registers its collectors again, reusing the
	// registered ones: counting goes on in the same series.
	registerMetrics(reg)
	s.count("h0.example.test", decisionAllowed)
	s.count("new.example.test", decisionAllowed)
	after := requestSeries(t, reg)
	if got := after["h0.example.test/allowed"]; got != 3 {
		t.Errorf("after re-registering, h0/allowed = %v, want 3", got)
	}
	if got := after["other/allowed"]; got != 51 {
		t.Errorf("after re-registering, other/allowed = %v, want 51", got)
	}
}

// requestSeries reads authgate_requests_total from reg as site/decision →
// count.
func requestSeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "authgate_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["site"]+"/"+labels["decision"]] = m.GetCounter().GetValue()
		}
	}
	return out
}

package authgate

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// authorizeHop is the first redirect of a login to the provider's
// authorization endpoint.
func authorizeHop(t *testing.T, b *browser, issuer string) *url.URL {
	t.Helper()
	for _, h := range b.hops {
		if strings.HasPrefix(h, issuer+testidp.PathAuthorize) {
			u, err := url.Parse(h)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
	}
	t.Fatalf("no redirect to %s in %v", issuer+testidp.PathAuthorize, b.hops)
	return nil
}

// TestPAR: with a provider that requires pushed authorization requests
// (RFC 9126), the parameters are POSTed with client authentication and the
// browser carries client_id and request_uri only; par on and auto do the
// same for any provider that offers the endpoint.
func TestPAR(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     testidp.Options
		provider string
	}{
		{"required_by_the_provider", testidp.Options{RequirePAR: true}, ""},
		{"par_on", testidp.Options{}, "par on"},
		{"par_auto", testidp.Options{}, "par auto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkPARLogin(t, setupSiteWith(t, siteConfig{opts: tc.opts, provider: tc.provider}).testSite)
		})
	}
	t.Run("with_client_secret_jwt", func(t *testing.T) {
		// The pushed request authenticates the client as the token
		// request does: here only with an assertion.
		s := startClientAuth(t, testidp.Options{RequirePAR: true}, testidp.Client{ID: "app", Secret: jwtClientSecret, AuthMethod: testidp.AuthClientSecretJWT},
			false, func(*testidp.Server) string {
				return "client_secret " + jwtClientSecret + "\n\t\t\tclient_auth client_secret_jwt"
			})
		checkPARLogin(t, s.testSite)
	})
	t.Run("default_without_requirement", func(t *testing.T) {
		// The provider offers PAR but does not require it: unless par
		// says so, the parameters go in the URL as always.
		s := setupSite(t, testidp.Options{}, "", "")
		b := newBrowser(t)
		s.login(t, b)
		if u := authorizeHop(t, b, s.idp.Issuer()); !u.Query().Has("redirect_uri") || s.idp.Count("par") != 0 {
			t.Errorf("authorization request %v with %d pushed requests, want the parameters in the URL", u.Query(), s.idp.Count("par"))
		}
	})
	t.Run("par_off_when_required", func(t *testing.T) {
		s := setupSiteWith(t, siteConfig{opts: testidp.Options{RequirePAR: true}, provider: "par off"})
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "provider_error") || s.idp.Count("par") != 0 {
			t.Errorf("par off at a provider requiring it: %d (%d pushed), want the provider's invalid_request on the 502 page\n%.300s", resp.StatusCode, s.idp.Count("par"), body)
		}
	})
}

func checkPARLogin(t *testing.T, s *testSite) {
	t.Helper()
	b := newBrowser(t)
	saw := s.login(t, b)
	if got := saw.Headers.Get("X-Forwarded-User"); got != "alice-sub" {
		t.Errorf("X-Forwarded-User %q", got)
	}
	u := authorizeHop(t, b, s.idp.Issuer())
	var keys []string
	for k := range u.Query() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"client_id", "request_uri"}) || !strings.HasPrefix(u.Query().Get("request_uri"), testidp.RequestURIPrefix) {
		t.Errorf("the browser's authorization request has %v, want client_id and request_uri only", u.Query())
	}
	pushed := s.idp.LastPushedRequest()
	for _, k := range []string{"response_type", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"} {
		if pushed.Get(k) == "" {
			t.Errorf("the pushed request lacks %s: %v", k, pushed)
		}
	}
	if n := s.idp.Count("par"); n != 1 {
		t.Errorf("%d pushed requests, want 1", n)
	}
}

// TestPARFailures: the provider refusing the pushed request shows its
// error in the log and a clear page, before any pending login is stored;
// the provider failing is the provider-down page; par on without an
// endpoint is refused at start (static endpoints) or at discovery.
func TestPARFailures(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		logOpt, logFile := logToFile(t)
		// A redirect URI the provider does not know: the PAR endpoint
		// answers 400 invalid_request.
		s := setupSiteWith(t, siteConfig{opts: testidp.Options{RequirePAR: true}, caddyGlobal: logOpt, provider: "redirect_url http://127.0.0.1:9/elsewhere"})
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "par_rejected") || !strings.Contains(body, "(invalid_request)") {
			t.Errorf("%d, want 502 par_rejected naming invalid_request\n%.400s", resp.StatusCode, body)
		}
		for _, c := range resp.Cookies() {
			if strings.Contains(c.Name, "login") {
				t.Errorf("a pending-login cookie %s was set for a login that never started", c.Name)
			}
		}
		recs := logged(t, logFile, "login failed")
		if len(recs) != 1 || recs[0]["reason"] != "par_rejected" || recs[0]["provider_error"] != "invalid_request" {
			t.Errorf("log %v, want one par_rejected line with provider_error invalid_request", recs)
		}
	})
	t.Run("provider_down", func(t *testing.T) {
		s := setupSiteWith(t, siteConfig{opts: testidp.Options{RequirePAR: true}, beforeStart: func(idp *testidp.Server) {
			idp.SetFault("par", testidp.Fault{Kind: testidp.FaultStatus500HTML})
		}})
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "provider_unavailable") {
			t.Errorf("%d, want the 502 provider_unavailable page\n%.300s", resp.StatusCode, body)
		}
		noSessionCookie(t, b, s.origin)
	})
	t.Run("on_without_endpoint_in_discovery", func(t *testing.T) {
		s := setupSiteWith(t, siteConfig{provider: "par on", beforeStart: func(idp *testidp.Server) {
			resp, err := http.Get(idp.Issuer() + testidp.PathDiscovery)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var doc map[string]any
			raw, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			delete(doc, "pushed_authorization_request_endpoint")
			body, _ := json.Marshal(doc)
			idp.SetFault("discovery", testidp.Fault{Kind: testidp.FaultRaw, Status: 200, ContentType: "application/json", Body: string(body)})
		}})
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "provider_unavailable") {
			t.Errorf("%d, want the 502 provider_unavailable page\n%.300s", resp.StatusCode, body)
		}
	})
	t.Run("on_without_endpoint_static", func(t *testing.T) {
		src := fmt.Sprintf("{\n\t%s\n\tauthgate {\n\t\tsession_keys %s\n\t\tprovider corp {\n\t\t\tauthorize_url https://idp.invalid/auth\n\t\t\ttoken_url https://idp.invalid/token\n\t\t\tclient_id app\n\t\t\tpar on\n\t\t}\n\t}\n}\nhttp://127.0.0.1:%d {\n\tauthgate\n\trespond ok\n}\n", globalPrelude, testKey, freePort(t))
		cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		if err != nil {
			t.Fatal(err)
		}
		if err := caddy.Load(cfgJSON, true); err == nil || !strings.Contains(err.Error(), "par on needs par_url") {
			t.Errorf("start: %v, want an error saying par on needs par_url", err)
		}
	})
}

package authgate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

func TestParseLoginOptions(t *testing.T) {
	long := strings.Repeat("a", maxLoginHint+1)
	atLimit := strings.Repeat("a", maxLoginHint)
	domain := strings.Repeat("d", maxDomainHint)
	values := func(n int) string {
		v := make([]string, n)
		for i := range v {
			v[i] = fmt.Sprint("v", i)
		}
		return strings.Join(v, "+")
	}
	value128 := strings.Repeat("x", 128)
	for _, tc := range []struct {
		query   string
		params  string // the forwarded parameters, encoded
		require string // the requirement, as JSON
		err     string
	}{
		{"rd=/x&provider=corp&scope=admin&client_id=evil&redirect_uri=http://evil", "", "null", ""},
		{"login_hint=alice@example.com&domain_hint=example.com&prompt=select_account", "domain_hint=example.com&login_hint=alice%40example.com&prompt=select_account", "null", ""},
		{"prompt=login+consent", "prompt=login+consent", "null", ""},
		{"prompt=none", "prompt=none", "null", ""},
		{"max_age=600&acr_values=2+3", "acr_values=2+3&max_age=600", `{"ma":600,"acr":["2","3"]}`, ""},
		{"max_age=0", "max_age=0", `{"ma":1}`, ""},
		{"amr=mfa", "prompt=login", `{"amr":["mfa"]}`, ""},
		{"amr=mfa&prompt=consent", "prompt=consent", `{"amr":["mfa"]}`, ""},
		{"login_hint=" + atLimit, "login_hint=" + atLimit, "null", ""},
		{"login_hint=" + long, "", "", "login_hint must be 1 to 256 bytes"},
		{"domain_hint=" + domain, "domain_hint=" + domain, "null", ""},
		{"domain_hint=" + domain + "d", "", "", "domain_hint must be a domain name"},
		{"acr_values=" + values(maxAuthValues), "acr_values=" + values(maxAuthValues), `{"acr":["v0","v1","v2","v3","v4","v5","v6","v7"]}`, ""},
		{"acr_values=" + values(maxAuthValues+1), "", "", "acr_values must list 1 to 8 values"},
		{"amr=" + value128, "prompt=login", `{"amr":["` + value128 + `"]}`, ""},
		{"amr=" + value128 + "x", "", "", "longer than 128 bytes"},
		{"login_hint=", "", "", "login_hint must be"},
		{"login_hint=a%0Ab", "", "", "login_hint must be"},
		{"login_hint=a&login_hint=b", "", "", "login_hint is given more than once"},
		{"domain_hint=exa%20mple.com", "", "", "domain_hint must be a domain name"},
		{"prompt=none+login", "", "", "none cannot be combined"},
		{"prompt=bogus", "", "", "prompt must be"},
		{"prompt=login+login", "", "", "each once"},
		{"max_age=-5", "", "", "max_age must be a number"},
		{"max_age=9999999999", "", "", "max_age must be a number"},
		{"acr_values=%22quoted%22", "", "", "acr_values"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			o, err := parseLoginOptions(q)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := o.params.Encode(); got != tc.params {
				t.Errorf("params %q, want %q", got, tc.params)
			}
			if req, _ := json.Marshal(o.require); string(req) != tc.require {
				t.Errorf("require %s, want %s", req, tc.require)
			}
		})
	}
}

func TestAuthRequirementUnmet(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	q := &authRequirement{MaxAge: 600, ACR: []string{"2", "3"}, AMR: []string{"mfa"}}
	for _, tc := range []struct {
		name string
		ac   authContext
		want string
	}{
		{"meets all", authContext{now.Add(-5 * time.Minute).Unix(), "3", []string{"pwd", "mfa"}}, ""},
		{"just within the leeway", authContext{now.Add(-10*time.Minute - 29*time.Second).Unix(), "2", []string{"mfa"}}, ""},
		{"too old", authContext{now.Add(-11 * time.Minute).Unix(), "2", []string{"mfa"}}, "older than 10m0s"},
		{"unknown time", authContext{0, "2", []string{"mfa"}}, "older than"},
		{"other acr", authContext{now.Unix(), "1", []string{"mfa"}}, "is 1, not 2 or 3"},
		{"no acr", authContext{now.Unix(), "", []string{"mfa"}}, "is none"},
		{"missing method", authContext{now.Unix(), "2", []string{"pwd"}}, "did not use mfa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := q.unmet(tc.ac, now)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("unmet = %q, want %q", got, tc.want)
			}
		})
	}
	if wa := q.wwwAuthenticate(); !strings.Contains(wa, `error="insufficient_user_authentication"`) || !strings.Contains(wa, `acr_values="2 3"`) || !strings.Contains(wa, `max_age="600"`) {
		t.Errorf("WWW-Authenticate: %s", wa)
	}
	if p := q.params().Encode(); p != "acr_values=2+3&max_age=600&prompt=login" {
		t.Errorf("params: %s", p)
	}
}

func TestAuthClaimsRecorded(t *testing.T) {
	now := timeNow()
	s := &Session{Created: now.Unix()}
	recordLoginAuth(s, nil)
	if s.AuthTime != s.Created || s.ACR != "" || s.AMR != nil {
		t.Fatalf("without an ID token: %+v", s)
	}
	recordLoginAuth(s, map[string]any{"auth_time": float64(now.Add(-time.Hour).Unix()), "acr": "2", "amr": []any{"pwd", "mfa", "pwd", 7}})
	if s.AuthTime != now.Add(-time.Hour).Unix() || s.ACR != "2" || strings.Join(s.AMR, ",") != "pwd,mfa" {
		t.Fatalf("from the ID token: %+v", s)
	}
	// A refreshed ID token without them keeps them; with them, updates.
	applyAuthClaims(s, map[string]any{"sub": "x"})
	if s.ACR != "2" || s.AuthTime != now.Add(-time.Hour).Unix() {
		t.Errorf("kept: %+v", s)
	}
	applyAuthClaims(s, map[string]any{"acr": "3", "auth_time": float64(now.Add(time.Hour).Unix()), "amr": "not a list"})
	if s.ACR != "3" || s.AuthTime != now.Add(-time.Hour).Unix() || len(s.AMR) != 2 {
		t.Errorf("updated acr, refused a future auth_time and a malformed amr: %+v", s)
	}
	many := make([]any, maxAMR+1)
	for i := range many {
		many[i] = fmt.Sprint("m", i)
	}
	applyAuthClaims(s, map[string]any{"amr": many})
	if len(s.AMR) != maxAMR || s.AMR[maxAMR-1] != fmt.Sprint("m", maxAMR-1) {
		t.Errorf("amr beyond %d values: %v", maxAMR, s.AMR)
	}
}

func TestLoginHintsReachProvider(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	b := newBrowser(t)
	q := url.Values{
		"rd": {"/welcome"}, "login_hint": {"alice@example.test"}, "domain_hint": {"example.test"}, "prompt": {"select_account"},
		// Not for the provider: never forwarded, never overriding ours.
		"scope": {"admin"}, "redirect_uri": {"http://evil.example/cb"}, "client_id": {"evil"}, "response_type": {"token"},
	}
	resp, body := b.get(s.origin + "/oauth2/start?" + q.Encode())
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/welcome" {
		t.Fatalf("%d at %s after %v: %s", resp.StatusCode, resp.Request.URL, b.hops, body)
	}
	got := s.idp.LastAuthorizeQuery()
	if got.Get("login_hint") != "alice@example.test" || got.Get("domain_hint") != "example.test" || got.Get("prompt") != "select_account" {
		t.Errorf("hints at the provider: %v", got)
	}
	if got.Get("scope") != "openid profile email" || got.Get("client_id") != "app" || got.Get("response_type") != "code" ||
		got.Get("redirect_uri") != s.origin+"/oauth2/callback" {
		t.Errorf("the query overrode authgate's own parameters: %v", got)
	}
	t.Run("a malformed hint is a clear 400, not a login", func(t *testing.T) {
		before := s.idp.Count("authorize")
		resp, body := newBrowser(t).get(s.origin + "/oauth2/start?login_hint=" + strings.Repeat("x", 300))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "login_hint must be 1 to 256 bytes") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if s.idp.Count("authorize") != before {
			t.Error("the provider was asked anyway")
		}
	})
}

func TestLoginHintsThroughAuthHostAndChooser(t *testing.T) {
	authPort, appPort := freePort(t), freePort(t)
	authOrigin := fmt.Sprintf("http://127.0.0.1:%d", authPort)
	appOrigin := fmt.Sprintf("http://127.0.0.1:%d", appPort)
	idp := newIDP(t, testidp.Options{}, authOrigin+"/oauth2/callback")
	startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		auth_host 127.0.0.1:%d
		allowed_redirect_domains 127.0.0.1
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
		}
		provider other {
			issuer %s
			client_id app
			client_secret app-secret
		}
	}
}
%s {
	authgate corp other
	respond "auth host"
}
%s {
	authgate corp other
	respond "app"
}
`, globalPrelude, testKey, authPort, idp.Issuer(), idp.Issuer(), authOrigin, appOrigin))
	b := newBrowser(t)
	resp, body := b.get(appOrigin + "/oauth2/start?rd=/x&login_hint=alice&prompt=login")
	if resp.StatusCode != 200 || !strings.Contains(body, "Sign in with corp") {
		t.Fatalf("chooser: %d %s", resp.StatusCode, body)
	}
	i := strings.Index(body, `id="provider-corp" href="`)
	link := body[i+len(`id="provider-corp" href="`):]
	link = strings.ReplaceAll(link[:strings.IndexByte(link, '"')], "&amp;", "&")
	if !strings.Contains(link, "login_hint=alice") || !strings.Contains(link, "prompt=login") {
		t.Fatalf("the chooser's link drops the hints: %s", link)
	}
	resp, body = b.get(appOrigin + link)
	if resp.StatusCode != 200 || body != "app" {
		t.Fatalf("%d after %v: %s", resp.StatusCode, b.hops, body)
	}
	if q := idp.LastAuthorizeQuery(); q.Get("login_hint") != "alice" || q.Get("prompt") != "login" {
		t.Errorf("through the auth host the provider got %v", q)
	}
}

func TestSilentLogin(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "silent_login")
	b := newBrowser(t)
	resp, _ := b.api("GET", s.origin+"/api/items?page=2")
	link := resp.Header.Get("Link")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(link, `rel="authgate-silent-login"`) {
		t.Fatalf("%d, Link %q", resp.StatusCode, link)
	}
	target := link[1:strings.IndexByte(link, '>')]
	u, _ := url.Parse(target)
	if u.Path != "/oauth2/start" || u.Query().Get("prompt") != "none" || u.Query().Get("rd") != "/api/items?page=2" {
		t.Fatalf("Link target %s", target)
	}

	t.Run("the provider has a session: signed in without a page", func(t *testing.T) {
		resp, body := b.get(s.origin + target)
		if resp.StatusCode != 200 || resp.Request.URL.Path != "/api/items" {
			t.Fatalf("%d at %s after %v: %s", resp.StatusCode, resp.Request.URL, b.hops, body)
		}
		if q := s.idp.LastAuthorizeQuery(); q.Get("prompt") != "none" {
			t.Errorf("authorization request %v", q)
		}
		if resp, _ := b.api("GET", s.origin+"/api/items"); resp.StatusCode != 200 {
			t.Errorf("API after the silent login: %d", resp.StatusCode)
		}
	})
	t.Run("login_required: a clean 401, no loop", func(t *testing.T) {
		s.idp.SetFault("authorize", testidp.Fault{Kind: testidp.FaultAuthorizeError, Value: "login_required"})
		defer s.idp.ClearFaults()
		fresh := newBrowser(t)
		before := s.idp.Count("authorize")
		resp, body := fresh.get(s.origin + target)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "login_required") {
			t.Fatalf("%d after %v: %s", resp.StatusCode, fresh.hops, body)
		}
		if n := s.idp.Count("authorize") - before; n != 1 || len(fresh.hops) > 2 {
			t.Errorf("%d authorization requests, hops %v", n, fresh.hops)
		}
		if l := resp.Header.Get("Link"); !strings.Contains(l, `rel="authgate-login"`) || strings.Contains(l, "prompt=none") {
			t.Errorf("Link to an interactive sign-in: %q", l)
		}
	})
	t.Run("without silent_login no Link", func(t *testing.T) {
		plain := setupSite(t, testidp.Options{}, "", "")
		resp, _ := newBrowser(t).api("GET", plain.origin+"/api")
		if resp.StatusCode != 401 || resp.Header.Get("Link") != "" {
			t.Errorf("%d Link %q", resp.StatusCode, resp.Header.Get("Link"))
		}
	})
}

// With pushed authorization requests (RFC 9126) the hints and step-up
// parameters go into the pushed request; the browser carries only the
// reference.
func TestLoginHintsThroughPAR(t *testing.T) {
	s := stepUpSite(t, testidp.Options{RequirePAR: true}, "acr 2")
	b := newBrowser(t)
	resp, body := b.get(s.origin + "/oauth2/start?" + url.Values{"rd": {"/x"}, "login_hint": {"alice@example.test"}, "domain_hint": {"example.test"}}.Encode())
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/x" {
		t.Fatalf("%d at %s after %v: %s", resp.StatusCode, resp.Request.URL, b.hops, body)
	}
	if pushed := s.idp.LastPushedRequest(); pushed.Get("login_hint") != "alice@example.test" || pushed.Get("domain_hint") != "example.test" {
		t.Errorf("the pushed request: %v", pushed)
	}
	front := authorizeHop(t, b, s.idp.Issuer()).Query()
	if front.Has("login_hint") || !front.Has("request_uri") {
		t.Errorf("the browser's authorization request carries %v", front)
	}
	resp, body = b.get(s.origin + "/admin/x")
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/admin/x" {
		t.Fatalf("step-up: %d at %s after %v: %s", resp.StatusCode, resp.Request.URL, b.hops, body)
	}
	if pushed := s.idp.LastPushedRequest(); pushed.Get("acr_values") != "2" || s.idp.Count("par") != 2 {
		t.Errorf("the step-up's pushed request (%d pushed): %v", s.idp.Count("par"), pushed)
	}
}

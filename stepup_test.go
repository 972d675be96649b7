package authgate

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// stepUpSite protects /admin/* with the given authgate_require block; the
// rest of the site needs only a session. The test provider keeps a
// session (AutoLoginSession), so a second authorization request is
// answered from it unless max_age, prompt=login or acr_values force a new
// authentication. Assertions show the backend the session's auth_time,
// acr and amr.
func stepUpSite(t *testing.T, opts testidp.Options, require string) *configuredSite {
	t.Helper()
	opts.AutoLoginSession = true
	return setupSiteWith(t, siteConfig{
		opts:        opts,
		caddyGlobal: "storage file_system " + t.TempDir(),
		handler:     "assertion_header",
		siteExtra:   "authgate_require /admin/* {\n\t\t" + require + "\n\t}",
	})
}

// authContextSeen is the auth context in the assertion the backend got.
func authContextSeen(t *testing.T, s *configuredSite, body string) (authTime int64, acr string, amr []string) {
	t.Helper()
	raw := backendSaw(t, body).Headers.Get(defaultAssertionHeader)
	claims, err := verifyAssertion(t, s.origin, strings.TrimPrefix(s.origin, "http://"), raw)
	if err != nil {
		t.Fatal(err)
	}
	at, _ := claims["auth_time"].(float64)
	acr, _ = claims["acr"].(string)
	list, _ := claims["amr"].([]any)
	for _, m := range list {
		amr = append(amr, m.(string))
	}
	return int64(at), acr, amr
}

func TestStepUpMaxAuthAge(t *testing.T) {
	s := stepUpSite(t, testidp.Options{}, "max_auth_age 10m")
	b := newBrowser(t)
	s.login(t, b)
	loginTime := testNow().Unix()
	if resp, body := b.get(s.origin + "/admin/panel"); resp.StatusCode != 200 {
		t.Fatalf("a fresh sign-in is recent enough: %d %s", resp.StatusCode, body)
	}
	advanceClock(t, 15*time.Minute)

	t.Run("API: 401 insufficient_user_authentication (RFC 9470)", func(t *testing.T) {
		resp, body := b.api("GET", s.origin+"/admin/api")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"insufficient_user_authentication"`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		wa := resp.Header.Get("WWW-Authenticate")
		if !strings.Contains(wa, `error="insufficient_user_authentication"`) || !strings.Contains(wa, `max_age="600"`) {
			t.Errorf("WWW-Authenticate: %s", wa)
		}
		if link := resp.Header.Get("Link"); !strings.Contains(link, "max_age=600") || !strings.Contains(link, `rel="authgate-step-up"`) {
			t.Errorf("Link: %s", link)
		}
	})
	t.Run("the rest of the site needs no step-up", func(t *testing.T) {
		if resp, _ := b.api("GET", s.origin+"/other"); resp.StatusCode != 200 {
			t.Errorf("%d", resp.StatusCode)
		}
	})
	t.Run("browser: signs in again with max_age and comes back to the same URL", func(t *testing.T) {
		before := s.idp.Count("authorize")
		resp, body := b.get(s.origin + "/admin/panel?tab=2")
		if resp.StatusCode != 200 || resp.Request.URL.String() != s.origin+"/admin/panel?tab=2" {
			t.Fatalf("%d at %s after %v: %s", resp.StatusCode, resp.Request.URL, b.hops, body)
		}
		if n := s.idp.Count("authorize") - before; n != 1 {
			t.Errorf("%d authorization requests, want 1", n)
		}
		if q := s.idp.LastAuthorizeQuery(); q.Get("max_age") != "600" {
			t.Errorf("authorization request: %v", q)
		}
		at, _, _ := authContextSeen(t, s, body)
		if at <= loginTime || at < testNow().Add(-time.Minute).Unix() {
			t.Errorf("auth_time %d: not the new authentication (login was at %d)", at, loginTime)
		}
		if resp, _ := b.api("GET", s.origin+"/admin/api"); resp.StatusCode != 200 {
			t.Errorf("API after the step-up: %d", resp.StatusCode)
		}
	})
}

func TestStepUpACRAfterSecondLogin(t *testing.T) {
	s := stepUpSite(t, testidp.Options{}, "acr 2")
	b := newBrowser(t)
	body := backendSawBody(t, b, s.origin+"/page")
	if _, acr, amr := authContextSeen(t, s, body); acr != "1" || strings.Join(amr, ",") != "pwd" {
		t.Fatalf("first login: acr %q amr %v", acr, amr)
	}
	resp, body := b.get(s.origin + "/admin/")
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/admin/" {
		t.Fatalf("%d at %s after %v: %s", resp.StatusCode, resp.Request.URL, b.hops, body)
	}
	if q := s.idp.LastAuthorizeQuery(); q.Get("acr_values") != "2" {
		t.Errorf("authorization request: %v", q)
	}
	_, acr, amr := authContextSeen(t, s, body)
	if acr != "2" || strings.Join(amr, ",") != "pwd,mfa" {
		t.Errorf("after the step-up: acr %q amr %v", acr, amr)
	}

	t.Run("a refresh keeps the stepped-up context", func(t *testing.T) {
		before := s.idp.Count("token:refresh_token")
		advanceClock(t, 6*time.Minute) // the 5-minute access token is due
		resp, body := b.get(s.origin + "/admin/again")
		if resp.StatusCode != 200 || s.idp.Count("token:refresh_token") != before+1 || len(b.hops) != 0 {
			t.Fatalf("%d, %d refreshes, hops %v: %s", resp.StatusCode, s.idp.Count("token:refresh_token")-before, b.hops, body)
		}
		if _, acr, _ := authContextSeen(t, s, body); acr != "2" {
			t.Errorf("acr after refresh: %q", acr)
		}
	})
}

// backendSawBody signs b in at u and returns the backend's answer.
func backendSawBody(t *testing.T, b *browser, u string) string {
	t.Helper()
	return mustGet(t, b, u)
}

func TestStepUpNeverLoops(t *testing.T) {
	for _, tc := range []struct {
		name, require string
		opts          testidp.Options
		advance       time.Duration
		param, want   string
	}{
		{"a provider that ignores max_age", "max_auth_age 10m", testidp.Options{IgnoreMaxAge: true}, 15 * time.Minute, "max_age", "older than 10m0s"},
		{"a provider that ignores acr_values", "acr 2", testidp.Options{IgnoreACRValues: true}, 0, "acr_values", "acr) is 1, not 2"},
		{"a provider that does not do the method", "amr mfa", testidp.Options{}, 0, "prompt", "did not use mfa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := stepUpSite(t, tc.opts, tc.require)
			b := newBrowser(t)
			s.login(t, b)
			advanceClock(t, tc.advance)
			before := s.idp.Count("authorize")
			resp, body := b.get(s.origin + "/admin/panel")
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Stronger sign-in needed") || !strings.Contains(body, tc.want) {
				t.Fatalf("%d after %v: %s", resp.StatusCode, b.hops, body)
			}
			if n := s.idp.Count("authorize") - before; n != 1 {
				t.Errorf("%d trips to the provider, want exactly one retry", n)
			}
			if !s.idp.LastAuthorizeQuery().Has(tc.param) {
				t.Errorf("the retry did not ask for it: %v", s.idp.LastAuthorizeQuery())
			}
			// The session stays usable where no step-up is needed.
			if resp, _ := b.api("GET", s.origin+"/other"); resp.StatusCode != 200 {
				t.Errorf("rest of the site: %d", resp.StatusCode)
			}
		})
	}
}

func TestStepUpBearerToken(t *testing.T) {
	s := setupSiteWith(t, siteConfig{
		handler:   "bearer_tokens",
		siteExtra: "authgate_require /admin/* {\n\t\tacr 2\n\t}",
	})
	tok := s.idp.SignJWT(map[string]any{"iss": s.idp.Issuer(), "sub": "svc", "aud": "app", "exp": testNow().Add(time.Hour).Unix(), "acr": "1"})
	resp, body := newBrowser(t).api("GET", s.origin+"/admin/x", "Authorization", "Bearer "+tok)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `acr_values="2"`) || resp.Header.Get("Link") != "" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	tok = s.idp.SignJWT(map[string]any{"iss": s.idp.Issuer(), "sub": "svc", "aud": "app", "exp": testNow().Add(time.Hour).Unix(), "acr": "2"})
	if resp, body := newBrowser(t).api("GET", s.origin+"/admin/x", "Authorization", "Bearer "+tok); resp.StatusCode != 200 {
		t.Fatalf("a token with acr 2: %d %s", resp.StatusCode, body)
	}
}

func TestStepUpWithoutAuthgateFailsClosed(t *testing.T) {
	port := freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	startCaddy(t, fmt.Sprintf(`{
	%s
}
%s {
	authgate_require {
		max_auth_age 10m
	}
	respond "secret"
}
`, globalPrelude, origin))
	resp, body := newBrowser(t).api("GET", origin+"/")
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(body, "secret") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestStepUpStartParameters(t *testing.T) {
	// /oauth2/start takes max_age, acr_values and amr too (the auth host
	// continues a step-up with them) and holds the new session to them.
	s := stepUpSite(t, testidp.Options{IgnoreACRValues: true}, "acr 2")
	b := newBrowser(t)
	resp, body := b.get(s.origin + "/oauth2/start?" + url.Values{"rd": {"/x"}, "acr_values": {"2"}}.Encode())
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "step_up_failed") {
		t.Fatalf("%d after %v: %s", resp.StatusCode, b.hops, body)
	}
	for _, bad := range []string{"max_age=-1", "max_age=1e3", "acr_values=%22x", "amr=a%20b%20c%20d%20e%20f%20g%20h%20i"} {
		resp, body := newBrowser(t).get(s.origin + "/oauth2/start?" + bad)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "bad_login_parameter") {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}
}

// With auth_host the step-up continues at the auth host, which asks the
// provider for it and holds the new session to it before sending the
// browser back.
func TestStepUpThroughAuthHost(t *testing.T) {
	authPort, appPort := freePort(t), freePort(t)
	authOrigin := fmt.Sprintf("http://127.0.0.1:%d", authPort)
	appOrigin := fmt.Sprintf("http://127.0.0.1:%d", appPort)
	idp := newIDP(t, testidp.Options{AutoLoginSession: true}, authOrigin+"/oauth2/callback")
	be := newBackend(t)
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
	}
}
%s {
	authgate
	respond "auth host"
}
%s {
	authgate
	authgate_require /admin/* {
		acr 2
	}
	reverse_proxy %s
}
`, globalPrelude, testKey, authPort, idp.Issuer(), authOrigin, appOrigin, be.URL))
	b := newBrowser(t)
	mustGet(t, b, appOrigin+"/page")
	if q := idp.LastAuthorizeQuery(); q.Has("acr_values") {
		t.Fatalf("the first sign-in asked for acr: %v", q)
	}
	resp, body := b.get(appOrigin + "/admin/x")
	if resp.StatusCode != 200 || resp.Request.URL.String() != appOrigin+"/admin/x" {
		t.Fatalf("%d at %s after %v: %s", resp.StatusCode, resp.Request.URL, b.hops, body)
	}
	if q := idp.LastAuthorizeQuery(); q.Get("acr_values") != "2" {
		t.Errorf("the step-up at the provider: %v", q)
	}
	if idp.Count("authorize") != 2 {
		t.Errorf("%d authorization requests, want 2", idp.Count("authorize"))
	}
}

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

func TestLoginHeadersAndPlaceholders(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	b := newBrowser(t)
	saw := s.login(t, b)
	want := map[string]string{
		"X-Forwarded-User":               "alice-sub",
		"X-Forwarded-Email":              "alice@example.test",
		"X-Forwarded-Preferred-Username": "alice",
		"X-Forwarded-Groups":             "admins,staff",
		"X-Placeholder-User":             "alice-sub",
		"X-Placeholder-Name":             "Alice Example",
	}
	for h, v := range want {
		if got := saw.Headers.Get(h); got != v {
			t.Errorf("backend got %s=%q, want %q", h, got, v)
		}
	}
	if saw.Path != "/dashboard" {
		t.Errorf("returned to %q, want /dashboard", saw.Path)
	}
	if c := saw.Headers.Get("Cookie"); strings.Contains(c, "_authgate") {
		t.Errorf("session cookie reached the backend: %q", c)
	}
	if saw.Headers.Get("X-Forwarded-Access-Token") != "" {
		t.Error("access token forwarded without pass_access_token")
	}
	// The provider saw state, PKCE S256 and a nonce.
	q := s.idp.LastAuthorizeQuery()
	for _, p := range []string{"state", "nonce", "code_challenge"} {
		if q.Get(p) == "" {
			t.Errorf("authorization request lacks %s: %v", p, q)
		}
	}
	if q.Get("code_challenge_method") != "S256" {
		t.Errorf("code_challenge_method = %q, want S256", q.Get("code_challenge_method"))
	}

	t.Run("spoofed headers replaced", func(t *testing.T) {
		resp, body := b.get(s.origin+"/x",
			"X-Forwarded-User", "mallory", "X-Forwarded-Email", "mallory@evil.test",
			"X-Forwarded-Groups", "root", "X-Forwarded-Access-Token", "forged")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		saw := backendSaw(t, body)
		if got := saw.Headers.Values("X-Forwarded-User"); len(got) != 1 || got[0] != "alice-sub" {
			t.Errorf("X-Forwarded-User = %q", got)
		}
		if got := saw.Headers.Values("X-Forwarded-Groups"); len(got) != 1 || got[0] != "admins,staff" {
			t.Errorf("X-Forwarded-Groups = %q", got)
		}
		if got := saw.Headers.Get("X-Forwarded-Access-Token"); got != "" {
			t.Errorf("forged access token passed through: %q", got)
		}
	})

	t.Run("no provider request on the hot path", func(t *testing.T) {
		s.idp.ResetCounts()
		for i := 0; i < 50; i++ {
			if resp, _ := b.get(s.origin + "/hot"); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		for _, ep := range []string{"discovery", "jwks", "token", "userinfo", "authorize"} {
			if n := s.idp.Count(ep); n != 0 {
				t.Errorf("%d %s requests on the hot path", n, ep)
			}
		}
	})

	t.Run("userinfo endpoint shows identity, never tokens", func(t *testing.T) {
		resp, body := b.api("GET", s.origin+"/oauth2/userinfo")
		if resp.StatusCode != 200 || !strings.Contains(body, `"user":"alice-sub"`) {
			t.Fatalf("userinfo: %d %s", resp.StatusCode, body)
		}
		if strings.Contains(body, "token") || strings.Contains(body, "eyJ") {
			t.Errorf("userinfo exposes a token: %s", body)
		}
		anon := newBrowser(t)
		if resp, _ := anon.api("GET", s.origin+"/oauth2/userinfo"); resp.StatusCode != 401 {
			t.Errorf("anonymous userinfo: %d, want 401", resp.StatusCode)
		}
	})
}

func TestUnauthenticatedBrowserVersusAPI(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	b := newBrowser(t)
	// Browser navigation: redirect to the provider with the URL kept.
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest("GET", s.origin+"/page?x=1", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, s.idp.Issuer()+"/authorize?") {
		t.Fatalf("browser: %d to %q, want 302 to the provider", resp.StatusCode, loc)
	}
	// API, XHR, non-GET: 401 JSON, never a redirect.
	for _, tc := range []struct {
		name    string
		method  string
		headers []string
	}{
		{"json GET", "GET", nil},
		{"xhr", "GET", []string{"Accept", "text/html", "X-Requested-With", "XMLHttpRequest"}},
		{"POST", "POST", []string{"Accept", "text/html"}},
		{"fetch", "GET", []string{"Accept", "text/html", "Sec-Fetch-Mode", "cors"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := b.api(tc.method, s.origin+"/api/items", tc.headers...)
			if resp.StatusCode != 401 {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("no WWW-Authenticate: %v", resp.Header)
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), "json") || !strings.Contains(body, `"error":"unauthenticated"`) {
				t.Errorf("not a JSON error: %s", body)
			}
		})
	}
}

func TestRefreshAndSingleFlight(t *testing.T) {
	s := setupSite(t, testidp.Options{RotateRefreshTokens: true, AccessTokenTTL: 5 * time.Minute}, "", "")
	b := newBrowser(t)
	s.login(t, b)
	s.idp.ResetCounts()

	// Near expiry: the next request refreshes, in the request.
	advanceClock(t, 5*time.Minute-10*time.Second)
	resp, body := b.get(s.origin + "/after-expiry")
	if resp.StatusCode != 200 {
		t.Fatalf("after expiry: %d %s", resp.StatusCode, body)
	}
	if n := s.idp.Count("token:refresh_token"); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}

	// 20 concurrent requests on an expiring session: one refresh, all 200,
	// and the user is still signed in afterwards.
	advanceClock(t, 5*time.Minute)
	s.idp.ResetCounts()
	for i, r := range burst(t, s.origin+"/concurrent", b.cookieHeader(s.origin), 20) {
		if r.status != 200 {
			t.Errorf("request %d: status %d", i, r.status)
		}
	}
	if n := s.idp.Count("token:refresh_token"); n != 1 {
		t.Errorf("%d refreshes for 20 concurrent requests, want exactly 1", n)
	}
	// The browser still holding the pre-refresh cookie is inside the grace
	// window and gets the refreshed session, not a replayed token.
	if resp, _ := b.get(s.origin + "/still-in"); resp.StatusCode != 200 {
		t.Errorf("after concurrent refresh: %d", resp.StatusCode)
	}
	if n := s.idp.Count("token:refresh_token"); n != 1 {
		t.Errorf("%d refreshes after the grace request, want still 1", n)
	}
}

func TestRefreshRejectedAndProviderDown(t *testing.T) {
	s := setupSite(t, testidp.Options{AccessTokenTTL: 5 * time.Minute}, "", "")
	b := newBrowser(t)
	s.login(t, b)
	advanceClock(t, 6*time.Minute)

	t.Run("provider 500 keeps the session", func(t *testing.T) {
		s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultStatus500HTML})
		defer s.idp.ClearFaults()
		resp, body := b.api("GET", s.origin+"/api")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "provider_unavailable") {
			t.Fatalf("status %d %s, want 502", resp.StatusCode, body)
		}
		for _, sc := range setCookieHeaders(resp) {
			if strings.HasPrefix(sc, "_authgate") {
				t.Errorf("session cookie touched on provider failure: %s", sc)
			}
		}
	})
	t.Run("recovered provider: the same session works after the back-off", func(t *testing.T) {
		advanceClock(t, refreshBackoff)
		resp, _ := b.api("GET", s.origin+"/api")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d after recovery", resp.StatusCode)
		}
	})
	t.Run("invalid_grant ends the session", func(t *testing.T) {
		advanceClock(t, 6*time.Minute)
		s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultInvalidGrant})
		defer s.idp.ClearFaults()
		resp, body := b.api("GET", s.origin+"/api")
		if resp.StatusCode != 401 || !strings.Contains(body, "session_ended") {
			t.Fatalf("status %d %s, want 401 session_ended", resp.StatusCode, body)
		}
		cleared := false
		for _, sc := range setCookieHeaders(resp) {
			if strings.HasPrefix(sc, "_authgate=;") && strings.Contains(sc, "Max-Age=0") {
				cleared = true
			}
		}
		if !cleared {
			t.Errorf("session cookie not cleared: %v", setCookieHeaders(resp))
		}
	})
}

func TestLogoutRevokesAndEndsProviderSession(t *testing.T) {
	for _, tc := range []struct {
		name     string
		provider string // extra provider options
		hint     bool   // id_token_hint expected, by POST
	}{
		{"default: client_id, no ID token in the cookie", "", false},
		{"id_token_hint on: the hint goes by POST", "id_token_hint on", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := setupSiteWith(t, siteConfig{provider: tc.provider})
			b := newBrowser(t)
			s.login(t, b)
			s.idp.ResetCounts()
			resp, body := b.get(s.origin + "/oauth2/logout?rd=/bye")
			// The ID token never goes into a URL.
			if strings.Contains(strings.Join(b.hops, " "), "id_token_hint") {
				t.Errorf("the ID token went into a URL: %v", b.hops)
			}
			if tc.hint {
				_, fields, ok := autoPostForm(body)
				if !ok || fields.Get("id_token_hint") == "" || fields.Get("client_id") != "app" {
					t.Fatalf("logout answered %d without the end-session form carrying the hint", resp.StatusCode)
				}
				resp, _, _ = b.submitAutoPost(body)
			} else if _, _, ok := autoPostForm(body); ok {
				t.Error("an ID token was kept without id_token_hint on")
			}
			// The session holds no access token unless a site passes it
			// on: the refresh token is revoked, which ends the grant.
			if n := s.idp.Count("revoke"); n != 1 {
				t.Errorf("%d revocations, want 1 (the refresh token)", n)
			}
			if n := s.idp.Count("end_session"); n != 1 {
				t.Errorf("end-session endpoint visited %d times, want 1", n)
			}
			// After the provider's logout the browser is back at /bye, which
			// sends it to log in again: AutoLogin signs it straight back in,
			// so the final page is the backend at /bye.
			if resp.Request.URL.Path != "/bye" {
				t.Errorf("ended at %s, want /bye", resp.Request.URL)
			}
		})
	}
}

func TestLogoutClearsEveryCookie(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	b := newBrowser(t)
	s.login(t, b)
	resp, body := b.api("GET", s.origin+"/oauth2/logout")
	if _, _, ok := endSessionRequest(resp, body); !ok {
		t.Fatalf("logout status %d without an end-session request", resp.StatusCode)
	}
	for _, c := range b.cookies(s.origin) {
		if strings.HasPrefix(c.Name, "_authgate") {
			t.Errorf("cookie %s survived logout", c.Name)
		}
	}
	if resp, _ := b.api("GET", s.origin+"/api"); resp.StatusCode != 401 {
		t.Errorf("after logout: %d, want 401", resp.StatusCode)
	}
}

func TestKeyRotation(t *testing.T) {
	port := freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := newIDP(t, testidp.Options{}, origin+"/oauth2/callback")
	be := newBackend(t)
	conf := func(keys string) string {
		return fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
		}
	}
}
%s {
	authgate
	reverse_proxy %s
}
`, globalPrelude, keys, idp.Issuer(), origin, be.URL)
	}
	startCaddy(t, conf(testOldKey))
	b := newBrowser(t)
	if resp, body := b.get(origin + "/"); resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	oldCookie := b.cookieHeader(origin)

	// New key first, old key kept: the old cookie still works and is
	// re-encoded with the new key.
	startCaddy(t, conf(testKey+" "+testOldKey))
	resp, _ := b.api("GET", origin+"/api")
	if resp.StatusCode != 200 {
		t.Fatalf("old-key cookie after rotation: %d", resp.StatusCode)
	}
	reencoded := false
	for _, sc := range setCookieHeaders(resp) {
		if strings.HasPrefix(sc, "_authgate=") && !strings.Contains(sc, "Max-Age=0") {
			reencoded = true
		}
	}
	if !reencoded {
		t.Fatal("old-key cookie was not re-encoded with the new key")
	}
	// Old key retired: the re-encoded cookie works, the original does not.
	startCaddy(t, conf(testKey))
	if resp, _ := b.api("GET", origin+"/api"); resp.StatusCode != 200 {
		t.Errorf("re-encoded cookie with only the new key: %d", resp.StatusCode)
	}
	raw := newBrowser(t)
	if resp, _ := raw.api("GET", origin+"/api", "Cookie", oldCookie); resp.StatusCode != 401 {
		t.Errorf("cookie made with a retired key: %d, want 401", resp.StatusCode)
	}
}

func TestLargeSessionIsChunked(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	groups := namedGroups(500)
	s.idp.SetUserClaims("alice", map[string]any{
		"sub": "alice-sub", "email": "alice@example.test", "groups": groups,
	})
	b := newBrowser(t)
	// Watch the callback's Set-Cookie headers.
	var callbackCookies []string
	b.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil && strings.HasSuffix(r.URL.Path, "/oauth2/callback") {
			callbackCookies = resp.Header.Values("Set-Cookie")
		}
		return resp, err
	})
	saw := s.login(t, b)
	if got := strings.Count(saw.Headers.Get("X-Forwarded-Groups"), ","); got != 499 {
		t.Errorf("backend saw %d groups, want 500", got+1)
	}
	chunks := 0
	for _, sc := range callbackCookies {
		if len(sc) > 4000 {
			t.Errorf("Set-Cookie of %d bytes, over 4000", len(sc))
		}
		if strings.HasPrefix(sc, "_authgate_") && !strings.HasPrefix(sc, "_authgate_login_") {
			chunks++
		}
	}
	if chunks < 2 {
		t.Errorf("session in %d chunks, want several: %v", chunks, callbackCookies)
	}
	if resp, _ := b.api("GET", s.origin+"/api"); resp.StatusCode != 200 {
		t.Errorf("chunked session refused: %d", resp.StatusCode)
	}
}

// TestKeepGroupsShrinksTheSession: a user with 500 groups, of which the
// site keeps the app-* ones, gets one small cookie; the backend, the
// placeholder and the rules see only the kept groups.
func TestKeepGroupsShrinksTheSession(t *testing.T) {
	groups := append(namedGroups(500), "app-admin", "app-read")
	s := setupSiteWith(t, siteConfig{
		provider: "keep_groups app-*",
		handler:  "allow group app-admin",
		proxy:    "header_up X-Placeholder-Groups {http.auth.user.groups}",
		beforeStart: func(idp *testidp.Server) {
			idp.SetUserClaims("alice", map[string]any{"sub": "alice-sub", "email": "alice@example.test", "groups": groups})
		},
	})
	b := newBrowser(t)
	saw := s.login(t, b)
	if got := saw.Headers.Get("X-Forwarded-Groups"); got != "app-admin,app-read" {
		t.Errorf("X-Forwarded-Groups = %q, want the kept groups only", got)
	}
	if got := saw.Headers.Get("X-Placeholder-Groups"); got != "app-admin,app-read" {
		t.Errorf("{http.auth.user.groups} = %q", got)
	}
	var names []string
	size := 0
	for _, c := range b.cookies(s.origin) {
		if strings.HasPrefix(c.Name, "_authgate") {
			names = append(names, c.Name)
			size += len(c.Value)
		}
	}
	if len(names) != 1 || names[0] != "_authgate" || size > 1500 {
		t.Errorf("session cookies %v, %d bytes: want one small cookie", names, size)
	}

	// The configuration now keeps more groups: a session narrowed under
	// the old keep_groups lacks some, so it is refused and its user signs
	// in again, with the groups the new configuration keeps.
	s.cfg.provider = "keep_groups app-* " + groups[1].(string)
	s.start(t, testKey)
	if resp, _ := b.api("GET", s.origin+"/api"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session narrowed under other keep_groups: status %d, want 401", resp.StatusCode)
	}
	saw = s.login(t, b)
	if got, want := saw.Headers.Get("X-Forwarded-Groups"), groups[1].(string)+",app-admin,app-read"; got != want {
		t.Errorf("after signing in again, X-Forwarded-Groups = %q, want %q", got, want)
	}

	// A rule whose pattern matches only dropped groups never matches (a
	// literal one is refused at start: TestStartupValidation).
	denied := setupSiteWith(t, siteConfig{
		provider: "keep_groups app-*",
		handler:  fmt.Sprintf("allow group %s*", groups[0].(string)[:4]),
		beforeStart: func(idp *testidp.Server) {
			idp.SetUserClaims("alice", map[string]any{"sub": "alice-sub", "groups": groups})
		},
	})
	b = newBrowser(t)
	if resp, _ := b.get(denied.origin + "/"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a rule on an unkept group: status %d, want 403", resp.StatusCode)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNegativePaths(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")

	t.Run("tampered cookie", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		var cookie string
		for _, c := range b.cookies(s.origin) {
			if c.Name == "_authgate" {
				v := []byte(c.Value)
				v[len(v)/2] ^= 0x01
				cookie = "_authgate=" + string(v)
			}
		}
		anon := newBrowser(t)
		resp, body := anon.api("GET", s.origin+"/api", "Cookie", cookie)
		if resp.StatusCode != 401 {
			t.Fatalf("tampered cookie: %d %s", resp.StatusCode, body)
		}
		if !strings.Contains(strings.Join(setCookieHeaders(resp), "\n"), "_authgate=; Path=/; Max-Age=0") {
			t.Errorf("tampered cookie not cleared: %v", setCookieHeaders(resp))
		}
	})

	startLogin := func(t *testing.T, b *browser) string {
		t.Helper()
		return startLoginAt(t, b, s.origin+"/start-here")
	}
	noSession := func(t *testing.T, resp *http.Response) {
		t.Helper()
		for _, sc := range setCookieHeaders(resp) {
			if strings.HasPrefix(sc, "_authgate=") && !strings.Contains(sc, "Max-Age=0") {
				t.Errorf("a session cookie was set: %s", sc)
			}
		}
	}

	t.Run("wrong state", func(t *testing.T) {
		b := newBrowser(t)
		cb := startLogin(t, b)
		u, _ := url.Parse(cb)
		q := u.Query()
		q.Set("state", q.Get("state")+"x")
		u.RawQuery = q.Encode()
		resp, body := b.api("GET", u.String())
		if resp.StatusCode != 400 || !strings.Contains(body, "state_mismatch") {
			t.Fatalf("wrong state: %d %s", resp.StatusCode, body)
		}
		noSession(t, resp)
	})
	t.Run("replayed callback", func(t *testing.T) {
		b := newBrowser(t)
		cb := startLogin(t, b)
		if resp, _ := b.api("GET", cb); resp.StatusCode != http.StatusFound {
			t.Fatalf("first callback: %d", resp.StatusCode)
		}
		resp, body := b.api("GET", cb)
		if resp.StatusCode != 400 || !strings.Contains(body, "login_expired") {
			t.Fatalf("replayed callback: %d %s", resp.StatusCode, body)
		}
		noSession(t, resp)
	})
	t.Run("callback replayed with the pending cookie", func(t *testing.T) {
		b := newBrowser(t)
		cb := startLogin(t, b)
		pending := b.cookieHeader(s.origin + "/oauth2/callback")
		if resp, _ := b.api("GET", cb); resp.StatusCode != http.StatusFound {
			t.Fatalf("first callback: %d", resp.StatusCode)
		}
		// An attacker who captured both replays them: the code is spent.
		evil := newBrowser(t)
		resp, body := evil.api("GET", cb, "Cookie", pending)
		if resp.StatusCode != 400 || !strings.Contains(body, "code_rejected") {
			t.Fatalf("replay with cookie: %d %s", resp.StatusCode, body)
		}
		noSession(t, resp)
	})
	for _, tc := range []struct {
		name   string
		fault  testidp.FaultKind
		status int
	}{
		{"token endpoint 500", testidp.FaultStatus500HTML, 502},
		{"token endpoint malformed JSON", testidp.FaultTruncatedJSON, 502},
		{"token endpoint 200 HTML", testidp.FaultHTML200, 502},
		{"token response without access_token", testidp.FaultMissingAccessToken, 502},
		{"id token bad signature", testidp.FaultIDTokenBadSignature, 401},
		{"id token wrong nonce", testidp.FaultIDTokenWrongNonce, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			cb := startLogin(t, b)
			s.idp.SetFault("token", testidp.Fault{Kind: tc.fault})
			defer s.idp.ClearFaults()
			resp, body := b.api("GET", cb)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(body, `"request_id"`) {
				t.Errorf("no request id in %s", body)
			}
			noSession(t, resp)
		})
	}
}

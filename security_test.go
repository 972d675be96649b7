package authgate

// The attack corpus: one test per area, one subtest per attack, each
// through a real Caddy in front of the strict test provider. Every refusal
// is checked for what a user sees (status, reason, request id) and for what
// must not happen (a session cookie, a redirect off-site, a token leaked).

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// ---------------------------------------------------------------------------
// ID tokens, JWKS, discovery

func TestSecurityIDToken(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	now := testNow()
	for _, tc := range []struct {
		name  string
		fault testidp.Fault
	}{
		{"signature by another RS256 key is rejected", testidp.Fault{Kind: testidp.FaultIDTokenBadSignature}},
		{"alg none (unsigned token) is rejected", testidp.Fault{Kind: testidp.FaultIDTokenAlgNone}},
		{"iss of another issuer is rejected", testidp.Fault{Kind: testidp.FaultIDTokenWrongIssuer}},
		{"iss with a trailing slash is rejected", testidp.Fault{Kind: testidp.FaultIDTokenIssuerTrailingSlash}},
		{"aud of another client is rejected", testidp.Fault{Kind: testidp.FaultIDTokenWrongAudience}},
		{"missing aud is rejected", testidp.Fault{Kind: testidp.FaultIDTokenMissingAudience}},
		{"several audiences with azp of another client are rejected", testidp.Fault{Kind: testidp.FaultIDTokenClaims,
			Claims: map[string]any{"aud": []any{"app", "other-client"}, "azp": "other-client"}}},
		{"missing sub is rejected", testidp.Fault{Kind: testidp.FaultIDTokenMissingSub}},
		{"nonce of another login is rejected", testidp.Fault{Kind: testidp.FaultIDTokenWrongNonce}},
		{"missing nonce is rejected", testidp.Fault{Kind: testidp.FaultIDTokenMissingNonce}},
		{"expired (exp an hour ago) is rejected", testidp.Fault{Kind: testidp.FaultIDTokenExpired}},
		{"nbf an hour in the future is rejected", testidp.Fault{Kind: testidp.FaultIDTokenNotYetValid}},
		{"iat an hour in the future is rejected", testidp.Fault{Kind: testidp.FaultIDTokenClaims,
			Claims: map[string]any{"iat": now.Add(time.Hour).Unix()}}},
		{"key id absent from the JWKS is rejected", testidp.Fault{Kind: testidp.FaultIDTokenUnknownKID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			cb := startLoginAt(t, b, s.origin+"/private")
			f := tc.fault
			f.Times = 1
			s.idp.SetFault("token:authorization_code", f)
			defer s.idp.ClearFaults()
			resp, body := b.api("GET", cb)
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusFound {
				t.Fatalf("a login with a bad ID token went through: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			assertJSONError(t, resp, body, http.StatusUnauthorized, "id_token_invalid")
			assertNoSessionSet(t, resp)
			assertJarHasNoSession(t, b, s.origin)
		})
	}
	t.Run("a browser gets an HTML error page with a request id", func(t *testing.T) {
		b := newBrowser(t)
		cb := startLoginAt(t, b, s.origin+"/private")
		s.idp.SetFault("token:authorization_code", testidp.Fault{Kind: testidp.FaultIDTokenWrongNonce, Times: 1})
		defer s.idp.ClearFaults()
		resp, body := b.get(cb)
		assertHTMLError(t, resp, body, http.StatusUnauthorized, "id_token_invalid")
		assertNoSessionSet(t, resp)
		assertJarHasNoSession(t, b, s.origin)
	})
	t.Run("control: the same login without a fault succeeds", func(t *testing.T) {
		s.login(t, newBrowser(t))
	})
}

func TestSecurityJWKS(t *testing.T) {
	outer := t // clock moves are kept for the whole test: the JWKS limiter must never see time go back
	s := setupSite(t, testidp.Options{}, "", "")
	s.idp.ResetCounts()
	loginWith := func(t *testing.T, fault testidp.FaultKind) (*http.Response, string, *browser) {
		t.Helper()
		b := newBrowser(t)
		cb := startLoginAt(t, b, s.origin+"/k")
		if fault != "" {
			s.idp.SetFault("token:authorization_code", testidp.Fault{Kind: fault, Times: 1})
			defer s.idp.ClearFaults()
		}
		resp, body := b.api("GET", cb)
		return resp, body, b
	}
	t.Run("first login fetches the JWKS once", func(t *testing.T) {
		if resp, body, _ := loginWith(t, ""); resp.StatusCode != http.StatusFound {
			t.Fatalf("login: %d %s", resp.StatusCode, body)
		}
		if n := s.idp.Count("jwks"); n != 1 {
			t.Errorf("%d JWKS fetches for the first login, want 1", n)
		}
	})
	t.Run("rotated provider key: the new kid costs exactly one JWKS fetch and is accepted", func(t *testing.T) {
		advanceClock(outer, 11*time.Second)
		oldKID, newKID := s.idp.RotateKey()
		if oldKID == newKID {
			t.Fatalf("RotateKey kept kid %s", oldKID)
		}
		s.idp.ResetCounts()
		if resp, body, _ := loginWith(t, ""); resp.StatusCode != http.StatusFound {
			t.Fatalf("login with an ID token signed by the new key %s: %d %s", newKID, resp.StatusCode, body)
		}
		if n := s.idp.Count("jwks"); n != 1 {
			t.Errorf("%d JWKS fetches for an ID token with the new kid, want exactly 1", n)
		}
		if resp, body, _ := loginWith(t, ""); resp.StatusCode != http.StatusFound {
			t.Fatalf("second login with the new key: %d %s", resp.StatusCode, body)
		}
		if n := s.idp.Count("jwks"); n != 1 {
			t.Errorf("%d JWKS fetches after a second login with the now known kid, want still 1", n)
		}
	})
	t.Run("five unknown-kid ID tokens within 10 s cause at most one JWKS fetch", func(t *testing.T) {
		advanceClock(outer, 11*time.Second)
		s.idp.ResetCounts()
		for i := 0; i < 5; i++ {
			resp, body, b := loginWith(t, testidp.FaultIDTokenUnknownKID)
			assertJSONError(t, resp, body, http.StatusUnauthorized, "id_token_invalid")
			assertNoSessionSet(t, resp)
			assertJarHasNoSession(t, b, s.origin)
		}
		if n := s.idp.Count("jwks"); n > 1 {
			t.Errorf("%d JWKS fetches for 5 unknown-kid tokens within 10 s, want at most 1 (jwks.go limiter)", n)
		}
	})
	t.Run("after the 10 s window the next unknown kid may fetch again, once", func(t *testing.T) {
		advanceClock(outer, 11*time.Second)
		s.idp.ResetCounts()
		for i := 0; i < 2; i++ {
			resp, body, _ := loginWith(t, testidp.FaultIDTokenUnknownKID)
			assertJSONError(t, resp, body, http.StatusUnauthorized, "id_token_invalid")
		}
		if n := s.idp.Count("jwks"); n != 1 {
			t.Errorf("%d JWKS fetches for 2 unknown-kid tokens after the window expired, want exactly 1", n)
		}
	})
	t.Run("a valid login after the unknown-kid storm needs no fetch", func(t *testing.T) {
		s.idp.ResetCounts()
		if resp, body, _ := loginWith(t, ""); resp.StatusCode != http.StatusFound {
			t.Fatalf("login: %d %s", resp.StatusCode, body)
		}
		if n := s.idp.Count("jwks"); n != 0 {
			t.Errorf("%d JWKS fetches for a token with a known kid, want 0", n)
		}
	})
}

func TestSecurityDiscovery(t *testing.T) {
	s := setupSiteWith(t, siteConfig{beforeStart: func(idp *testidp.Server) {
		idp.SetFault("discovery", testidp.Fault{Kind: testidp.FaultDiscoveryWrongIssuer})
	}})
	t.Run("discovery naming another issuer: the browser gets a 502 page", func(t *testing.T) {
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/private")
		assertHTMLError(t, resp, body, http.StatusBadGateway, "provider_unavailable")
		if resp.Request.URL.Host != hostOf(t, s.origin) {
			t.Errorf("the browser was sent to %s", resp.Request.URL)
		}
		assertJarHasNoSession(t, b, s.origin)
	})
	t.Run("discovery naming another issuer: /oauth2/start answers 502 too", func(t *testing.T) {
		resp, body := newBrowser(t).get(s.origin + "/oauth2/start?rd=/")
		assertHTMLError(t, resp, body, http.StatusBadGateway, "provider_unavailable")
	})
	t.Run("no authorization request ever reaches the provider", func(t *testing.T) {
		if n := s.idp.Count("discovery"); n == 0 {
			t.Errorf("discovery was never fetched: the test proves nothing")
		}
		if n := s.idp.Count("authorize"); n != 0 {
			t.Errorf("%d authorization requests reached a provider whose discovery names another issuer, want 0", n)
		}
	})
}

// ---------------------------------------------------------------------------
// The login flow: pending logins, state, PKCE, RFC 9207, login CSRF

func TestSecurityFlow(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")

	t.Run("callback without the pending-login cookie (fresh browser, genuine callback URL): 400 login_expired", func(t *testing.T) {
		cb := startLoginAt(t, newBrowser(t), s.origin+"/x")
		s.idp.ResetCounts()
		victim := newBrowser(t)
		resp, body := victim.api("GET", cb)
		assertJSONError(t, resp, body, http.StatusBadRequest, "login_expired")
		assertNoSessionSet(t, resp)
		assertJarHasNoSession(t, victim, s.origin)
		if n := s.idp.Count("token"); n != 0 {
			t.Errorf("the code of a callback without a pending login was redeemed (%d token requests)", n)
		}
	})
	t.Run("wrong state: 400 state_mismatch", func(t *testing.T) {
		b := newBrowser(t)
		cb := startLoginAt(t, b, s.origin+"/x")
		resp, body := b.api("GET", withQuery(t, cb, "state", queryParam(t, cb, "state")+"x"))
		assertJSONError(t, resp, body, http.StatusBadRequest, "state_mismatch")
		assertNoSessionSet(t, resp)
		assertJarHasNoSession(t, b, s.origin)
	})
	t.Run("state removed by the provider: 400 state_mismatch", func(t *testing.T) {
		b := newBrowser(t)
		s.idp.SetFault("authorize", testidp.Fault{Kind: testidp.FaultAuthorizeNoState, Times: 1})
		defer s.idp.ClearFaults()
		cb := startLoginAt(t, b, s.origin+"/x")
		resp, body := b.api("GET", cb)
		assertJSONError(t, resp, body, http.StatusBadRequest, "state_mismatch")
		assertNoSessionSet(t, resp)
	})
	t.Run("replayed callback: 400", func(t *testing.T) {
		b := newBrowser(t)
		cb := startLoginAt(t, b, s.origin+"/x")
		if resp, body := b.api("GET", cb); resp.StatusCode != http.StatusFound {
			t.Fatalf("first callback: %d %s", resp.StatusCode, body)
		}
		resp, body := b.api("GET", cb)
		assertJSONError(t, resp, body, http.StatusBadRequest, "login_expired")
		assertNoSessionSet(t, resp)
	})
	t.Run("late callback (11 minutes after the start): 400 start-again page, code never redeemed", func(t *testing.T) {
		b := newBrowser(t)
		cb := startLoginAt(t, b, s.origin+"/x")
		advanceClock(t, 11*time.Minute)
		s.idp.ResetCounts()
		resp, body := b.get(cb)
		assertHTMLError(t, resp, body, http.StatusBadRequest, "login_expired")
		if !strings.Contains(body, `id="retry"`) {
			t.Errorf("the late-callback page offers no way to start again: %.500s", body)
		}
		assertNoSessionSet(t, resp)
		if n := s.idp.Count("token"); n != 0 {
			t.Errorf("an expired login's code was redeemed (%d token requests)", n)
		}
	})
	t.Run("PKCE S256 is sent on every authorization request", func(t *testing.T) {
		startLoginAt(t, newBrowser(t), s.origin+"/x")
		q := s.idp.LastAuthorizeQuery()
		if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
			t.Errorf("authorization request without a S256 challenge: method %q challenge %q",
				q.Get("code_challenge_method"), q.Get("code_challenge"))
		}
		if q.Get("state") == "" || q.Get("nonce") == "" {
			t.Errorf("authorization request without state or nonce: %v", q)
		}
	})
	t.Run("code of another login redeemed with this login's verifier: rejected by the provider (PKCE)", func(t *testing.T) {
		other := newBrowser(t)
		otherCB := startLoginAt(t, other, s.origin+"/x")
		b := newBrowser(t)
		cb := startLoginAt(t, b, s.origin+"/x")
		swapped := withQuery(t, cb, "code", queryParam(t, otherCB, "code"))
		s.idp.ResetCounts()
		resp, body := b.api("GET", swapped)
		assertJSONError(t, resp, body, http.StatusBadRequest, "code_rejected")
		assertNoSessionSet(t, resp)
		assertJarHasNoSession(t, b, s.origin)
		if n := s.idp.Count("token:authorization_code"); n != 1 {
			t.Errorf("%d code exchanges, want 1 (refused by the provider's PKCE check)", n)
		}
	})
	for _, tc := range []struct {
		name, what string
		fault      testidp.Fault
	}{
		{"RFC 9207: iss of another issuer in the callback: 400 issuer_mismatch, code never redeemed",
			"a code from a mixed-up issuer", testidp.Fault{Kind: testidp.FaultAuthorizeIss, Value: "https://attacker-idp.example", Times: 1}},
		{"RFC 9207: iss missing although discovery promises it: 400 issuer_mismatch",
			"a code without iss", testidp.Fault{Kind: testidp.FaultAuthorizeNoIss, Times: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			s.idp.SetFault("authorize", tc.fault)
			defer s.idp.ClearFaults()
			s.idp.ResetCounts()
			resp, body := b.get(s.origin + "/mixup")
			assertHTMLError(t, resp, body, http.StatusBadRequest, "issuer_mismatch")
			assertJarHasNoSession(t, b, s.origin)
			if n := s.idp.Count("token"); n != 0 {
				t.Errorf("%s was sent to the token endpoint (%d requests)", tc.what, n)
			}
		})
	}
	t.Run("RFC 9207: iss given twice: 400 duplicate_parameter", func(t *testing.T) {
		b := newBrowser(t)
		cb := startLoginAt(t, b, s.origin+"/x")
		resp, body := b.api("GET", cb+"&iss="+url.QueryEscape(s.idp.Issuer()))
		assertJSONError(t, resp, body, http.StatusBadRequest, "duplicate_parameter")
		assertNoSessionSet(t, resp)
	})
	t.Run("provider error access_denied: 403 sign_in_denied, no session", func(t *testing.T) {
		b := newBrowser(t)
		s.idp.SetFault("authorize", testidp.Fault{Kind: testidp.FaultAuthorizeError, Value: "access_denied", Times: 1})
		defer s.idp.ClearFaults()
		resp, body := b.get(s.origin + "/x")
		assertHTMLError(t, resp, body, http.StatusForbidden, "sign_in_denied")
		assertJarHasNoSession(t, b, s.origin)
	})
	t.Run("provider error code with markup is neither reflected nor trusted", func(t *testing.T) {
		b := newBrowser(t)
		s.idp.SetFault("authorize", testidp.Fault{Kind: testidp.FaultAuthorizeError, Value: `<script>alert(1)</script>`, Times: 1})
		defer s.idp.ClearFaults()
		resp, body := b.get(s.origin + "/x")
		assertHTMLError(t, resp, body, http.StatusBadGateway, "provider_error")
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "&lt;script&gt;") {
			t.Errorf("the provider's error parameter is reflected into the page: %.600s", body)
		}
		assertJarHasNoSession(t, b, s.origin)
	})

	// Login CSRF / session fixation: whatever session cookie an attacker
	// planted, the victim's own login replaces it.
	plant := func(b *browser, cookies ...*http.Cookie) {
		u, _ := url.Parse(s.origin + "/")
		b.client.Jar.SetCookies(u, cookies)
	}
	victimLogsIn := func(t *testing.T, b *browser) {
		t.Helper()
		resp, body := b.get(s.origin + "/oauth2/start?rd=/whoami")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("victim's login: %d after %v: %.300s", resp.StatusCode, b.hops, body)
		}
		saw := backendSaw(t, body)
		if got := saw.Headers.Values("X-Forwarded-User"); len(got) != 1 || got[0] != "alice-sub" {
			t.Errorf("after the victim's login the backend sees user %q, want alice-sub", got)
		}
	}
	t.Run("planted junk session cookie is replaced by the victim's login", func(t *testing.T) {
		b := newBrowser(t)
		plant(b, &http.Cookie{Name: "_authgate", Value: "planted-junk-value", Path: "/"})
		victimLogsIn(t, b)
		v := jarSession(t, b, s.origin)
		if v == "planted-junk-value" {
			t.Fatal("the planted session cookie survived the victim's login")
		}
		if sess := mustOpenSession(t, v, testKey); sess.Claims["sub"] != "alice-sub" {
			t.Errorf("session after login is for %v, want alice-sub", sess.Claims["sub"])
		}
	})
	t.Run("planted junk session chunks are cleared by the victim's login", func(t *testing.T) {
		b := newBrowser(t)
		plant(b, &http.Cookie{Name: "_authgate_0", Value: "junk0", Path: "/"}, &http.Cookie{Name: "_authgate_1", Value: "junk1", Path: "/"})
		victimLogsIn(t, b)
		for _, c := range b.cookies(s.origin) {
			if c.Value == "junk0" || c.Value == "junk1" {
				t.Errorf("planted chunk %s survived the victim's login", c.Name)
			}
		}
	})
	t.Run("planted valid session of the attacker is replaced by the victim's login", func(t *testing.T) {
		s.idp.SetUserClaims("alice", map[string]any{"sub": "mallory-sub", "email": "mallory@evil.test"})
		attacker := newBrowser(t)
		saw := s.login(t, attacker)
		s.idp.SetUserClaims("alice", map[string]any{"sub": "alice-sub", "email": "alice@example.test"})
		if saw.Headers.Get("X-Forwarded-User") != "mallory-sub" {
			t.Fatalf("attacker's own login: user %q", saw.Headers.Get("X-Forwarded-User"))
		}
		planted := jarSession(t, attacker, s.origin)
		b := newBrowser(t)
		plant(b, &http.Cookie{Name: "_authgate", Value: planted, Path: "/"})
		victimLogsIn(t, b)
		v := jarSession(t, b, s.origin)
		if v == planted {
			t.Fatal("the attacker's planted session cookie survived the victim's login")
		}
		if sess := mustOpenSession(t, v, testKey); sess.Claims["sub"] != "alice-sub" {
			t.Errorf("session after the victim's login is for %v, want alice-sub", sess.Claims["sub"])
		}
	})
}

// TestSecurityStatelessProvider covers providers that do not echo state:
// the pending-login cookie, PKCE and the nonce must still bind the
// callback to the browser that started the login.
func TestSecurityStatelessProvider(t *testing.T) {
	p1, p2 := freePort(t), freePort(t)
	noState := fmt.Sprintf("http://127.0.0.1:%d", p1)
	bare := fmt.Sprintf("http://127.0.0.1:%d", p2)
	idp := newIDP(t, testidp.Options{}, noState+"/oauth2/callback", bare+"/oauth2/callback")
	be := newBackend(t)
	startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		provider nostate {
			issuer %s
			client_id app
			client_secret app-secret
			state off
		}
		provider bare {
			issuer %s
			client_id app
			client_secret app-secret
			state off
			pkce off
		}
	}
}
%s {
	authgate nostate
	reverse_proxy %s
}
%s {
	authgate bare
	reverse_proxy %s
}
`, globalPrelude, testKey, idp.Issuer(), idp.Issuer(), noState, be.URL, bare, be.URL))

	t.Run("control: a login on the provider without state works and sends no state", func(t *testing.T) {
		b := newBrowser(t)
		resp, body := b.get(noState + "/ok")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("login: %d after %v: %.300s", resp.StatusCode, b.hops, body)
		}
		if q := idp.LastAuthorizeQuery(); q.Has("state") {
			t.Errorf("state sent although the provider is configured with state off: %v", q)
		}
	})
	t.Run("unsolicited callback with a genuine code and no pending-login cookie: 400, code never redeemed", func(t *testing.T) {
		cb := startLoginAt(t, newBrowser(t), noState+"/x")
		idp.ResetCounts()
		victim := newBrowser(t)
		resp, body := victim.get(cb)
		assertHTMLError(t, resp, body, http.StatusBadRequest, "login_expired")
		assertNoSessionSet(t, resp)
		assertJarHasNoSession(t, victim, noState)
		if n := idp.Count("token"); n != 0 {
			t.Errorf("an unsolicited callback's code was redeemed (%d token requests)", n)
		}
	})
	t.Run("attacker's code sent to a victim with a login in progress: refused through the victim's PKCE verifier", func(t *testing.T) {
		victim := newBrowser(t)
		startLoginAt(t, victim, noState+"/x")
		attackerCB := startLoginAt(t, newBrowser(t), noState+"/x")
		resp, body := victim.api("GET", attackerCB)
		assertJSONError(t, resp, body, http.StatusBadRequest, "code_rejected")
		assertNoSessionSet(t, resp)
		assertJarHasNoSession(t, victim, noState)
	})
	t.Run("without PKCE either, the nonce refuses the attacker's code", func(t *testing.T) {
		victim := newBrowser(t)
		startLoginAt(t, victim, bare+"/x")
		attackerCB := startLoginAt(t, newBrowser(t), bare+"/x")
		resp, body := victim.api("GET", attackerCB)
		assertJSONError(t, resp, body, http.StatusUnauthorized, "id_token_invalid")
		assertNoSessionSet(t, resp)
		assertJarHasNoSession(t, victim, bare)
	})
}

// ---------------------------------------------------------------------------
// Redirects

func TestSecurityRedirects(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "allowed_redirect_domains .bar.test", "")
	self := hostOf(t, s.origin)
	idpHost := hostOf(t, s.idp.Issuer())
	for _, tc := range []struct {
		name string
		rd   string
		// wantPath is where the browser must end; "" only requires it
		// to stay on the protected origin.
		wantPath string
	}{
		{"protocol-relative //evil.com", "//evil.com/x", "/"},
		{"backslash /\\evil.com", `/\evil.com/x`, "/"},
		{"encoded backslash /%5cevil.com", "/%5cevil.com", "/"},
		{"encoded slashes /%2f%2fevil.com", "/%2f%2fevil.com", "/"},
		{"triple slash ///evil.com", "///evil.com", "/"},
		{"tab inside /\\t/evil.com", "/\t/evil.com", "/"},
		{"absolute https://evil.com", "https://evil.com/x", "/"},
		{"userinfo https://a.example.test@evil.com", "https://a.example.test@evil.com/", "/"},
		{"userinfo with our own host http://self@evil.com", "http://" + self + "@evil.com/", "/"},
		{"suffix confusion evilbar.test against .bar.test", "http://evilbar.test/", "/"},
		{"suffix confusion bar.test.evil.com against .bar.test", "http://bar.test.evil.com/", "/"},
		{"encoded dot evil.com%2ebar.test", "http://evil.com%2ebar.test/", "/"},
		{"same IP, another port", "http://127.0.0.1:1/", "/"},
		{"javascript: URL", "javascript:alert(1)", "/"},
		{"scheme-only https:evil.com", "https:evil.com", "/"},
		{"double-encoded slashes stay a local path", "/%252f%252fevil.com", ""},
	} {
		b := newBrowser(t)
		t.Run("login rd "+tc.name+": every hop stays on the origin or the provider, cookies host-only", func(t *testing.T) {
			w := b.walk(t, s.origin+"/oauth2/start?rd="+url.QueryEscape(tc.rd), self, idpHost)
			if w.left != nil {
				t.Fatalf("the login sent the browser off-site to %s (hops %v)", w.left, hopURLs(w))
			}
			for _, h := range w.hops {
				for _, c := range h.setCookies {
					if c.Domain != "" {
						t.Errorf("%s set cookie %s for domain %q", h.url, c.Name, c.Domain)
					}
				}
			}
			if w.last.StatusCode != http.StatusOK || w.last.Request.URL.Host != self {
				t.Fatalf("login ended with %d at %s, want 200 on %s", w.last.StatusCode, w.last.Request.URL, self)
			}
			if tc.wantPath != "" && w.last.Request.URL.RequestURI() != tc.wantPath {
				t.Errorf("login ended at %s, want %s", w.last.Request.URL.RequestURI(), tc.wantPath)
			}
		})
		t.Run("logout rd "+tc.name+" with a session: post_logout_redirect_uri stays on the origin", func(t *testing.T) {
			resp, body := b.api("GET", s.origin+"/oauth2/logout?rd="+url.QueryEscape(tc.rd))
			loc, params, ok := endSessionRequest(resp, body)
			if !ok {
				t.Fatalf("logout: %d Location %q, no end-session request", resp.StatusCode, resp.Header.Get("Location"))
			}
			if loc.Host != idpHost {
				t.Fatalf("logout with a session sent the browser to %s, want the provider's end-session endpoint", loc)
			}
			back, err := url.Parse(params.Get("post_logout_redirect_uri"))
			if err != nil || back.Host != self || back.User != nil || back.Scheme != "http" {
				t.Errorf("post_logout_redirect_uri %q leaves the protected origin", params.Get("post_logout_redirect_uri"))
			} else if tc.wantPath != "" && back.RequestURI() != tc.wantPath {
				t.Errorf("post_logout_redirect_uri %q, want %s", back, tc.wantPath)
			}
		})
		t.Run("logout rd "+tc.name+" without a session: Location stays on the origin", func(t *testing.T) {
			resp, _ := newBrowser(t).api("GET", s.origin+"/oauth2/logout?rd="+url.QueryEscape(tc.rd))
			loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || err != nil || loc.Host != self {
				t.Errorf("logout without a session: %d to %q, want a redirect on %s", resp.StatusCode, resp.Header.Get("Location"), self)
			} else if tc.wantPath != "" && loc.RequestURI() != tc.wantPath {
				t.Errorf("logout without a session redirected to %s, want %s", loc, tc.wantPath)
			}
		})
	}
	t.Run("control: a local rd is honoured after login", func(t *testing.T) {
		b := newBrowser(t)
		w := b.walk(t, s.origin+"/oauth2/start?rd="+url.QueryEscape("/after?x=1"), self, idpHost)
		if w.left != nil || w.last.Request.URL.RequestURI() != "/after?x=1" {
			t.Errorf("ended at %v (left to %v), want /after?x=1", w.last.Request.URL, w.left)
		}
	})
	t.Run("control: an allowed subdomain of .bar.test is honoured after login", func(t *testing.T) {
		b := newBrowser(t)
		w := b.walk(t, s.origin+"/oauth2/start?rd="+url.QueryEscape("http://app.bar.test/y"), self, idpHost)
		if w.left == nil || w.left.String() != "http://app.bar.test/y" {
			t.Errorf("login with an allowed rd ended at %v (left to %v), want a redirect to http://app.bar.test/y", w.last.Request.URL, w.left)
		}
	})
	t.Run("forward-auth with X-Forwarded-Host of a foreign host: 401, no login redirect to it", func(t *testing.T) {
		resp, body := rawRequest(t, s.origin+"/oauth2/auth", "", true,
			"X-Forwarded-Host", "evil.com", "X-Forwarded-Uri", "/", "X-Forwarded-Method", "GET")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("forward-auth for a foreign host: %d Location %q, want 401: %.200s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
	})
}

func hopURLs(w walkResult) []string {
	var out []string
	for _, h := range w.hops {
		out = append(out, h.url.String())
	}
	return out
}

// ---------------------------------------------------------------------------
// Cookies

// guidGroups returns n GUID-like group names (as Entra ID or Keycloak send
// them): they compress badly, so the session needs many cookie chunks.
func guidGroups(n int) []any {
	out := make([]any, n)
	for i := range out {
		h := sha256.Sum256([]byte(fmt.Sprint("group", i)))
		out[i] = fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	}
	return out
}

// namedGroups returns n readable group names that compress well.

func TestSecurityCookies(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	b := newBrowser(t)
	s.login(t, b)
	valid := jarSession(t, b, s.origin)
	pendingBrowser := newBrowser(t)
	startLoginAt(t, pendingBrowser, s.origin+"/p")
	var pending *http.Cookie
	for _, c := range pendingBrowser.cookies(s.origin + "/oauth2/callback") {
		if strings.HasPrefix(c.Name, "_authgate_login_") {
			pending = c
		}
	}
	if pending == nil {
		t.Fatal("no pending-login cookie after starting a login")
	}
	foreignCodec, err := newCookieCodec([]string{"an-attacker-key-0123456789abcdef-0123456789"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := foreignCodec.encode("_authgate", &Session{Version: sessionVersion, ID: "x", Provider: "corp",
		Created: testNow().Unix(), AccessToken: "forged", Claims: map[string]any{"sub": "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	flipped := []byte(valid)
	for i := len(flipped) / 2; i < len(flipped); i++ {
		if c := flipped[i]; c >= 'a' && c <= 'y' {
			flipped[i] = c + 1
			break
		}
	}

	for _, tc := range []struct {
		name   string
		cookie string
	}{
		{"tampered (one character changed)", "_authgate=" + string(flipped)},
		{"truncated (second half cut off)", "_authgate=" + valid[:len(valid)/2]},
		{"garbage base64", "_authgate=QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="},
		{"garbage that is not base64", "_authgate=%%%not*base64~~"},
		{"a pending-login cookie's value under the session name", "_authgate=" + pending.Value},
		{"forged with an unknown key", "_authgate=" + forged},
		{"valid value moved to chunk 1 without chunk 0", "_authgate_1=" + valid},
	} {
		t.Run(tc.name+": API 401 and cookie cleared", func(t *testing.T) {
			resp, body := rawRequest(t, s.origin+"/api", tc.cookie, false)
			if resp.StatusCode == http.StatusInternalServerError {
				t.Fatalf("500 for a bad cookie: %s", body)
			}
			assertJSONError(t, resp, body, http.StatusUnauthorized, "")
			assertNoSessionSet(t, resp)
			name, _, _ := strings.Cut(tc.cookie, "=")
			if name != "_authgate_1" && !expiredCookieNames(resp)[name] {
				t.Errorf("bad cookie %s not cleared: %v", name, setCookieHeaders(resp))
			}
		})
		t.Run(tc.name+": browser sent to log in", func(t *testing.T) {
			resp, body := rawRequest(t, s.origin+"/page", tc.cookie, true)
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, s.idp.Issuer()+"/authorize?") {
				t.Fatalf("browser with a bad cookie: %d to %q, want 302 to the provider: %.200s", resp.StatusCode, loc, body)
			}
			assertNoSessionSet(t, resp)
		})
	}

	t.Run("cookie attributes: HttpOnly, SameSite=Lax, host-only; pending login on the session's path for 10 minutes", func(t *testing.T) {
		var seen []string
		nb := newBrowser(t)
		recordSetCookies(nb, &seen)
		s.login(t, nb)
		sawSession, sawPending := false, false
		for _, raw := range seen {
			c, err := http.ParseSetCookie(raw)
			if err != nil || c.MaxAge < 0 || !strings.HasPrefix(c.Name, "_authgate") {
				continue
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Domain != "" {
				t.Errorf("cookie %s lacks HttpOnly/SameSite=Lax or names a domain: %s", c.Name, raw)
			}
			switch {
			case strings.HasPrefix(c.Name, "_authgate_login_"):
				sawPending = true
				// Path / like the session: a login started on a protected
				// page must see the pending ones to cap them.
				if c.Path != "/" || c.MaxAge <= 0 || c.MaxAge > 600 {
					t.Errorf("pending-login cookie not on path / for at most 10 minutes: %s", raw)
				}
			case isSessionCookieName(c.Name):
				sawSession = true
				if c.Path != "/" {
					t.Errorf("session cookie path %q, want /", c.Path)
				}
			}
		}
		if !sawSession || !sawPending {
			t.Errorf("login set session=%v pending=%v cookies: %v", sawSession, sawPending, seen)
		}
	})

	withGroups := func(t *testing.T, groups []any) {
		s.idp.SetUserClaims("alice", map[string]any{"groups": groups})
		t.Cleanup(func() { s.idp.SetUserClaims("alice", map[string]any{"groups": []any{"admins", "staff"}}) })
	}
	t.Run("500-group token: every Set-Cookie of login and refresh fits 4000 bytes", func(t *testing.T) {
		withGroups(t, namedGroups(500))
		var seen []string
		nb := newBrowser(t)
		recordSetCookies(nb, &seen)
		saw := s.login(t, nb)
		if n := strings.Count(saw.Headers.Get("X-Forwarded-Groups"), ",") + 1; n != 500 {
			t.Errorf("backend saw %d groups, want 500", n)
		}
		advanceClock(t, 6*time.Minute)
		s.idp.ResetCounts()
		if resp, body := nb.api("GET", s.origin+"/api"); resp.StatusCode != http.StatusOK {
			t.Fatalf("refresh of the large session: %d %s", resp.StatusCode, body)
		}
		if n := s.idp.Count("token:refresh_token"); n != 1 {
			t.Errorf("%d refreshes, want 1 (the refresh path must be exercised)", n)
		}
		chunks := map[string]bool{}
		for _, raw := range seen {
			if len(raw) > 4000 {
				t.Errorf("Set-Cookie of %d bytes, over 4000: %.80s…", len(raw), raw)
			}
			if c, err := http.ParseSetCookie(raw); err == nil && isSessionCookieName(c.Name) && c.MaxAge >= 0 {
				chunks[c.Name] = true
			}
		}
		if len(chunks) < 2 {
			t.Errorf("the 500-group session used %d cookie(s), want several chunks", len(chunks))
		}
	})
	t.Run("chunked session with a middle chunk missing: API 401, every chunk cleared, browser sent to log in", func(t *testing.T) {
		// Enough GUIDs for three chunks now that sessions carry no access
		// token; still under Caddy's 16 KiB header limit.
		withGroups(t, guidGroups(220))
		nb := newBrowser(t)
		s.login(t, nb)
		var parts, names []string
		for _, c := range nb.cookies(s.origin) {
			if isSessionCookieName(c.Name) && c.Name != "_authgate_1" {
				parts = append(parts, c.Name+"="+c.Value)
				names = append(names, c.Name)
			}
		}
		if len(names) < 2 || !strings.Contains(strings.Join(names, " "), "_authgate_2") {
			t.Fatalf("session not chunked enough to drop a middle chunk: %v", names)
		}
		cookie := strings.Join(parts, "; ")
		resp, body := rawRequest(t, s.origin+"/api", cookie, false)
		assertJSONError(t, resp, body, http.StatusUnauthorized, "")
		expired := expiredCookieNames(resp)
		for _, n := range names {
			if !expired[n] {
				t.Errorf("chunk %s of the broken session not cleared: %v", n, setCookieHeaders(resp))
			}
		}
		resp, _ = rawRequest(t, s.origin+"/page", cookie, true)
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), s.idp.Issuer()) {
			t.Errorf("browser with a broken chunked session: %d to %q, want 302 to the provider", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("logout clears every chunk and every pending-login cookie", func(t *testing.T) {
		withGroups(t, guidGroups(100))
		nb := newBrowser(t)
		startLoginAt(t, nb, s.origin+"/first")
		startLoginAt(t, nb, s.origin+"/second")
		s.login(t, nb)
		var names []string
		pendings := 0
		for _, c := range nb.cookies(s.origin + "/oauth2/logout") {
			if strings.HasPrefix(c.Name, "_authgate") {
				names = append(names, c.Name)
				if strings.HasPrefix(c.Name, "_authgate_login_") {
					pendings++
				}
			}
		}
		if pendings < 2 || len(names)-pendings < 2 {
			t.Fatalf("setup: want 2 unfinished logins and a chunked session, have %v", names)
		}
		resp, _ := nb.api("GET", s.origin+"/oauth2/logout")
		expired := expiredCookieNames(resp)
		for _, n := range names {
			if !expired[n] {
				t.Errorf("logout does not expire %s: %v", n, setCookieHeaders(resp))
			}
		}
		for _, c := range nb.cookies(s.origin + "/oauth2/logout") {
			if strings.HasPrefix(c.Name, "_authgate") {
				t.Errorf("cookie %s is still in the browser after logout (path mismatch in the expiring Set-Cookie?)", c.Name)
			}
		}
	})
	t.Run("500 GUID groups: the session fits Caddy's request-header limit or the login fails cleanly, never a lockout", func(t *testing.T) {
		withGroups(t, guidGroups(500))
		nb := newBrowser(t)
		resp, body := nb.get(s.origin + "/dashboard")
		switch {
		case resp.StatusCode == http.StatusOK:
			// The session fits: fine.
		case resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge:
			t.Errorf("login wrote session cookies of %d bytes that Caddy itself refuses on the next request "+
				"(431, default max_header_bytes 16 KiB): the user is locked out until the cookies expire. "+
				"Want the callback to refuse the oversized session with a clear error (session_too_large) and set no session cookie",
				len(sessionCookieHeader(nb, s.origin)))
			if resp, _ := nb.api("GET", s.origin+"/oauth2/logout"); resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("even /oauth2/logout answers 431: the user cannot sign out")
			}
		default:
			assertHTMLError(t, resp, body, http.StatusBadGateway, "session_too_large")
			assertJarHasNoSession(t, nb, s.origin)
		}
	})
}

func TestSecuritySessionLifetime(t *testing.T) {
	s := setupSite(t, testidp.Options{AccessTokenTTL: 40 * time.Minute, RefreshTokenTTL: 3 * time.Hour}, "session_lifetime 1h", "")
	t.Run("session_lifetime 1h: after 61 minutes the same cookie gets 401, no refresh", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		cookie := sessionCookieHeader(b, s.origin)
		advanceClock(t, 61*time.Minute)
		s.idp.ResetCounts()
		resp, body := rawRequest(t, s.origin+"/api", cookie, false)
		assertJSONError(t, resp, body, http.StatusUnauthorized, "session_expired")
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("over-age session cookie not cleared: %v", setCookieHeaders(resp))
		}
		if n := s.idp.Count("token"); n != 0 {
			t.Errorf("an over-age session was refreshed (%d token requests)", n)
		}
	})
	t.Run("a refresh does not extend the absolute lifetime", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		advanceClock(t, 45*time.Minute)
		s.idp.ResetCounts()
		resp, body := b.api("GET", s.origin+"/api")
		if resp.StatusCode != http.StatusOK || s.idp.Count("token:refresh_token") != 1 {
			t.Fatalf("refresh at 45 minutes: %d, %d refreshes: %s", resp.StatusCode, s.idp.Count("token:refresh_token"), body)
		}
		for _, c := range liveSessionCookies(resp) {
			if c.MaxAge > 15*60+5 {
				t.Errorf("refreshed cookie Max-Age %d s outlives the session's remaining 15 minutes", c.MaxAge)
			}
		}
		cookie := sessionCookieHeader(b, s.origin)
		advanceClock(t, 16*time.Minute)
		resp, body = rawRequest(t, s.origin+"/api", cookie, false)
		assertJSONError(t, resp, body, http.StatusUnauthorized, "session_expired")
	})
}

func TestSecurityOldKeyCookie(t *testing.T) {
	s := setupSiteWith(t, siteConfig{keys: testOldKey})
	b := newBrowser(t)
	s.login(t, b)
	old := jarSession(t, b, s.origin)
	oldSess := mustOpenSession(t, old, testOldKey)
	s.start(t, testKey+" "+testOldKey)

	t.Run("second key decodes the cookie and the response re-encodes it with the first", func(t *testing.T) {
		resp, body := b.api("GET", s.origin+"/api")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("old-key cookie after rotation: %d %s", resp.StatusCode, body)
		}
		fresh := sessionValueFrom(liveSessionCookies(resp))
		if fresh == "" {
			t.Fatalf("the old-key cookie was not re-encoded: %v", setCookieHeaders(resp))
		}
		sess, err := openSession(t, fresh, testKey)
		if err != nil {
			t.Fatalf("the re-encoded cookie does not open with the first key: %v", err)
		}
		if sess.ID != oldSess.ID || sess.Claims["sub"] != oldSess.Claims["sub"] {
			t.Errorf("re-encoding changed the session: %v/%v, want %v/%v", sess.ID, sess.Claims["sub"], oldSess.ID, oldSess.Claims["sub"])
		}
		if _, err := openSession(t, fresh, testOldKey); err == nil {
			t.Error("the re-encoded cookie still opens with the old key")
		}
	})
	t.Run("a cookie under the first key is not rewritten again", func(t *testing.T) {
		resp, _ := b.api("GET", s.origin+"/api")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if c := liveSessionCookies(resp); len(c) != 0 {
			t.Errorf("a current-key cookie was re-encoded: %v", setCookieHeaders(resp))
		}
	})
}

// ---------------------------------------------------------------------------
// Identity headers

func TestSecurityHeaders(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "claim_header X-Department department")

	t.Run("client X-Forwarded-Email and X-Forwarded-Groups dropped when the session has no such claim", func(t *testing.T) {
		s.idp.SetUserClaims("alice", map[string]any{"email": nil, "groups": nil})
		defer s.idp.SetUserClaims("alice", map[string]any{"email": "alice@example.test", "groups": []any{"admins", "staff"}})
		b := newBrowser(t)
		s.login(t, b)
		resp, body := b.get(s.origin+"/h", "X-Forwarded-Email", "mallory@evil.test", "X-Forwarded-Groups", "admins")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		saw := backendSaw(t, body)
		if v := saw.Headers.Values("X-Forwarded-Email"); len(v) != 0 {
			t.Errorf("backend saw the client's X-Forwarded-Email %q for a user without email", v)
		}
		if v := saw.Headers.Values("X-Forwarded-Groups"); len(v) != 0 {
			t.Errorf("backend saw the client's X-Forwarded-Groups %q for a user without groups", v)
		}
	})
	t.Run("client copy of a claim_header dropped when the claim is absent", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		resp, body := b.get(s.origin+"/h", "X-Department", "finance")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if v := backendSaw(t, body).Headers.Values("X-Department"); len(v) != 0 {
			t.Errorf("backend saw the client's X-Department %q", v)
		}
	})
	t.Run("lower-case and repeated client copies replaced by exactly one value", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		resp, body := b.get(s.origin+"/h", "x-forwarded-user", "mallory", "x-forwarded-user", "root")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if v := backendSaw(t, body).Headers.Values("X-Forwarded-User"); len(v) != 1 || v[0] != "alice-sub" {
			t.Errorf("X-Forwarded-User = %q, want exactly alice-sub", v)
		}
	})
	t.Run("underscore and dot variants (X_Forwarded_User, X.Forwarded.User) never reach the backend: CGI-style backends fold them onto X-Forwarded-User", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		resp, body := b.get(s.origin+"/h",
			"X_Forwarded_User", "mallory", "X_Forwarded_Email", "mallory@evil.test", "X_Forwarded_Groups", "root",
			"X_Department", "finance", "X.Forwarded.User", "mallory")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		saw := backendSaw(t, body)
		for name, vals := range saw.Headers {
			if !strings.ContainsAny(name, "_.") {
				continue
			}
			norm := strings.NewReplacer("_", "-", ".", "-").Replace(name)
			for _, protected := range []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Department"} {
				if strings.EqualFold(norm, protected) {
					t.Errorf("client header %s: %q reached the backend; backends that map _ to - (PHP-FPM, CGI, WSGI) "+
						"take it for %s (cf. oauth2-proxy CVE-2025-64484). Want it dropped like the canonical name", name, vals, protected)
				}
			}
		}
	})
}

// TestSecurityHeaderInjection: control characters in claims must never
// reach a header, whether authgate sets it or a placeholder feeds it.
func TestSecurityHeaderInjection(t *testing.T) {
	evil := map[string]any{
		"name":               "a\r\nX-Injected: 1",
		"preferred_username": "alice\x00\nX-Injected: 2",
		"email":              "alice@example.test\r\nX-Injected: 3",
		"department":         "dev\r\nX-Injected: 4",
	}
	restore := map[string]any{"name": "Alice Example", "preferred_username": "alice", "email": "alice@example.test", "department": nil}
	checkClean := func(t *testing.T, where string, h http.Header) {
		t.Helper()
		for name, vals := range h {
			if strings.EqualFold(name, "X-Injected") {
				t.Errorf("%s: header injected through a claim: %s: %q", where, name, vals)
			}
			for _, v := range vals {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Errorf("%s: header %s carries a control character: %q", where, name, v)
				}
			}
		}
	}

	t.Run("CR, LF and NUL in claims never reach identity headers, claim headers or /oauth2/auth", func(t *testing.T) {
		s := setupSiteWith(t, siteConfig{handler: "claim_header X-Department department", proxy: "header_up -X-Nothing"})
		s.idp.SetUserClaims("alice", evil)
		defer s.idp.SetUserClaims("alice", restore)
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/crlf")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("login of a user with CR/LF in claims: %d after %v: %.300s", resp.StatusCode, b.hops, body)
		}
		saw := backendSaw(t, body)
		checkClean(t, "backend", saw.Headers)
		for _, h := range []string{"X-Forwarded-Preferred-Username", "X-Forwarded-Email", "X-Department"} {
			if saw.Headers.Get(h) == "" {
				t.Errorf("backend got no %s; want the claim with its control characters removed", h)
			}
		}
		resp, _ = b.api("GET", s.origin+"/oauth2/auth")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/oauth2/auth: %d", resp.StatusCode)
		}
		checkClean(t, "/oauth2/auth", resp.Header)
	})

	s := setupSiteWith(t, siteConfig{proxy: `header_up X-P-User {http.auth.user.id}
		header_up X-P-Name {http.auth.user.name}
		header_up X-P-Email {http.auth.user.email}
		header_up X-P-Login {http.auth.user.preferred_username}
		header_up X-P-Dept {http.auth.user.department}
		header_up X-P-Groups {http.auth.user.groups}`})
	for _, tc := range []struct{ claim, placeholder string }{
		{"groups", "{http.auth.user.groups}"},
		{"name", "{http.auth.user.name}"},
		{"email", "{http.auth.user.email}"},
		{"preferred_username", "{http.auth.user.preferred_username}"},
		{"sub", "{http.auth.user.id}"},
		{"department", "{http.auth.user.department} (generic claim placeholder)"},
	} {
		t.Run("CR/LF in "+tc.claim+" never reaches an upstream header through "+tc.placeholder, func(t *testing.T) {
			var val any = "x\r\nX-Injected: " + tc.claim
			if tc.claim == "groups" {
				val = []any{"staff", "x\r\nX-Injected: groups"}
			}
			s.idp.SetUserClaims("alice", map[string]any{tc.claim: val})
			defer s.idp.SetUserClaims("alice", map[string]any{"sub": "alice-sub", "name": "Alice Example",
				"preferred_username": "alice", "email": "alice@example.test", "department": nil, "groups": []any{"admins", "staff"}})
			b := newBrowser(t)
			resp, body := b.get(s.origin + "/crlf")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d for a user whose %s claim holds CR/LF: the raw claim reached an upstream header "+
					"through %s and reverse_proxy refused to send the request (Go: invalid header field value). "+
					"Want the placeholder value sanitized like the identity headers: %.200s",
					resp.StatusCode, tc.claim, tc.placeholder, body)
			}
			checkClean(t, "backend", backendSaw(t, body).Headers)
		})
	}
}

// TestSecurityTokenExposure checks that tokens and cookie values never
// show in what authgate answers or logs, and that pass_access_token sends
// the access token to the backend only.
func TestSecurityTokenExposure(t *testing.T) {
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)
	plain := fmt.Sprintf("http://127.0.0.1:%d", p1)
	passing := fmt.Sprintf("http://127.0.0.1:%d", p2)
	denying := fmt.Sprintf("http://127.0.0.1:%d", p3)
	idp := newIDP(t, testidp.Options{}, plain+"/oauth2/callback", passing+"/oauth2/callback", denying+"/oauth2/callback")
	be := newBackend(t)
	dir := t.TempDir()
	caddyLog, accessLog := filepath.Join(dir, "caddy.log"), filepath.Join(dir, "access.log")
	startCaddy(t, fmt.Sprintf(`{
	%s
	log {
		output file %s {
			roll_disabled
		}
		format json
		level INFO
	}
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
			# the hint is what the id_token_hint checks below are about
			id_token_hint on
		}
	}
}
%s {
	log {
		output file %s {
			roll_disabled
		}
	}
	authgate {
		bearer_tokens
	}
	reverse_proxy %s
}
%s {
	log {
		output file %s {
			roll_disabled
		}
	}
	authgate {
		pass_access_token
	}
	reverse_proxy %s
}
%s {
	authgate {
		deny email *@example.test
	}
	reverse_proxy %s
}
`, globalPrelude, caddyLog, testKey, idp.Issuer(), plain, accessLog, be.URL, passing, accessLog, be.URL, denying, be.URL))

	// secrets that must show nowhere: access and refresh tokens, cookie
	// values. ID tokens are checked apart: OIDC logout sends them as
	// id_token_hint on purpose.
	var secrets, idTokens, codes []string
	addSession := func(t *testing.T, b *browser, origin string) *Session {
		t.Helper()
		v := jarSession(t, b, origin)
		sess := mustOpenSession(t, v, testKey)
		secrets = append(secrets, v, sess.AccessToken, sess.RefreshToken)
		if sess.IDToken != "" {
			idTokens = append(idTokens, sess.IDToken)
		}
		return sess
	}
	scan := func(t *testing.T, where, text string) {
		t.Helper()
		for _, sec := range append(append([]string{}, secrets...), idTokens...) {
			if sec != "" && strings.Contains(text, sec) {
				t.Errorf("%s exposes a token or cookie value (%.12s…)", where, sec)
			}
		}
	}

	b := newBrowser(t)
	cb := startLoginAt(t, b, plain+"/start")
	codes = append(codes, queryParam(t, cb, "code"))
	if resp, body := b.api("GET", cb); resp.StatusCode != http.StatusFound {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	sess := addSession(t, b, plain)
	if sess.IDToken == "" {
		t.Fatal("the session keeps no ID token; the id_token_hint checks would prove nothing")
	}

	t.Run("backend gets no token and no session cookie without pass_access_token", func(t *testing.T) {
		resp, body := b.get(plain + "/app")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		scan(t, "the backend request", body)
	})
	t.Run("/oauth2/userinfo shows the identity and no token", func(t *testing.T) {
		resp, body := b.api("GET", plain+"/oauth2/userinfo")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "alice-sub") {
			t.Fatalf("userinfo: %d %s", resp.StatusCode, body)
		}
		scan(t, "/oauth2/userinfo", body+fmt.Sprint(resp.Header))
		if strings.Contains(body, "eyJ") {
			t.Errorf("/oauth2/userinfo contains a JWT: %s", body)
		}
	})
	t.Run("/oauth2/auth answers identity headers and no token without pass_access_token", func(t *testing.T) {
		resp, body := b.api("GET", plain+"/oauth2/auth")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		scan(t, "/oauth2/auth", body+fmt.Sprint(resp.Header))
		if v := resp.Header.Get("X-Forwarded-Access-Token"); v != "" {
			t.Errorf("/oauth2/auth hands out the access token without pass_access_token")
		}
	})
	t.Run("403 page shows no token", func(t *testing.T) {
		resp, body := b.get(denying + "/")
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
		scan(t, "the 403 page", body+fmt.Sprint(resp.Header))
	})
	t.Run("refresh failure answers (502 JSON and page) show no token", func(t *testing.T) {
		advanceClock(t, 6*time.Minute)
		idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultStatus500HTML})
		resp, body := b.api("GET", plain+"/api")
		assertJSONError(t, resp, body, http.StatusBadGateway, "provider_unavailable")
		scan(t, "the 502 JSON", body)
		resp, body = b.get(plain + "/page")
		assertHTMLError(t, resp, body, http.StatusBadGateway, "provider_unavailable")
		scan(t, "the 502 page", body)
		idp.ClearFaults()
		advanceClock(t, refreshBackoff) // the session waits that long before asking again
		if resp, body := b.api("GET", plain+"/api"); resp.StatusCode != http.StatusOK {
			t.Fatalf("after recovery: %d %s", resp.StatusCode, body)
		}
		addSession(t, b, plain)
	})
	t.Run("failed login answers show no code or token", func(t *testing.T) {
		fb := newBrowser(t)
		cb := startLoginAt(t, fb, plain+"/start")
		codes = append(codes, queryParam(t, cb, "code"))
		idp.SetFault("token:authorization_code", testidp.Fault{Kind: testidp.FaultIDTokenWrongNonce, Times: 1})
		defer idp.ClearFaults()
		resp, body := fb.api("GET", cb)
		assertJSONError(t, resp, body, http.StatusUnauthorized, "id_token_invalid")
		scan(t, "the failed-login answer", body)
		for _, c := range codes {
			if strings.Contains(body, c) {
				t.Errorf("the failed-login answer shows the authorization code")
			}
		}
	})
	t.Run("pass_access_token: the backend gets the access token, /oauth2/auth and /oauth2/userinfo do not", func(t *testing.T) {
		pb := newBrowser(t)
		resp, body := pb.get(passing + "/app")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("login: %d %s", resp.StatusCode, body)
		}
		ps := addSession(t, pb, passing)
		if got := backendSaw(t, body).Headers.Get("X-Forwarded-Access-Token"); got != ps.AccessToken {
			t.Errorf("backend access token %.16q…, want the session's", got)
		}
		// The forward-auth answer goes to whoever asks with the cookie, a
		// script in the browser included: the token is in it only with
		// pass_access_token forward_auth (TestForwardAuthWithCaddy).
		resp, _ = pb.api("GET", passing+"/oauth2/auth")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Forwarded-Access-Token") != "" {
			t.Errorf("/oauth2/auth with pass_access_token: %d, hands out the access token: %v",
				resp.StatusCode, resp.Header.Get("X-Forwarded-Access-Token") != "")
		}
		if _, body := pb.api("GET", passing+"/oauth2/userinfo"); strings.Contains(body, ps.AccessToken) {
			t.Errorf("/oauth2/userinfo shows the access token even with pass_access_token")
		}
	})
	t.Run("an ID token presented as a bearer token is refused (ID-token substitution)", func(t *testing.T) {
		resp, body := rawRequest(t, plain+"/api", "", false, "Authorization", "Bearer "+idTokens[len(idTokens)-1])
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("bearer_tokens accepted an ID token as an access token: status %d (backend saw user %q). An ID token "+
				"(typ JWT, aud = client_id) travels in id_token_hint URLs and logs; want it refused "+
				"(RFC 9068 §4: typ at+jwt; or refuse tokens with nonce/at_hash, or no client_id default audience)",
				resp.StatusCode, backendSaw(t, body).Headers.Get("X-Forwarded-User"))
		}
	})
	var logoutLocation string
	t.Run("logout answer carries no access token, refresh token or cookie value", func(t *testing.T) {
		resp, body := b.api("GET", plain+"/oauth2/logout")
		if _, _, ok := endSessionRequest(resp, body); !ok {
			t.Fatalf("logout: %d without an end-session request", resp.StatusCode)
		}
		logoutLocation = resp.Header.Get("Location")
		for _, sec := range secrets {
			if strings.Contains(logoutLocation+body, sec) {
				t.Errorf("the logout answer carries a token or cookie value (%.12s…)", sec)
			}
		}
	})

	// Caddy writes a request's access-log line after the answer went out:
	// wait for a last request's line, so that every earlier one is there.
	rawRequest(t, plain+"/zz-log-sentinel", "", false)
	logs := waitForLog(t, accessLog, `"uri":"/zz-log-sentinel"`)
	logs += readLog(t, caddyLog)

	t.Run("logs (authgate and access log) carry no access token, refresh token, cookie value or code", func(t *testing.T) {
		if !strings.Contains(logs, `"msg":"login"`) || !strings.Contains(logs, `"uri":"/oauth2/logout"`) {
			t.Fatalf("the logs lack authgate's login line or the logout's access-log line; the scan would prove nothing:\n%.2000s", logs)
		}
		for _, line := range strings.Split(logs, "\n") {
			for _, sec := range secrets {
				if sec != "" && strings.Contains(line, sec) {
					t.Errorf("a log line carries an access token, refresh token or cookie value: %.400s", line)
				}
			}
			if strings.Contains(line, "authgate") {
				for _, c := range codes {
					if c != "" && strings.Contains(line, c) {
						t.Errorf("an authgate log line carries an authorization code: %.300s", line)
					}
				}
			}
		}
	})
	t.Run("the ID token sent as id_token_hint stays out of the URL and the access log", func(t *testing.T) {
		for _, id := range idTokens {
			if strings.Contains(logoutLocation, id) {
				t.Errorf("the end-session redirect carries the ID token in its URL (id_token_hint in Location); the URL " +
					"lands in the access log (resp_headers.Location), browser history and the provider's logs. " +
					"Want an auto-submitted POST form to the end-session endpoint, or client_id without the hint")
				break
			}
		}
		for _, id := range idTokens {
			if strings.Contains(logs, id) {
				t.Errorf("the access log holds an ID token (%.12s…) of a signed-out user", id)
				break
			}
		}
	})
}

// readLog returns a log file's content.
func readLog(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return string(data)
}

// waitForLog returns the log once it contains want; Caddy writes access
// log lines after the response is sent, so they may trail the client.
func waitForLog(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), want) {
			return string(data)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never got a line with %s", path, want)
		}
		<-tick.C
	}
}

// ---------------------------------------------------------------------------
// Provider faults at login

func TestSecurityProviderFaults(t *testing.T) {
	p1, p2, closed := freePort(t), freePort(t), freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", p1)
	downOrigin := fmt.Sprintf("http://127.0.0.1:%d", p2)
	idp := newIDP(t, testidp.Options{}, origin+"/oauth2/callback")
	// The second provider is plain OAuth 2.0 whose token endpoint nobody
	// listens on; its authorization endpoint is another test provider.
	downIDP := newIDP(t, testidp.Options{OmitIssParameter: true}, downOrigin+"/oauth2/callback")
	be := newBackend(t)
	startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
			timeout 1s
		}
		provider down {
			authorize_url %s/authorize
			token_url http://127.0.0.1:%d/token
			client_id app
			client_secret app-secret
			timeout 1s
		}
	}
}
%s {
	authgate corp
	reverse_proxy %s
}
%s {
	authgate down
	reverse_proxy %s
}
`, globalPrelude, testKey, idp.Issuer(), downIDP.Issuer(), closed, origin, be.URL, downOrigin, be.URL))

	huge := `{"access_token":"` + strings.Repeat("a", 2<<20) + `","token_type":"Bearer"}`
	for _, tc := range []struct {
		name   string
		fault  testidp.Fault
		status int
		reason string
	}{
		{"connection reset (RST) by the token endpoint", testidp.Fault{Kind: testidp.FaultResetConnection}, 502, "provider_unavailable"},
		{"connection closed without an answer", testidp.Fault{Kind: testidp.FaultCloseConnection}, 502, "provider_unavailable"},
		{"stalled token endpoint: 504 within the 1 s timeout", testidp.Fault{Kind: testidp.FaultStall}, 504, "provider_timeout"},
		{"500 with an HTML body", testidp.Fault{Kind: testidp.FaultStatus500HTML}, 502, "provider_unavailable"},
		{"200 with an HTML body", testidp.Fault{Kind: testidp.FaultHTML200}, 502, "provider_unavailable"},
		{"token JSON labelled text/plain", testidp.Fault{Kind: testidp.FaultTextPlain}, 502, "provider_unavailable"},
		{"truncated JSON", testidp.Fault{Kind: testidp.FaultTruncatedJSON}, 502, "provider_unavailable"},
		{"JSON without access_token", testidp.Fault{Kind: testidp.FaultMissingAccessToken}, 502, "provider_unavailable"},
		{"JSON null", testidp.Fault{Kind: testidp.FaultRaw, ContentType: "application/json", Body: "null"}, 502, "provider_unavailable"},
		{"2 MiB token response", testidp.Fault{Kind: testidp.FaultRaw, ContentType: "application/json", Body: huge}, 502, "provider_unavailable"},
		{"invalid_grant for a genuine code: 400 code_rejected", testidp.Fault{Kind: testidp.FaultInvalidGrant}, 400, "code_rejected"},
		{"userinfo for another subject: the provider's answer is refused, 401", testidp.Fault{Kind: testidp.FaultUserinfoWrongSub}, 401, "userinfo_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			cb := startLoginAt(t, b, origin+"/x")
			key := "token:authorization_code"
			if tc.fault.Kind == testidp.FaultUserinfoWrongSub {
				key = "userinfo"
			}
			idp.SetFault(key, tc.fault)
			defer idp.ClearFaults()
			start := time.Now()
			resp, body := b.api("GET", cb)
			elapsed := time.Since(start)
			assertJSONError(t, resp, body, tc.status, tc.reason)
			assertNoSessionSet(t, resp)
			idp.ClearFaults()
			assertJarHasNoSession(t, b, origin)
			if elapsed > 5*time.Second {
				t.Errorf("the answer took %s; the provider timeout is 1s", elapsed.Round(time.Millisecond))
			}
		})
	}
	t.Run("token endpoint port closed (connection refused): 502 page", func(t *testing.T) {
		b := newBrowser(t)
		resp, body := b.get(downOrigin + "/x")
		assertHTMLError(t, resp, body, http.StatusBadGateway, "provider_unavailable")
		assertJarHasNoSession(t, b, downOrigin)
	})
	t.Run("expires_in as a JSON string is accepted and dates the token", func(t *testing.T) {
		b := newBrowser(t)
		cb := startLoginAt(t, b, origin+"/x")
		idp.SetFault("token:authorization_code", testidp.Fault{Kind: testidp.FaultExpiresInString, Times: 1})
		defer idp.ClearFaults()
		resp, body := b.api("GET", cb)
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("login with expires_in \"300\": %d %s", resp.StatusCode, body)
		}
		sess := mustOpenSession(t, jarSession(t, b, origin), testKey)
		if left := time.Until(time.Unix(sess.Expiry, 0).Add(-time.Duration(clockOffset.Load()))); left < 4*time.Minute || left > 6*time.Minute {
			t.Errorf("session expiry %d is %s away, want about 5 minutes (expires_in 300)", sess.Expiry, left)
		}
	})
}

// ---------------------------------------------------------------------------
// Refresh

func TestSecurityRefresh(t *testing.T) {
	t.Run("invalid_grant ends the session: 401 session_ended, cookie cleared", func(t *testing.T) {
		s := setupSite(t, testidp.Options{}, "", "")
		b := newBrowser(t)
		s.login(t, b)
		advanceClock(t, 6*time.Minute)
		s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultInvalidGrant})
		defer s.idp.ClearFaults()
		resp, body := b.api("GET", s.origin+"/api")
		assertJSONError(t, resp, body, http.StatusUnauthorized, "session_ended")
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("session cookie not cleared: %v", setCookieHeaders(resp))
		}
	})
	t.Run("provider 5xx keeps the session: 502, cookie untouched, retry works", func(t *testing.T) {
		s := setupSite(t, testidp.Options{}, "", "")
		b := newBrowser(t)
		s.login(t, b)
		advanceClock(t, 6*time.Minute)
		s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultStatus500HTML})
		resp, body := b.api("GET", s.origin+"/api")
		assertJSONError(t, resp, body, http.StatusBadGateway, "provider_unavailable")
		for _, c := range resp.Cookies() {
			if isSessionCookieName(c.Name) {
				t.Errorf("session cookie touched on a provider failure: %s", c.Name)
			}
		}
		s.idp.ClearFaults()
		advanceClock(t, refreshBackoff) // the session waits that long before asking again
		if resp, body := b.api("GET", s.origin+"/api"); resp.StatusCode != http.StatusOK {
			t.Errorf("after recovery: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("refreshed ID token for another subject ends the session", func(t *testing.T) {
		s := setupSite(t, testidp.Options{}, "", "")
		b := newBrowser(t)
		s.login(t, b)
		advanceClock(t, 6*time.Minute)
		s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultIDTokenClaims, Claims: map[string]any{"sub": "mallory-sub"}})
		defer s.idp.ClearFaults()
		resp, body := b.api("GET", s.origin+"/api")
		assertJSONError(t, resp, body, http.StatusUnauthorized, "identity_changed")
		assertNoSessionSet(t, resp)
	})
	t.Run("20 parallel requests at expiry with rotating refresh tokens: one refresh, all 200, the rotated token stored", func(t *testing.T) {
		s := setupSite(t, testidp.Options{RotateRefreshTokens: true, AccessTokenTTL: 5 * time.Minute}, "", "")
		b := newBrowser(t)
		s.login(t, b)
		before := sessionCookieHeader(b, s.origin)
		oldRT := mustOpenSession(t, jarSession(t, b, s.origin), testKey).RefreshToken
		advanceClock(t, 5*time.Minute)
		s.idp.ResetCounts()
		statuses := make([]int, 20)
		var values []string
		for i, r := range burst(t, s.origin+"/burst", before, 20) {
			statuses[i] = r.status
			if r.resp == nil {
				continue
			}
			if v := sessionValueFrom(liveSessionCookies(r.resp)); v != "" {
				values = append(values, v)
			}
		}
		for i, st := range statuses {
			if st != http.StatusOK {
				t.Errorf("request %d of the burst: status %d", i, st)
			}
		}
		if n := s.idp.Count("token:refresh_token"); n != 1 {
			t.Errorf("%d refreshes for 20 parallel requests, want exactly 1", n)
		}
		if len(values) == 0 {
			t.Fatal("no response of the burst carried the refreshed session")
		}
		newRT := ""
		for _, v := range values {
			rt := mustOpenSession(t, v, testKey).RefreshToken
			if newRT == "" {
				newRT = rt
			}
			if rt != newRT {
				t.Errorf("the burst's responses carry different refresh tokens")
			}
		}
		if newRT == oldRT {
			t.Fatalf("the refreshed session kept the spent refresh token; the rotated one was not stored")
		}

		// The next expiry: the stored (rotated) token must work.
		advanceClock(t, 6*time.Minute)
		s.idp.ResetCounts()
		resp, body := rawRequest(t, s.origin+"/api", "_authgate="+values[0], false)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("second refresh with the stored rotated token: %d %s", resp.StatusCode, body)
		}
		if n := s.idp.Count("token:refresh_token"); n != 1 {
			t.Errorf("%d refreshes at the second expiry, want exactly 1", n)
		}

		// The pre-burst cookie, replayed after the grace window, holds a
		// spent refresh token: the provider refuses it and the session ends.
		resp, body = rawRequest(t, s.origin+"/api", before, false)
		assertJSONError(t, resp, body, http.StatusUnauthorized, "session_ended")
	})
}

package authgate

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func FuzzPendingCookie(f *testing.F) {
	cs := cookieSettings{Name: "_authgate", Path: "/", SameSite: http.SameSiteLaxMode}
	pl := &pendingLogin{State: "st", Verifier: "v", Nonce: "n", ReturnURL: "/x", Provider: "corp", Issued: 1700000000, RedirectURI: "https://app/cb"}
	value, _ := fuzzSeedCookies(f, cs.pendingPrefix()+"abc", pl)
	for _, seed := range []string{
		"",
		cs.pendingPrefix() + "abc=" + value,
		cs.pendingPrefix() + "other=" + value,
		"_authgate_login_=x; _authgate_login_a=y; _authgate_login_b=z; _authgate_login_c=; _authgate_login_d=1; _authgate_login_e=2",
		strings.Repeat("_authgate_login_x=1; ", 40),
		"_authgate=" + value,
	} {
		f.Add(seed)
	}
	codec, err := newCookieCodec([]string{fuzzCookieKey}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	gw := &gateway{sessions: &sessionManager{codec: codec, cookie: cs}}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "https://app.self.test/oauth2/callback", nil)
		r.Header.Set("Cookie", header)
		found, names := pendingLogins(gw, r)
		if len(found) != 0 {
			t.Fatalf("a pending login without the key: %+v", found[0].login)
		}
		if len(names) > len(r.Cookies()) {
			t.Fatalf("%d names from %d cookies", len(names), len(r.Cookies()))
		}
		for _, c := range r.Cookies() {
			var l pendingLogin
			if _, err := codec.decode(c.Name, c.Value, &l); err == nil {
				t.Fatalf("cookie %s opened without the key", c.Name)
			}
		}
	})
}

// TestCallbackDuplicateParameters: issue 16, "two identical callback
// parameters (code=real&code=evil, or a doubled state) are accepted". A
// callback carrying code, state, iss or error (under the provider's
// names) more than once is refused with a 400 page before any token
// request, and the login it belongs to can still complete.
func TestCallbackDuplicateParameters(t *testing.T) {
	global, logs := debugLog(t)
	s := setupSiteWith(t, siteConfig{caddyGlobal: global})
	for _, tc := range []struct{ param, extra string }{
		{"code", "code=evil"},
		{"state", "state=tampered"},
		{"state", ""}, // the same state twice
		{"iss", "iss=https%3A%2F%2Fevil.example"},
		{"error", "error=access_denied&error=server_error"},
	} {
		t.Run(tc.param+" twice", func(t *testing.T) {
			b := newBrowser(t)
			cb := startLoginAt(t, b, s.origin+"/x")
			extra := tc.extra
			if extra == "" {
				extra = "state=" + url.QueryEscape(queryParam(t, cb, "state"))
			}
			s.idp.ResetCounts()
			before := len(logsWith(logs(), "login failed"))
			resp, body := b.get(cb + "&" + extra)
			assertHTMLError(t, resp, body, http.StatusBadRequest, "duplicate_parameter")
			assertNoSessionSet(t, resp)
			assertJarHasNoSession(t, b, s.origin)
			if n := s.idp.Count("token"); n != 0 {
				t.Errorf("%d token requests for a callback with a doubled %s, want 0", n, tc.param)
			}
			failed := logsWith(logs(), "login failed")
			if len(failed) != before+1 || failed[len(failed)-1]["reason"] != "duplicate_parameter" || failed[len(failed)-1]["parameter"] != tc.param {
				t.Errorf("login failed lines %v, want one with reason duplicate_parameter and parameter %s", failed[before:], tc.param)
			}
			// The genuine callback still completes the login.
			resp, body = b.get(cb)
			assertBackendSawAlice(t, resp, body)
		})
	}
	t.Run("under a provider's own parameter names", func(t *testing.T) {
		s := setupSiteWith(t, siteConfig{provider: "callback_param code authorizationCode"})
		b := newBrowser(t)
		cb := startLoginAt(t, b, s.origin+"/x")
		s.idp.ResetCounts()
		u := s.origin + "/oauth2/callback?authorizationCode=a&authorizationCode=b&state=" + url.QueryEscape(queryParam(t, cb, "state"))
		resp, body := b.get(u)
		assertHTMLError(t, resp, body, http.StatusBadRequest, "duplicate_parameter")
		if n := s.idp.Count("token"); n != 0 {
			t.Errorf("%d token requests, want 0", n)
		}
	})
}

// TestManyLoginTabs: issue 16, "opening many login tabs (or a script
// doing so) piles up pending-login cookies until the callback answers 431
// and nobody can log in from that browser". A hundred logins started on
// protected pages leave at most three pending-login cookies; the callback
// gets a Cookie header under 8 KB; the newest three logins complete, older
// ones are refused without a token request.
func TestManyLoginTabs(t *testing.T) {
	global, logs := debugLog(t)
	s := setupSiteWith(t, siteConfig{caddyGlobal: global})
	b := newBrowser(t)
	var mu sync.Mutex
	cookieBytes := map[string]int{} // largest Cookie header per path
	inner := http.DefaultTransport
	b.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		cookieBytes[r.URL.Path] = max(cookieBytes[r.URL.Path], len(r.Header.Get("Cookie")))
		mu.Unlock()
		return inner.RoundTrip(r)
	})
	pending := func() int {
		n := 0
		for _, c := range b.cookies(s.origin + "/oauth2/callback") {
			if strings.HasPrefix(c.Name, "_authgate_login_") {
				n++
			}
		}
		return n
	}
	var callbacks []string
	for i := 0; i < 100; i++ {
		callbacks = append(callbacks, startLoginAt(t, b, fmt.Sprintf("%s/tab/%d", s.origin, i)))
		if n := pending(); n > maxPendingLogins {
			t.Fatalf("after %d login starts the browser holds %d pending-login cookies, want at most %d", i+1, n, maxPendingLogins)
		}
	}
	for _, tc := range []struct {
		tab    int
		status int
	}{
		// Replaced logins first, while the newest three are pending.
		{0, http.StatusBadRequest}, {96, http.StatusBadRequest},
		{99, http.StatusOK}, // the latest always completes
		{98, http.StatusOK}, {97, http.StatusOK},
	} {
		s.idp.ResetCounts()
		resp, body := b.get(callbacks[tc.tab])
		if tc.status == http.StatusOK {
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("login of tab %d: %d %s", tc.tab, resp.StatusCode, requestIDInPage.FindString(body))
			}
			assertBackendSawAlice(t, resp, body)
			if p := resp.Request.URL.Path; p != fmt.Sprintf("/tab/%d", tc.tab) {
				t.Errorf("login of tab %d returned to %s", tc.tab, p)
			}
			continue
		}
		assertHTMLError(t, resp, body, tc.status, "state_mismatch")
		if n := s.idp.Count("token"); n != 0 {
			t.Errorf("tab %d: %d token requests for a login whose pending cookie was replaced, want 0", tc.tab, n)
		}
	}
	recs := logs()
	if n := len(logsWith(recs, "login started")); n != 100 {
		t.Errorf("%d login started lines, want 100", n)
	}
	if n := len(logsWith(recs, "login")); n != 3 {
		t.Errorf("%d login lines, want 3", n)
	}
	for _, f := range logsWith(recs, "login failed") {
		if f["reason"] != "state_mismatch" {
			t.Errorf("login failed line %v, want reason state_mismatch", f)
		}
	}
	if n := len(logsWith(recs, "login failed")); n != 2 {
		t.Errorf("%d login failed lines, want 2 (the replaced logins)", n)
	}
	if n := cookieBytes["/oauth2/callback"]; n == 0 || n > 8<<10 {
		t.Errorf("the callback received a Cookie header of %d bytes, want some and at most 8 KiB", n)
	}
	t.Logf("largest Cookie header: callback %d bytes, protected pages %d bytes", cookieBytes["/oauth2/callback"], cookieBytes["/tab/99"])
}

package authgate

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// startFrontchannel starts the test provider with the site's
// front-channel logout URL registered, and Caddy with authgate; with
// redisPort, sessions live in Redis.
func startFrontchannel(t *testing.T, redisPort int) *testSite {
	t.Helper()
	port := freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := newIDP(t, testidp.Options{Clients: []testidp.Client{{
		ID: "app", Secret: "app-secret", RedirectURIs: []string{origin + "/oauth2/callback"},
		FrontchannelLogoutURI: origin + "/oauth2/frontchannel-logout", FrontchannelLogoutSessionRequired: true,
	}}})
	be := newBackend(t)
	store := ""
	if redisPort != 0 {
		store = fmt.Sprintf("session_store redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t}", redisPort)
	}
	startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		%s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
		}
	}
}
%s {
	authgate {
		claim_header X-Provider-Sid sid
	}
	reverse_proxy %s
}
`, globalPrelude, testKey, store, idp.Issuer(), origin, be.URL))
	return &testSite{port: port, origin: origin, backend: be, idp: idp}
}

// frontchannelURL is the URL the provider's logout page frames for the
// browser's session (the test provider renders the same).
func frontchannelURL(t *testing.T, s *testSite, sid string) string {
	t.Helper()
	urls := s.idp.FrontchannelLogoutURLs(sid)
	if len(urls) != 1 || !strings.HasPrefix(urls[0], s.origin+"/oauth2/frontchannel-logout?") {
		t.Fatalf("the provider's front-channel logout URLs for sid %q: %q", sid, urls)
	}
	return urls[0]
}

// TestFrontchannelLogout: the provider's front-channel request (iss and
// sid) ends the browser's own session when it is that provider session,
// and answers a page that only the provider may frame; anything else
// ends nothing.
func TestFrontchannelLogout(t *testing.T) {
	s := startFrontchannel(t, 0)
	idpOrigin := originOf(s.idp.Issuer())
	login := func(t *testing.T) (*browser, string) {
		b := newBrowser(t)
		sid := s.login(t, b).Headers.Get("X-Provider-Sid")
		if sid == "" {
			t.Fatal("the session has no sid")
		}
		return b, sid
	}
	signedIn := func(t *testing.T, b *browser) bool {
		t.Helper()
		resp, _ := b.api("GET", s.origin+"/api/check")
		return resp.StatusCode == http.StatusOK
	}

	t.Run("ends_the_session", func(t *testing.T) {
		b, sid := login(t)
		u := frontchannelURL(t, s, sid)
		resp, body := b.get(u, "Sec-Fetch-Dest", "iframe")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed out.") {
			t.Errorf("front-channel logout: %d %s", resp.StatusCode, body)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); csp != "default-src 'none'; frame-ancestors "+idpOrigin {
			t.Errorf("CSP %q, want framing by %s only", csp, idpOrigin)
		}
		if xfo := resp.Header.Get("X-Frame-Options"); xfo != "" {
			t.Errorf("X-Frame-Options %q would forbid the provider's frame", xfo)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
		}
		noSessionCookie(t, b, s.origin)
		if signedIn(t, b) {
			t.Error("still signed in after the front-channel logout")
		}
	})
	t.Run("another_session", func(t *testing.T) {
		b, sid := login(t)
		u := strings.Replace(frontchannelURL(t, s, sid), "sid="+sid, "sid=someone-else", 1)
		if resp, body := b.get(u); resp.StatusCode != http.StatusOK || !strings.Contains(body, "No session to end.") {
			t.Errorf("another sid: %d %s", resp.StatusCode, body)
		}
		if !signedIn(t, b) {
			t.Error("a front-channel logout of another provider session ended this one")
		}
	})
	for _, tc := range []struct {
		name, query string
	}{
		{"unknown_issuer", "iss=" + url.QueryEscape("https://evil.example") + "&sid=SID"},
		{"no_sid", "iss=ISS"},
		{"no_iss", "sid=SID"},
		{"two_sids", "iss=ISS&sid=SID&sid=SID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, sid := login(t)
			q := strings.NewReplacer("ISS", url.QueryEscape(s.idp.Issuer()), "SID", sid).Replace(tc.query)
			resp, body := b.get(s.origin + "/oauth2/frontchannel-logout?" + q)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid_request") {
				t.Errorf("%s: %d, want 400 invalid_request\n%.300s", tc.query, resp.StatusCode, body)
			}
			if !signedIn(t, b) {
				t.Errorf("%s ended the session", tc.query)
			}
		})
	}
	t.Run("post", func(t *testing.T) {
		b, sid := login(t)
		req, _ := http.NewRequest(http.MethodPost, frontchannelURL(t, s, sid), nil)
		resp, _ := b.do(req)
		if resp.StatusCode != http.StatusMethodNotAllowed || !signedIn(t, b) {
			t.Errorf("POST: %d, want 405 and the session kept", resp.StatusCode)
		}
	})
}

// TestFrontchannelLogoutStore: with a session store the provider session
// ends wherever it is, even when the browser's cookie does not reach the
// frame (third-party cookies blocked): by the sid index.
func TestFrontchannelLogoutStore(t *testing.T) {
	rs := startRedis(t)
	s := startFrontchannel(t, rs.port)
	b := newBrowser(t)
	sid := s.login(t, b).Headers.Get("X-Provider-Sid")
	if sid == "" {
		t.Fatal("the session has no sid")
	}
	u := frontchannelURL(t, s, sid)
	cookieless := newBrowser(t)
	if resp, body := cookieless.get(u); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed out.") {
		t.Fatalf("front-channel logout without the cookie: %d %s", resp.StatusCode, body)
	}
	advanceClock(t, 2*storeCacheTTL) // the instance trusts its copy of a stored session this long
	if resp, _ := b.api("GET", s.origin+"/api/after"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after the front-channel logout: %d, want 401 (the stored session is gone)", resp.StatusCode)
	}
}

package authgate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

func TestForwardAuthWithCaddy(t *testing.T) {
	authPort, appPort := freePort(t), freePort(t)
	authOrigin := fmt.Sprintf("http://127.0.0.1:%d", authPort)
	appOrigin := fmt.Sprintf("http://127.0.0.1:%d", appPort)
	idp := newIDP(t, testidp.Options{RotateRefreshTokens: true}, authOrigin+"/oauth2/callback")
	be := newBackend(t)
	config := func(passToken string) string {
		return fmt.Sprintf(`{
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
	authgate {
		allow group admins
		%s
	}
	respond "auth service" 404
}
%s {
	forward_auth 127.0.0.1:%d {
		uri /oauth2/auth
		copy_headers X-Forwarded-User X-Forwarded-Email X-Forwarded-Groups X-Forwarded-Access-Token
	}
	reverse_proxy %s
}
`, globalPrelude, testKey, authPort, idp.Issuer(), authOrigin, passToken, appOrigin, authPort, be.URL)
	}
	startCaddy(t, config("pass_access_token"))
	// The clock moves for the rest of the test: each refreshed session
	// stays refreshed.
	parent := t

	t.Run("API without session: 401 through forward_auth", func(t *testing.T) {
		b := newBrowser(t)
		resp, body := b.api("GET", appOrigin+"/api")
		if resp.StatusCode != 401 || !strings.Contains(body, "unauthenticated") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	b := newBrowser(t)
	t.Run("browser signs in through the auth host and lands on the app", func(t *testing.T) {
		resp, body := b.get(appOrigin+"/app/page?x=1", "X-Forwarded-User", "mallory")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d after %v: %s", resp.StatusCode, b.hops, body)
		}
		if resp.Request.URL.String() != appOrigin+"/app/page?x=1" {
			t.Errorf("ended at %s", resp.Request.URL)
		}
		saw := backendSaw(t, body)
		if got := saw.Headers.Values("X-Forwarded-User"); len(got) != 1 || got[0] != "alice-sub" {
			t.Errorf("X-Forwarded-User = %q", got)
		}
		if saw.Headers.Get("X-Forwarded-Groups") != "admins,staff" {
			t.Errorf("groups = %q", saw.Headers.Get("X-Forwarded-Groups"))
		}
	})
	t.Run("spoofed identity header without a session never reaches the app", func(t *testing.T) {
		anon := newBrowser(t)
		resp, _ := anon.api("GET", appOrigin+"/api", "X-Forwarded-User", "mallory")
		if resp.StatusCode != 401 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("the auth endpoint answers with identity headers to copy, never the access token", func(t *testing.T) {
		resp, _ := b.api("GET", authOrigin+"/oauth2/auth", "X-Forwarded-Host", "127.0.0.1", "X-Forwarded-Method", "GET")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Forwarded-User") != "alice-sub" {
			t.Fatalf("/oauth2/auth: %d, X-Forwarded-User %q", resp.StatusCode, resp.Header.Get("X-Forwarded-User"))
		}
		if v := resp.Header.Get("X-Forwarded-Access-Token"); v != "" {
			t.Errorf("pass_access_token put the token in the forward-auth answer: %.20s...", v)
		}
		_, body := b.get(appOrigin + "/app/page")
		if v := backendSaw(t, body).Headers.Get("X-Forwarded-Access-Token"); v != "" {
			t.Errorf("the app behind forward_auth got the token without pass_access_token forward_auth: %.20s...", v)
		}
	})
	t.Run("a session refreshed in the auth subrequest reaches the browser (307 with Set-Cookie)", func(t *testing.T) {
		before := sessionCookieHeader(b, appOrigin)
		idp.ResetCounts()
		advanceClock(parent, 5*time.Minute) // the access token is due
		resp, body := b.get(appOrigin + "/app/page?x=2")
		if resp.StatusCode != 200 || resp.Request.URL.String() != appOrigin+"/app/page?x=2" {
			t.Fatalf("status %d at %s after %v: %.300s", resp.StatusCode, resp.Request.URL, b.hops, body)
		}
		if len(b.hops) != 1 || b.hops[0] != appOrigin+"/app/page?x=2" {
			t.Errorf("redirects %v, want one back to the page", b.hops)
		}
		if n := idp.Count("token:refresh_token"); n != 1 {
			t.Fatalf("%d refreshes", n)
		}
		after := sessionCookieHeader(b, appOrigin)
		if after == before || after == "" {
			t.Fatal("the browser still holds the cookie from before the refresh")
		}
		if saw := backendSaw(t, body); len(saw.Headers.Values("Set-Cookie")) != 0 {
			t.Errorf("the backend got a Set-Cookie request header: %v", saw.Headers)
		}
		// Past the refresh grace, the old cookie's refresh token would be
		// spent: the browser must be using the new one, with no new login
		// and no new refresh.
		advanceClock(parent, refreshGrace+time.Second)
		idp.ResetCounts()
		resp, _ = b.get(appOrigin + "/app/page")
		if resp.StatusCode != 200 || len(b.hops) != 0 || idp.Count("authorize")+idp.Count("token") != 0 {
			t.Errorf("status %d, hops %v, authorize %d, token %d", resp.StatusCode, b.hops, idp.Count("authorize"), idp.Count("token"))
		}
	})
	t.Run("an API call refreshed in the subrequest gets a 307 that keeps its method", func(t *testing.T) {
		advanceClock(parent, 5*time.Minute)
		resp, body := b.api("POST", appOrigin+"/api/items?a=1")
		if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "/api/items?a=1" {
			t.Fatalf("status %d, Location %q: %s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if len(liveSessionCookies(resp)) == 0 {
			t.Error("the 307 sets no session cookie")
		}
	})
	t.Run("a client that does not keep the new cookie gets no redirect loop", func(t *testing.T) {
		advanceClock(parent, 5*time.Minute)
		cookie := sessionCookieHeader(b, appOrigin)
		first, _ := rawRequest(t, appOrigin+"/api/x", cookie, false)
		again, _ := rawRequest(t, appOrigin+"/api/x", cookie, false)
		if first.StatusCode != http.StatusTemporaryRedirect || again.StatusCode != 200 {
			t.Errorf("statuses %d then %d, want 307 then 200", first.StatusCode, again.StatusCode)
		}
	})
	t.Run("rules apply through forward_auth: 403 for a user outside the group", func(t *testing.T) {
		idp.SetUserClaims("alice", map[string]any{"groups": []any{"guests"}})
		defer idp.SetUserClaims("alice", map[string]any{"groups": []any{"admins", "staff"}})
		guest := newBrowser(t)
		resp, body := guest.get(appOrigin + "/app")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Access denied") {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
	// Last: it reloads Caddy with another configuration.
	t.Run("pass_access_token forward_auth puts the token in the answer", func(t *testing.T) {
		startCaddy(t, config("pass_access_token forward_auth"))
		fresh := newBrowser(t)
		resp, body := fresh.get(appOrigin + "/app/page")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %.300s", resp.StatusCode, body)
		}
		if backendSaw(t, body).Headers.Get("X-Forwarded-Access-Token") == "" {
			t.Error("the app got no access token")
		}
	})
}

// TestUserinfoNeverShowsTokens: /oauth2/userinfo shows the identity, and
// no token of the session (access, refresh, ID) nor the bearer token it
// was asked with, even when the site passes the access token on and keeps
// the ID token.
func TestUserinfoNeverShowsTokens(t *testing.T) {
	s := setupSiteWith(t, siteConfig{
		provider: "id_token_hint on",
		handler:  "pass_access_token\n\t\tbearer_tokens",
	})
	b := newBrowser(t)
	saw := s.login(t, b)
	sess := mustOpenSession(t, jarSession(t, b, s.origin), testKey)
	secrets := map[string]string{
		"access token":  saw.Headers.Get("X-Forwarded-Access-Token"),
		"refresh token": sess.RefreshToken,
		"ID token":      sess.IDToken,
	}
	for name, v := range secrets {
		if v == "" {
			t.Fatalf("the session has no %s to look for", name)
		}
	}
	check := func(t *testing.T, resp *http.Response, body string, secrets map[string]string) {
		t.Helper()
		var u userinfoJSON
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &u) != nil || u.User != "alice-sub" {
			t.Fatalf("userinfo: %d %s", resp.StatusCode, body)
		}
		for name, v := range secrets {
			if strings.Contains(body, v) {
				t.Errorf("the body shows the %s", name)
			}
			for h, vals := range resp.Header {
				if strings.Contains(strings.Join(vals, " "), v) {
					t.Errorf("header %s shows the %s", h, name)
				}
			}
		}
	}
	t.Run("session", func(t *testing.T) {
		resp, body := b.api("GET", s.origin+"/oauth2/userinfo")
		check(t, resp, body, secrets)
	})
	t.Run("bearer", func(t *testing.T) {
		tok := obtainTokens(t, s.idp, "app", "app-secret", s.origin+"/oauth2/callback").Access
		resp, body := newBrowser(t).api("GET", s.origin+"/oauth2/userinfo", "Authorization", "Bearer "+tok)
		check(t, resp, body, map[string]string{"bearer token": tok})
	})
}

package authgate

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

func TestBearerTokens(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "bearer_tokens")
	now := testNow()
	claims := func(mut func(map[string]any)) map[string]any {
		c := map[string]any{
			"iss": s.idp.Issuer(), "aud": "app", "sub": "svc-robot", "email": "robot@example.test",
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		}
		if mut != nil {
			mut(c)
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"valid", s.idp.SignJWT(claims(nil)), 200},
		{"valid ES256 not advertised", s.idp.SignJWT(claims(nil), testidp.SignES256()), 401},
		{"expired", s.idp.SignJWT(claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), 401},
		{"wrong audience", s.idp.SignJWT(claims(func(c map[string]any) { c["aud"] = "other-app" })), 401},
		{"wrong issuer", s.idp.SignJWT(claims(func(c map[string]any) { c["iss"] = "https://evil.example" })), 401},
		{"issuer with trailing slash", s.idp.SignJWT(claims(func(c map[string]any) { c["iss"] = s.idp.Issuer() + "/" })), 401},
		{"bad signature", s.idp.SignJWT(claims(nil), testidp.SignWrongKey()), 401},
		{"alg none", s.idp.SignJWT(claims(nil), testidp.SignAlgNone()), 401},
		{"unknown kid", s.idp.SignJWT(claims(nil), testidp.SignUnpublishedKey()), 401},
		{"opaque junk", "not-a-jwt-at-all", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			resp, body := b.api("GET", s.origin+"/api/data", "Authorization", "Bearer "+tc.token)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 200 {
				saw := backendSaw(t, body)
				if saw.Headers.Get("X-Forwarded-User") != "svc-robot" || saw.Headers.Get("X-Forwarded-Email") != "robot@example.test" {
					t.Errorf("identity headers: %v", saw.Headers)
				}
				if len(setCookieHeaders(resp)) != 0 {
					t.Errorf("a bearer request got cookies: %v", setCookieHeaders(resp))
				}
				return
			}
			if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("refusals are cached: junk cannot make us call the provider each time", func(t *testing.T) {
		s.idp.ResetCounts()
		b := newBrowser(t)
		for i := 0; i < 5; i++ {
			b.api("GET", s.origin+"/api/data", "Authorization", "Bearer another-opaque-junk")
		}
		if n := s.idp.Count("userinfo"); n != 1 {
			t.Errorf("%d userinfo calls for 5 requests with one token, want 1", n)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		s2 := setupSite(t, testidp.Options{}, "", "")
		b := newBrowser(t)
		resp, _ := b.api("GET", s2.origin+"/api", "Authorization", "Bearer "+s2.idp.SignJWT(map[string]any{
			"iss": s2.idp.Issuer(), "aud": "app", "sub": "x", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		}))
		if resp.StatusCode != 401 {
			t.Errorf("bearer accepted without bearer_tokens: %d", resp.StatusCode)
		}
	})
}

func TestForwardAuthWithCaddy(t *testing.T) {
	authPort, appPort := freePort(t), freePort(t)
	authOrigin := fmt.Sprintf("http://127.0.0.1:%d", authPort)
	appOrigin := fmt.Sprintf("http://127.0.0.1:%d", appPort)
	idp := newIDP(t, testidp.Options{}, authOrigin+"/oauth2/callback")
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
	authgate {
		allow group admins
	}
	respond "auth service" 404
}
%s {
	forward_auth 127.0.0.1:%d {
		uri /oauth2/auth
		copy_headers X-Forwarded-User X-Forwarded-Email X-Forwarded-Groups
	}
	reverse_proxy %s
}
`, globalPrelude, testKey, authPort, idp.Issuer(), authOrigin, appOrigin, authPort, be.URL))

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
	t.Run("the auth endpoint answers with identity headers to copy", func(t *testing.T) {
		resp, _ := b.api("GET", authOrigin+"/oauth2/auth", "X-Forwarded-Host", "127.0.0.1", "X-Forwarded-Method", "GET")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Forwarded-User") != "alice-sub" {
			t.Fatalf("/oauth2/auth: %d, X-Forwarded-User %q", resp.StatusCode, resp.Header.Get("X-Forwarded-User"))
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
}

func TestHeaderOff(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "header groups off\n\t\theader user X-Remote-User")
	b := newBrowser(t)
	resp, body := b.get(s.origin+"/", "X-Forwarded-Groups", "forged", "X-Forwarded-User", "forged")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	saw := backendSaw(t, body)
	if v := saw.Headers.Values("X-Forwarded-Groups"); len(v) != 0 {
		t.Errorf("groups header sent or forged copy kept: %q", v)
	}
	if saw.Headers.Get("X-Remote-User") != "alice-sub" || saw.Headers.Get("X-Forwarded-User") != "" {
		t.Errorf("renamed user header: X-Remote-User %q, X-Forwarded-User %q", saw.Headers.Get("X-Remote-User"), saw.Headers.Get("X-Forwarded-User"))
	}
	if saw.Headers.Get("X-Placeholder-User") != "alice-sub" {
		t.Error("placeholders must not depend on the headers")
	}
}

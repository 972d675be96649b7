package authgate

import (
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

package authgate

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

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

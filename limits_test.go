package authgate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// TestLimits checks the bounds on what a client or a broken provider
// controls.
func TestLimits(t *testing.T) {
	huge := `{"padding":"` + strings.Repeat("x", 2<<20) + `"}`

	t.Run("oversized discovery document", func(t *testing.T) {
		s := setupSite(t, testidp.Options{}, "", "")
		// setupSite's Caddy has already discovered; a fresh provider is
		// needed, discovered while the fault is on.
		s.idp.SetFault("discovery", testidp.Fault{Kind: testidp.FaultRaw, Status: 200, ContentType: "application/json", Body: huge})
		port := freePort(t)
		origin := fmt.Sprintf("http://127.0.0.1:%d", port)
		startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		provider fresh {
			issuer %s
			client_id app
		}
	}
}
%s {
	authgate
	respond "app"
}
`, globalPrelude, testKey, s.idp.Issuer(), origin))
		s.idp.ResetCounts()
		resp, body := newBrowser(t).get(origin + "/")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d: %.200s", resp.StatusCode, body)
		}
		if n := s.idp.Count("authorize"); n != 0 {
			t.Errorf("%d authorization requests after a bad discovery", n)
		}
	})

	t.Run("oversized token response", func(t *testing.T) {
		s := setupSite(t, testidp.Options{}, "", "")
		s.idp.SetFault("token", testidp.Fault{Kind: testidp.FaultRaw, Status: 200, ContentType: "application/json", Body: huge})
		defer s.idp.ClearFaults()
		b := newBrowser(t)
		resp, _ := b.get(s.origin + "/")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
		for _, c := range b.cookies(s.origin) {
			if c.Name == "_authgate" {
				t.Error("a session was set")
			}
		}
	})

	s := setupSite(t, testidp.Options{}, "", "")
	t.Run("pending logins are bounded per browser", func(t *testing.T) {
		var cookies []string
		for i := 0; i < 20; i++ {
			cookies = append(cookies, fmt.Sprintf("_authgate_login_%02d=junk%d", i, i))
		}
		c := *newBrowser(t).client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		req, _ := http.NewRequest("GET", s.origin+"/oauth2/start?rd=/", nil)
		req.Header.Set("Cookie", strings.Join(cookies, "; "))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		expired, set := 0, 0
		for _, sc := range resp.Header.Values("Set-Cookie") {
			if !strings.HasPrefix(sc, "_authgate_login_") {
				continue
			}
			if strings.Contains(sc, "Max-Age=0") {
				expired++
			} else {
				set++
			}
		}
		if set != 1 || 20-expired+set > maxPendingLogins {
			t.Errorf("%d pending logins kept of 21 (expired %d, set %d), want at most %d", 20-expired+set, expired, set, maxPendingLogins)
		}
	})
	t.Run("too many chunks is no session, never a 500", func(t *testing.T) {
		var cookies []string
		// 30 chunks, under Caddy's 16 KiB header limit in total.
		for i := 0; i < 30; i++ {
			cookies = append(cookies, fmt.Sprintf("_authgate_%d=%s", i, strings.Repeat("A", 400)))
		}
		resp, _ := newBrowser(t).api("GET", s.origin+"/api", "Cookie", strings.Join(cookies, "; "))
		if resp.StatusCode != 401 {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
	t.Run("a session over the server's header limit is refused at login, not looped", func(t *testing.T) {
		groups := make([]any, 400)
		for i := range groups {
			sum := sha256.Sum256([]byte(fmt.Sprint(i)))
			groups[i] = hex.EncodeToString(sum[:]) // incompressible
		}
		s.idp.SetUserClaims("alice", map[string]any{"groups": groups})
		defer s.idp.SetUserClaims("alice", map[string]any{"groups": []any{"admins", "staff"}})
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "session_too_large") {
			t.Fatalf("status %d: %.300s", resp.StatusCode, body)
		}
		for _, c := range b.cookies(s.origin) {
			if strings.HasPrefix(c.Name, "_authgate") && !strings.HasPrefix(c.Name, "_authgate_login_") {
				t.Errorf("session cookie %s set", c.Name)
			}
		}
	})
	t.Run("oversized bearer token", func(t *testing.T) {
		resp, _ := newBrowser(t).api("GET", s.origin+"/api", "Authorization", "Bearer "+strings.Repeat("a", 20000))
		if resp.StatusCode != 401 {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
}

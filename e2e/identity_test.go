package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/demo"
)

// TestBrowserGroupRemovedAfterRefresh: alice uses the admins-only site;
// an administrator removes her from admins at the provider; the next page
// she opens refreshes her session, which reads her groups again, and she
// sees the 403 page, still signed in (issue 16: groups are not frozen at
// login).
func TestBrowserGroupRemovedAfterRefresh(t *testing.T) {
	b := newBrowser(t)
	// authgate refreshes at most half a token's lifetime before its
	// expiry, whatever the skew: with 4 s tokens, a request more than 2 s
	// after sign-in refreshes.
	const ttl = 4 * time.Second
	d := startDemo(t, demo.Config{TokenTTL: ttl, RefreshSkew: ttl})

	b.open(d.AdminURL)
	b.expectLoginForm(d.Corp.Issuer(), "opening the admin-only site")
	resp := b.signIn("alice", "wonderland")
	expectStatus(t, resp, 200, "alice on the admin-only site")
	expectBackend(t, b, d.AdminURL, "")
	b.screenshot("admin-site")

	d.Corp.SetUserClaims("alice", map[string]any{"groups": []any{"users"}})
	refreshes, authorizes := d.Corp.Count("token:refresh_token"), d.Corp.Count("authorize")
	time.Sleep(ttl/2 + 200*time.Millisecond)
	resp = b.reload()
	expectStatus(t, resp, 403, "alice after her removal from admins")
	expectErrorPage(t, b, "Access denied", "forbidden")
	if msg := b.text("message"); !strings.Contains(msg, "alice") {
		t.Fatalf("the 403 page does not say who is signed in: %q", msg)
	}
	if !b.has("logout") {
		t.Fatalf("the 403 page offers no sign-out: alice is still signed in")
	}
	if got := d.Corp.Count("token:refresh_token"); got <= refreshes {
		t.Fatalf("the reload made no refresh at the provider (%d, before %d)", got, refreshes)
	}
	if got := d.Corp.Count("authorize"); got != authorizes {
		t.Fatalf("the reload sent the browser to sign in again (%d authorization requests, want %d)", got, authorizes)
	}
	b.screenshot("removed-from-admins")
}

package e2e

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

const frontchannelCaddyfile = `{
	admin off
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	authgate {
		session_keys {env.AUTHGATE_E2E_KEY}
		provider corp {
			issuer {{.Issuer}}
			client_id fc-app
			client_secret {env.AUTHGATE_E2E_SECRET}
		}
	}
}

{{.Site}} {
	authgate
	reverse_proxy {{.Backend}}
}
`

// TestBrowserFrontchannelLogout signs in at a site, then signs out at the
// provider itself: the provider's logout page frames authgate's
// /oauth2/frontchannel-logout (Chromium checks its frame-ancestors), the
// frame ends the site's session with its cookie, and the provider
// continues to the site, which asks for a login again.
func TestBrowserFrontchannelLogout(t *testing.T) {
	b := newBrowser(t)
	port := freePorts(t, 1)[0]
	site := fmt.Sprintf("http://127.0.0.1:%d", port)
	secret := randomHex(t, 16)
	idp := startTestIDP(t, testidp.Options{
		Users: testidp.DemoUsers(), ShowHints: true,
		Clients: []testidp.Client{{
			ID: "fc-app", Secret: secret, RedirectURIs: []string{site + "/oauth2/callback"},
			PostLogoutRedirectURIs:            []string{site + "/"},
			FrontchannelLogoutURI:             site + "/oauth2/frontchannel-logout",
			FrontchannelLogoutSessionRequired: true,
		}},
	})
	backendAddr := startSSOBackend(t)
	startCaddyfile(t, secret, frontchannelCaddyfile, map[string]any{
		"Issuer": idp.Issuer(), "Site": site, "Backend": backendAddr,
	})

	b.open(site + "/")
	b.expectLoginForm(idp.Issuer(), "opening the site")
	expectStatus(t, b.signIn("alice", "wonderland"), 200, "signing in")
	b.waitVisible("welcome")
	b.screenshot("signed-in")

	// Sign out at the provider, as from its own portal.
	logout := idp.Issuer() + testidp.PathEndSession + "?" + url.Values{"client_id": {"fc-app"}, "post_logout_redirect_uri": {site + "/"}}.Encode()
	b.open(logout)
	b.expectLoginForm(idp.Issuer(), "after signing out at the provider and coming back to the site")
	if n := idp.Count("frontchannel_logout"); n != 1 {
		t.Fatalf("the provider framed %d front-channel logout URLs, want 1", n)
	}
	for _, c := range b.cookies(site + "/") {
		if c.Name == "_authgate" {
			t.Fatalf("the session cookie survived the front-channel logout (blocked cookies: %v)", b.blockedCookies())
		}
	}
	b.screenshot("signed-out-by-the-provider")
}

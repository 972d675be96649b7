package e2e

import (
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

const crossSiteLogoutCaddyfile = `{
	admin off
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	authgate {
		session_keys {env.AUTHGATE_E2E_KEY}
		provider corp {
			issuer {{.Issuer}}
			client_id xs-app
			client_secret {env.AUTHGATE_E2E_SECRET}
			id_token_hint on
		}
	}
}

{{.Site}} {
	authgate
	reverse_proxy {{.Backend}}
}
`

// evilPage is another site's page: it embeds the logout URL as an image
// and links to it.
var evilPage = template.Must(template.New("evil").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Another site</title></head>
<body>
<h1>Cute cats</h1>
<img id="pixel" alt="" src="{{.Logout}}" onload="document.body.dataset.pixel='loaded'" onerror="document.body.dataset.pixel='failed'">
<p><a id="evil-link" href="{{.Logout}}?rd=/after">More cats</a></p>
</body></html>
`))

// TestBrowserLogoutCrossSite: a page on another site (evil.example.test,
// served from loopback) that embeds /oauth2/logout as an image and links
// to it signs nobody out: the image is refused, the link shows the
// confirmation page, and the user is still signed in. Clicking the page's
// button signs out, at the provider too (the ID token posted to its
// end-session endpoint), and comes back to rd.
func TestBrowserLogoutCrossSite(t *testing.T) {
	b := newBrowser(t)
	ports := freePorts(t, 2)
	// 127.0.0.1 is a secure context, so Chromium sends Sec-Fetch-Site.
	site := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	evil := fmt.Sprintf("http://evil.example.test:%d", ports[1])
	secret := randomHex(t, 16)
	idp := startTestIDP(t, testidp.Options{
		Users: testidp.DemoUsers(), ShowHints: true,
		Clients: []testidp.Client{{
			ID: "xs-app", Secret: secret, RedirectURIs: []string{site + "/oauth2/callback"},
			PostLogoutRedirectURIs: []string{site + "/after"},
		}},
	})
	backendAddr := startSSOBackend(t)
	evilLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[1]))
	if err != nil {
		t.Fatal(err)
	}
	evilSrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = evilPage.Execute(w, map[string]string{"Logout": site + "/oauth2/logout"})
	})}
	go func() { _ = evilSrv.Serve(evilLn) }()
	t.Cleanup(func() { _ = evilSrv.Close() })

	startCaddyfile(t, secret, crossSiteLogoutCaddyfile, map[string]any{
		"Issuer": idp.Issuer(), "Site": site, "Backend": backendAddr,
	})

	b.open(site + "/")
	b.expectLoginForm(idp.Issuer(), "opening the site")
	expectStatus(t, b.signIn("alice", "wonderland"), 200, "signing in")
	b.waitVisible("welcome")

	stillSignedIn := func(when string) {
		t.Helper()
		if !hasSessionCookie(b, site) {
			t.Fatalf("%s: the session cookie is gone (blocked cookies: %v)", when, b.blockedCookies())
		}
		if n := idp.Count("end_session"); n != 0 {
			t.Fatalf("%s: the provider's end-session endpoint was visited %d times", when, n)
		}
		b.open(site + "/")
		b.waitVisible("welcome")
		if !strings.Contains(b.text("welcome"), "alice") {
			t.Fatalf("%s: the site greets %q, want alice", when, b.text("welcome"))
		}
	}

	// The image: a cross-site subresource, answered with a JSON 403.
	b.open(evil + "/")
	if got := run(b, "waiting for the image", chromedp.Poll[string]("document.body.dataset.pixel")); got != "failed" {
		t.Errorf("the logout URL loaded as an image (%q), want it refused", got)
	}
	b.screenshot("evil-page")
	stillSignedIn("after another site embedded the logout URL")

	// The link: a cross-site navigation, answered with the confirmation.
	b.open(evil + "/")
	expectStatus(t, b.clickNav("evil-link"), 200, "following the other site's link")
	b.waitVisible("confirm-logout")
	if loc := b.location(); !strings.HasPrefix(loc, site+"/oauth2/logout") {
		t.Fatalf("the link ended at %s, want the confirmation page", loc)
	}
	b.screenshot("confirm-page")
	if !hasSessionCookie(b, site) {
		t.Fatalf("the confirmation page signed the user out (blocked cookies: %v)", b.blockedCookies())
	}
	stillSignedIn("after following another site's logout link")

	// Confirming signs out here and at the provider, then returns to rd.
	b.open(evil + "/")
	b.clickNav("evil-link")
	b.clickNav("confirm-logout")
	b.expectLoginForm(idp.Issuer(), "after confirming the sign-out and coming back to /after")
	if n := idp.Count("end_session"); n != 1 {
		t.Errorf("the provider's end-session endpoint was visited %d times, want 1", n)
	}
	if hasSessionCookie(b, site) {
		t.Fatalf("the session cookie survived the confirmed sign-out (blocked cookies: %v)", b.blockedCookies())
	}
	b.screenshot("signed-out")
}

func hasSessionCookie(b *browser, site string) bool {
	for _, c := range b.cookies(site + "/") {
		if c.Name == "_authgate" {
			return true
		}
	}
	return false
}

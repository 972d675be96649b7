package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"

	"github.com/authgate/caddy-authgate/internal/demo"
)

// alice's identity as the demo provider describes her.
var aliceHeaders = map[string]string{
	"X-Forwarded-User":               "11111111-1111-4111-8111-111111111111",
	"X-Forwarded-Email":              "alice@example.com",
	"X-Forwarded-Preferred-Username": "alice",
	"X-Forwarded-Groups":             "admins,users",
}

// startDemo runs the demo on free loopback ports until the test ends.
func startDemo(t *testing.T, cfg demo.Config) *demo.Demo {
	t.Helper()
	p := freePorts(t, 6)
	cfg.Host = "127.0.0.1"
	cfg.AppPort, cfg.ChooserPort, cfg.AdminPort = p[0], p[1], p[2]
	cfg.BackendPort, cfg.IdPPort, cfg.PartnerPort = p[3], p[4], p[5]
	cfg.ExtraGlobal = "default_bind 127.0.0.1"
	d, err := demo.Start(cfg)
	if err != nil {
		t.Fatalf("starting the demo: %v", err)
	}
	t.Cleanup(d.Stop)
	return d
}

func expectStatus(t *testing.T, resp *network.Response, want int, when string) {
	t.Helper()
	if resp.Status != int64(want) {
		t.Fatalf("%s: %s answered %d %s, want %d", when, resp.URL, resp.Status, resp.StatusText, want)
	}
}

// expectBackend checks that the browser shows the legacy backend of the
// site at origin, signed in as alice, and that no authgate cookie reached
// the backend.
func expectBackend(t *testing.T, b *browser, origin, site string) {
	t.Helper()
	b.waitVisible("welcome")
	if loc := b.location(); !strings.HasPrefix(loc, origin+"/") {
		t.Fatalf("the backend page is at %s, want %s/", loc, origin)
	}
	if got := b.text("welcome"); got != "Hello, alice" {
		t.Fatalf("backend greeting = %q, want %q", got, "Hello, alice")
	}
	for name, want := range aliceHeaders {
		if got := b.text("h-" + name); got != want {
			t.Fatalf("backend received %s = %q, want %q", name, got, want)
		}
	}
	if site != "" {
		if got := b.text("h-X-Demo-Site"); got != site {
			t.Fatalf("backend page of site %q, want %q", got, site)
		}
	}
	if got := b.text("cookies"); strings.Contains(got, "_authgate") {
		t.Fatalf("an authgate cookie reached the backend: %q", got)
	}
	if b.has("username") {
		t.Fatalf("the backend page shows a login form")
	}
}

// expectErrorPage checks authgate's error page: title, reason and a
// request id.
func expectErrorPage(t *testing.T, b *browser, title, reason string) {
	t.Helper()
	if got := b.text("title"); got != title {
		t.Fatalf("error page title = %q, want %q (page: %q)", got, title, b.bodyText())
	}
	if id := b.text("request-id"); id == "" {
		t.Fatalf("the %q page shows no request id", title)
	}
	if body := b.bodyText(); !strings.Contains(body, "("+reason+")") {
		t.Fatalf("the %q page does not name the reason %s: %q", title, reason, body)
	}
}

// sleepUntil waits for the clock, bounded by the test's browser context.
func sleepUntil(t *testing.T, b *browser, deadline time.Time) {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-b.ctx.Done():
		t.Fatalf("test timed out while waiting for the token to near its expiry")
	}
}

// TestBrowserDemoFlow signs in on the demo's app, checks what the legacy
// backend receives, lets the access token near its expiry so that a
// reload refreshes it silently, and signs out.
func TestBrowserDemoFlow(t *testing.T) {
	b := newBrowser(t)
	// Tokens live 10 s; the 35 s refresh skew is capped at half a token's
	// lifetime, so 5 s after sign-in a request refreshes.
	const ttl, skew = 10 * time.Second, 35 * time.Second
	d := startDemo(t, demo.Config{TokenTTL: ttl, RefreshSkew: skew})

	b.open(d.AppURL)
	b.expectLoginForm(d.Corp.Issuer(), "opening the app")
	b.screenshot("login-form")

	resp := b.signIn("alice", "wonderland")
	signedIn := time.Now()
	expectStatus(t, resp, 200, "signing in")
	expectBackend(t, b, d.AppURL, "app")
	b.screenshot("backend")

	// Silent refresh: the same page again, no login form, a refresh grant
	// at the provider and no new authorization request.
	refreshes, authorizes := d.Corp.Count("token:refresh_token"), d.Corp.Count("authorize")
	sleepUntil(t, b, signedIn.Add(ttl/2+time.Second))
	resp = b.reload()
	expectStatus(t, resp, 200, "reloading near token expiry")
	expectBackend(t, b, d.AppURL, "app")
	if got := d.Corp.Count("token:refresh_token"); got <= refreshes {
		t.Fatalf("reloading with the access token within the refresh skew made %d refresh grants at the provider, want more than %d", got, refreshes)
	}
	if got := d.Corp.Count("authorize"); got != authorizes {
		t.Fatalf("the silent refresh sent the browser to the provider's authorization endpoint (%d requests, want %d)", got, authorizes)
	}
	b.screenshot("refreshed")

	// Sign out: authgate ends the provider session, which sends the
	// browser back to the app, which needs a login again.
	ends := d.Corp.Count("end_session")
	b.clickNav("logout")
	b.expectLoginForm(d.Corp.Issuer(), "after signing out")
	if got := d.Corp.Count("end_session"); got != ends+1 {
		t.Fatalf("signing out reached the provider's end-session endpoint %d times, want 1", got-ends)
	}
	b.screenshot("signed-out")

	resp = b.open(d.AppURL + "/oauth2/userinfo")
	expectStatus(t, resp, 401, "/oauth2/userinfo after signing out")
	b.screenshot("userinfo-401")
}

// TestBrowserChooserPage signs in on the site that offers two providers,
// choosing the second.
func TestBrowserChooserPage(t *testing.T) {
	b := newBrowser(t)
	d := startDemo(t, demo.Config{})

	resp := b.open(d.ChooserURL)
	expectStatus(t, resp, 200, "the sign-in page")
	if got := b.text("title"); got != "Sign in" {
		t.Fatalf("chooser title = %q, want %q", got, "Sign in")
	}
	if loc := b.location(); !strings.HasPrefix(loc, d.ChooserURL+"/oauth2/start") {
		t.Fatalf("the sign-in page is at %s, want %s/oauth2/start", loc, d.ChooserURL)
	}
	for _, p := range []string{"corp", "partner"} {
		if got, want := b.text("provider-"+p), "Sign in with "+p; got != want {
			t.Fatalf("provider button = %q, want %q", got, want)
		}
	}
	b.screenshot("chooser")

	b.clickNav("provider-partner")
	b.expectLoginForm(d.Partner.Issuer(), "choosing partner")
	b.screenshot("partner-login-form")

	resp = b.signIn("alice", "wonderland")
	expectStatus(t, resp, 200, "signing in at partner")
	expectBackend(t, b, d.ChooserURL, "chooser")
	if got := d.Partner.Count("login"); got != 1 {
		t.Fatalf("partner saw %d login form submissions, want 1", got)
	}
	if got := d.Corp.Count("authorize"); got != 0 {
		t.Fatalf("corp saw %d authorization requests, want 0 (partner was chosen)", got)
	}
	b.screenshot("backend")
}

// TestBrowserErrorPages walks through the pages a person sees when a
// sign-in does not end in the app: refused by the rules, cancelled at the
// provider, and expired.
func TestBrowserErrorPages(t *testing.T) {
	b := newBrowser(t)
	d := startDemo(t, demo.Config{})

	// bob is not in the admins group.
	b.open(d.AdminURL)
	b.expectLoginForm(d.Corp.Issuer(), "opening the admin-only site")
	resp := b.signIn("bob", "builder")
	expectStatus(t, resp, 403, "bob on the admin-only site")
	expectErrorPage(t, b, "Access denied", "forbidden")
	if msg := b.text("message"); !strings.Contains(msg, "bob") {
		t.Fatalf("the 403 page does not say who is signed in: %q", msg)
	}
	if got := b.text("logout"); !strings.Contains(got, "Sign out") {
		t.Fatalf("the 403 page's sign-out button reads %q", got)
	}
	if loc := b.location(); loc != d.AdminURL+"/" {
		t.Fatalf("the 403 page is at %s, want %s/", loc, d.AdminURL)
	}
	b.screenshot("access-denied")

	// Sign out from the 403 page, then refuse at the provider.
	b.clickNav("logout")
	b.expectLoginForm(d.Corp.Issuer(), "signing out from the 403 page")
	b.screenshot("signed-out")
	resp = b.clickNav("deny")
	expectStatus(t, resp, 403, "denying at the provider")
	expectErrorPage(t, b, "Sign-in cancelled", "sign_in_denied")
	if !b.has("retry") {
		t.Fatalf("the sign-in cancelled page offers no way to start again")
	}
	b.screenshot("sign-in-cancelled")

	// A callback with no login in progress in this browser.
	resp = b.open(d.AdminURL + "/oauth2/callback?code=x&state=y")
	expectStatus(t, resp, 400, "a callback with no login in progress")
	expectErrorPage(t, b, "Sign-in expired", "login_expired")
	if got := b.text("retry"); got != "Start again" {
		t.Fatalf("the sign-in expired page's button reads %q, want %q", got, "Start again")
	}
	b.screenshot("sign-in-expired")

	b.clickNav("retry")
	b.expectLoginForm(d.Corp.Issuer(), fmt.Sprintf("clicking %q", "Start again"))
	b.screenshot("start-again")
}

package e2e

// Issue 16's browser-visible lines: duplicated callback parameters, many
// login tabs, unverified addresses and a userinfo sub that is another
// user's, each met by a real Chromium.

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/authgate/caddy-authgate/internal/demo"
	"github.com/authgate/caddy-authgate/internal/testidp"
)

// gateCaddyfile (text/template) is one provider and a site per entry of
// Sites, each on its own loopback port in front of ssoBackend. Cookies do
// not look at ports, so the sites share one session.
const gateCaddyfile = `{
	admin off
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	authgate {
		session_keys {env.AUTHGATE_E2E_KEY}
		provider corp {
			issuer {{.Issuer}}
			client_id e2e-app
			client_secret {env.AUTHGATE_E2E_SECRET}
		}
	}
}
{{range .Sites}}
{{.Origin}} {
	{{.Body}}
	reverse_proxy {{$.Backend}} {
		header_up X-E2E-Site {{.Name}}
	}
}
{{end}}`

// gateSite is one site of startGate: its name (X-E2E-Site) and the
// directives before its reverse_proxy.
type gateSite struct {
	Name, Body string
	Origin     string // set by startGate
}

// gate is a running startGate setup.
type gate struct {
	idp     *testidp.Server
	origins map[string]string // by site name
}

// startGate starts the test provider (the demo users, a login form), the
// backend and Caddy with the sites, until the test ends.
func startGate(t *testing.T, opts testidp.Options, sites ...gateSite) *gate {
	t.Helper()
	ports := freePorts(t, len(sites))
	g := &gate{origins: map[string]string{}}
	var callbacks []string
	for i := range sites {
		sites[i].Origin = fmt.Sprintf("http://127.0.0.1:%d", ports[i])
		g.origins[sites[i].Name] = sites[i].Origin
		callbacks = append(callbacks, sites[i].Origin+"/oauth2/callback")
	}
	secret := randomHex(t, 16)
	opts.Users, opts.ShowHints = testidp.DemoUsers(), true
	opts.Clients = []testidp.Client{{ID: "e2e-app", Secret: secret, RedirectURIs: callbacks}}
	idp := startTestIDP(t, opts)
	g.idp = idp

	backendAddr := startSSOBackend(t)

	startCaddyfile(t, secret, gateCaddyfile, map[string]any{
		"Issuer": idp.Issuer(), "Sites": sites, "Backend": backendAddr,
	})
	return g
}

// heldPage is what the browser shows for a callback that holdCallback kept
// from authgate.
const heldPage = `<!doctype html><title>held</title><p id="held">callback held by the test</p>`

// holdCallback runs act (which ends a sign-in at the provider) with the
// browser's requests to /oauth2/callback kept from authgate: the browser
// shows heldPage instead, and holdCallback returns the callback URL the
// provider redirected to, with its real, unspent code.
func (b *browser) holdCallback(act func()) string {
	b.t.Helper()
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	caught := make(chan string, 1)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			select {
			case caught <- ev.Request.URL:
			default:
			}
			_, _ = chromedp.Call(ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{
				RequestID: ev.RequestID, ResponseCode: 200, Body: []byte(heldPage),
				ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "text/html; charset=utf-8"}},
			})
		}
	}()
	run(b, "holding callbacks", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/oauth2/callback*"}}})
		return err
	}))
	act()
	b.waitVisible("held")
	run(b, "releasing callbacks", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, fetch.Disable, cdp.Empty{})
		return err
	}))
	select {
	case u := <-caught:
		return u
	default:
		b.t.Fatalf("the browser showed the held page but no callback was caught")
		return ""
	}
}

// newTab opens another tab of the same browser (same profile, cookies).
func (b *browser) newTab() *browser {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("opening a tab: %v", err)
	}
	return &browser{t: b.t, ctx: ctx, dir: b.dir, step: 50 + b.step}
}

// deleteCookies deletes the browser's cookies for u whose names start with
// prefix.
func (b *browser) deleteCookies(u, prefix string) {
	b.t.Helper()
	for _, c := range b.cookies(u) {
		if strings.HasPrefix(c.Name, prefix) {
			run(b, "deleting cookie "+c.Name, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				_, err := cdp.Call(ctx, t, network.DeleteCookies, network.DeleteCookiesParams{Name: c.Name, URL: u})
				return err
			}))
		}
	}
}

// hasSessionCookie reports whether the browser holds authgate's session
// cookie (or a chunk of it) for u.
func (b *browser) hasSessionCookie(u string) bool {
	b.t.Helper()
	for _, c := range b.cookies(u) {
		if c.Name == "_authgate" || strings.HasPrefix(c.Name, "_authgate_") && !strings.HasPrefix(c.Name, "_authgate_login_") {
			return true
		}
	}
	return false
}

// TestBrowserCallbackDuplicateParameters: a login reaches the callback
// with a real code, and the browser is sent there with the code, the
// state or the iss doubled (an attacker's copy added). Each is the 400
// page before any token request; the untouched callback then still signs
// in, so the refusals spent neither the code nor the pending login.
func TestBrowserCallbackDuplicateParameters(t *testing.T) {
	b := newBrowser(t)
	d := startDemo(t, demo.Config{})

	b.open(d.AppURL + "/report?year=2026")
	b.expectLoginForm(d.Corp.Issuer(), "opening the app")
	callback := b.holdCallback(func() { b.signIn("alice", "wonderland") })
	cb, err := url.Parse(callback)
	if err != nil || cb.Path != "/oauth2/callback" || cb.Query().Get("code") == "" || cb.Query().Get("state") == "" {
		t.Fatalf("held callback %q (%v): want one with a code and a state", callback, err)
	}
	b.screenshot("callback-held")

	for _, param := range []string{"code", "state", "iss"} {
		doubled := callback + "&" + url.Values{param: {"attacker-" + param}}.Encode()
		resp := b.open(doubled)
		expectStatus(t, resp, 400, "a callback with a doubled "+param)
		expectErrorPage(t, b, "Sign-in problem", "duplicate_parameter")
		if msg := b.text("message"); !strings.Contains(msg, param+" parameter more than once") {
			t.Fatalf("the page does not name the doubled %s: %q", param, msg)
		}
		if n := d.Corp.Count("token:authorization_code"); n != 0 {
			t.Fatalf("a callback with a doubled %s reached the provider's token endpoint (%d code exchanges)", param, n)
		}
		if b.hasSessionCookie(d.AppURL + "/") {
			t.Fatalf("a callback with a doubled %s signed the browser in", param)
		}
		b.screenshot("doubled-" + param)
	}

	resp := b.open(callback)
	expectStatus(t, resp, 200, "the untouched callback after the refusals")
	expectBackend(t, b, d.AppURL, "app")
	if loc := b.location(); loc != d.AppURL+"/report?year=2026" {
		t.Fatalf("the login ended at %s, want the page it started at", loc)
	}
	if n := d.Corp.Count("token:authorization_code"); n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}
	b.screenshot("signed-in")
}

// TestBrowserManyTabsLatestLoginCompletes: ten tabs each start a login;
// the browser never holds more than three pending-login cookies, and the
// latest tab signs in and lands where it started.
func TestBrowserManyTabsLatestLoginCompletes(t *testing.T) {
	b := newBrowser(t)
	d := startDemo(t, demo.Config{})
	const tabs = 10
	var last *browser
	for i := range tabs {
		tab := b.newTab()
		tab.open(fmt.Sprintf("%s/tab/%d", d.AppURL, i))
		tab.expectLoginForm(d.Corp.Issuer(), fmt.Sprintf("tab %d", i))
		last = tab
	}
	if n := d.Corp.Count("authorize"); n != tabs {
		t.Fatalf("the provider saw %d authorization requests, want %d", n, tabs)
	}
	pending, size := 0, 0
	for _, c := range b.cookies(d.AppURL + "/") {
		if strings.HasPrefix(c.Name, "_authgate_login_") {
			pending++
		}
		size += len(c.Name) + len(c.Value) + 2
	}
	t.Logf("after %d login starts: %d pending-login cookies, Cookie header about %d bytes", tabs, pending, size)
	if pending > 3 {
		t.Fatalf("%d login starts left %d pending-login cookies in the browser, want at most 3", tabs, pending)
	}

	resp := last.signIn("alice", "wonderland")
	expectStatus(t, resp, 200, "signing in in the latest tab")
	expectBackend(t, last, d.AppURL, "app")
	if loc := last.location(); loc != fmt.Sprintf("%s/tab/%d", d.AppURL, tabs-1) {
		t.Fatalf("the latest tab's login ended at %s, want its own page", loc)
	}
	size = 0
	for _, c := range b.cookies(d.AppURL + "/") {
		size += len(c.Name) + len(c.Value) + 2
	}
	if size > 8192 {
		t.Fatalf("the Cookie header is about %d bytes after the login, want it well under 8 KB", size)
	}
	last.screenshot("latest-tab-signed-in")
}

// TestBrowserUnverifiedEmailNotForwarded: alice's address is
// email_verified false. She signs in to a site without rules, whose
// backend gets no X-Forwarded-Email; sites allowing her domain or her
// address answer the 403 page; once the provider says verified, the
// address site lets her in with her address.
func TestBrowserUnverifiedEmailNotForwarded(t *testing.T) {
	b := newBrowser(t)
	g := startGate(t, testidp.Options{},
		gateSite{Name: "open", Body: "authgate"},
		gateSite{Name: "domain", Body: "authgate {\n\t\tallow domain example.com\n\t}"},
		gateSite{Name: "address", Body: "authgate {\n\t\tallow email alice@example.com\n\t}"},
	)
	g.idp.SetUserClaims("alice", map[string]any{"email_verified": false})

	b.open(g.origins["open"] + "/")
	b.expectLoginForm(g.idp.Issuer(), "opening the site without rules")
	resp := b.signIn("alice", "wonderland")
	expectStatus(t, resp, 200, "alice with an unverified address on the site without rules")
	if got := b.text("welcome"); got != "Hello, alice" {
		t.Fatalf("backend greeting %q: alice is not signed in", got)
	}
	if got := b.text("h-X-Forwarded-User"); got != "11111111-1111-4111-8111-111111111111" {
		t.Fatalf("backend got X-Forwarded-User %q", got)
	}
	if b.has("h-X-Forwarded-Email") {
		t.Fatalf("the backend got the unverified address: X-Forwarded-Email %q", b.text("h-X-Forwarded-Email"))
	}
	b.screenshot("signed-in-without-address")

	for _, site := range []string{"domain", "address"} {
		resp = b.open(g.origins[site] + "/")
		expectStatus(t, resp, 403, "alice with an unverified address on the "+site+" site")
		expectErrorPage(t, b, "Access denied", "email_unverified")
		if msg := b.text("message"); !strings.Contains(msg, "not verified") {
			t.Fatalf("the 403 page does not say why: %q", msg)
		}
		if b.has("welcome") {
			t.Fatalf("the %s site's backend answered", site)
		}
		b.screenshot("denied-" + site)
	}

	g.idp.SetUserClaims("alice", map[string]any{"email_verified": true})
	b.open(g.origins["address"] + "/")
	if got := b.text("h-X-Forwarded-Email"); got != "alice@example.com" {
		t.Fatalf("verified now: the address site's backend got X-Forwarded-Email %q", got)
	}
	b.screenshot("verified")
}

// TestBrowserUserinfoSubMismatch: the provider's userinfo answers for
// another subject than the ID token's. The sign-in ends on a 401 page
// saying so (not a 502), without a session; "Start again" then signs in.
func TestBrowserUserinfoSubMismatch(t *testing.T) {
	b := newBrowser(t)
	d := startDemo(t, demo.Config{})

	b.open(d.AppURL + "/")
	b.expectLoginForm(d.Corp.Issuer(), "opening the app")
	d.Corp.SetFault("userinfo", testidp.Fault{Kind: testidp.FaultUserinfoWrongSub, Times: 1})
	resp := b.signIn("alice", "wonderland")
	expectStatus(t, resp, 401, "a sign-in whose userinfo is another user's")
	expectErrorPage(t, b, "Sign-in problem", "userinfo_mismatch")
	if msg := b.text("message"); !strings.Contains(msg, "for another user") {
		t.Fatalf("the page does not say what happened: %q", msg)
	}
	if b.hasSessionCookie(d.AppURL + "/") {
		t.Fatalf("the refused sign-in left a session cookie")
	}
	if n := d.Corp.Count("userinfo"); n != 1 {
		t.Fatalf("%d userinfo reads, want 1", n)
	}
	b.screenshot("userinfo-mismatch")

	b.clickNav("retry")
	expectBackend(t, b, d.AppURL, "app")
	b.screenshot("start-again")
}

package e2e

// Issue 20 in the browser: step-up per route (authgate_require) and
// silent sign-in for scripts (silent_login), done as a page and its script
// would.

import (
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// fetchResult is what a page's script sees of a fetch.
type fetchResult struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// fetchJSON makes the current page's script fetch path as an API call
// (Accept: application/json, the page's cookies).
func (b *browser) fetchJSON(path string) fetchResult {
	b.t.Helper()
	p, _ := json.Marshal(path)
	return run(b, "fetching "+path+" from the page", chromedp.Evaluate[fetchResult](`(async () => {
		const r = await fetch(`+string(p)+`, {headers: {Accept: "application/json"}, credentials: "same-origin", redirect: "manual"});
		const headers = {};
		r.headers.forEach((v, k) => { headers[k] = v; });
		return {status: r.status, headers, body: await r.text()};
	})()`, chromedp.EvalAwaitPromise))
}

// loadInHiddenFrame does what a page's script does with a silent sign-in
// link: loads it in a hidden iframe and waits for the frame's load event.
// It returns the frame's final address, or "" when the frame's document is
// not readable by the page (another origin, or a page that refuses to be
// framed).
func (b *browser) loadInHiddenFrame(link string) string {
	b.t.Helper()
	l, _ := json.Marshal(link)
	return run(b, "loading "+link+" in a hidden frame", chromedp.Evaluate[string](`new Promise((resolve, reject) => {
		const f = document.createElement("iframe");
		f.style.display = "none";
		const timer = setTimeout(() => reject(new Error("the frame did not load in 10 s")), 10000);
		f.addEventListener("load", () => {
			clearTimeout(timer);
			let href = "";
			try { href = f.contentWindow.location.href; } catch (e) {}
			f.remove();
			resolve(href);
		});
		f.src = `+string(l)+`;
		document.body.appendChild(f);
	})`, chromedp.EvalAwaitPromise))
}

// linkTarget returns the URL of the Link header value's entry with rel.
func linkTarget(t *testing.T, link, rel string) string {
	t.Helper()
	m := regexp.MustCompile(`<([^>]+)>;\s*rel="` + regexp.QuoteMeta(rel) + `"`).FindStringSubmatch(link)
	if m == nil {
		t.Fatalf("Link %q has no rel=%q", link, rel)
	}
	return m[1]
}

// TestBrowserStepUpACR: alice signs in with a password (acr 1); the
// /admin/* pages require acr 2. A script's call there gets RFC 9470's
// 401; opening such a page sends the browser back to the provider with
// acr_values=2, where she authenticates again, and she lands on the page
// she asked for. After that /admin/* needs no further trip.
func TestBrowserStepUpACR(t *testing.T) {
	b := newBrowser(t)
	g := startGate(t, testidp.Options{}, gateSite{Name: "app", Body: "authgate\n\tauthgate_require /admin/* {\n\t\tacr 2\n\t}"})
	app := g.origins["app"]

	b.open(app + "/home")
	b.expectLoginForm(g.idp.Issuer(), "opening the app")
	expectStatus(t, b.signIn("alice", "wonderland"), 200, "signing in")
	if got := b.text("site"); got != "app" {
		t.Fatalf("signed in at site %q", got)
	}
	if q := g.idp.LastAuthorizeQuery(); q.Has("acr_values") {
		t.Fatalf("the first sign-in asked for acr_values: %v", q)
	}
	b.screenshot("signed-in")

	api := b.fetchJSON("/admin/api")
	if api.Status != 401 || !strings.Contains(api.Body, `"insufficient_user_authentication"`) {
		t.Fatalf("a script's call to /admin/api before the step-up: %d %s", api.Status, api.Body)
	}
	if wa := api.Headers["www-authenticate"]; !strings.Contains(wa, `error="insufficient_user_authentication"`) || !strings.Contains(wa, `acr_values="2"`) {
		t.Fatalf("WWW-Authenticate %q", wa)
	}
	if link := linkTarget(t, api.Headers["link"], "authgate-step-up"); !strings.Contains(link, "acr_values=2") {
		t.Fatalf("the step-up link %q does not ask for acr 2", link)
	}

	logins := g.idp.Count("login")
	b.open(app + "/admin/panel?tab=2")
	b.expectLoginForm(g.idp.Issuer(), "opening an /admin/ page with a password-only session")
	if q := g.idp.LastAuthorizeQuery(); q.Get("acr_values") != "2" {
		t.Fatalf("the step-up's authorization request: %v", q)
	}
	b.screenshot("step-up-login-form")
	resp := b.signIn("alice", "wonderland")
	expectStatus(t, resp, 200, "after the step-up")
	if loc := b.location(); loc != app+"/admin/panel?tab=2" {
		t.Fatalf("the step-up ended at %s, want the page asked for", loc)
	}
	if got := b.text("welcome"); got != "Hello, alice" {
		t.Fatalf("backend greeting %q", got)
	}
	if n := g.idp.Count("login") - logins; n != 1 {
		t.Fatalf("%d login form submissions for the step-up, want 1", n)
	}
	b.screenshot("admin-page")

	authorizes := g.idp.Count("authorize")
	expectStatus(t, b.open(app+"/admin/other"), 200, "another /admin/ page after the step-up")
	if api := b.fetchJSON("/admin/api"); api.Status != 200 {
		t.Fatalf("a script's call to /admin/api after the step-up: %d %s", api.Status, api.Body)
	}
	if n := g.idp.Count("authorize") - authorizes; n != 0 {
		t.Fatalf("the stepped-up session went to the provider again (%d authorization requests)", n)
	}
}

// TestBrowserSilentLoginInHiddenFrame: a page of an app with silent_login
// is open when its authgate session goes away (the provider's stays). Its
// script's next call gets 401 with a Link to a prompt=none sign-in; the
// script loads it in a hidden frame and calls again: 200, with no login
// form. When the provider's session is gone too, the frame ends without a
// session and without a loop, and the call stays 401.
func TestBrowserSilentLoginInHiddenFrame(t *testing.T) {
	b := newBrowser(t)
	g := startGate(t, testidp.Options{}, gateSite{Name: "app", Body: "authgate {\n\t\tsilent_login\n\t}"})
	app := g.origins["app"]

	b.open(app + "/spa")
	b.expectLoginForm(g.idp.Issuer(), "opening the app")
	expectStatus(t, b.signIn("alice", "wonderland"), 200, "signing in")
	if r := b.fetchJSON("/api/data"); r.Status != 200 {
		t.Fatalf("a script's call while signed in: %d %s", r.Status, r.Body)
	}
	b.screenshot("app")

	b.deleteCookies(app+"/", "_authgate")
	r := b.fetchJSON("/api/data")
	if r.Status != 401 || !strings.Contains(r.Headers["content-type"], "application/json") {
		t.Fatalf("a script's call without a session: %d %q %s", r.Status, r.Headers["content-type"], r.Body)
	}
	link := linkTarget(t, r.Headers["link"], "authgate-silent-login")
	lu, err := url.Parse(link)
	if err != nil || lu.Path != "/oauth2/start" || lu.Query().Get("prompt") != "none" || lu.Query().Get("rd") != "/api/data" {
		t.Fatalf("the silent sign-in link %q (%v)", link, err)
	}
	logins, authorizes := g.idp.Count("login"), g.idp.Count("authorize")
	if got := b.loadInHiddenFrame(link); got != app+"/api/data" {
		t.Fatalf("the hidden frame ended at %q, want %s/api/data", got, app)
	}
	if q := g.idp.LastAuthorizeQuery(); q.Get("prompt") != "none" {
		t.Fatalf("the frame's authorization request: %v", q)
	}
	if n := g.idp.Count("authorize") - authorizes; n != 1 {
		t.Fatalf("%d authorization requests for one silent sign-in", n)
	}
	if n := g.idp.Count("login") - logins; n != 0 {
		t.Fatalf("the silent sign-in showed a login form (%d submissions)", n)
	}
	if r := b.fetchJSON("/api/data"); r.Status != 200 {
		t.Fatalf("the script's call after the silent sign-in: %d %s", r.Status, r.Body)
	}
	if !b.hasSessionCookie(app + "/") {
		t.Fatalf("no session cookie after the silent sign-in")
	}
	b.screenshot("silently-signed-in")

	// Now the provider needs the user: the frame gets the login_required
	// page (which refuses to be framed), one trip, no session.
	b.deleteCookies(app+"/", "_authgate")
	b.deleteCookies(g.idp.Issuer()+"/", "testidp_sso")
	r = b.fetchJSON("/api/data")
	authorizes = g.idp.Count("authorize")
	if got := b.loadInHiddenFrame(linkTarget(t, r.Headers["link"], "authgate-silent-login")); got != "" {
		t.Fatalf("the frame ended at %q, want authgate's login_required page (unreadable: it refuses framing)", got)
	}
	if n := g.idp.Count("authorize") - authorizes; n != 1 {
		t.Fatalf("%d authorization requests for a silent sign-in the provider refused, want 1 (no loop)", n)
	}
	if r := b.fetchJSON("/oauth2/userinfo"); r.Status != 401 {
		t.Fatalf("/oauth2/userinfo after a refused silent sign-in: %d %s", r.Status, r.Body)
	}
	if b.hasSessionCookie(app + "/") {
		t.Fatalf("a refused silent sign-in left a session cookie")
	}
}

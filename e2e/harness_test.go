package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	texttemplate "text/template"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

const (
	// testTimeout bounds a whole test, browser included.
	testTimeout = 60 * time.Second
	// stepTimeout bounds one browser step, so that a stuck step fails
	// with its own name while the browser is still there to screenshot.
	stepTimeout = 15 * time.Second
)

// browser is one headless Chromium with a fresh profile, driven by one
// test. Every method fails the test on error.
type browser struct {
	t    *testing.T
	ctx  context.Context
	dir  string // screenshots
	step int

	mu      sync.Mutex
	blocked []string // Set-Cookie lines the browser refused, with why
}

// chromiumPath finds the browser, or skips (fails when the environment
// requires a browser) the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("AUTHGATE_REQUIRE_BROWSER") == "1" {
		t.Fatalf("chromium not found (neither /usr/bin/chromium nor chromium in PATH), and AUTHGATE_REQUIRE_BROWSER=1 requires the browser tests to run")
	}
	t.Skip("chromium not found: install it with `apt-get install -y chromium` to run the browser tests")
	return ""
}

// newBrowser starts Chromium for t. It resolves *.example.test to
// loopback and never talks to anything else.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	execPath := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Plain http:// sites on test hosts: no automatic https upgrade.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,HttpsUpgrades"),
		chromedp.Flag("host-resolver-rules", "MAP *.example.test 127.0.0.1, MAP example.test 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 800),
	)
	// The browser lives as long as this context: the whole test is bounded.
	tctx, cancelTest := context.WithTimeout(context.Background(), testTimeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(tctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTest()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting chromium (%s): %v", execPath, err)
	}
	b := &browser{t: t, ctx: bctx, dir: screenshotDir(t)}
	// Cookies that Chromium refuses to store are only visible here; a
	// test that finds a cookie surviving its deletion says why.
	if err := chromedp.Listen(bctx, func(ev any) {
		if ev, ok := ev.(*network.EventResponseReceivedExtraInfo); ok && len(ev.BlockedCookies) > 0 {
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, c := range ev.BlockedCookies {
				b.blocked = append(b.blocked, fmt.Sprintf("%q blocked %v (response %d, Clear-Site-Data: %v)",
					c.CookieLine, c.BlockedReasons, ev.StatusCode, headerValue(ev.Headers, "Clear-Site-Data")))
			}
		}
	}); err != nil {
		t.Fatalf("listening to the browser's network events: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b.screenshot("failure")
		}
	})
	return b
}

// screenshotDir is testartifacts/e2e/<TestName> at the repository root,
// emptied of an earlier run's files.
func screenshotDir(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(wd) // go test runs in e2e/
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found above %s: %v", wd, err)
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	dir := filepath.Join(root, "testartifacts", "e2e", name)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// run runs one step with its own deadline.
func run[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s (page %s): %v", what, b.locationOrErr(), err)
	}
	return v
}

func (b *browser) locationOrErr() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "unknown: " + err.Error()
	}
	return loc
}

// open navigates to url and returns the response of the document it ends
// on, after any redirects.
func (b *browser) open(url string) *network.Response {
	b.t.Helper()
	resp := run(b, "opening "+url, chromedp.NavigateResponse(url))
	if resp == nil {
		b.t.Fatalf("opening %s: no document response", url)
	}
	return resp
}

// clickNav clicks the element with the id and waits for the navigation it
// causes, returning the final document's response.
func (b *browser) clickNav(id string) *network.Response {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID(id)))
	if err != nil {
		b.t.Fatalf("clicking #%s (page %s): %v", id, b.locationOrErr(), err)
	}
	if resp == nil {
		b.t.Fatalf("clicking #%s: no document response", id)
	}
	return resp
}

// reload reloads the page and returns the document's response.
func (b *browser) reload() *network.Response {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Reload())
	if err != nil {
		b.t.Fatalf("reloading (page %s): %v", b.locationOrErr(), err)
	}
	if resp == nil {
		b.t.Fatalf("reloading: no document response")
	}
	return resp
}

// waitVisible waits until the element with the id is visible.
func (b *browser) waitVisible(id string) {
	b.t.Helper()
	run(b, "waiting for #"+id, chromedp.WaitVisible(chromedp.ID(id)))
}

// text is the visible text of the element with the id (waiting for it).
func (b *browser) text(id string) string {
	b.t.Helper()
	return strings.TrimSpace(run(b, "reading #"+id, chromedp.Text(chromedp.ID(id))))
}

// has reports whether the current page has an element with the id, now.
func (b *browser) has(id string) bool {
	b.t.Helper()
	return run(b, "looking for #"+id, chromedp.Evaluate[bool](fmt.Sprintf("document.getElementById(%q) !== null", id)))
}

// bodyText is the page's whole visible text.
func (b *browser) bodyText() string {
	b.t.Helper()
	return run(b, "reading the page", chromedp.Evaluate[string]("document.body.innerText"))
}

func (b *browser) location() string {
	b.t.Helper()
	return run(b, "reading the location", chromedp.Location())
}

// typeInto types value into the input with the id.
func (b *browser) typeInto(id, value string) {
	b.t.Helper()
	run(b, "typing into #"+id, chromedp.SendKeys(chromedp.ID(id), value))
}

// cookies are the browser's cookies for the given URLs.
func (b *browser) cookies(urls ...string) []*network.Cookie {
	b.t.Helper()
	res := run(b, "reading cookies", func(ctx context.Context, t *chromedp.Target) (network.GetCookiesResult, error) {
		return chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: urls})
	})
	return res.Cookies
}

// blockedCookies returns, and forgets, the Set-Cookie lines that the
// browser refused to store since the last call.
func (b *browser) blockedCookies() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.blocked
	b.blocked = nil
	return out
}

func headerValue(h network.Headers, name string) any {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return "none"
}

// screenshot writes NN-name.png of the viewport.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	b.step++
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		if b.t.Failed() || errors.Is(err, context.DeadlineExceeded) {
			b.t.Logf("screenshot %s: %v", name, err)
			return
		}
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.step, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("writing %s: %v", path, err)
	}
	b.t.Logf("screenshot %s", path)
}

// signIn fills the test provider's login form and submits it, returning
// the response of the page the browser ends on.
func (b *browser) signIn(user, password string) *network.Response {
	b.t.Helper()
	b.waitVisible("username")
	b.typeInto("username", user)
	b.typeInto("password", password)
	return b.clickNav("signin")
}

// expectLoginForm fails unless the page is the test provider's login form
// under issuer.
func (b *browser) expectLoginForm(issuer, when string) {
	b.t.Helper()
	b.waitVisible("username")
	if loc := b.location(); !strings.HasPrefix(loc, issuer+"/authorize") {
		b.t.Fatalf("%s: the login form is at %s, want the provider %s", when, loc, issuer)
	}
	if !b.has("password") || !b.has("signin") || !b.has("deny") {
		b.t.Fatalf("%s: the page at %s is not the provider's login form", when, b.location())
	}
}

// freePorts returns n distinct loopback ports that nobody listens on now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// startCaddyfile runs Caddy on the Caddyfile that tmpl makes of data (tmpl
// may also be a plain Caddyfile), with a fresh session key and the client
// secret in the environment the e2e Caddyfiles read, until the test ends.
func startCaddyfile(t *testing.T, secret, tmpl string, data map[string]any) {
	t.Helper()
	t.Setenv("AUTHGATE_E2E_KEY", randomHex(t, 32))
	t.Setenv("AUTHGATE_E2E_SECRET", secret)
	var cf bytes.Buffer
	if err := texttemplate.Must(texttemplate.New("Caddyfile").Parse(tmpl)).Execute(&cf, data); err != nil {
		t.Fatal(err)
	}
	loadCaddyfile(t, cf.String())
}

// loadCaddyfile adapts and runs a Caddyfile until the test ends.
func loadCaddyfile(t *testing.T, conf string) {
	t.Helper()
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(conf), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v\n%s", err, conf)
	}
	for _, w := range warnings {
		t.Logf("caddyfile warning: %s", w.String())
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}

// startTestIDP runs the test provider with opts until the test ends.
func startTestIDP(t *testing.T, opts testidp.Options) *testidp.Server {
	t.Helper()
	idp, err := testidp.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	return idp
}

// startSSOBackend runs the e2e backend (ssoBackend) on a loopback port
// until the test ends and returns its address.
func startSSOBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &http.Server{Handler: http.HandlerFunc(ssoBackend), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = backend.Serve(ln) }()
	t.Cleanup(func() { _ = backend.Close() })
	return ln.Addr().String()
}

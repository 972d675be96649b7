package authgate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// clockOffset moves the package clock (and the test provider's) forward
// without sleeping: tests add to it to make tokens expire.
var clockOffset atomic.Int64

func testNow() time.Time { return time.Now().Add(time.Duration(clockOffset.Load())) }

// adminPort is this test process's Caddy admin port: each process gets its
// own, so two test runs on one machine never load configs into each
// other's Caddy (caddytest's default is a fixed 2999).
var adminPort int

func TestMain(m *testing.M) {
	timeNow = testNow
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	adminPort = l.Addr().(*net.TCPAddr).Port
	l.Close()
	globalPrelude = fmt.Sprintf(globalPreludeFormat, adminPort)
	code := m.Run()
	if caddyBinaryDir != "" {
		os.RemoveAll(caddyBinaryDir)
	}
	os.Exit(code)
}

// advanceClock moves the clock forward for the rest of the test.
func advanceClock(t *testing.T, d time.Duration) {
	t.Helper()
	clockOffset.Add(int64(d))
	t.Cleanup(func() { clockOffset.Add(-int64(d)) })
}

const (
	testKey    = "test-session-key-0123456789abcdef-0123456789"
	testOldKey = "old-session-key-0123456789abcdef-0123456789!"
)

// freePort returns a loopback port nobody listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// echoed is what the backend saw of a request.
type echoed struct {
	Path    string      `json:"path"`
	Headers http.Header `json:"headers"`
}

// newBackend starts the "legacy app": it answers with the request's path
// and headers as JSON.
func newBackend(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoed{Path: r.URL.Path, Headers: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// newIDP starts the test OpenID provider with alice signing in
// automatically, for a client whose redirect URIs are given.
func newIDP(t testing.TB, opts testidp.Options, redirectURIs ...string) *testidp.Server {
	t.Helper()
	if opts.Users == nil {
		opts.Users = []testidp.User{{Username: "alice", Password: "alice", Claims: map[string]any{
			"sub": "alice-sub", "email": "alice@example.test", "name": "Alice Example",
			"preferred_username": "alice", "groups": []any{"admins", "staff"},
		}}, {Username: "bob", Password: "bob", Claims: map[string]any{
			"sub": "bob-sub", "email": "bob@other.test", "name": "Bob Other",
			"preferred_username": "bob", "groups": []any{"guests"},
		}}}
	}
	if opts.Clients == nil {
		opts.Clients = []testidp.Client{{ID: "app", Secret: "app-secret", RedirectURIs: redirectURIs}}
	}
	if opts.AutoLogin == "" {
		opts.AutoLogin = "alice"
	}
	if opts.Now == nil {
		opts.Now = testNow
	}
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

// startCaddy loads a Caddyfile into the test process's Caddy (caddytest
// runs one Caddy per process, on this process's adminPort).
func startCaddy(t testing.TB, caddyfile string) {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: adminPort})
	tester.InitServer(caddyfile, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// globalPrelude is what every test Caddyfile's global options start with
// (set in TestMain with this process's admin port).
var globalPrelude string

const globalPreludeFormat = `admin localhost:%d
	auto_https off
	persist_config off
	grace_period 1ns
`

// browser is a cookie-keeping HTTP client that navigates like a browser
// (Accept: text/html) and follows redirects, recording them.
type browser struct {
	t      testing.TB
	client *http.Client
	hops   []string
}

func newBrowser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: t}
	b.client = &http.Client{
		Jar:     jar,
		Timeout: 20 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			b.hops = append(b.hops, req.URL.String())
			if len(via) > 15 {
				return fmt.Errorf("redirect loop: %v", b.hops)
			}
			return nil
		},
	}
	return b
}

// get navigates to u; it returns the final response with its body read.
func (b *browser) get(u string, headers ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return b.do(req)
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	b.hops = nil
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// api sends a request as an API client would (no text/html), without
// following redirects.
func (b *browser) api(method, u string, headers ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// cookies returns the jar's cookies for u.
func (b *browser) cookies(u string) []*http.Cookie {
	pu, _ := url.Parse(u)
	return b.client.Jar.Cookies(pu)
}

func (b *browser) cookieHeader(u string) string {
	var parts []string
	for _, c := range b.cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// backendSaw decodes the backend's echo from a body.
func backendSaw(t testing.TB, body string) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("backend answer is not the echo: %v\n%s", err, body)
	}
	return e
}

// testSite describes one protected site of a test setup.
type testSite struct {
	port    int
	origin  string
	backend *httptest.Server
	idp     *testidp.Server
}

// setupSite starts a provider, a backend and Caddy with authgate in front
// of the backend. extraGlobal goes into the global authgate block; handler
// into the site's authgate block. setupSiteWith shapes more.
func setupSite(t *testing.T, opts testidp.Options, extraGlobal, handler string) *testSite {
	t.Helper()
	return setupSiteWith(t, siteConfig{opts: opts, global: extraGlobal, handler: handler}).testSite
}

// siteConfig describes a one-site setup whose Caddyfile the test shapes
// more freely than setupSite: provider options, other keys, Caddy
// global options, and faults installed before Caddy starts (and so before
// the background discovery).
type siteConfig struct {
	opts        testidp.Options
	keys        string // session_keys arguments; default testKey
	caddyGlobal string // extra Caddy global options (log ...)
	global      string // extra lines of the global authgate block
	provider    string // extra lines of the provider block
	handler     string // lines of the site's authgate block
	siteExtra   string // extra lines of the site block
	// proxy is the body of the reverse_proxy block. Default: header_up
	// X-Placeholder-User and X-Placeholder-Name from the placeholders.
	proxy       string
	beforeStart func(idp *testidp.Server)
}

type configuredSite struct {
	*testSite
	cfg siteConfig
}

func setupSiteWith(t *testing.T, cfg siteConfig) *configuredSite {
	t.Helper()
	port := freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := newIDP(t, cfg.opts, origin+"/oauth2/callback")
	be := newBackend(t)
	if cfg.beforeStart != nil {
		cfg.beforeStart(idp)
	}
	s := &configuredSite{testSite: &testSite{port: port, origin: origin, backend: be, idp: idp}, cfg: cfg}
	s.start(t, orDefault(cfg.keys, testKey))
	return s
}

// start (re)loads Caddy with the site, encrypting with the given keys.
func (s *configuredSite) start(t *testing.T, keys string) {
	t.Helper()
	proxy := s.cfg.proxy
	if proxy == "" {
		proxy = "header_up X-Placeholder-User {http.auth.user.id}\n\t\theader_up X-Placeholder-Name {http.auth.user.name}"
	}
	startCaddy(t, fmt.Sprintf(`{
	%s
	%s
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
			%s
		}
		%s
	}
}
%s {
	%s
	authgate {
		%s
	}
	reverse_proxy %s {
		%s
	}
}
`, globalPrelude, s.cfg.caddyGlobal, keys, s.idp.Issuer(), s.cfg.provider, s.cfg.global,
		s.origin, s.cfg.siteExtra, s.cfg.handler, s.backend.URL, proxy))
}

// startLoginAt navigates b to u (a protected page or /oauth2/start) and
// follows the redirects up to, not into, the provider's redirect back. It
// returns that callback URL; the browser holds the pending-login cookie.
func startLoginAt(t *testing.T, b *browser, u string) string {
	t.Helper()
	c := *b.client
	var callback string
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/oauth2/callback" {
			callback = req.URL.String()
			return http.ErrUseLastResponse
		}
		if len(via) > 10 {
			return fmt.Errorf("redirect loop")
		}
		return nil
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("starting a login at %s: %v", u, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if callback == "" {
		t.Fatalf("starting a login at %s: the provider did not redirect to the callback (status %d): %.300s", u, resp.StatusCode, body)
	}
	return callback
}

// login signs the browser in and returns the backend's view of the first
// request.
func (s *testSite) login(t *testing.T, b *browser) echoed {
	t.Helper()
	resp, body := b.get(s.origin + "/dashboard")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: status %d after %v\n%s", resp.StatusCode, b.hops, body)
	}
	return backendSaw(t, body)
}

// setCookieHeaders returns every Set-Cookie of a response.
func setCookieHeaders(resp *http.Response) []string { return resp.Header.Values("Set-Cookie") }

// autoPostForm finds the auto-submitted form of a page (authgate's logout
// page POSTs id_token_hint to the provider) and returns its action and
// fields, or ok=false when the page has none.
func autoPostForm(body string) (action string, fields url.Values, ok bool) {
	i := strings.Index(body, `<form method="post" action="`)
	if i < 0 {
		return "", nil, false
	}
	rest := body[i+len(`<form method="post" action="`):]
	action = html.UnescapeString(rest[:strings.IndexByte(rest, '"')])
	fields = url.Values{}
	for _, part := range strings.Split(rest, `<input type="hidden" name="`)[1:] {
		name := part[:strings.IndexByte(part, '"')]
		vi := strings.Index(part, `value="`) + len(`value="`)
		fields.Add(html.UnescapeString(name), html.UnescapeString(part[vi:vi+strings.IndexByte(part[vi:], '"')]))
	}
	return action, fields, true
}

// submitAutoPost does what a browser's script does with such a page: it
// POSTs the form and follows the redirects.
func (b *browser) submitAutoPost(body string) (*http.Response, string, bool) {
	b.t.Helper()
	action, fields, ok := autoPostForm(body)
	if !ok {
		return nil, "", false
	}
	req, err := http.NewRequest(http.MethodPost, action, strings.NewReader(fields.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	resp, respBody := b.do(req)
	return resp, respBody, true
}

// endSessionRequest returns where a logout response sends the browser at
// the provider and with what parameters: a 302 whose Location carries them
// (no ID token to hint with), or the auto-POST page (id_token_hint in the
// body).
func endSessionRequest(resp *http.Response, body string) (endpoint *url.URL, params url.Values, ok bool) {
	if action, fields, found := autoPostForm(body); found && resp.StatusCode == http.StatusOK {
		u, err := url.Parse(action)
		return u, fields, err == nil
	}
	if resp.StatusCode != http.StatusFound {
		return nil, nil, false
	}
	u, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return nil, nil, false
	}
	params = u.Query()
	u.RawQuery = ""
	return u, params, true
}

type burstResult struct {
	resp   *http.Response
	status int
	body   string
}

// burst sends n API requests with the same Cookie header at once.
func burst(t *testing.T, u, cookie string, n int) []burstResult {
	t.Helper()
	client := &http.Client{
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	out := make([]burstResult, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s?n=%d", u, i), nil)
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Cookie", cookie)
			req.Header.Set("Accept", "application/json")
			<-start
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			out[i] = burstResult{resp: resp, status: resp.StatusCode, body: string(body)}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// namedGroups returns n group names that compress poorly (hex), so that a
// session with them needs several cookies yet fits Caddy's 16 KiB
// request-header limit for n up to about 500.
func namedGroups(n int) []any {
	out := make([]any, n)
	for i := range out {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		out[i] = hex.EncodeToString(sum[:8])
	}
	return out
}

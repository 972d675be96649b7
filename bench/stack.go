package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the Caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/authgate/caddy-authgate" // the module under test
	"github.com/authgate/caddy-authgate/internal/testidp"
)

// cookieName is authgate's default session cookie name; chunks are
// cookieName_0, cookieName_1, ...
const cookieName = "_authgate"

// backendBody is what the backend answers to every request: small, so that
// the benchmark measures the proxy rather than the payload.
var backendBody = []byte("hello from the backend\n")

// stack is everything the benchmark runs in this process.
type stack struct {
	backend     *http.Server
	backendAddr string
	// identified counts, per site ("127.0.0.1:port", as Caddy sets it in
	// X-Forwarded-Host), the backend requests that carried
	// X-Forwarded-User: proof that the authgate sites' load really passed
	// authgate. Per site, because the same-bytes sites send that header
	// too. Filled in before the backend serves, read-only afterwards.
	identified map[string]*atomic.Int64

	idp      *testidp.Server
	plainURL string // http://127.0.0.1:port, reverse_proxy only
	authURL  string // http://127.0.0.1:port, authgate + reverse_proxy
	// redisURL is the authgate site whose sessions live in Redis
	// (session_store); empty when redis-server is not installed.
	redisURL string
	// sameSmallURL and sameLargeURL are the "same bytes, no authgate"
	// sites: a stock reverse_proxy that drops the Cookie header and sets
	// the identity headers authgate sends for the bench user, as static
	// values, for the small session (small and redis scenarios) and the
	// large one (empty unless the large scenario runs).
	sameSmallURL string
	sameLargeURL string
	redis        *exec.Cmd
	caddyfile    string

	// The refresh storm's provider and sites (stackConfig.storm). stormIdp
	// rotates refresh tokens and signs with ES256; its sites each build a
	// gateway of their own (settings in the site's authgate block).
	stormIdp    *testidp.Server
	stormSecret string
	stormURL    string // cookie sessions, cookie stormCookie
	// stormRedisURLs are two sites with session_store redis on one Redis,
	// each with its own gateway: two instances, as far as refreshes go.
	// Empty when redis-server is not installed.
	stormRedisURLs []string

	// The many-users provider and sites (stackConfig.users): ES256,
	// cookie sessions. Browsers log in through usersLoginURL; the load
	// goes to usersURL, a site with the same settings and a gateway (and
	// session cache) of its own, which has seen none of the sessions: as
	// when instances share session keys, any of them accepts any cookie.
	usersIdp      *testidp.Server
	usersLoginURL string
	usersURL      string

	// largeOneURL is an authgate site like authURL (same provider, keys
	// and cookie name) with a gateway of its own, for the large session on
	// one connection: sessions logged in through authURL are cached
	// there, not here, so that their first request here is a miss. Empty
	// unless stackConfig.largeOne.
	largeOneURL string

	// assertionURL is the authgate site with assertion_header, in the
	// global block's gateway like authURL (so sessions signed in there are
	// valid here), its keys in storageDir. Empty unless
	// stackConfig.assertion.
	assertionURL string
	storageDir   string
	// sameAssertionURL is the same-bytes site of the assertion site: the
	// small session's static identity headers and, from
	// AUTHGATE_BENCH_ASSERTION (read on every request, set once the real
	// assertion is known), an X-Authgate-Assertion of the same bytes.
	sameAssertionURL string
}

// Cookie names of the new scenarios' sites: browsers' cookies ignore ports.
const (
	stormCookie      = "_authgate_storm"
	stormRedisCookie = "_authgate_sr"
	usersCookie      = "_authgate_users"
)

// stackConfig says what the scenarios to run need besides the base sites.
type stackConfig struct {
	// largeGroups, when not nil, are the groups of the large-session
	// scenarios: they get a same-bytes site of their own.
	largeGroups []string
	storm       bool // the refresh-storm provider and sites
	users       bool // the many-users provider and sites
	largeOne    bool // the large session on one connection's site
	assertion   bool // the site with assertion_header
}

// startRedis runs redis-server on a loopback port, without persistence,
// when it is installed; it returns "" otherwise.
func (s *stack) startRedis() (addr string, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	s.redis = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := s.redis.Start(); err != nil {
		return "", err
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("redis-server did not listen on %s", addr)
}

// benchUser is the provider's AutoLogin account.
const benchUser = "bench"

var smallGroups = []string{"staff", "developers"}

// benchIdentity is the provider's bench user. Its claims feed the test
// provider, and the same values, as authgate sends them upstream, are the
// static headers of the same-bytes sites: one source for both.
type benchIdentity struct {
	sub, email, name, username string
	groups                     []string
}

var benchID = benchIdentity{
	sub: "bench-user-0001", email: "bench@example.test", name: "Bench User",
	username: benchUser, groups: smallGroups,
}

func (id benchIdentity) claims() map[string]any {
	return map[string]any{
		"sub": id.sub, "email": id.email, "name": id.name,
		"preferred_username": id.username, "groups": groupsClaim(id.groups),
	}
}

// groupsClaim is groups as the provider's JSON claim.
func groupsClaim(groups []string) []any {
	out := make([]any, len(groups))
	for i, g := range groups {
		out[i] = g
	}
	return out
}

// upstreamHeaders are the identity headers authgate, with its default
// settings (user from sub, default header names, groups joined by ",",
// no header for an empty value), adds to the upstream request for id. The
// echo check before each scenario verifies that this still matches what
// authgate really sends.
func (id benchIdentity) upstreamHeaders() [][2]string {
	var out [][2]string
	for _, h := range [][2]string{
		{"X-Forwarded-User", id.sub},
		{"X-Forwarded-Email", id.email},
		{"X-Forwarded-Preferred-Username", id.username},
		{"X-Forwarded-Groups", strings.Join(id.groups, ",")},
	} {
		if h[1] != "" {
			out = append(out, h)
		}
	}
	return out
}

// startStack starts the backend, the providers, Redis when installed, and
// Caddy with the sites cfg asks for.
func startStack(cfg stackConfig) (*stack, error) {
	largeGroups := cfg.largeGroups
	s := &stack{identified: map[string]*atomic.Int64{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.backendAddr = ln.Addr().String()
	site := func() (string, error) {
		port, err := freePort()
		if err != nil {
			return "", err
		}
		host := fmt.Sprintf("127.0.0.1:%d", port)
		s.identified[host] = new(atomic.Int64)
		return "http://" + host, nil
	}
	fail := func(err error) (*stack, error) {
		ln.Close()
		s.stop()
		return nil, err
	}
	if s.plainURL, err = site(); err != nil {
		return fail(err)
	}
	if s.authURL, err = site(); err != nil {
		return fail(err)
	}
	if s.sameSmallURL, err = site(); err != nil {
		return fail(err)
	}
	if largeGroups != nil {
		if s.sameLargeURL, err = site(); err != nil {
			return fail(err)
		}
	}
	redisAddr, err := s.startRedis()
	if err != nil {
		return fail(err)
	}
	redisSite := ""
	callbacks := []string{s.authURL + "/oauth2/callback"}
	if redisAddr != "" {
		if s.redisURL, err = site(); err != nil {
			return fail(err)
		}
		callbacks = append(callbacks, s.redisURL+"/oauth2/callback")
		// Its own cookie name: the browser's cookies ignore ports.
		redisSite = fmt.Sprintf(`
%s {
	authgate {
		cookie {
			name _authgate_redis
		}
		session_store redis {
			address %s
		}
	}
	reverse_proxy %s
}
`, s.redisURL, redisAddr, s.backendAddr)
	}
	var stormCallbacks, usersCallbacks []string
	if cfg.storm {
		if s.stormURL, err = site(); err != nil {
			return fail(err)
		}
		stormCallbacks = append(stormCallbacks, s.stormURL+"/oauth2/callback")
		if redisAddr != "" {
			for range 2 {
				u, err := site()
				if err != nil {
					return fail(err)
				}
				s.stormRedisURLs = append(s.stormRedisURLs, u)
				stormCallbacks = append(stormCallbacks, u+"/oauth2/callback")
			}
		}
	}
	if cfg.users {
		if s.usersLoginURL, err = site(); err != nil {
			return fail(err)
		}
		if s.usersURL, err = site(); err != nil {
			return fail(err)
		}
		usersCallbacks = append(usersCallbacks, s.usersLoginURL+"/oauth2/callback")
	}
	if cfg.largeOne {
		if s.largeOneURL, err = site(); err != nil {
			return fail(err)
		}
	}
	if cfg.assertion {
		if s.assertionURL, err = site(); err != nil {
			return fail(err)
		}
		if s.storageDir, err = os.MkdirTemp("", "authgate-bench-storage-"); err != nil {
			return fail(err)
		}
		if s.sameAssertionURL, err = site(); err != nil {
			return fail(err)
		}
	}
	sameSites, err := sameBytesSite(s.sameSmallURL, s.backendAddr, benchID)
	if err != nil {
		return fail(err)
	}
	if largeGroups != nil {
		large := benchID
		large.groups = largeGroups
		site, err := sameBytesSite(s.sameLargeURL, s.backendAddr, large)
		if err != nil {
			return fail(err)
		}
		sameSites += site
	}
	if cfg.assertion {
		site, err := sameBytesSite(s.sameAssertionURL, s.backendAddr, benchID)
		if err != nil {
			return fail(err)
		}
		sameSites += strings.Replace(site, "\t\theader_up -Cookie\n", "\t\theader_up -Cookie\n\t\theader_up X-Authgate-Assertion {env.AUTHGATE_BENCH_ASSERTION}\n", 1)
	}

	// The map is complete: from here on the backend only reads it.
	s.backend = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Forwarded-User") != "" {
				if n := s.identified[r.Header.Get("X-Forwarded-Host")]; n != nil {
					n.Add(1)
				}
			}
			if r.URL.Path == echoPath {
				writeEcho(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Content-Length", strconv.Itoa(len(backendBody)))
			_, _ = w.Write(backendBody)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	withRole("backend", func() { go func() { _ = s.backend.Serve(ln) }() })

	secret := randomHex(16)
	s.idp, err = testidp.New(testidp.Options{
		Users:     []testidp.User{{Username: benchUser, Claims: benchID.claims()}},
		Clients:   []testidp.Client{{ID: "bench", Secret: secret, RedirectURIs: callbacks}},
		AutoLogin: benchUser,
		// Long-lived tokens: a refresh during the load would be a
		// provider request on the hot path, which is not what is measured
		// (and would fail the zero-provider-requests check).
		AccessTokenTTL:  24 * time.Hour,
		RefreshTokenTTL: 48 * time.Hour,
	})
	if err != nil {
		s.stop()
		return nil, err
	}
	withRole("provider", func() { err = s.idp.Start() })
	if err != nil {
		s.stop()
		return nil, err
	}
	ownSites := ""
	if cfg.storm {
		// Rotating refresh tokens: a refresh repeated with a spent token
		// is refused (and, RFC 9700 reuse detection, revokes the grant),
		// which logs the user out; so repeats cannot go unnoticed. ES256:
		// signing is cheap, so that the logins of the setup are quick and
		// the provider's own limit is high.
		s.stormSecret = randomHex(16)
		if s.stormIdp, err = startProvider(testidp.Options{
			Clients:             []testidp.Client{{ID: "storm", Secret: s.stormSecret, RedirectURIs: stormCallbacks}},
			RotateRefreshTokens: true,
			RevokeFamilyOnReuse: true,
		}); err != nil {
			s.stop()
			return nil, err
		}
		os.Setenv("AUTHGATE_BENCH_STORM_SECRET", s.stormSecret)
		skew := fmt.Sprintf("refresh_skew %s", refreshSkew)
		ownSites += ownGatewaySite(s.stormURL, s.backendAddr, "storm", s.stormIdp.Issuer(), stormCookie, skew)
		for _, u := range s.stormRedisURLs {
			ownSites += ownGatewaySite(u, s.backendAddr, "storm", s.stormIdp.Issuer(), stormRedisCookie,
				skew+fmt.Sprintf("\n\t\tsession_store redis {\n\t\t\taddress %s\n\t\t\tkey_prefix bench-storm:\n\t\t}", redisAddr))
		}
	}
	if cfg.users {
		usersSecret := randomHex(16)
		if s.usersIdp, err = startProvider(testidp.Options{
			Clients: []testidp.Client{{ID: "users", Secret: usersSecret, RedirectURIs: usersCallbacks}},
		}); err != nil {
			s.stop()
			return nil, err
		}
		os.Setenv("AUTHGATE_BENCH_USERS_SECRET", usersSecret)
		ownSites += ownGatewaySite(s.usersLoginURL, s.backendAddr, "users", s.usersIdp.Issuer(), usersCookie, "")
		ownSites += ownGatewaySite(s.usersURL, s.backendAddr, "users", s.usersIdp.Issuer(), usersCookie, "")
	}
	if cfg.largeOne {
		// A setting of its own (the default cookie name, spelled out)
		// gives the site its own gateway; everything else is the global
		// block's, as for authURL.
		ownSites += fmt.Sprintf(`
%s {
	authgate {
		cookie {
			name %s
		}
	}
	reverse_proxy %s
}
`, s.largeOneURL, cookieName, s.backendAddr)
	}

	storage := ""
	if cfg.assertion {
		// The key that signs assertions, generated on first start.
		storage = "storage file_system " + s.storageDir
		ownSites += fmt.Sprintf(`
%s {
	authgate {
		assertion_header
	}
	reverse_proxy %s
}
`, s.assertionURL, s.backendAddr)
	}

	// Secrets through placeholders, as in production (and so authgate
	// does not warn about literal ones).
	os.Setenv("AUTHGATE_BENCH_KEY", randomHex(32))
	os.Setenv("AUTHGATE_BENCH_SECRET", secret)
	s.caddyfile = fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	log {
		level ERROR
	}
	%[5]s
	authgate {
		session_keys {env.AUTHGATE_BENCH_KEY}
		provider local {
			issuer %[1]s
			client_id bench
			client_secret {env.AUTHGATE_BENCH_SECRET}
		}
	}
}

%[2]s {
	reverse_proxy %[3]s
}

%[4]s {
	authgate
	reverse_proxy %[3]s
}
`, s.idp.Issuer(), s.plainURL, s.backendAddr, s.authURL, storage) + redisSite + ownSites + sameSites
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(s.caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("adapting the Caddyfile: %w", err)
	}
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "caddyfile warning: %s\n", w.String())
	}
	withRole("caddy", func() { err = caddy.Load(cfgJSON, true) })
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("starting Caddy: %w", err)
	}
	return s, nil
}

// startProvider starts a provider of the new scenarios: the bench user
// (AutoLogin), ES256 (cheap to sign, so that thousands of logins and
// refreshes are quick), 24-hour access tokens unless told otherwise
// (SetAccessTokenExpiry), 48-hour refresh tokens.
func startProvider(opts testidp.Options) (*testidp.Server, error) {
	opts.Users = []testidp.User{{Username: benchUser, Claims: benchID.claims()}}
	opts.AutoLogin = benchUser
	opts.SigningAlg = "ES256"
	opts.AccessTokenTTL = 24 * time.Hour
	opts.RefreshTokenTTL = 48 * time.Hour
	idp, err := testidp.New(opts)
	if err != nil {
		return nil, err
	}
	withRole("provider", func() { err = idp.Start() })
	if err != nil {
		idp.Close()
		return nil, err
	}
	return idp, nil
}

// ownGatewaySite is the Caddyfile of an authgate site with settings of its
// own: a provider (client id = provider name, secret in
// AUTHGATE_BENCH_<NAME>_SECRET), a cookie name and optionally a
// session_store block. Settings in the site's block make the handler build
// a gateway of its own (module.go, Handler.Provision): its own session
// cache, refresh de-duplication, provider client and, with a session
// store, its own Redis client. Only the session keys come from the global
// block.
func ownGatewaySite(siteURL, backend, provider, issuer, cookie, store string) string {
	if store != "" {
		store = "\t\t" + store + "\n"
	}
	return fmt.Sprintf(`
%s {
	authgate %s {
		cookie {
			name %s
		}
%s		provider %s {
			issuer %s
			client_id %s
			client_secret {env.AUTHGATE_BENCH_%s_SECRET}
		}
	}
	reverse_proxy %s
}
`, siteURL, provider, cookie, store, provider, issuer, provider, strings.ToUpper(provider), backend)
}

// sameBytesSite is the Caddyfile of a "same bytes, no authgate" site: a
// stock reverse_proxy that, like authgate, removes the session cookie
// from the upstream request (the load sends it only session cookies, so
// the whole Cookie header goes) and adds id's identity headers, static.
// Its clients send it the same Cookie header as the authgate site's.
func sameBytesSite(siteURL, backend string, id benchIdentity) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s {\n\treverse_proxy %s {\n\t\theader_up -Cookie\n", siteURL, backend)
	for _, h := range id.upstreamHeaders() {
		q, err := caddyfileQuote(h[1])
		if err != nil {
			return "", fmt.Errorf("same-bytes site, %s: %w", h[0], err)
		}
		fmt.Fprintf(&b, "\t\theader_up %s %s\n", h[0], q)
	}
	b.WriteString("\t}\n}\n")
	return b.String(), nil
}

// caddyfileQuote makes s one Caddyfile token that header_up sends byte for
// byte. Double quotes keep spaces, commas and '#' inside the token, and
// '"' is written \" (the lexer's only escape inside quotes besides a
// newline). Braces would start a placeholder, which header_up expands
// on every request: they are written \{ and \}, which Caddy's replacer
// turns back into braces. What has no faithful spelling is refused:
// control characters (authgate drops them from header values anyway), a
// backslash (the lexer keeps it, except before '"', and the replacer
// would take it as an escape before a brace), and "{$", which the
// Caddyfile parser replaces with an environment variable even when the
// brace is escaped.
func caddyfileQuote(s string) (string, error) {
	if strings.Contains(s, "{$") {
		return "", fmt.Errorf("value %.40q: {$ cannot be spelled in a Caddyfile", s)
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("value %.40q: control character %#x", s, c)
		case c == '\\':
			return "", fmt.Errorf("value %.40q: backslash", s)
		case c == '"', c == '{', c == '}':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// identifiedAt is the number of identified backend requests that came
// through siteURL.
func (s *stack) identifiedAt(siteURL string) int64 {
	if n := s.identified[strings.TrimPrefix(siteURL, "http://")]; n != nil {
		return n.Load()
	}
	return 0
}

func (s *stack) stop() {
	_ = caddy.Stop()
	if s.redis != nil && s.redis.Process != nil {
		_ = s.redis.Process.Kill()
		_, _ = s.redis.Process.Wait()
	}
	for _, idp := range []*testidp.Server{s.idp, s.stormIdp, s.usersIdp} {
		if idp != nil {
			idp.Close()
		}
	}
	if s.backend != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.backend.Shutdown(ctx)
	}
	if s.storageDir != "" {
		_ = os.RemoveAll(s.storageDir)
	}
}

// providerEndpoints are the provider's counters that any server-side
// request to it increments.
var providerEndpoints = []string{"discovery", "jwks", "authorize", "token", "userinfo", "revoke", "end_session"}

// providerRequests is the number of requests the main provider has served.
func (s *stack) providerRequests() int { return providerRequests(s.idp) }

// providerRequests is the number of requests idp has served.
func providerRequests(idp *testidp.Server) int {
	n := 0
	for _, e := range providerEndpoints {
		n += idp.Count(e)
	}
	return n
}

// session is a logged-in browser's session cookies.
type session struct {
	site   string   // the authgate site it belongs to
	header string   // "Cookie" header value: the session cookie(s) only
	names  []string // cookie names, in order
	size   int      // bytes of the cookie values together
	hops   int      // redirects the login took
}

func (s session) describe() string {
	if len(s.names) == 1 {
		return fmt.Sprintf("1 cookie %s, %d bytes; login took %d redirects", s.names[0], s.size, s.hops)
	}
	return fmt.Sprintf("%d chunk cookies %s, %d bytes together; login took %d redirects",
		len(s.names), strings.Join(s.names, ", "), s.size, s.hops)
}

// login signs in through the authgate site like a browser: it asks for a
// page, follows the redirects to the provider (which approves at once) and
// back to the callback, and lands on the backend. jar is fresh per login.
func login(rt http.RoundTripper, site string) (session, error) {
	return loginAs(rt, site, cookieName)
}

// loginAs is login for a site whose session cookie has another name.
func loginAs(rt http.RoundTripper, site, cookieName string) (session, error) {
	jar, _ := cookiejar.New(nil)
	hops := 0
	client := &http.Client{
		Transport: rt,
		Jar:       jar,
		Timeout:   20 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			hops++
			if len(via) > 10 {
				return errors.New("redirect loop")
			}
			return nil
		},
	}
	req, err := http.NewRequest(http.MethodGet, site+"/app/home", nil)
	if err != nil {
		return session{}, err
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := client.Do(req)
	if err != nil {
		return session{}, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != string(backendBody) {
		return session{}, fmt.Errorf("login ended with status %d at %s: %.200q", resp.StatusCode, resp.Request.URL, body)
	}
	if got := resp.Request.URL.String(); got != site+"/app/home" {
		return session{}, fmt.Errorf("login returned to %s, not the page asked for", got)
	}
	u, _ := url.Parse(site)
	var sess session
	var cookies []*http.Cookie
	for _, c := range jar.Cookies(u) {
		if c.Name == cookieName || isChunkName(cookieName, c.Name) {
			cookies = append(cookies, c)
		}
	}
	sort.Slice(cookies, func(i, j int) bool {
		return chunkIndex(cookieName, cookies[i].Name) < chunkIndex(cookieName, cookies[j].Name)
	})
	var parts []string
	for _, c := range cookies {
		parts = append(parts, c.Name+"="+c.Value)
		sess.names = append(sess.names, c.Name)
		sess.size += len(c.Value)
	}
	if len(parts) == 0 {
		return session{}, errors.New("login set no session cookie")
	}
	sess.header = strings.Join(parts, "; ")
	sess.hops = hops
	sess.site = site
	return sess, nil
}

func isChunkName(cookieName, n string) bool {
	rest, ok := strings.CutPrefix(n, cookieName+"_")
	if !ok {
		return false
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

func chunkIndex(cookieName, n string) int {
	i, err := strconv.Atoi(strings.TrimPrefix(n, cookieName+"_"))
	if err != nil {
		return -1
	}
	return i
}

// withRole runs f with a profiler label: goroutines it starts, and theirs,
// carry it, so that a -cpuprofile splits by role
// (go tool pprof -tagfocus role=caddy).
func withRole(role string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("role", role), func(context.Context) { f() })
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

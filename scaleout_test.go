package authgate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// This file tests several Caddy instances sharing one user base through
// Redis, with real parts only: redis-server, three Caddy processes built
// from ./cmd/caddy with authgate, and a fourth Caddy as a round-robin load
// balancer in front of them. The instances run in their own processes with
// their own clocks, so these tests wait for real time where tokens must
// near their expiry; every wait is bounded and commented.

// requireTool finds a program or skips; with AUTHGATE_REQUIRE_REDIS=1 (set
// by .ci/run) a missing program fails the test instead.
func requireTool(t *testing.T, name, env string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(env) == "1" {
			t.Fatalf("%s not found but %s=1: install it (apt-get install -y %s)", name, env, name)
		}
		t.Skipf("%s not installed (apt-get install -y %s); skipping", name, name)
	}
	return path
}

// caddyBinaryDir holds the binary built for this test process; TestMain
// removes it.
var caddyBinaryDir string

// caddyBinary builds ./cmd/caddy once per test process.
var caddyBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "authgate-caddy-")
	if err != nil {
		return "", err
	}
	caddyBinaryDir = dir
	bin := filepath.Join(dir, "caddy")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/caddy").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building caddy: %v\n%s", err, out)
	}
	return bin, nil
})

// process is a child process whose output is kept for failure messages.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
}

func startProcess(t *testing.T, name string, args ...string) *process {
	t.Helper()
	buf := new(syncBuffer)
	cmd := exec.Command(args[0], args[1:]...)
	// One buffer and one lock for both streams: exec copies each from
	// its own goroutine.
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, out: buf}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, lastLines(buf.String(), 40))
		}
	})
	return p
}

func (p *process) stop() {
	if p.cmd.Process != nil && p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_, _ = p.cmd.Process.Wait()
	}
}

// syncBuffer is a bytes.Buffer that a child's stdout and stderr may be
// written to, and read from, at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitListening waits, bounded, until something accepts on 127.0.0.1:port.
func waitListening(t *testing.T, port int, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond) // polling a child process's start-up
	}
	t.Fatalf("%s did not listen on port %d within 20 s", what, port)
}

// redisServer runs redis-server on a loopback port with an append-only
// file, so that a restart keeps the sessions.
type redisServer struct {
	t    *testing.T
	bin  string
	port int
	dir  string
	proc *process
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	rs := &redisServer{t: t, bin: requireTool(t, "redis-server", "AUTHGATE_REQUIRE_REDIS"), port: freePort(t), dir: t.TempDir()}
	rs.start()
	return rs
}

func (rs *redisServer) start() {
	rs.proc = startProcess(rs.t, "redis-server", rs.bin, "--port", fmt.Sprint(rs.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", rs.dir, "--protected-mode", "yes")
	waitListening(rs.t, rs.port, "redis-server")
}

// cluster is three authgate instances behind a round-robin balancer.
type cluster struct {
	idp       *testidp.Server
	redis     *redisServer
	origin    string // the balancer
	instances []int  // ports
	procs     []*process
}

func startCluster(t *testing.T, opts testidp.Options, skew string) *cluster {
	t.Helper()
	rs := startRedis(t)
	bin, err := caddyBinary()
	if err != nil {
		t.Fatal(err)
	}
	lb := freePort(t)
	c := &cluster{redis: rs, origin: fmt.Sprintf("http://127.0.0.1:%d", lb)}
	if opts.Clients == nil {
		opts.Clients = []testidp.Client{{ID: "app", Secret: "app-secret",
			RedirectURIs:         []string{c.origin + "/oauth2/callback"},
			BackchannelLogoutURI: c.origin + "/oauth2/backchannel-logout"}}
	}
	c.idp = newIDP(t, opts)
	be := newBackend(t)
	dir := t.TempDir()
	var upstreams []string
	for i := 0; i < 3; i++ {
		port := freePort(t)
		c.instances = append(c.instances, port)
		upstreams = append(upstreams, fmt.Sprintf("127.0.0.1:%d", port))
		conf := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	authgate {
		session_keys {env.AUTHGATE_TEST_KEY}
		refresh_skew %s
		session_store redis {
			address 127.0.0.1:%d
			key_prefix scaleout:
			timeout 1s
		}
		provider corp {
			issuer %s
			client_id app
			client_secret {env.AUTHGATE_TEST_SECRET}
			timeout 5s
		}
	}
}
http://:%d {
	bind 127.0.0.1
	header X-Instance %d
	authgate
	reverse_proxy %s {
		header_up X-Instance %d
	}
}
`, skew, rs.port, c.idp.Issuer(), port, i, strings.TrimPrefix(be.URL, "http://"), i)
		file := filepath.Join(dir, fmt.Sprintf("Caddyfile.%d", i))
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, startProcess(t, fmt.Sprintf("caddy instance %d", i), bin, "run", "--config", file, "--adapter", "caddyfile"))
	}
	lbConf := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
}
http://:%d {
	bind 127.0.0.1
	reverse_proxy %s {
		lb_policy round_robin
	}
}
`, lb, strings.Join(upstreams, " "))
	lbFile := filepath.Join(dir, "Caddyfile.lb")
	if err := os.WriteFile(lbFile, []byte(lbConf), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, "caddy balancer", bin, "run", "--config", lbFile, "--adapter", "caddyfile")
	for _, port := range append(c.instances, lb) {
		waitListening(t, port, "caddy")
	}
	return c
}

// The instances read their secrets from the environment, as production
// should; children inherit it from the test process.
func init() {
	os.Setenv("AUTHGATE_TEST_KEY", testKey)
	os.Setenv("AUTHGATE_TEST_SECRET", "app-secret")
}

// instanceTrail records which instance answered each hop of a navigation.
func instanceTrail(b *browser) *[]string {
	var trail []string
	inner := http.DefaultTransport
	b.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := inner.RoundTrip(r)
		if err == nil {
			if id := resp.Header.Get("X-Instance"); id != "" {
				trail = append(trail, r.URL.Path+"@"+id)
			}
		}
		return resp, err
	})
	return &trail
}

func TestScaleOutFlowAcrossInstances(t *testing.T) {
	c := startCluster(t, testidp.Options{RotateRefreshTokens: true, AccessTokenTTL: 6 * time.Second}, "30s")
	b := newBrowser(t)
	trail := instanceTrail(b)

	resp, body := b.get(c.origin + "/first")
	if resp.StatusCode != 200 {
		t.Fatalf("login through the balancer: %d %s", resp.StatusCode, body)
	}
	loggedIn := time.Now()
	seen := map[string]bool{}
	for _, hop := range *trail {
		seen[hop[strings.LastIndexByte(hop, '@')+1:]] = true
	}
	if len(seen) < 2 {
		t.Errorf("the login's steps all hit one instance (%v): round robin should spread them", *trail)
	}
	t.Logf("login steps by instance: %v", *trail)

	// Every instance serves the session.
	got := map[string]bool{}
	for i := 0; i < 6; i++ {
		resp, body := b.api("GET", c.origin+"/api")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		saw := backendSaw(t, body)
		if saw.Headers.Get("X-Forwarded-User") != "alice-sub" {
			t.Errorf("identity at instance %s: %q", saw.Headers.Get("X-Instance"), saw.Headers.Get("X-Forwarded-User"))
		}
		got[saw.Headers.Get("X-Instance")] = true
	}
	if len(got) != 3 {
		t.Errorf("requests reached instances %v, want all three", got)
	}

	// 20 concurrent requests at expiry over the three instances: one
	// refresh at the provider, 20 × 200, still signed in afterwards. The
	// token lives 6 s and is refreshed half its lifetime before expiry
	// (the 30 s skew is capped at that), so it needs a refresh 3 s after
	// it was issued: wait that long (instances run in other processes
	// with real clocks).
	time.Sleep(time.Until(loggedIn.Add(3200 * time.Millisecond)))
	c.idp.ResetCounts()
	for i, r := range burst(t, c.origin+"/burst", b.cookieHeader(c.origin), 20) {
		if r.status != 200 {
			t.Errorf("burst request %d: %d", i, r.status)
		}
	}
	if n := c.idp.Count("token:refresh_token"); n != 1 {
		t.Errorf("%d refreshes at the provider for 20 requests over 3 instances, want exactly 1", n)
	}
	for i := 0; i < 3; i++ {
		if resp, _ := b.api("GET", c.origin+"/after-burst"); resp.StatusCode != 200 {
			t.Errorf("after the burst: %d", resp.StatusCode)
		}
	}

	// Logout at one instance: a cookie copied before is refused by all.
	copied := b.cookieHeader(c.origin)
	if resp, body := b.api("GET", c.origin+"/oauth2/logout"); !strings.Contains(body, "id_token_hint") {
		t.Fatalf("logout: %d without the end-session form", resp.StatusCode)
	}
	// Instances trust their local copy of a session for up to 1 s.
	time.Sleep(1100 * time.Millisecond)
	thief := newBrowser(t)
	for i := 0; i < 3; i++ {
		resp, body := thief.api("GET", c.origin+"/stolen", "Cookie", copied)
		if resp.StatusCode != 401 {
			t.Errorf("copied cookie after logout, attempt %d: %d %s", i, resp.StatusCode, body)
		}
	}
}

func TestScaleOutBackchannelLogout(t *testing.T) {
	c := startCluster(t, testidp.Options{}, "30s")
	b := newBrowser(t)
	if resp, body := b.get(c.origin + "/"); resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	other := newBrowser(t) // a second session of the same user
	if resp, _ := other.get(c.origin + "/"); resp.StatusCode != 200 {
		t.Fatal("second login failed")
	}
	// The provider ends alice's sessions and notifies us.
	if n, err := c.idp.EndUserSessions("alice"); err != nil || n == 0 {
		t.Fatalf("ending sessions at the provider: %d %v", n, err)
	}
	if n := c.idp.Count("backchannel_logout"); n == 0 {
		t.Fatal("the provider sent no logout token")
	}
	time.Sleep(1100 * time.Millisecond) // local copies expire after 1 s
	for _, br := range []*browser{b, other} {
		for i := 0; i < 3; i++ {
			if resp, _ := br.api("GET", c.origin+"/api"); resp.StatusCode != 401 {
				t.Errorf("after back-channel logout: %d, want 401", resp.StatusCode)
			}
		}
	}
	t.Run("replayed or forged logout tokens are refused", func(t *testing.T) {
		claims := c.idp.LogoutTokenClaims("app", "alice-sub", "")
		typed := testidp.SignHeader("typ", "logout+jwt")
		tok := c.idp.SignJWT(claims, typed)
		post := func(token string) int {
			resp, err := http.PostForm(c.origin+"/oauth2/backchannel-logout", map[string][]string{"logout_token": {token}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if s := post(tok); s != 200 {
			t.Errorf("valid logout token: %d", s)
		}
		if s := post(tok); s != 400 {
			t.Errorf("replayed logout token: %d, want 400", s)
		}
		withNonce := c.idp.LogoutTokenClaims("app", "alice-sub", "")
		withNonce["nonce"] = "n"
		if s := post(c.idp.SignJWT(withNonce, typed)); s != 400 {
			t.Errorf("logout token with a nonce: %d, want 400", s)
		}
		noEvent := c.idp.LogoutTokenClaims("app", "alice-sub", "")
		delete(noEvent, "events")
		if s := post(c.idp.SignJWT(noEvent, typed)); s != 400 {
			t.Errorf("logout token without the event: %d, want 400", s)
		}
		if s := post(c.idp.SignJWT(c.idp.LogoutTokenClaims("app", "alice-sub", ""), testidp.SignWrongKey(), typed)); s != 400 {
			t.Errorf("logout token with a bad signature: %d, want 400", s)
		}
		otherAud := c.idp.LogoutTokenClaims("app", "alice-sub", "")
		otherAud["aud"] = "someone-else"
		if s := post(c.idp.SignJWT(otherAud, typed)); s != 400 {
			t.Errorf("logout token for another client: %d, want 400", s)
		}
	})
}

func TestScaleOutRedisOutage(t *testing.T) {
	c := startCluster(t, testidp.Options{}, "30s")
	b := newBrowser(t)
	if resp, body := b.get(c.origin + "/"); resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	c.redis.proc.stop()
	time.Sleep(1100 * time.Millisecond) // local copies expire after 1 s
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", c.origin+"/during-outage", nil)
		req.Header.Set("Cookie", b.cookieHeader(c.origin))
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err != nil {
			t.Fatalf("during outage: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "store_unavailable") {
			t.Errorf("during outage: %d %s, want 503 store_unavailable", resp.StatusCode, body)
		}
	}
	// A new login cannot complete without the store: no half-written
	// session.
	nb := newBrowser(t)
	resp, _ := nb.get(c.origin + "/new-user")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("login during outage: %d, want 503", resp.StatusCode)
	}
	for _, ck := range nb.cookies(c.origin) {
		if ck.Name == "_authgate" {
			t.Errorf("a session cookie was set during the outage")
		}
	}
	c.redis.start()
	for i := 0; i < 3; i++ {
		if resp, body := b.api("GET", c.origin+"/after-outage"); resp.StatusCode != 200 {
			t.Errorf("after Redis came back: %d %s", resp.StatusCode, body)
		}
	}
	for _, p := range c.procs {
		if strings.Contains(p.out.String(), "panic") {
			t.Errorf("%s panicked:\n%s", p.name, lastLines(p.out.String(), 20))
		}
	}
}

package authgate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// These tests run authgate against real Redis deployments on loopback:
// one server that stops and comes back under load, one with TLS (client
// certificates) and an ACL user, a master behind Sentinel that fails
// over, and a three-node Cluster. They reuse startRedis and startProcess
// of scaleout_test.go; redis-server is required in CI
// (AUTHGATE_REQUIRE_REDIS=1).

// redisSite is an in-process Caddy whose authgate keeps sessions in Redis
// under the store block given.
func redisSite(t *testing.T, opts testidp.Options, store string) *configuredSite {
	t.Helper()
	return setupSiteWith(t, siteConfig{opts: opts, global: "session_store redis {\n" + store + "\n\t\t}"})
}

// redisSiteLogged is redisSite logging JSON lines to the file returned.
func redisSiteLogged(t *testing.T, opts testidp.Options, store string) (*configuredSite, string) {
	t.Helper()
	logOpt, path := logToFile(t)
	return setupSiteWith(t, siteConfig{opts: opts, caddyGlobal: logOpt, global: "session_store redis {\n" + store + "\n\t\t}"}), path
}

// storeUser is one signed-in browser and the session cookie it was given.
type storeUser struct {
	b      *browser
	cookie string // the session cookies, as the browser sends them
}

func loginUsers(t *testing.T, s *configuredSite, n int) []*storeUser {
	t.Helper()
	users := make([]*storeUser, n)
	for i := range users {
		b := newBrowser(t)
		s.login(t, b)
		users[i] = &storeUser{b: b, cookie: sessionCookieHeader(b, s.origin)}
		if users[i].cookie == "" {
			t.Fatalf("user %d has no session cookie after login", i)
		}
	}
	return users
}

// storeAnswer is what one request of the load saw.
type storeAnswer struct {
	user, status int
	html         bool
	body         string
	setCookies   []*http.Cookie // session cookies the answer set or deleted
}

// loadUsers sends each user's session cookie perUser times, every user at
// once (one goroutine each, requests in sequence, pause apart), and
// returns every answer. Requests alternate between a browser navigation
// and an API call. Each request is bounded by the client's timeout.
func loadUsers(t *testing.T, origin string, users []*storeUser, perUser int, pause time.Duration) []storeAnswer {
	t.Helper()
	client := &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var mu sync.Mutex
	var out []storeAnswer
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perUser; k++ {
				if k > 0 {
					time.Sleep(pause) // the users' pace, bounded by perUser
				}
				html := (i+k)%2 == 0
				req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/app/%d/%d", origin, i, k), nil)
				req.Header.Set("Cookie", u.cookie)
				if html {
					req.Header.Set("Accept", "text/html,application/xhtml+xml")
				} else {
					req.Header.Set("Accept", "application/json")
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("user %d request %d: %v", i, k, err)
					return
				}
				var body strings.Builder
				_, _ = bufCopy(&body, resp)
				a := storeAnswer{user: i, status: resp.StatusCode, html: html, body: body.String()}
				for _, c := range resp.Cookies() {
					if isSessionCookieName(c.Name) {
						a.setCookies = append(a.setCookies, c)
					}
				}
				mu.Lock()
				out = append(out, a)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

func bufCopy(dst *strings.Builder, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		dst.Write(buf[:k])
		n += int64(k)
		if err != nil {
			return n, nil
		}
	}
}

// checkAnswers checks a load's answers: each status one of allowed; a 503
// is the store's, as a page to browsers and JSON to APIs; no answer sets
// or deletes a session cookie. It returns how many answers had each
// status.
func checkAnswers(t *testing.T, phase string, answers []storeAnswer, allowed ...int) map[int]int {
	t.Helper()
	counts := map[int]int{}
	bad := 0
	for _, a := range answers {
		counts[a.status]++
		ok := false
		for _, s := range allowed {
			ok = ok || a.status == s
		}
		if !ok || len(a.setCookies) > 0 {
			if bad++; bad <= 5 {
				t.Errorf("%s: user %d got %d with session Set-Cookie %v: %.200s", phase, a.user, a.status, a.setCookies, a.body)
			}
			continue
		}
		switch {
		case a.status == http.StatusServiceUnavailable && a.html:
			if !strings.Contains(a.body, "store_unavailable") || !strings.Contains(a.body, "Sessions are temporarily unavailable") {
				t.Errorf("%s: user %d's browser got a 503 without the store page: %.300s", phase, a.user, a.body)
			}
		case a.status == http.StatusServiceUnavailable:
			if !strings.Contains(a.body, `"error":"store_unavailable"`) {
				t.Errorf("%s: user %d's API call got a 503 without the store's JSON: %.300s", phase, a.user, a.body)
			}
		case a.status == http.StatusOK:
			if !strings.Contains(a.body, "alice-sub") {
				t.Errorf("%s: user %d reached the backend without identity: %.300s", phase, a.user, a.body)
			}
		}
	}
	t.Logf("%s: %d answers by status %v", phase, len(answers), counts)
	return counts
}

// servedAll sends every user's cookie twice, in passes, until one pass is
// all 200 (at most 5 passes); any answer other than 200 or a 503 of the
// store, or one that touches a cookie, fails the test.
func servedAll(t *testing.T, phase, origin string, users []*storeUser, count func(map[int]int)) {
	t.Helper()
	for pass := 1; pass <= 5; pass++ {
		c := checkAnswers(t, fmt.Sprintf("%s, pass %d", phase, pass), loadUsers(t, origin, users, 2, 0), http.StatusOK, http.StatusServiceUnavailable)
		count(c)
		if c[http.StatusOK] == 2*len(users) || t.Failed() {
			return
		}
	}
	t.Errorf("%s: users still got 503 after 5 passes", phase)
}

// postLogoutToken posts a back-channel logout token as a provider does,
// on a new connection (a kept-alive one may belong to a Caddy config that
// a test has just replaced), and returns the status.
func postLogoutToken(t *testing.T, origin, token string) int {
	t.Helper()
	c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.PostForm(origin+"/oauth2/backchannel-logout", map[string][]string{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// signedOut checks that every answer is a sign-in (401 to APIs, the
// redirect to the provider for browsers).
func signedOut(t *testing.T, answers []storeAnswer) {
	t.Helper()
	for _, a := range answers {
		if a.status != http.StatusUnauthorized && a.status != http.StatusFound {
			t.Errorf("user %d is still signed in after the logout: %d %.200s", a.user, a.status, a.body)
		}
	}
}

// sessionKeys counts the stored sessions under prefix.
func sessionKeys(t *testing.T, c redis.UniversalClient, prefix string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := 0
	count := func(ctx context.Context, node *redis.Client) error {
		it := node.Scan(ctx, 0, prefix+"session:*", 1000).Iterator()
		for it.Next(ctx) {
			n++
		}
		return it.Err()
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return count(ctx, node)
		})
	} else {
		err = count(ctx, c.(*redis.Client))
	}
	if err != nil {
		t.Fatalf("counting stored sessions: %v", err)
	}
	return n
}

func (rs *redisServer) signal(sig syscall.Signal) {
	rs.t.Helper()
	if err := rs.proc.cmd.Process.Signal(sig); err != nil {
		rs.t.Fatalf("signalling redis-server: %v", err)
	}
}

// TestRedisProdOutageUnderLoad: 50 signed-in users keep sending requests
// while Redis first hangs (SIGSTOP: connections accept, nothing answers)
// and then dies (SIGKILL) and restarts on its port from its append-only
// file. While it is away, requests that need it get 503 with the store's
// page or JSON, no answer touches a session cookie, and nothing is
// deleted; when it is back, every user is signed in with the same cookie
// and the same stored session.
func TestRedisProdOutageUnderLoad(t *testing.T) {
	const users, perUser = 50, 4
	rs := startRedis(t)
	s, logPath := redisSiteLogged(t, testidp.Options{}, fmt.Sprintf("\t\t\taddress 127.0.0.1:%d\n\t\t\ttimeout 1s", rs.port))
	failures := 0 // 503s answered, each of which logs one line
	count := func(c map[int]int) { failures += c[http.StatusServiceUnavailable] }
	all := loginUsers(t, s, users)
	check := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rs.port)})
	defer check.Close()
	if n := sessionKeys(t, check, "authgate:"); n != users {
		t.Fatalf("%d stored sessions after %d logins", n, users)
	}
	count(checkAnswers(t, "before", loadUsers(t, s.origin, all, 2, 0), http.StatusOK))

	// Redis hangs while the load runs: answers are 200 (the instance's
	// one-second local copy) or 503, never a sign-out.
	var wg sync.WaitGroup
	var during []storeAnswer
	wg.Add(1)
	go func() {
		defer wg.Done()
		during = loadUsers(t, s.origin, all, perUser, 250*time.Millisecond)
	}()
	time.Sleep(100 * time.Millisecond) // the load has begun
	rs.signal(syscall.SIGSTOP)
	wg.Wait()
	count(checkAnswers(t, "Redis hanging, under load", during, http.StatusOK, http.StatusServiceUnavailable))
	time.Sleep(1100 * time.Millisecond) // local copies expire after 1 s
	start := time.Now()
	counts := checkAnswers(t, "Redis hanging", loadUsers(t, s.origin, all, 2, 0), http.StatusServiceUnavailable)
	count(counts)
	if counts[http.StatusServiceUnavailable] != 2*users {
		t.Errorf("with Redis hanging, %d of %d answers were 503", counts[http.StatusServiceUnavailable], 2*users)
	}
	// 100 requests with a 1 s command timeout: bounded, not piled up.
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("100 requests against a hanging Redis took %v", d)
	}
	// Tokens come due meanwhile: the refresh needs the store, and waits
	// for it rather than ending the session.
	advanceClock(t, 6*time.Minute)
	count(checkAnswers(t, "Redis hanging, refresh due", loadUsers(t, s.origin, all, 1, 0), http.StatusServiceUnavailable))
	s.idp.ResetCounts()
	rs.signal(syscall.SIGCONT)
	// Every due session refreshes at once now, 50 on two cores: under the
	// race detector a command may wait past its timeout for one of the
	// pool's connections (a 503, never a sign-out); a pass later everyone
	// is served.
	servedAll(t, "Redis back from hanging", s.origin, all, count)
	if n := s.idp.Count("token:refresh_token"); n != users {
		t.Errorf("%d refreshes after the hang for %d due sessions", n, users)
	}
	if n := sessionKeys(t, check, "authgate:"); n != users {
		t.Errorf("%d stored sessions after the hang, want %d", n, users)
	}

	// Redis dies under load, then starts again on its port from its
	// append-only file.
	wg.Add(1)
	go func() {
		defer wg.Done()
		during = loadUsers(t, s.origin, all, 2*perUser, 250*time.Millisecond)
	}()
	time.Sleep(100 * time.Millisecond)
	rs.proc.stop()
	wg.Wait()
	count(checkAnswers(t, "Redis killed, under load", during, http.StatusOK, http.StatusServiceUnavailable))
	time.Sleep(1100 * time.Millisecond)
	counts = checkAnswers(t, "Redis down", loadUsers(t, s.origin, all, 2, 0), http.StatusServiceUnavailable)
	count(counts)
	if counts[http.StatusServiceUnavailable] != 2*users {
		t.Errorf("with Redis down, %d of %d answers were 503", counts[http.StatusServiceUnavailable], 2*users)
	}
	// A provider's back-channel logout cannot be done now: 503, so that
	// the provider retries, and nothing recorded.
	lt := s.idp.SignJWT(s.idp.LogoutTokenClaims("app", "alice-sub", ""), testidp.SignHeader("typ", "logout+jwt"))
	post := func() int { return postLogoutToken(t, s.origin, lt) }
	if st := post(); st != http.StatusServiceUnavailable {
		t.Errorf("back-channel logout with Redis down: %d, want 503", st)
	}
	failures++
	rs.start()
	// go-redis, having failed to dial, probes once a second before it
	// dials again: a second or so of 503s more, then everyone is back.
	back := time.Now()
	waitFor(t, 10*time.Second, "authgate uses Redis again", func() bool {
		resp, _ := rawRequest(t, s.origin+"/probe", all[0].cookie, false)
		if resp.StatusCode == http.StatusServiceUnavailable {
			failures++
		}
		return resp.StatusCode == http.StatusOK
	})
	t.Logf("Redis answered authgate again %v after its restart", time.Since(back).Round(10*time.Millisecond))
	servedAll(t, "Redis restarted", s.origin, all, count)
	if n := sessionKeys(t, check, "authgate:"); n != users {
		t.Errorf("%d stored sessions after the restart, want %d", n, users)
	}
	for i, u := range all {
		if got := sessionCookieHeader(u.b, s.origin); got != u.cookie {
			t.Errorf("user %d's session cookie changed during the outage", i)
		}
	}
	// One log line for each 503, with the reason.
	lines := logged(t, logPath, "session store failure")
	reasons := map[string]int{}
	for _, l := range lines {
		e, _ := l["error"].(string)
		reasons[e[:strings.Index(e+":", ":")]]++
	}
	t.Logf("store failures by operation: %v", reasons)
	if len(lines) != failures {
		t.Errorf("%d log lines \"session store failure\" for %d answers 503", len(lines), failures)
	}
	for _, l := range lines {
		if e, _ := l["error"].(string); !strings.Contains(e, "session store unavailable") {
			t.Errorf("a store failure logged without its reason: %v", l)
			break
		}
	}
	t.Logf("%d answers 503 in all, each logged once; e.g. %v", failures, lines[len(lines)-1]["error"])

	// The indexes came back too: the provider's retry of the logout
	// ends every session of alice.
	if st := post(); st != http.StatusOK {
		t.Fatalf("back-channel logout after the restart: %d, want 200", st)
	}
	time.Sleep(1100 * time.Millisecond)
	signedOut(t, loadUsers(t, s.origin, all, 1, 0))
}

// testPKI is a throwaway CA with a server certificate for redis.test
// (and no IP address: the client must be told the name) and a client
// certificate.
type testPKI struct {
	dir                                   string
	ca, serverCert, serverKey, clientCert string
	clientKey, otherCA                    string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{dir: dir}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	serial := int64(1)
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		k := newKey()
		serial++
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, k, der
	}
	caCert, caKey, caDER := newCA("authgate test CA")
	p.ca = write("ca.pem", "CERTIFICATE", caDER)
	_, _, otherDER := newCA("another CA")
	p.otherCA = write("other-ca.pem", "CERTIFICATE", otherDER)
	leaf := func(name string, usage x509.ExtKeyUsage, dns []string) (string, string) {
		k := newKey()
		serial++
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: dns}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "PRIVATE KEY", keyDER(k))
	}
	p.serverCert, p.serverKey = leaf("server", x509.ExtKeyUsageServerAuth, []string{"redis.test"})
	p.clientCert, p.clientKey = leaf("client", x509.ExtKeyUsageClientAuth, nil)
	return p
}

// startRedisConf runs redis-server with a config file of lines on a free
// port; the port is returned.
func startRedisConf(t *testing.T, name string, lines ...string) (int, *process) {
	t.Helper()
	bin := requireTool(t, "redis-server", "AUTHGATE_REQUIRE_REDIS")
	port := freePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "redis.conf")
	body := fmt.Sprintf("bind 127.0.0.1\nprotected-mode yes\nsave \"\"\nappendonly no\ndir %s\n", dir)
	body += strings.ReplaceAll(strings.Join(lines, "\n"), "PORT", fmt.Sprint(port)) + "\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{bin, conf}
	if strings.Contains(body, "\nsentinel monitor") {
		args = append(args, "--sentinel")
	}
	p := startProcess(t, name, args...)
	waitListening(t, port, name)
	return port, p
}

// TestRedisProdTLSAndACL: Redis takes only TLS with a client certificate
// and only the ACL user authgate, whose password comes from a file and
// whose name from the environment. authgate connects with the CA, the
// client certificate and the server name it is told; with a wrong
// password, a wrong CA or no client certificate it answers 503 (never a
// sign-out), and with the right settings again the same session works.
func TestRedisProdTLSAndACL(t *testing.T) {
	pki := newTestPKI(t)
	pwFile := filepath.Join(pki.dir, "redis-password")
	if err := os.WriteFile(pwFile, []byte("s3cret-redis-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AUTHGATE_TEST_REDIS_USER", "authgate")
	port, _ := startRedisConf(t, "redis-server (TLS)",
		"port 0", "tls-port PORT",
		"tls-cert-file "+pki.serverCert, "tls-key-file "+pki.serverKey,
		"tls-ca-cert-file "+pki.ca, "tls-auth-clients yes",
		"user default off",
		"user authgate on >s3cret-redis-pw ~authgate:* &* +@all -@dangerous")
	store := func(password, ca string, clientCert bool) string {
		conf := fmt.Sprintf(`			address 127.0.0.1:%d
			username {env.AUTHGATE_TEST_REDIS_USER}
			password %s
			timeout 500ms
			tls {
				ca_file %s
				server_name redis.test
`, port, password, ca)
		if clientCert {
			conf += fmt.Sprintf("\t\t\t\tcert_file %s\n\t\t\t\tkey_file %s\n", pki.clientCert, pki.clientKey)
		}
		return conf + "\t\t\t}"
	}
	good := store("{file."+pwFile+"}", pki.ca, true)
	s := redisSite(t, testidp.Options{}, good)
	users := loginUsers(t, s, 3)
	checkAnswers(t, "TLS and ACL", loadUsers(t, s.origin, users, 2, 0), http.StatusOK)

	// The session is in Redis, under the ACL's key pattern.
	tc := &tls.Config{ServerName: "redis.test", RootCAs: x509.NewCertPool()}
	caPEM, _ := os.ReadFile(pki.ca)
	tc.RootCAs.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(pki.clientCert, pki.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	tc.Certificates = []tls.Certificate{cert}
	check := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), Username: "authgate", Password: "s3cret-redis-pw", TLSConfig: tc})
	defer check.Close()
	if n := sessionKeys(t, check, "authgate:"); n != len(users) {
		t.Errorf("%d stored sessions, want %d", n, len(users))
	}

	wrongPW := filepath.Join(pki.dir, "wrong-password")
	if err := os.WriteFile(wrongPW, []byte("not-it"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ name, conf string }{
		{"wrong password", store("{file."+wrongPW+"}", pki.ca, true)},
		{"server signed by another CA", store("{file."+pwFile+"}", pki.otherCA, true)},
		{"no client certificate", store("{file."+pwFile+"}", pki.ca, false)},
	} {
		t.Run(bad.name, func(t *testing.T) {
			s.cfg.global = "session_store redis {\n" + bad.conf + "\n\t\t}"
			s.start(t, testKey)
			checkAnswers(t, bad.name, loadUsers(t, s.origin, users, 1, 0), http.StatusServiceUnavailable)
		})
	}
	s.cfg.global = "session_store redis {\n" + good + "\n\t\t}"
	s.start(t, testKey)
	checkAnswers(t, "right settings again", loadUsers(t, s.origin, users, 2, 0), http.StatusOK)
	if n := sessionKeys(t, check, "authgate:"); n != len(users) {
		t.Errorf("%d stored sessions after the failures, want %d", n, len(users))
	}
}

// TestRedisProdConfig: settings that cannot work are refused when Caddy
// loads them, with the option named; placeholders resolve.
func TestRedisProdConfig(t *testing.T) {
	t.Setenv("AUTHGATE_TEST_REDIS_PW", "from-env")
	t.Setenv("AUTHGATE_TEST_REDIS_ADDR", "10.1.2.3:6380")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := redisOptions(StoreConfig{Address: "{env.AUTHGATE_TEST_REDIS_ADDR}", Password: "{env.AUTHGATE_TEST_REDIS_PW}"}, zap.NewNop())
	if err != nil || opts.Password != "from-env" || opts.Addrs[0] != "10.1.2.3:6380" || opts.TLSConfig != nil {
		t.Errorf("env placeholders: %+v %v", opts, err)
	}
	opts, err = redisOptions(StoreConfig{Sentinel: &StoreSentinel{MasterName: "m", Addresses: []string{"h:1", "h:2"}, Password: "{file." + pw + "}"}}, zap.NewNop())
	if err != nil || opts.SentinelPassword != "from-file" || opts.MasterName != "m" || len(opts.Addrs) != 2 {
		t.Errorf("sentinel with a file placeholder: %+v %v", opts, err)
	}
	if _, ok := redis.NewUniversalClient(opts).(*redis.Client); !ok {
		t.Errorf("a sentinel setting makes no failover client")
	}
	for _, tc := range []struct {
		name string
		cfg  StoreConfig
		want string
	}{
		{"unset variable", StoreConfig{Password: "{env.AUTHGATE_TEST_UNSET_VAR}"}, "password"},
		{"missing file", StoreConfig{Password: "{file./nonexistent/pw}"}, "password"},
		{"two places", StoreConfig{Address: "h:1", Cluster: []string{"h:2"}}, "one of address, sentinel and cluster"},
		{"sentinel without master", StoreConfig{Sentinel: &StoreSentinel{Addresses: []string{"h:1"}}}, "master"},
		{"cluster db", StoreConfig{Cluster: []string{"h:1"}, DB: 2}, "database 0"},
		{"no port", StoreConfig{Address: "redis.internal"}, "host:port"},
		{"missing CA", StoreConfig{TLSCAFile: "/nonexistent/ca.pem"}, "ca_file"},
		{"cert without key", StoreConfig{TLSCertFile: pw}, "cert_file and key_file"},
	} {
		if _, err := redisOptions(tc.cfg, zap.NewNop()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
	global := func(body string) string {
		return "{\n\tauthgate {\n\t\tsession_keys {env.K}\n\t\tsession_store redis {\n" + body + "\n\t\t}\n\t}\n}\nexample.com {\n\trespond ok\n}\n"
	}
	for _, tc := range []struct{ input, want string }{
		{"address a:1\ncluster b:1 c:1", "one of address, sentinel and cluster"},
		{"sentinel mymaster", "master's name and one or more Sentinel addresses"},
		{"sentinel_password {env.P}", "need sentinel"},
		{"cluster", "one or more node addresses"},
		{"tls {\n cert_file a.pem\n}", "cert_file and key_file go together"},
		{"tls {\n ca_file a.pem\n ca_file b.pem\n}", "ca_file may be given only once"},
		{"tls {\n verify off\n}", "unrecognized session_store tls subdirective verify"},
	} {
		_, _, err := adaptCaddyfile(global(tc.input))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.input, err, tc.want)
		}
	}
}

// adaptCaddyfile adapts src to JSON.
func adaptCaddyfile(src string) ([]byte, []caddyconfig.Warning, error) {
	return caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
}

// redisCLI runs redis-cli with args and returns its output.
func redisCLI(t *testing.T, args ...string) string {
	t.Helper()
	bin := requireTool(t, "redis-cli", "AUTHGATE_REQUIRE_REDIS")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// waitFor polls cond every 100 ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within %v", what, limit)
}

// TestRedisProdSentinel: the store finds the master through a Sentinel
// that wants a password, and follows a failover to the replica: the
// users signed in before it are signed in after it, with the same
// cookies, and new sessions are written to the new master.
func TestRedisProdSentinel(t *testing.T) {
	master, _ := startRedisConf(t, "redis master", "port PORT")
	replica, _ := startRedisConf(t, "redis replica", "port PORT", fmt.Sprintf("replicaof 127.0.0.1 %d", master))
	sentinel, _ := startRedisConf(t, "redis-sentinel", "port PORT", "requirepass sentinel-pw",
		fmt.Sprintf("sentinel monitor authgate 127.0.0.1 %d 1", master),
		"sentinel down-after-milliseconds authgate 1000", "sentinel failover-timeout authgate 10000")
	t.Setenv("AUTHGATE_TEST_SENTINEL_PW", "sentinel-pw")
	s := redisSite(t, testidp.Options{}, fmt.Sprintf("\t\t\tsentinel authgate 127.0.0.1:%d\n\t\t\tsentinel_password {env.AUTHGATE_TEST_SENTINEL_PW}\n\t\t\ttimeout 500ms", sentinel))
	users := loginUsers(t, s, 5)
	checkAnswers(t, "through Sentinel", loadUsers(t, s.origin, users, 2, 0), http.StatusOK)
	sp := fmt.Sprint(sentinel)
	// The Sentinel learns of the replica from the master's INFO.
	waitFor(t, 30*time.Second, "the Sentinel sees the replica in sync", func() bool {
		out := redisCLI(t, "-p", sp, "-a", "sentinel-pw", "--no-auth-warning", "sentinel", "replicas", "authgate")
		return strings.Contains(out, fmt.Sprint(replica)) && !strings.Contains(out, "disconnected") &&
			strings.Contains(redisCLI(t, "-p", fmt.Sprint(replica), "info", "replication"), "master_link_status:up")
	})
	redisCLI(t, "-p", sp, "-a", "sentinel-pw", "--no-auth-warning", "sentinel", "failover", "authgate")
	waitFor(t, 30*time.Second, "the replica becomes master", func() bool {
		return strings.Contains(redisCLI(t, "-p", sp, "-a", "sentinel-pw", "--no-auth-warning", "sentinel", "get-master-addr-by-name", "authgate"), fmt.Sprint(replica)) &&
			strings.Contains(redisCLI(t, "-p", fmt.Sprint(replica), "info", "replication"), "role:master")
	})
	// Until the client has moved, answers may be 503 (never a sign-out);
	// then 200 for everyone.
	waitFor(t, 20*time.Second, "every user served after the failover", func() bool {
		c := checkAnswers(t, "failing over", loadUsers(t, s.origin, users, 1, 0), http.StatusOK, http.StatusServiceUnavailable)
		return c[http.StatusOK] == len(users)
	})
	for i, u := range users {
		if got := sessionCookieHeader(u.b, s.origin); got != u.cookie {
			t.Errorf("user %d's session cookie changed in the failover", i)
		}
	}
	more := loginUsers(t, s, 2)
	checkAnswers(t, "new sessions after the failover", loadUsers(t, s.origin, more, 1, 0), http.StatusOK)
	check := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", replica)})
	defer check.Close()
	if n := sessionKeys(t, check, "authgate:"); n != len(users)+len(more) {
		t.Errorf("the new master holds %d sessions, want %d", n, len(users)+len(more))
	}
}

// TestRedisProdCluster: a three-node Redis Cluster, where a session, its
// refresh lock and its logout indexes hash to different slots (and
// nodes): login, refresh and back-channel logout all work.
func TestRedisProdCluster(t *testing.T) {
	var nodes []string
	for i := 0; i < 3; i++ {
		port, _ := startRedisConf(t, fmt.Sprintf("redis cluster node %d", i), "port PORT",
			"cluster-enabled yes", "cluster-config-file nodes-PORT.conf", "cluster-node-timeout 2000")
		nodes = append(nodes, fmt.Sprintf("127.0.0.1:%d", port))
	}
	redisCLI(t, append(append([]string{"--cluster", "create"}, nodes...), "--cluster-replicas", "0", "--cluster-yes")...)
	host, port, _ := net.SplitHostPort(nodes[0])
	waitFor(t, 20*time.Second, "the cluster is ok", func() bool {
		return strings.Contains(redisCLI(t, "-h", host, "-p", port, "cluster", "info"), "cluster_state:ok")
	})
	s := redisSite(t, testidp.Options{}, fmt.Sprintf("\t\t\tcluster %s %s\n\t\t\ttimeout 1s", nodes[0], nodes[1]))
	users := loginUsers(t, s, 6)
	checkAnswers(t, "cluster", loadUsers(t, s.origin, users, 2, 0), http.StatusOK)
	check := redis.NewClusterClient(&redis.ClusterOptions{Addrs: nodes})
	defer check.Close()
	if n := sessionKeys(t, check, "authgate:"); n != len(users) {
		t.Errorf("%d stored sessions in the cluster, want %d", n, len(users))
	}
	// Every node holds some of authgate's keys: sessions and indexes
	// really are spread.
	for _, n := range nodes {
		h, p, _ := net.SplitHostPort(n)
		if out := redisCLI(t, "-h", h, "-p", p, "--scan", "--pattern", "authgate:*"); strings.TrimSpace(out) == "" {
			t.Errorf("node %s holds none of authgate's keys", n)
		}
	}
	// Tokens come due: refreshes take the lock and swap the session.
	s.idp.ResetCounts()
	advanceClock(t, 6*time.Minute)
	checkAnswers(t, "cluster refresh", loadUsers(t, s.origin, users, 1, 0), http.StatusOK)
	if n := s.idp.Count("token:refresh_token"); n != len(users) {
		t.Errorf("%d refreshes for %d due sessions", n, len(users))
	}
	lt := s.idp.SignJWT(s.idp.LogoutTokenClaims("app", "alice-sub", ""), testidp.SignHeader("typ", "logout+jwt"))
	if st := postLogoutToken(t, s.origin, lt); st != http.StatusOK {
		t.Fatalf("back-channel logout in a cluster: %d", st)
	}
	time.Sleep(1100 * time.Millisecond) // local copies expire after 1 s
	signedOut(t, loadUsers(t, s.origin, users, 1, 0))
	if n := sessionKeys(t, check, "authgate:"); n != 0 {
		t.Errorf("%d stored sessions left after the back-channel logout", n)
	}
}

// slowRefreshIDP is the test provider behind a handler that, when armed,
// lets a refresh grant be processed (the provider rotates the refresh
// token) and then holds its answer until released: a provider answer in
// flight while Redis goes away.
type slowRefreshIDP struct {
	*testidp.Server
	mu       sync.Mutex
	answered chan struct{} // closed when a held refresh was processed
	release  chan struct{} // closed to send it
}

func newSlowRefreshIDP(t *testing.T, origin string) *slowRefreshIDP {
	t.Helper()
	idp, err := testidp.New(testidp.Options{
		Users: []testidp.User{{Username: "alice", Password: "alice", Claims: map[string]any{
			"sub": "alice-sub", "email": "alice@example.test", "name": "Alice Example"}}},
		Clients:             []testidp.Client{{ID: "app", Secret: "app-secret", RedirectURIs: []string{origin + "/oauth2/callback"}}},
		AutoLogin:           "alice",
		Now:                 testNow,
		RotateRefreshTokens: true,
		RevokeFamilyOnReuse: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	sp := &slowRefreshIDP{Server: idp}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sp.mu.Lock()
		answered, release := sp.answered, sp.release
		sp.mu.Unlock()
		if r.URL.Path != testidp.PathToken || answered == nil {
			idp.ServeHTTP(w, r)
			return
		}
		_ = r.ParseForm()
		if r.PostForm.Get("grant_type") != "refresh_token" {
			idp.ServeHTTP(w, r)
			return
		}
		r.Body = io.NopCloser(strings.NewReader(r.PostForm.Encode()))
		rec := httptest.NewRecorder()
		idp.ServeHTTP(rec, r)
		sp.mu.Lock()
		sp.answered, sp.release = nil, nil
		sp.mu.Unlock()
		close(answered)
		select {
		case <-release:
		case <-time.After(10 * time.Second): // bounded, whatever the test does
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	idp.SetIssuer(srv.URL)
	return sp
}

// hold arms the next refresh grant: it returns a channel closed once the
// provider has processed it, and the function that sends the answer.
func (sp *slowRefreshIDP) hold() (answered <-chan struct{}, release func()) {
	a, r := make(chan struct{}), make(chan struct{})
	sp.mu.Lock()
	sp.answered, sp.release = a, r
	sp.mu.Unlock()
	return a, func() { close(r) }
}

// TestRedisProdRefreshSpentDuringOutage: a rotating provider answers a
// refresh (spending the old refresh token) just as Redis goes away, so
// the new tokens cannot be stored. The request gets 503; when Redis is
// back, the instance writes the refreshed session it kept instead of
// spending the old, now refused, refresh token again: the user stays
// signed in, with one refresh at the provider in all.
func TestRedisProdRefreshSpentDuringOutage(t *testing.T) {
	rs := startRedis(t)
	port := freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := newSlowRefreshIDP(t, origin)
	s := &configuredSite{
		testSite: &testSite{port: port, origin: origin, backend: newBackend(t), idp: idp.Server},
		cfg:      siteConfig{global: fmt.Sprintf("session_store redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t\ttimeout 1s\n\t\t}", rs.port)},
	}
	s.start(t, testKey)
	u := loginUsers(t, s, 1)[0]

	advanceClock(t, 6*time.Minute) // the access token is due
	idp.ResetCounts()
	answered, release := idp.hold()
	done := make(chan storeAnswer, 1)
	go func() { done <- loadUsers(t, s.origin, []*storeUser{u}, 1, 0)[0] }()
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("the due session was not refreshed")
	}
	rs.proc.stop() // the provider has rotated the token; Redis is gone
	release()
	checkAnswers(t, "refresh answered with Redis gone", []storeAnswer{<-done}, http.StatusServiceUnavailable)

	rs.start()
	var last storeAnswer
	waitFor(t, 10*time.Second, "the user is served again", func() bool {
		last = loadUsers(t, s.origin, []*storeUser{u}, 1, 0)[0]
		checkAnswers(t, "Redis back", []storeAnswer{last}, http.StatusOK, http.StatusServiceUnavailable)
		return last.status == http.StatusOK || t.Failed()
	})
	if n := idp.Count("token:refresh_token"); n != 1 {
		t.Errorf("%d refreshes at the provider, want 1 (the kept answer written, not the spent token used again)", n)
	}
	checkAnswers(t, "afterwards", loadUsers(t, s.origin, []*storeUser{u}, 3, 0), http.StatusOK)
}

// TestRedisProdBackchannelLogoutRetried: a back-channel logout that fails
// part-way in Redis (here its ACL user may not delete: a failure after the
// token's jti could be recorded) answers 503, and the provider's retry of
// the same token, once Redis is whole again, ends the sessions: a failed
// attempt does not make the retry a "replay".
func TestRedisProdBackchannelLogoutRetried(t *testing.T) {
	port, _ := startRedisConf(t, "redis-server (ACL)", "port PORT", "user default off",
		"user authgate on >full-pw ~* &* +@all",
		"user nodelete on >nodelete-pw ~* &* +@all -del -srem -unlink -eval -evalsha")
	store := func(user, pw string) string {
		return fmt.Sprintf("session_store redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t\tusername %s\n\t\t\tpassword %s\n\t\t\ttimeout 500ms\n\t\t}", port, user, pw)
	}
	s := setupSiteWith(t, siteConfig{global: store("authgate", "full-pw")})
	users := loginUsers(t, s, 3)
	lt := s.idp.SignJWT(s.idp.LogoutTokenClaims("app", "alice-sub", ""), testidp.SignHeader("typ", "logout+jwt"))
	post := func() int { return postLogoutToken(t, s.origin, lt) }
	s.cfg.global = store("nodelete", "nodelete-pw")
	s.start(t, testKey)
	if st := post(); st != http.StatusServiceUnavailable {
		t.Fatalf("back-channel logout that cannot delete: %d, want 503", st)
	}
	checkAnswers(t, "after the failed logout", loadUsers(t, s.origin, users, 1, 0), http.StatusOK)
	s.cfg.global = store("authgate", "full-pw")
	s.start(t, testKey)
	if st := post(); st != http.StatusOK {
		t.Fatalf("the provider's retry of the logout token: %d, want 200", st)
	}
	time.Sleep(1100 * time.Millisecond) // local copies expire after 1 s
	signedOut(t, loadUsers(t, s.origin, users, 1, 0))
	if st := post(); st != http.StatusBadRequest {
		t.Errorf("the same token a third time: %d, want 400 (a replay)", st)
	}
}

// TestRedisProdLogoutDuringOutage: signing out while Redis is down cannot
// end the stored session, so it answers 503 with the store's page and
// keeps the cookie (clearing it would leave the session alive for any
// copy of the cookie, with no way left to end it); once Redis is back the
// same sign-out works and ends the session everywhere.
func TestRedisProdLogoutDuringOutage(t *testing.T) {
	rs := startRedis(t)
	s := redisSite(t, testidp.Options{}, fmt.Sprintf("\t\t\taddress 127.0.0.1:%d\n\t\t\ttimeout 1s", rs.port))
	u := loginUsers(t, s, 1)[0]
	rs.proc.stop()
	time.Sleep(1100 * time.Millisecond) // local copies expire after 1 s
	resp, body := rawRequest(t, s.origin+"/oauth2/logout", u.cookie, true)
	assertHTMLError(t, resp, body, http.StatusServiceUnavailable, "store_unavailable")
	if !strings.Contains(body, "not signed out yet") {
		t.Errorf("the logout page does not say the user is still signed in: %.300s", body)
	}
	for _, c := range resp.Cookies() {
		if isSessionCookieName(c.Name) {
			t.Errorf("logout with Redis down touched session cookie %s (Max-Age %d)", c.Name, c.MaxAge)
		}
	}
	rs.start()
	waitFor(t, 10*time.Second, "authgate uses Redis again", func() bool {
		resp, _ := rawRequest(t, s.origin+"/probe", u.cookie, false)
		return resp.StatusCode == http.StatusOK
	})
	resp, _ = rawRequest(t, s.origin+"/oauth2/logout", u.cookie, true)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusFound {
		t.Fatalf("logout with Redis back: %d", resp.StatusCode)
	}
	if !expiredCookieNames(resp)["_authgate"] {
		t.Errorf("logout with Redis back did not clear the session cookie")
	}
	check := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rs.port)})
	defer check.Close()
	if n := sessionKeys(t, check, "authgate:"); n != 0 {
		t.Errorf("%d stored sessions after the logout", n)
	}
	if resp, body := rawRequest(t, s.origin+"/api", u.cookie, false); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a copy of the cookie after the logout: %d %.200s", resp.StatusCode, body)
	}
}

package authgate

// Cookie tossing: a sibling subdomain plants a cookie of the session's
// name (Domain=.example.com, a longer Path) that the browser sends first.
// On https sites without a cookie domain the cookies carry the __Host-
// prefix, which nobody but the host can set; with a domain, duplicated
// session cookies are each tried on their own.

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// tossSite is a protected site served by Caddy over https (internal
// certificates, loopback) or plain http.
type tossSite struct {
	origin  string
	idp     *testidp.Server
	logPath string
}

// startTossSite starts Caddy with one authgate site; global goes into the
// global authgate block.
func startTossSite(t *testing.T, https bool, global string) *tossSite {
	t.Helper()
	port := freePort(t)
	scheme, tlsLine, autoHTTPS := "http", "", "auto_https off"
	if https {
		scheme, tlsLine, autoHTTPS = "https", "tls internal", "auto_https disable_redirects\n\tlocal_certs\n\tskip_install_trust"
	}
	origin := fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
	idp := newIDP(t, testidp.Options{}, origin+"/oauth2/callback")
	be := newBackend(t)
	logOpt, logPath := logToFile(t)
	startCaddy(t, fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	grace_period 1ns
	%s
	storage file_system %s
	%s
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
		}
		%s
	}
}
%s {
	%s
	authgate
	reverse_proxy %s
}
`, adminPort, autoHTTPS, t.TempDir(), logOpt, testKey, idp.Issuer(), global, origin, tlsLine, be.URL))
	s := &tossSite{origin: origin, idp: idp, logPath: logPath}
	if https {
		s.waitForTLS(t)
	}
	return s
}

// tlsTransport trusts Caddy's internal certificate: the test talks to
// loopback only.
var tlsTransport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}

// waitForTLS waits (bounded) until Caddy serves its internal certificate.
func (s *tossSite) waitForTLS(t *testing.T) {
	t.Helper()
	c := &http.Client{Transport: tlsTransport, Timeout: 2 * time.Second}
	var err error
	for range 50 {
		var resp *http.Response
		if resp, err = c.Get(s.origin + "/oauth2/health"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the https site did not come up: %v", err)
}

// tossBrowser is a browser that records every Set-Cookie it receives and
// trusts the site's certificate.
func tossBrowser(t *testing.T, into *[]string) *browser {
	b := newBrowser(t)
	b.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := tlsTransport.RoundTrip(r)
		if err == nil {
			*into = append(*into, resp.Header.Values("Set-Cookie")...)
		}
		return resp, err
	})
	return b
}

// tossRequest is one API request with exactly the Cookie header given.
func tossRequest(t *testing.T, u, cookie string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	c := &http.Client{Transport: tlsTransport, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// userOf is the user the backend saw, or "" when the request did not pass.
func userOf(t *testing.T, resp *http.Response, body string) string {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return backendSaw(t, body).Headers.Get("X-Forwarded-User")
}

// tossCodec seals and opens cookies with the test's session key.
func tossCodec(t *testing.T) *cookieCodec {
	t.Helper()
	c, err := newCookieCodec([]string{testKey}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tossSession is a session of user for the site's provider, bound to
// issuer (its fingerprint is recorded) and client app; groups make it
// large enough for chunks.
func tossSession(user, issuer string, groups int) *Session {
	now := timeNow().Unix()
	gs := make([]any, groups)
	for i := range gs {
		gs[i] = fmt.Sprintf("group-%04d-%s", i, randomString(24))
	}
	return &Session{
		Version: sessionVersion, ID: randomString(16), Provider: "corp", Created: now, Expiry: now + 3600,
		Claims: map[string]any{"sub": user, "email": user + "@example.test", "groups": gs},
		Issuer: bindingPrint(issuer), ClientID: bindingPrint("app"),
	}
}

// tossCookies is the Cookie header parts of s sealed under name: one
// cookie or chunks, as authgate writes them.
func tossCookies(t *testing.T, name string, s *Session) []string {
	t.Helper()
	value, err := tossCodec(t).encode(name, s)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := splitValue(cookieSettings{Name: name, Path: "/"}, value)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) == 1 {
		return []string{name + "=" + parts[0]}
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = chunkName(name, i) + "=" + p
	}
	return out
}

func joinCookies(sets ...[]string) string {
	var all []string
	for _, s := range sets {
		all = append(all, s...)
	}
	return strings.Join(all, "; ")
}

// setCookieNamed finds the Set-Cookie header of name among headers.
func setCookieNamed(headers []string, name string) (string, bool) {
	for _, h := range headers {
		if strings.HasPrefix(h, name+"=") {
			return h, true
		}
	}
	return "", false
}

// TestCookieTossHostPrefix: on an https site without a cookie domain the
// session cookie and the pending-login cookie are __Host- cookies (Path=/,
// Secure, no Domain), the browser stays signed in with them, and a cookie
// planted under the unprefixed name does not shadow the session.
func TestCookieTossHostPrefix(t *testing.T) {
	s := startTossSite(t, true, "")
	var seen []string
	b := tossBrowser(t, &seen)
	resp, body := b.get(s.origin + "/dashboard")
	if user := userOf(t, resp, body); user != "alice-sub" {
		t.Fatalf("login over https: status %d, user %q after %v", resp.StatusCode, user, b.hops)
	}
	for _, name := range []string{"__Host-_authgate", "__Host-_authgate_login_0"} {
		h, ok := setCookieNamed(seen, name)
		if !ok {
			t.Errorf("no Set-Cookie of %s among %q", name, seen)
			continue
		}
		for _, want := range []string{"; Path=/", "; Secure", "; HttpOnly"} {
			if !strings.Contains(h, want+";") && !strings.HasSuffix(h, want) {
				t.Errorf("Set-Cookie %.60s… lacks %q", h, strings.TrimPrefix(want, "; "))
			}
		}
		if strings.Contains(strings.ToLower(h), "domain=") {
			t.Errorf("a __Host- cookie with a Domain: %.200s", h)
		}
	}
	for _, h := range seen {
		if strings.HasPrefix(h, "_authgate") && !strings.Contains(h, "Max-Age=0") {
			t.Errorf("an unprefixed cookie was written on https: %.80s", h)
		}
	}
	jar := b.cookieHeader(s.origin)
	// A sibling's cookie of the old name, sent first: not the session.
	planted := joinCookies(tossCookies(t, "_authgate", tossSession("mallory-sub", s.idp.Issuer(), 1)))
	for _, cookie := range []string{planted + "; " + jar, jar + "; " + planted, "_authgate=junk; " + jar} {
		if resp, body := tossRequest(t, s.origin+"/api/me", cookie); userOf(t, resp, body) != "alice-sub" {
			t.Errorf("with a planted unprefixed cookie (%.40s…) the request is not alice's: %d %.200s", cookie, resp.StatusCode, body)
		}
	}
	// The plain http site keeps the old names (browsers refuse __Host-
	// without Secure): every other test of the package signs in there.
	var plain []string
	hs := startTossSite(t, false, "")
	hb := tossBrowser(t, &plain)
	if resp, body := hb.get(hs.origin + "/dashboard"); userOf(t, resp, body) != "alice-sub" {
		t.Fatalf("login over http: status %d", resp.StatusCode)
	}
	if _, ok := setCookieNamed(plain, "_authgate"); !ok {
		t.Errorf("the http site did not write _authgate: %q", plain)
	}
}

// TestCookieTossMigration: after the upgrade, a browser's session under
// the old name is read once and rewritten under the __Host- name, the old
// cookie expired; the next request needs only the new one. The value of a
// __Host- cookie moved under the old name (what a sibling subdomain could
// plant, having signed in itself) is no session: each is sealed for its
// own name, and the old name's reads skip the session cache.
func TestCookieTossMigration(t *testing.T) {
	s := startTossSite(t, true, "")
	for _, groups := range []int{1, 80} { // one cookie, then chunks
		t.Run(fmt.Sprintf("groups=%d", groups), func(t *testing.T) {
			old := joinCookies(tossCookies(t, "_authgate", tossSession("alice-sub", s.idp.Issuer(), groups)))
			resp, body := tossRequest(t, s.origin+"/api/me", "app=1; "+old)
			if user := userOf(t, resp, body); user != "alice-sub" {
				t.Fatalf("a session under the old name: status %d, user %q: %.200s", resp.StatusCode, user, body)
			}
			set := setCookieHeaders(resp)
			expired := expiredCookieNames(resp)
			var renamed []string
			for _, c := range resp.Cookies() {
				switch {
				case strings.HasPrefix(c.Name, "__Host-_authgate") && c.MaxAge > 0:
					if !c.Secure || c.Path != "/" || c.Domain != "" {
						t.Errorf("rewritten cookie %s: Secure %v, Path %q, Domain %q", c.Name, c.Secure, c.Path, c.Domain)
					}
					renamed = append(renamed, c.Name+"="+c.Value)
				case strings.HasPrefix(c.Name, "_authgate") && c.MaxAge >= 0:
					t.Errorf("the old name was written again: %s", c.Name)
				}
			}
			if len(renamed) == 0 {
				t.Fatalf("the session was not rewritten under the __Host- name: %q", set)
			}
			for _, part := range strings.Split(old, "; ") {
				name, _, _ := strings.Cut(part, "=")
				if !expired[name] {
					t.Errorf("old cookie %s was not expired: %q", name, set)
				}
			}
			next := strings.Join(renamed, "; ")
			resp, body = tossRequest(t, s.origin+"/api/me", next)
			if user := userOf(t, resp, body); user != "alice-sub" || len(resp.Cookies()) != 0 {
				t.Errorf("with the rewritten cookie: user %q, Set-Cookie %q", user, setCookieHeaders(resp))
			}
			// The new value under the old name (planted): no session.
			moved := strings.ReplaceAll(next, "__Host-_authgate", "_authgate")
			if resp, body := tossRequest(t, s.origin+"/api/me", moved); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("a __Host- value under the old name: status %d, want 401: %.200s", resp.StatusCode, body)
			}
		})
	}
}

// TestCookieTossDuplicates: with a cookie domain (no __Host- prefix), two
// different session cookies of one name, one of them this site's and the
// other foreign (sealed with the keys but bound to another issuer), junk,
// or of another user's chunks, in either order: the request is this
// site's user, and one warning is logged. Chunks of two sessions are
// never joined: interleaved beyond repair, the request has no session.
func TestCookieTossDuplicates(t *testing.T) {
	s := startTossSite(t, false, "cookie {\n\t\t\tdomain example.test\n\t\t}")
	valid := tossCookies(t, "_authgate", tossSession("alice-sub", s.idp.Issuer(), 1))
	foreign := tossCookies(t, "_authgate", tossSession("mallory-sub", "https://other-idp.example.test", 1))
	junk := []string{"_authgate=" + strings.Repeat("A", 120)}
	validChunks := tossCookies(t, "_authgate", tossSession("alice-sub", s.idp.Issuer(), 200))
	foreignChunks := tossCookies(t, "_authgate", tossSession("mallory-sub", "https://other-idp.example.test", 80))
	if len(validChunks) < 3 || len(foreignChunks) < 2 || len(foreignChunks) >= len(validChunks) {
		t.Fatalf("chunks: %d valid, %d foreign; the test needs more valid ones", len(validChunks), len(foreignChunks))
	}
	interleaved := []string{validChunks[0], foreignChunks[0], validChunks[1], foreignChunks[1]}
	interleaved = append(interleaved, validChunks[2:]...)
	tests := []struct {
		name   string
		cookie string
		want   string // "": no session (401)
	}{
		{"valid, then foreign", joinCookies(valid, foreign), "alice-sub"},
		{"foreign, then valid", joinCookies(foreign, valid), "alice-sub"},
		{"valid, then junk", joinCookies(valid, junk), "alice-sub"},
		{"junk, then valid", joinCookies(junk, valid), "alice-sub"},
		{"valid chunks, then foreign chunks", joinCookies(validChunks, foreignChunks), "alice-sub"},
		{"foreign chunks, then valid chunks", joinCookies(foreignChunks, validChunks), "alice-sub"},
		{"a foreign whole cookie beside valid chunks", joinCookies(foreign, validChunks), "alice-sub"},
		{"interleaved chunks are joined with neither", joinCookies(interleaved), ""},
		{"foreign and junk", joinCookies(foreign, junk), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(logged(t, s.logPath, "session cookie duplicated"))
			resp, body := tossRequest(t, s.origin+"/api/me", tt.cookie)
			if user := userOf(t, resp, body); user != tt.want {
				t.Errorf("user %q (status %d), want %q: %.200s", user, resp.StatusCode, tt.want, body)
			}
			if tt.want == "" && resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", resp.StatusCode)
			}
			if got := len(logged(t, s.logPath, "session cookie duplicated")) - before; got != 1 {
				t.Errorf("%d warnings logged, want one", got)
			}
		})
	}
}

// TestCookieTossNames: which names the cookies get. The __Host- prefix
// applies on https without a domain and with path /; names the operator
// gave a prefix are kept; a __Host- name with a domain or another path is
// refused, as browsers would drop it.
func TestCookieTossNames(t *testing.T) {
	https := httptest.NewRequest(http.MethodGet, "https://app.example.test/", nil)
	plain := httptest.NewRequest(http.MethodGet, "http://app.example.test/", nil)
	tests := []struct {
		cfg        CookieConfig
		onHTTPS    string
		legacy     string
		pendingTLS string
	}{
		{CookieConfig{}, "__Host-_authgate", "_authgate", "__Host-_authgate_login_"},
		{CookieConfig{Name: "sess"}, "__Host-sess", "sess", "__Host-sess_login_"},
		{CookieConfig{Domain: "example.test"}, "_authgate", "", "_authgate_login_"},
		{CookieConfig{Path: "/app"}, "_authgate", "", "_authgate_login_"},
		{CookieConfig{Name: "__Secure-sess"}, "__Secure-sess", "", "__Secure-sess_login_"},
		{CookieConfig{Name: "__Host-sess"}, "__Host-sess", "", "__Host-sess_login_"},
		{CookieConfig{Name: "__host-sess"}, "__host-sess", "", "__host-sess_login_"},
	}
	for _, tt := range tests {
		cs, err := newCookieSettings(&tt.cfg)
		if err != nil {
			t.Errorf("%+v: %v", tt.cfg, err)
			continue
		}
		got := cs.forRequest(https)
		if got.Name != tt.onHTTPS || got.legacy != tt.legacy || got.pendingPrefix() != tt.pendingTLS {
			t.Errorf("%+v on https: %q (legacy %q, pending %q), want %q (%q, %q)", tt.cfg, got.Name, got.legacy, got.pendingPrefix(), tt.onHTTPS, tt.legacy, tt.pendingTLS)
		}
		if p := cs.forRequest(plain); p.Name != cs.Name || p.legacy != "" {
			t.Errorf("%+v on http: %q, want %q", tt.cfg, p.Name, cs.Name)
		}
		if rest := cs.pendingRest(got.pendingPrefix() + "1"); rest != "1" {
			t.Errorf("%+v: pendingRest = %q", tt.cfg, rest)
		}
	}
	for _, cfg := range []CookieConfig{{Name: "__Host-sess", Domain: "example.test"}, {Name: "__Host-sess", Path: "/app"}} {
		if _, err := newCookieSettings(&cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	// Both forms are authgate's, to strip from what the backend gets.
	for _, name := range []string{"_authgate", "_authgate_0", "__Host-_authgate", "__Host-_authgate_3", "__Host-_authgate_login_1"} {
		if !isOurCookie(name, "_authgate") {
			t.Errorf("isOurCookie(%q) = false", name)
		}
	}
	if isOurCookie("__Host-_authgatex", "_authgate") || isOurCookie("x__Host-_authgate", "_authgate") {
		t.Error("isOurCookie took another cookie")
	}
}

// BenchmarkHandlerAuthenticatedHTTPS is BenchmarkHandlerAuthenticated on
// https, where the cookies carry the __Host- prefix: the same work.
func BenchmarkHandlerAuthenticatedHTTPS(b *testing.B) {
	h := benchHandler(b)
	gw := h.site.gw
	request := func(cookie string) *http.Request {
		r := benchRequest(cookie)
		r.TLS = &tls.ConnectionState{}
		return r
	}
	rec := httptest.NewRecorder()
	if err := gw.sessions.writeCookie(rec, request(""), benchSession("alice", 2)); err != nil {
		b.Fatal(err)
	}
	parts := []string{"theme=dark"}
	for _, c := range rec.Result().Cookies() {
		parts = append(parts, c.Name+"="+c.Value)
	}
	header := strings.Join(append(parts, "lang=en"), "; ")
	w := &benchWriter{h: http.Header{}}
	var seen *http.Request
	check := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error { seen = r; return nil })
	if err := h.ServeHTTP(w, request(header), check); err != nil {
		b.Fatal(err)
	}
	if seen == nil || seen.Header.Get("X-Forwarded-User") != "alice" || strings.Contains(seen.Header.Get("Cookie"), "_authgate") {
		b.Fatalf("the request did not pass authenticated: %v", seen)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(w, request(header), benchNext); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzCookieTossRead: reading the cookies of an https request (the
// __Host- names, the old names, duplicates) never panics; an old-name
// session is taken only when no __Host- one came; and every candidate of
// duplicated cookies is one whole cookie, or pieces each of which came as
// the chunk of its number: nothing else is ever joined.
func FuzzCookieTossRead(f *testing.F) {
	for _, seed := range []string{
		"",
		"__Host-_authgate=a; _authgate=b",
		"_authgate=b; _authgate_0=c; _authgate_1=d",
		"__Host-_authgate=a; __Host-_authgate=b",
		"__Host-_authgate_0=a; __Host-_authgate_1=b; __Host-_authgate_0=c; __Host-_authgate_1=d; __Host-_authgate_2=e",
		"__Host-_authgate_0=a; __Host-_authgate_0=c; __Host-_authgate_1=b; __Host-_authgate=z; x=1",
		`__Host-_authgate_login_0=p; __Host-_authgate_1=q; __Host-_authgate_0="r"; _authgate_0=s`,
	} {
		f.Add(seed)
	}
	cs, err := newCookieSettings(nil)
	if err != nil {
		f.Fatal(err)
	}
	r0 := httptest.NewRequest(http.MethodGet, "https://app.self.test/", nil)
	r0.TLS = &tls.ConnectionState{}
	names := cs.forRequest(r0)
	f.Fuzz(func(t *testing.T, header string) {
		r := r0.Clone(r0.Context())
		r.Header.Set("Cookie", header)
		primary := false
		sent := map[string][]string{}
		for _, c := range r.Cookies() {
			sent[c.Name] = append(sent[c.Name], c.Value)
			if (c.Name == names.Name || c.Name == chunkName(names.Name, 0)) && c.Value != "" && cookieOctets(c.Value) {
				primary = true
			}
		}
		for _, strict := range []bool{false, true} {
			sc, present := readCookies(r, names, strict)
			if strict && len(present) > len(r.Cookies()) {
				t.Fatalf("present %v from %d cookies", present, len(r.Cookies()))
			}
			if primary && sc.legacy {
				t.Fatalf("the old name was read beside a __Host- session: %q", header)
			}
			if sc.legacy && sc.name != names.legacy || !sc.legacy && sc.name != names.Name {
				t.Fatalf("read under %q (legacy %v)", sc.name, sc.legacy)
			}
			if !sc.dup {
				continue
			}
			cands := sessionCandidates(r, &sc)
			if len(cands) > maxSessionCandidates {
				t.Fatalf("%d candidates", len(cands))
			}
			for _, c := range cands {
				if c.n < 1 || c.name != sc.name || c.legacy != sc.legacy || !c.valid() {
					t.Fatalf("candidate %+v", c)
				}
				for i, p := range c.pieces() {
					name := chunkName(c.name, i)
					if c.n == 1 && slices.Contains(sent[c.name], p) {
						continue
					}
					if !slices.Contains(sent[name], p) {
						t.Fatalf("candidate piece %d %q came under no %s", i, p, name)
					}
				}
			}
		}
	})
}

package authgate

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Helpers of the attack corpus (security_test.go).

// withQuery returns u with the given query parameters replaced.
func withQuery(t *testing.T, u string, kv ...string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	pu.RawQuery = q.Encode()
	return pu.String()
}

func queryParam(t *testing.T, u, name string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Query().Get(name)
}

// isSessionCookieName reports whether name is the session cookie or one of
// its numbered chunks (not a pending-login cookie).
func isSessionCookieName(name string) bool {
	if name == "_authgate" {
		return true
	}
	rest, ok := strings.CutPrefix(name, "_authgate_")
	if !ok || rest == "" {
		return false
	}
	return strings.Trim(rest, "0123456789") == ""
}

// liveSessionCookies returns the Set-Cookies of resp that write (not
// delete) a session cookie or chunk.
func liveSessionCookies(resp *http.Response) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range resp.Cookies() {
		if isSessionCookieName(c.Name) && c.MaxAge >= 0 && c.Value != "" {
			out = append(out, c)
		}
	}
	return out
}

// expiredCookieNames returns the names of the cookies resp deletes.
func expiredCookieNames(resp *http.Response) map[string]bool {
	out := map[string]bool{}
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			out[c.Name] = true
		}
	}
	return out
}

// assertNoSessionSet fails when resp writes a session cookie.
func assertNoSessionSet(t *testing.T, resp *http.Response) {
	t.Helper()
	for _, c := range liveSessionCookies(resp) {
		t.Errorf("a session cookie was set although the request must not sign anybody in: %s=%.40s…", c.Name, c.Value)
	}
}

// assertJarHasNoSession fails when the browser holds a session cookie for
// origin, and checks that the origin answers an API call with 401.
func assertJarHasNoSession(t *testing.T, b *browser, origin string) {
	t.Helper()
	for _, c := range b.cookies(origin) {
		if isSessionCookieName(c.Name) {
			t.Errorf("the browser holds session cookie %s although no login succeeded", c.Name)
		}
	}
	if resp, body := b.api("GET", origin+"/api/after"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after a refused login the browser is signed in: /api answered %d, want 401: %.200s", resp.StatusCode, body)
	}
}

// errorJSON is the JSON error body authgate answers APIs with.
type errorJSON struct {
	Error     string `json:"error"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// assertJSONError checks a JSON error answer: status, reason (when not
// empty), a message and a request id.
func assertJSONError(t *testing.T, resp *http.Response, body string, status int, reason string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d (%s): %.300s", resp.StatusCode, status, reason, body)
	}
	if !strings.Contains(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("Content-Type %q, want a JSON error: %.300s", resp.Header.Get("Content-Type"), body)
		return
	}
	var e errorJSON
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Errorf("error body is not JSON: %v: %.300s", err, body)
		return
	}
	if reason != "" && e.Error != reason {
		t.Errorf("error %q, want %q: %s", e.Error, reason, body)
	}
	if e.Message == "" || e.RequestID == "" {
		t.Errorf("error body lacks a message or a request id: %s", body)
	}
}

var requestIDInPage = regexp.MustCompile(`id="request-id">[^<]+</code> \(([a-z_]+)\)`)

// assertHTMLError checks an HTML error page: status, reason, request id.
func assertHTMLError(t *testing.T, resp *http.Response, body string, status int, reason string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d (%s) at %s: %.300s", resp.StatusCode, status, reason, resp.Request.URL, body)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("Content-Type %q, want an HTML page", resp.Header.Get("Content-Type"))
	}
	m := requestIDInPage.FindStringSubmatch(body)
	if m == nil {
		t.Errorf("error page shows no request id: %.500s", body)
		return
	}
	if reason != "" && m[1] != reason {
		t.Errorf("error page reason %q, want %q", m[1], reason)
	}
}

// sessionValueFrom joins the session cookie (or its chunks) among cookies.
func sessionValueFrom(cookies []*http.Cookie) string {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, c := range cookies {
		if c.Value != "" && c.MaxAge >= 0 {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	v, _ := readChunked(r, "_authgate")
	return v
}

// jarSession returns the browser's session cookie value for origin.
func jarSession(t *testing.T, b *browser, origin string) string {
	t.Helper()
	v := sessionValueFrom(b.cookies(origin))
	if v == "" {
		t.Fatalf("the browser has no session cookie for %s", origin)
	}
	return v
}

// sessionCookieHeader returns a Cookie header with the browser's session
// cookies (and chunks) for origin, nothing else.
func sessionCookieHeader(b *browser, origin string) string {
	var parts []string
	for _, c := range b.cookies(origin) {
		if isSessionCookieName(c.Name) {
			parts = append(parts, c.Name+"="+c.Value)
		}
	}
	return strings.Join(parts, "; ")
}

// openSession decrypts a session cookie value with keys, as authgate would.
func openSession(t *testing.T, value string, keys ...string) (*Session, error) {
	t.Helper()
	codec, err := newCookieCodec(keys, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var s Session
	if _, err := codec.decode("_authgate", value, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func mustOpenSession(t *testing.T, value string, keys ...string) *Session {
	t.Helper()
	s, err := openSession(t, value, keys...)
	if err != nil {
		t.Fatalf("the session cookie does not decrypt with the expected key: %v", err)
	}
	return s
}

// rawRequest sends one request without a cookie jar and without following
// redirects. html makes it a browser navigation.
func rawRequest(t *testing.T, u, cookie string, html bool, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if html {
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	c := &http.Client{
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// hop is one response of a navigation.
type hop struct {
	url        *url.URL
	status     int
	location   string // resolved
	setCookies []*http.Cookie
}

// walkResult is a navigation followed by hand.
type walkResult struct {
	hops []hop
	// left is the first redirect target outside the allowed hosts; the
	// walk stopped there without requesting it.
	left *url.URL
	last *http.Response
	body string
}

// walk navigates like a browser from start, following redirects by hand
// while they stay on the allowed hosts (host:port), so that a redirect to
// an attacker's host is seen, recorded and not followed.
func (b *browser) walk(t *testing.T, start string, allowed ...string) walkResult {
	t.Helper()
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var res walkResult
	next := start
	for i := 0; i < 20; i++ {
		req, err := http.NewRequest(http.MethodGet, next, nil)
		if err != nil {
			t.Fatalf("bad URL %q: %v", next, err)
		}
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", next, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h := hop{url: req.URL, status: resp.StatusCode, setCookies: resp.Cookies()}
		res.last, res.body = resp, string(body)
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			res.hops = append(res.hops, h)
			return res
		}
		target, err := req.URL.Parse(loc)
		if err != nil {
			t.Fatalf("unparsable Location %q from %s: %v", loc, req.URL, err)
		}
		h.location = target.String()
		res.hops = append(res.hops, h)
		ok := false
		for _, a := range allowed {
			if strings.EqualFold(target.Host, a) {
				ok = true
			}
		}
		if !ok || (target.Scheme != "http" && target.Scheme != "https") {
			res.left = target
			return res
		}
		next = target.String()
	}
	t.Fatalf("more than 20 redirects from %s", start)
	return res
}

func hostOf(t *testing.T, u string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.Host
}

// recordSetCookies makes b record every Set-Cookie header it receives.
func recordSetCookies(b *browser, into *[]string) {
	b.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			*into = append(*into, resp.Header.Values("Set-Cookie")...)
		}
		return resp, err
	})
}

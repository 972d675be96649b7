package authgate

// Fuzz targets for everything that reads attacker-controlled input without
// a provider's signature in front of it: return URLs, cookies, claim paths
// from configuration, and token-endpoint answers. Run one with
//
//	go test -run='^$' -fuzz=FuzzReturnURL -fuzztime=60s .
//
// Interesting inputs found so far live in testdata/fuzz/<FuzzName>/ and run
// as ordinary tests with `go test`.
//
// There is no FuzzCallbackParams: the callback is read inside
// Handler.serveCallback, which needs a provisioned gateway; there is no pure
// function to fuzz. Its pieces are covered here (pending cookies, token
// responses) and by the integration tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzReturnURL(f *testing.F) {
	for _, seed := range []struct{ raw, host string }{
		{"/", "app.self.test"},
		{"/path?q=1#frag", "app.self.test"},
		{"https://a.example.test/x", "app.self.test"},
		{"https://example.test./", "app.self.test"},
		{"https://pinned.other.test:8443/p", "app.self.test"},
		{"https://app.self.test:8080/back", "app.self.test:8080"},
		{"http://[::1]:2015/x", "[::1]:2015"},
		{"//evil.com", "app.self.test"},
		{"/\\evil.com", "app.self.test"},
		{"/%5cevil.com", "app.self.test"},
		{"/%2f%2fevil.com", "app.self.test"},
		{"/\t/evil.com", "app.self.test"},
		{"https:evil.com", "app.self.test"},
		{"http://a.example.test@evil.com", "app.self.test"},
		{"https://evil.com%2f.example.test", "app.self.test"},
		{"https://evilexample.test", "app.self.test"},
		{"https://a.example.test%E3%80%82evil.com/", "app.self.test"},
		{"HTTPS://A.EXAMPLE.TEST/%41?x=%zz#%", "app.self.test"},
		{"https://a.example.test/a%2fb/../c;x=y?q=%252f#f%20g", ""},
		{"javascript:alert(1)", "app.self.test"},
	} {
		f.Add(seed.raw, seed.host)
	}
	f.Fuzz(func(t *testing.T, raw, reqHost string) {
		got := redirectTestPolicy.safeReturnURL(raw, reqHost)
		if got == "/" {
			return
		}
		again, ok := redirectTestPolicy.check(got, reqHost)
		if !ok || again != got {
			t.Fatalf("%q → %q, which check turns into %q, %v", raw, got, again, ok)
		}
		if len(got) > maxReturnURLLen {
			t.Fatalf("%q → %d bytes", raw, len(got))
		}
		for i := 0; i < len(got); i++ {
			if c := got[i]; c == '\\' || c < 0x21 || c == 0x7f {
				t.Fatalf("%q → %q keeps byte %#x", raw, got, c)
			}
		}
		if strings.HasPrefix(got, "/") {
			dec, err := url.PathUnescape(got)
			if strings.HasPrefix(got, "//") || err != nil || strings.HasPrefix(dec, "//") || strings.HasPrefix(dec, "/\\") {
				t.Fatalf("%q → %q leaves the origin", raw, got)
			}
			return
		}
		u, err := url.Parse(got)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Opaque != "" {
			t.Fatalf("%q → %q is not a plain http(s) URL", raw, got)
		}
		host := strings.ToLower(u.Hostname())
		if !validHostname(host) {
			t.Fatalf("%q → %q has host %q", raw, got, host)
		}
		if !strings.EqualFold(u.Host, reqHost) && !redirectTestPolicy.allows(host, u.Port()) {
			t.Fatalf("%q → %q: host %q is neither %q nor allowed", raw, got, u.Host, reqHost)
		}
	})
}

func FuzzClaimPath(f *testing.F) {
	for _, seed := range []string{
		"sub", "person.roles[].role", "contactInformation.instituteWebmailAddress", "a[0].b",
		"a[].b", "matrix[0]", "matrix[]", "groups[1]", "person.roles[5].role", "a[", "a]", "a[+1]",
		"a..b", "[]", "a[99999999999999999999]", "x.y.z.w[3][]", "é.ü[0]",
	} {
		f.Add(seed)
	}
	numbers := claimsTestDecode(f, claimsTestDoc, true)
	floats := claimsTestDecode(f, claimsTestDoc, false)
	// Count the nodes: no path can reach more values than there are.
	var count func(v any) int
	count = func(v any) int {
		n := 1
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				n += count(e)
			}
		case []any:
			for _, e := range x {
				n += count(e)
			}
		}
		return n
	}
	nodes := count(numbers)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseClaimPath(s)
		if err != nil {
			if !errors.Is(err, errClaimPath) {
				t.Fatalf("error %v does not wrap errClaimPath", err)
			}
			return
		}
		if len(p) == 0 {
			t.Fatalf("%q parsed to an empty path", s)
		}
		back, err := parseClaimPath(pathString(p))
		if err != nil || !reflect.DeepEqual(back, p) {
			t.Fatalf("%q prints as %q, which parses to %+v, %v", s, pathString(p), back, err)
		}
		for _, doc := range []map[string]any{numbers, floats, nil, {}} {
			vals := p.eval(doc)
			if len(vals) > nodes {
				t.Fatalf("%q reached %d values in %d nodes", s, len(vals), nodes)
			}
			for _, str := range p.strings(doc) {
				if str == "" {
					t.Fatalf("%q yielded an empty string", s)
				}
			}
			// keep_groups on this path: the stored claims map to the
			// same groups as the full ones, and the provider's claims
			// are never changed.
			c, err := compileClaimMap(ClaimMap{Groups: s, KeepGroups: []string{"*a*", "1?"}})
			if err != nil {
				t.Fatalf("%q: %v", s, err)
			}
			before := fmt.Sprint(doc)
			full, _ := c.identity("p", doc, false)
			pruned, _ := c.pruneGroups(doc)
			if fmt.Sprint(doc) != before {
				t.Fatalf("%q: pruneGroups changed the provider's claims", s)
			}
			stored, _ := c.identity("p", pruned, false)
			if !slices.Equal(full.Groups, stored.Groups) {
				t.Fatalf("%q: groups %q from the full claims, %q from the stored ones", s, full.Groups, stored.Groups)
			}
		}
	})
}

// fuzzCookieKey is the server's key in the cookie fuzzers. The seeds are
// made with a different key, so that nothing the fuzzer finds can carry a
// value the server itself encoded.
var fuzzCookieKey = "fuzz-server-key-" + randomString(32)

func fuzzSeedCookies(f *testing.F, name string, v any) (single string, chunks []string) {
	f.Helper()
	attacker, err := newCookieCodec([]string{sessionTestOtherKey}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	single, err = attacker.encode(name, v)
	if err != nil {
		f.Fatal(err)
	}
	chunks, err = splitValue(cookieSettings{Name: name, Path: "/"}, single)
	if err != nil {
		f.Fatal(err)
	}
	return single, chunks
}

func FuzzSessionCookie(f *testing.F) {
	cs := cookieSettings{Name: "_authgate", Path: "/", SameSite: http.SameSiteLaxMode}
	small, _ := fuzzSeedCookies(f, cs.Name, sessionTestSession(40))
	_, chunks := fuzzSeedCookies(f, cs.Name, sessionTestSession(9000))
	var chunked []string
	for i, c := range chunks {
		chunked = append(chunked, chunkName(cs.Name, i)+"="+c)
	}
	for _, seed := range []string{
		"",
		"_authgate=" + small,
		strings.Join(chunked, "; "),
		"_authgate_1=x; _authgate_0=y; _authgate=; _authgate_15=z; _authgate_16=q",
		"_authgate=a|b|c",
		"_authgate=" + strings.Repeat("A", 500),
		`_authgate="quoted"; other=1`,
	} {
		f.Add(seed, []byte{})
	}
	f.Add("", []byte{0, 0, 1})
	f.Add("", []byte{0xff})

	codec, err := newCookieCodec([]string{fuzzCookieKey}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	victim := sessionTestSession(300)
	valid, err := codec.encode(cs.Name, victim)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string, mask []byte) {
		r := httptest.NewRequest(http.MethodGet, "https://app.self.test/", nil)
		r.Header.Set("Cookie", header)
		raw, present := readChunked(r, cs.Name)
		if len(present) > len(r.Cookies()) {
			t.Fatalf("present %v from %d cookies", present, len(r.Cookies()))
		}
		var s Session
		if _, err := codec.decode(cs.Name, raw, &s); err == nil {
			t.Fatalf("a session without the key: %+v", s)
		}

		// The hot path's unchecked scan agrees with the strict read
		// whenever it may be trusted: its pieces are all cookie-octets
		// (else lookup reads strictly), and it never says "no session"
		// where the strict read finds one.
		sc := scanSessionCookie(r, cs.Name)
		if sc.valid() && sc.value() != raw {
			t.Fatalf("scan found %q, the strict read %q", sc.value(), raw)
		}
		if sc.n == 0 && raw != "" {
			t.Fatalf("scan found no session, the strict read %q", raw)
		}
		if len(present) > 0 && !sc.seen {
			t.Fatalf("scan saw no session cookie, the strict read %v", present)
		}
		// Without other cookies, dropping the Cookie header loses
		// nothing that stripping authgate's cookies would keep.
		if !sc.others {
			stripped := r.Clone(r.Context())
			stripCookies(stripped, cs.Name)
			for _, v := range stripped.Header["Cookie"] {
				for part := range strings.SplitSeq(v, ";") {
					if strings.TrimSpace(part) != "" {
						t.Fatalf("scan saw only authgate's cookies, stripping kept %q", v)
					}
				}
			}
		}

		// Chunking round trip for values a cookie can carry.
		if raw != "" && fuzzCookieSafe(raw) {
			rec := httptest.NewRecorder()
			if err := writeChunked(rec, cs, raw, 60, true, present); err == nil {
				next := sessionTestNextRequest(rec, r)
				if back, _ := readChunked(next, cs.Name); back != raw {
					t.Fatalf("chunking changed %d bytes into %d", len(raw), len(back))
				}
				for _, h := range rec.Header().Values("Set-Cookie") {
					if len(h) > cookieBudget {
						t.Fatalf("Set-Cookie of %d bytes", len(h))
					}
				}
			}
		}

		// A valid cookie with bits flipped opens to the same session or
		// not at all.
		if len(mask) > 0 {
			b := []byte(valid)
			for i := range b {
				b[i] ^= mask[i%len(mask)]
			}
			var got Session
			if _, err := codec.decode(cs.Name, string(b), &got); err == nil {
				a, _ := json.Marshal(victim)
				c, _ := json.Marshal(&got)
				if !bytes.Equal(a, c) {
					t.Fatalf("a tampered cookie opened to another session: %s", c)
				}
			}
		}
	})
}

func fuzzCookieSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return true
}

func FuzzPendingCookie(f *testing.F) {
	cs := cookieSettings{Name: "_authgate", Path: "/", SameSite: http.SameSiteLaxMode}
	pl := &pendingLogin{State: "st", Verifier: "v", Nonce: "n", ReturnURL: "/x", Provider: "corp", Issued: 1700000000, RedirectURI: "https://app/cb"}
	value, _ := fuzzSeedCookies(f, cs.pendingPrefix()+"abc", pl)
	for _, seed := range []string{
		"",
		cs.pendingPrefix() + "abc=" + value,
		cs.pendingPrefix() + "other=" + value,
		"_authgate_login_=x; _authgate_login_a=y; _authgate_login_b=z; _authgate_login_c=; _authgate_login_d=1; _authgate_login_e=2",
		strings.Repeat("_authgate_login_x=1; ", 40),
		"_authgate=" + value,
	} {
		f.Add(seed)
	}
	codec, err := newCookieCodec([]string{fuzzCookieKey}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	gw := &gateway{sessions: &sessionManager{codec: codec, cookie: cs}}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "https://app.self.test/oauth2/callback", nil)
		r.Header.Set("Cookie", header)
		found, names := pendingLogins(gw, r)
		if len(found) != 0 {
			t.Fatalf("a pending login without the key: %+v", found[0].login)
		}
		if len(names) > len(r.Cookies()) {
			t.Fatalf("%d names from %d cookies", len(names), len(r.Cookies()))
		}
		for _, c := range r.Cookies() {
			var l pendingLogin
			if _, err := codec.decode(c.Name, c.Value, &l); err == nil {
				t.Fatalf("cookie %s opened without the key", c.Name)
			}
		}
	})
}

// fuzzTokenReply is what the fuzzed token endpoint answers next.
type fuzzTokenReply struct {
	status      int
	contentType string
	body        []byte
}

func FuzzTokenResponse(f *testing.F) {
	jwt := dialectTestJWT(`{"exp":1900000000}`)
	for _, seed := range []fuzzTokenReply{
		{200, "application/json", []byte(dialectTestTokenBody)},
		{200, "application/json", []byte(`{"access_token":"` + jwt + `"}`)},
		{200, "application/json", []byte(`{"access_token":"a","expires_in":"300"}`)},
		{200, "application/json", []byte(`{"access_token":"a","expires_in":-1}`)},
		{200, "application/json", []byte(`{"access_token":"a","expires_in":1e99}`)},
		{200, "application/json", []byte(`{"access_token":"a","id_token":42,"refresh_token":null}`)},
		{200, "application/json", []byte(`{"access_token":"a"`)},
		{200, "application/json", []byte(`{"error":"invalid_grant"}`)},
		{200, "application/x-www-form-urlencoded", []byte("access_token=a&expires_in=x")},
		{200, "text/plain", []byte(`{"access_token":"a"}`)},
		{200, "text/html", []byte("<html>")},
		{200, "", nil},
		{400, "application/json", []byte(`{"error":"invalid_grant"}`)},
		{401, "text/plain", []byte("error=invalid_client")},
		{500, "text/html", []byte("<h1>down</h1>")},
		{302, "", nil},
		{200, "application/json; charset=\"", []byte(`{"access_token":"a"}`)},
	} {
		f.Add(seed.status, seed.contentType, seed.body)
	}
	var mu sync.Mutex
	var next fuzzTokenReply
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reply := next
		mu.Unlock()
		if reply.contentType != "" {
			w.Header()["Content-Type"] = []string{reply.contentType}
		}
		if reply.status >= 300 && reply.status < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(reply.status)
		_, _ = w.Write(reply.body)
	}))
	f.Cleanup(srv.Close)
	client := newOAuthClient(oauthClientConfig{
		ClientID: "c", ClientSecret: "s", TokenURL: srv.URL + "/token",
		Timeout: 5 * time.Second, DefaultExpiresIn: time.Hour, Transport: srv.Client().Transport,
	})
	sentinels := []error{errInvalidGrant, errProviderRejected, errProviderDown, errProviderTimeout, errProviderBadResponse}
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		// A status the server can send with a body: 200–599, no 204/304.
		if status < 0 {
			status = -status
		}
		status = 200 + status%400
		if status == http.StatusNoContent || status == http.StatusNotModified {
			status = http.StatusOK
		}
		mu.Lock()
		next = fuzzTokenReply{status, contentType, body}
		mu.Unlock()
		ts, err := client.exchange(context.Background(), "code", "verifier", "https://app/cb")
		if err != nil {
			if ts != nil {
				t.Fatalf("tokens and an error: %+v, %v", ts, err)
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v wraps no sentinel", err)
		}
		if ts == nil || ts.AccessToken == "" {
			t.Fatalf("success without an access token: %+v", ts)
		}
		if status < 200 || status > 299 {
			t.Fatalf("status %d accepted", status)
		}
	})
}

// FuzzGlobMatch compares globMatch with the regular expression the pattern
// stands for.
func FuzzGlobMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"*@example.test", "ada@example.test"},
		{"*b", "*ab"},
		{"a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaa"},
		{"?", "é"},
		{"caf?", "café"},
		{"**?*", ""},
		{"[a]", "a"},
		{".*", "x"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > 64 || len(s) > 256 || !utf8.ValidString(p) || !utf8.ValidString(s) {
			return
		}
		var re strings.Builder
		re.WriteString(`^(?s:`)
		for _, r := range p {
			switch r {
			case '*':
				re.WriteString(`.*`)
			case '?':
				re.WriteString(`.`)
			default:
				re.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		re.WriteString(`)$`)
		want := regexp.MustCompile(re.String()).MatchString(s)
		if got := globMatch(p, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, regexp %s says %v", p, s, got, re.String(), want)
		}
	})
}

package authgate

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
)

const (
	sessionTestKey      = "session-test-key-0123456789abcdef-0123456789"
	sessionTestOtherKey = "session-test-other-key-0123456789abcdef-012"
)

func sessionTestCodec(t testing.TB, keys ...string) *cookieCodec {
	t.Helper()
	c, err := newCookieCodec(keys, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sessionTestSession is a session whose access token is n random bytes,
// so that its encoded size grows with n (random data does not deflate).
func sessionTestSession(n int) *Session {
	return &Session{
		Version: sessionVersion, ID: "sid", Provider: "corp", Created: 1700000000, Expiry: 1700000300,
		AccessToken: randomString(n)[:n], RefreshToken: "rt", IDToken: "idt",
		Claims: map[string]any{"sub": "u-1", "groups": []any{"a", "b"}, "n": json.Number("7")},
	}
}

func TestNewCookieCodec(t *testing.T) {
	tests := []struct {
		name string
		keys []string
		err  string
	}{
		{name: "no keys", keys: nil, err: "no session keys"},
		{name: "short key", keys: []string{strings.Repeat("k", minKeyLength-1)}, err: "session key 1 is 31 bytes"},
		{name: "empty key", keys: []string{""}, err: "session key 1 is 0 bytes"},
		{name: "short old key", keys: []string{sessionTestKey, "short"}, err: "session key 2"},
		{name: "shortest key", keys: []string{strings.Repeat("k", minKeyLength)}},
		{name: "long keys", keys: []string{strings.Repeat("k", 200), sessionTestOtherKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newCookieCodec(tt.keys, time.Hour)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("newCookieCodec = %v, want an error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(c.codecs) != len(tt.keys) {
				t.Errorf("%d codecs for %d keys", len(c.codecs), len(tt.keys))
			}
		})
	}
}

func TestCookieCodecRoundTrip(t *testing.T) {
	c := sessionTestCodec(t, sessionTestKey)
	manyGroups := make([]any, 500)
	for i := range manyGroups {
		manyGroups[i] = "group-number-" + strings.Repeat("x", i%13)
	}
	tests := []struct {
		name string
		in   any
		out  func() any
	}{
		{name: "small session", in: sessionTestSession(20), out: func() any { return new(Session) }},
		{name: "large random session", in: sessionTestSession(20000), out: func() any { return new(Session) }},
		{name: "many groups (deflated)", in: &Session{Version: 1, Provider: "p", AccessToken: "at", Claims: map[string]any{"sub": "s", "groups": manyGroups}}, out: func() any { return new(Session) }},
		{name: "pending login", in: &pendingLogin{State: "st", Verifier: "v", Nonce: "n", ReturnURL: "/x", Provider: "p", Issued: 1700000000, RedirectURI: "https://a/cb"}, out: func() any { return new(pendingLogin) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := c.encode("_authgate", tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got := tt.out()
			oldKey, err := c.decode("_authgate", v, got)
			if err != nil || oldKey {
				t.Fatalf("decode = %v, oldKey %v", err, oldKey)
			}
			// Compare through JSON: numbers come back as json.Number.
			a, _ := json.Marshal(tt.in)
			b, _ := json.Marshal(got)
			if !bytes.Equal(a, b) {
				t.Errorf("round trip changed the value:\n%s\n%s", a, b)
			}
		})
	}
}

func TestCookieCodecRotation(t *testing.T) {
	oldOnly := sessionTestCodec(t, sessionTestOtherKey)
	rotated := sessionTestCodec(t, sessionTestKey, sessionTestOtherKey)
	newOnly := sessionTestCodec(t, sessionTestKey)
	want := sessionTestSession(40)
	fromOld, err := oldOnly.encode("_authgate", want)
	if err != nil {
		t.Fatal(err)
	}
	fromRotated, err := rotated.encode("_authgate", want)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		codec      *cookieCodec
		value      string
		wantOldKey bool
		wantErr    bool
	}{
		{name: "old value, rotated codec", codec: rotated, value: fromOld, wantOldKey: true},
		{name: "old value, codec without the old key", codec: newOnly, value: fromOld, wantErr: true},
		{name: "new value, codec with only the new key", codec: newOnly, value: fromRotated},
		{name: "new value, rotated codec", codec: rotated, value: fromRotated},
		{name: "new value, old codec", codec: oldOnly, value: fromRotated, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Session
			oldKey, err := tt.codec.decode("_authgate", tt.value, &got)
			if tt.wantErr {
				if !errors.Is(err, errBadSession) {
					t.Fatalf("decode = %v, want errBadSession", err)
				}
				if got.AccessToken != "" || got.Claims != nil {
					t.Errorf("a failed decode filled the session: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if oldKey != tt.wantOldKey {
				t.Errorf("oldKey = %v, want %v", oldKey, tt.wantOldKey)
			}
			if got.AccessToken != want.AccessToken || got.ID != want.ID {
				t.Errorf("decoded %+v", got)
			}
		})
	}
}

// TestCookieCodecRejects: anything but an untouched value under the same
// name and key decodes to errBadSession, never a panic, never a value.
func TestCookieCodecRejects(t *testing.T) {
	c := sessionTestCodec(t, sessionTestKey)
	good, err := c.encode("_authgate", sessionTestSession(40))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name, cookieName, value string
	}{
		{"empty", "_authgate", ""},
		{"garbage", "_authgate", "not-a-cookie"},
		{"base64 garbage", "_authgate", "YWJjfGRlZnxnaGk="},
		{"pipes", "_authgate", "||"},
		{"flipped first byte", "_authgate", flip(good, 0)},
		{"flipped middle byte", "_authgate", flip(good, len(good)/2)},
		{"flipped last byte", "_authgate", flip(good, len(good)-1)},
		{"truncated", "_authgate", good[:len(good)-4]},
		{"extended", "_authgate", good + "AAAA"},
		{"doubled", "_authgate", good + good},
		{"other cookie name", "_authgate_login_x", good},
		{"other key", "_authgate", func() string {
			v, _ := sessionTestCodec(t, sessionTestOtherKey).encode("_authgate", sessionTestSession(40))
			return v
		}()},
		{"huge", "_authgate", strings.Repeat("A", 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Session
			oldKey, err := c.decode(tt.cookieName, tt.value, &s)
			if !errors.Is(err, errBadSession) || oldKey {
				t.Fatalf("decode = %v, oldKey %v; want errBadSession", err, oldKey)
			}
			if !reflect.DeepEqual(s, Session{}) {
				t.Errorf("a failed decode filled the session: %+v", s)
			}
		})
	}
}

func TestJSONSerializer(t *testing.T) {
	deflated := func(b []byte) []byte {
		var buf bytes.Buffer
		buf.WriteByte(tagDeflate)
		zw, _ := flate.NewWriter(&buf, flate.BestSpeed)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return buf.Bytes()
	}
	tests := []struct {
		name string
		in   []byte
		want map[string]any
		err  bool
	}{
		{name: "empty", in: nil, err: true},
		{name: "unknown tag", in: []byte(`x{"a":"b"}`), err: true},
		{name: "untagged JSON", in: []byte(`{"a":"b"}`), err: true},
		{name: "plain", in: []byte(`j{"a":"b","n":1}`), want: map[string]any{"a": "b", "n": json.Number("1")}},
		{name: "plain, bad JSON", in: []byte(`j{"a":`), err: true},
		{name: "deflated", in: deflated([]byte(`{"a":"b"}`)), want: map[string]any{"a": "b"}},
		{name: "deflated garbage", in: append([]byte{tagDeflate}, "not deflate at all"...), err: true},
		{name: "deflated, truncated", in: deflated([]byte(`{"a":"` + strings.Repeat("b", 1000) + `"}`))[:20], err: true},
		{name: "deflate bomb", in: deflated([]byte(`{"a":"` + strings.Repeat("b", maxInflated) + `"}`)), err: true},
		{name: "tag only", in: []byte{tagDeflate}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string]any
			err := jsonSerializer{}.Deserialize(tt.in, &got)
			if tt.err {
				if err == nil {
					t.Fatalf("Deserialize = %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Deserialize = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("small payloads stay plain, large compressible ones deflate", func(t *testing.T) {
		small, err := jsonSerializer{}.Serialize(map[string]string{"a": "b"})
		if err != nil || small[0] != tagJSON {
			t.Errorf("small = %q, %v", small, err)
		}
		big, err := jsonSerializer{}.Serialize(map[string]string{"a": strings.Repeat("b", 4*compressAbove)})
		if err != nil || big[0] != tagDeflate {
			t.Errorf("big starts with %q, %v", big[:1], err)
		}
		random, err := jsonSerializer{}.Serialize(map[string]string{"a": randomString(4 * compressAbove)})
		if err != nil || len(random) == 0 {
			t.Fatal(err)
		}
	})
}

func TestSplitValue(t *testing.T) {
	for _, s := range sessionTestSettings {
		for _, n := range []int{1, 100, 3800, 5 << 10, 40 << 10} {
			t.Run(s.name+"/"+itoaSessionTest(n), func(t *testing.T) {
				value := sessionTestValue(n)
				parts, err := splitValue(s.cs, value)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(parts, "") != value {
					t.Fatal("parts do not join to the value")
				}
				for i, p := range parts {
					name := s.cs.Name
					if len(parts) > 1 {
						name = chunkName(s.cs.Name, i)
					}
					if p == "" {
						t.Errorf("part %d empty", i)
					}
					c := s.cs.cookie(name, p, 2147483647, true)
					if h := c.String(); len(h) > cookieBudget {
						t.Errorf("part %d renders to %d bytes", i, len(h))
					}
				}
			})
		}
	}
	t.Run("over the chunk limit", func(t *testing.T) {
		cs := sessionTestSettings[0].cs
		_, err := splitValue(cs, sessionTestValue(maxCookieChunks*cookieBudget))
		if err == nil {
			t.Fatal("no error")
		}
		rec := httptest.NewRecorder()
		if err := writeChunked(rec, cs, sessionTestValue(maxCookieChunks*cookieBudget), 60, true, []string{"_authgate"}); err == nil {
			t.Fatal("writeChunked: no error")
		}
		if h := rec.Header().Values("Set-Cookie"); len(h) != 0 {
			t.Errorf("a failed write still set %d cookies", len(h))
		}
	})
}

// sessionTestSettings are the cookie attribute sets the size checks run
// over: the longest SameSite value and a long domain and path eat into the
// room for the value.
var sessionTestSettings = []struct {
	name string
	cs   cookieSettings
}{
	{"lax", cookieSettings{Name: "_authgate", Path: "/", SameSite: http.SameSiteLaxMode}},
	{"strict with domain", cookieSettings{Name: "_authgate", Path: "/", Domain: "example.test", SameSite: http.SameSiteStrictMode}},
	{"none, long name, domain and path", cookieSettings{Name: "_" + strings.Repeat("n", 60), Path: "/" + strings.Repeat("p", 100), Domain: strings.Repeat("d", 60) + ".example.test", SameSite: http.SameSiteNoneMode}},
	{"default same-site", cookieSettings{Name: "s", Path: "/", SameSite: http.SameSiteDefaultMode}},
}

// sessionTestRespond writes value through writeChunked and returns the
// recorder. present is what the request carried.
func sessionTestRespond(t *testing.T, cs cookieSettings, value string, present []string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := writeChunked(rec, cs, value, 2147483647, true, present); err != nil {
		t.Fatalf("writeChunked(%d bytes): %v", len(value), err)
	}
	for _, h := range rec.Header().Values("Set-Cookie") {
		if len(h) > cookieBudget {
			t.Errorf("Set-Cookie of %d bytes, over %d: %.80s…", len(h), cookieBudget, h)
		}
	}
	return rec
}

// sessionTestNextRequest is the request a browser sends after rec: every
// cookie set with a value, none that were expired.
func sessionTestNextRequest(rec *httptest.ResponseRecorder, prev *http.Request) *http.Request {
	jar := map[string]string{}
	var order []string
	if prev != nil {
		for _, c := range prev.Cookies() {
			jar[c.Name] = c.Value
			order = append(order, c.Name)
		}
	}
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(jar, c.Name)
			continue
		}
		if _, ok := jar[c.Name]; !ok {
			order = append(order, c.Name)
		}
		jar[c.Name] = c.Value
	}
	r := httptest.NewRequest(http.MethodGet, "https://app.example.test/", nil)
	for _, name := range order {
		if v, ok := jar[name]; ok {
			r.AddCookie(&http.Cookie{Name: name, Value: v})
		}
	}
	return r
}

func sessionTestValue(n int) string {
	// Cookie-safe characters only, as securecookie produces.
	return strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789-_=", n/39+1)[:n]
}

// TestChunkedRoundTrip writes values of several sizes as a browser would
// receive them and reads them back from the next request.
func TestChunkedRoundTrip(t *testing.T) {
	for _, s := range sessionTestSettings {
		for _, n := range []int{100, 5 << 10, 40 << 10} {
			t.Run(s.name+"/"+itoaSessionTest(n), func(t *testing.T) {
				value := sessionTestValue(n)
				rec := sessionTestRespond(t, s.cs, value, nil)
				for _, c := range rec.Result().Cookies() {
					sameSiteOK := c.SameSite == s.cs.SameSite || (s.cs.SameSite == http.SameSiteDefaultMode && c.SameSite == 0)
					if !c.HttpOnly || !c.Secure || c.Path != s.cs.Path || !sameSiteOK {
						t.Errorf("cookie %s attributes: HttpOnly %v Secure %v Path %q SameSite %v", c.Name, c.HttpOnly, c.Secure, c.Path, c.SameSite)
					}
				}
				got, present := readChunked(sessionTestNextRequest(rec, nil), s.cs.Name)
				if got != value {
					t.Fatalf("read back %d bytes, want %d", len(got), len(value))
				}
				if len(present) != len(rec.Result().Cookies()) {
					t.Errorf("present = %v", present)
				}
			})
		}
	}
}

// TestChunkedResize: when a session shrinks or grows, the cookies the new
// value does not use are expired, and the next request reads the new
// value.
func TestChunkedResize(t *testing.T) {
	cs := sessionTestSettings[1].cs
	sizes := [][2]int{{40 << 10, 5 << 10}, {40 << 10, 100}, {100, 5 << 10}, {5 << 10, 40 << 10}, {5 << 10, 5<<10 + 1}, {100, 100}}
	for _, sz := range sizes {
		t.Run(itoaSessionTest(sz[0])+"→"+itoaSessionTest(sz[1]), func(t *testing.T) {
			first := sessionTestValue(sz[0])
			req := sessionTestNextRequest(sessionTestRespond(t, cs, first, nil), nil)
			_, present := readChunked(req, cs.Name)

			second := strings.ToUpper(sessionTestValue(sz[1]))
			rec := sessionTestRespond(t, cs, second, present)
			var set, expired []string
			for _, c := range rec.Result().Cookies() {
				if c.MaxAge < 0 {
					expired = append(expired, c.Name)
				} else {
					set = append(set, c.Name)
				}
			}
			for _, name := range present {
				if !slices.Contains(set, name) && !slices.Contains(expired, name) {
					t.Errorf("stale cookie %s neither rewritten nor expired", name)
				}
			}
			for _, name := range expired {
				if slices.Contains(set, name) {
					t.Errorf("%s both set and expired", name)
				}
				if !slices.Contains(present, name) {
					t.Errorf("expired %s, which the browser did not have", name)
				}
			}
			next := sessionTestNextRequest(rec, req)
			got, nowPresent := readChunked(next, cs.Name)
			if got != second {
				t.Fatalf("after resize read %d bytes, want %d", len(got), len(second))
			}
			if len(nowPresent) != len(set) {
				t.Errorf("browser holds %v, want %v", nowPresent, set)
			}
		})
	}
}

func TestReadChunked(t *testing.T) {
	tests := []struct {
		name        string
		cookies     string
		want        string
		wantPresent []string
		others      bool
	}{
		{name: "none", cookies: "", want: ""},
		{name: "other cookies only", cookies: "a=1; _authgatex=2; _authgate_login_abc=3", want: "", others: true},
		{name: "single", cookies: "_authgate=v", want: "v", wantPresent: []string{"_authgate"}},
		{name: "chunks in order", cookies: "_authgate_0=a; _authgate_1=b; _authgate_2=c", want: "abc", wantPresent: []string{"_authgate_0", "_authgate_1", "_authgate_2"}},
		{name: "chunks out of order", cookies: "_authgate_2=c; _authgate_0=a; _authgate_1=b", want: "abc", wantPresent: []string{"_authgate_2", "_authgate_0", "_authgate_1"}},
		{name: "single wins over chunks", cookies: "_authgate_0=a; _authgate=v; _authgate_1=b", want: "v", wantPresent: []string{"_authgate_0", "_authgate", "_authgate_1"}},
		{name: "missing first chunk", cookies: "_authgate_1=b; _authgate_2=c", want: "", wantPresent: []string{"_authgate_1", "_authgate_2"}},
		{name: "missing middle chunk stops the join", cookies: "_authgate_0=a; _authgate_2=c", want: "a", wantPresent: []string{"_authgate_0", "_authgate_2"}},
		{name: "odd chunk names ignored", cookies: "_authgate_0=a; _authgate_01=x; _authgate_-1=x; _authgate_+1=x; _authgate_16=x; _authgate_99999999999999999999=x; _authgate_x=x", want: "a", wantPresent: []string{"_authgate_0"}},
		{name: "last allowed chunk", cookies: "_authgate_15=p", want: "", wantPresent: []string{"_authgate_15"}},
		{name: "duplicate chunk: last one counts", cookies: "_authgate_0=a; _authgate_0=b", want: "b", wantPresent: []string{"_authgate_0", "_authgate_0"}},
		{name: "empty single falls back to chunks", cookies: "_authgate=; _authgate_0=a", want: "a", wantPresent: []string{"_authgate", "_authgate_0"}},
		{name: "application cookies around ours", cookies: "app=1; _authgate=v; theme=dark", want: "v", wantPresent: []string{"_authgate"}, others: true},
		{name: "pending logins are ours to strip", cookies: "_authgate_login_abc=1; _authgate=v", want: "v", wantPresent: []string{"_authgate"}},
		{name: "quoted value", cookies: `_authgate="v"`, want: "v", wantPresent: []string{"_authgate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.cookies != "" {
				r.Header.Set("Cookie", tt.cookies)
			}
			got, present := readChunked(r, "_authgate")
			if got != tt.want || !reflect.DeepEqual(present, tt.wantPresent) {
				t.Errorf("readChunked = %q, %q; want %q, %q", got, present, tt.want, tt.wantPresent)
			}
			// The hot path's scan finds the same, and knows whether
			// the request carries cookies besides authgate's.
			sc := scanSessionCookie(r, "_authgate")
			if sc.value() != tt.want || sc.others != tt.others || sc.seen != (len(tt.wantPresent) > 0) {
				t.Errorf("scanSessionCookie = %q, others %v, seen %v; want %q, others %v, seen %v",
					sc.value(), sc.others, sc.seen, tt.want, tt.others, len(tt.wantPresent) > 0)
			}
		})
	}
	t.Run("a value net/http refuses", func(t *testing.T) {
		// net/http skips a value with a quote inside; so does the strict
		// read. The scan takes it unchecked, and says so: lookup must
		// then read strictly.
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", `_authgate=v; _authgate=b"ad`)
		if got, _ := readChunked(r, "_authgate"); got != "v" {
			t.Errorf("readChunked = %q, want %q", got, "v")
		}
		sc := scanSessionCookie(r, "_authgate")
		if sc.value() != `b"ad` || sc.valid() {
			t.Errorf("scanSessionCookie = %q, valid %v; want the unchecked value, not valid", sc.value(), sc.valid())
		}
	})
	t.Run("all sixteen chunks", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		var want strings.Builder
		for i := maxCookieChunks - 1; i >= 0; i-- {
			r.AddCookie(&http.Cookie{Name: chunkName("_authgate", i), Value: "v" + itoaSessionTest(i)})
		}
		for i := 0; i < maxCookieChunks; i++ {
			want.WriteString("v" + itoaSessionTest(i))
		}
		if got, _ := readChunked(r, "_authgate"); got != want.String() {
			t.Errorf("readChunked = %q, want %q", got, want.String())
		}
	})
}

// TestChunkedTamper: a chunked session with any chunk changed, dropped,
// repeated or reordered must fail to decode, without a panic.
func TestChunkedTamper(t *testing.T) {
	c := sessionTestCodec(t, sessionTestKey)
	cs := sessionTestSettings[0].cs
	value, err := c.encode(cs.Name, sessionTestSession(6000))
	if err != nil {
		t.Fatal(err)
	}
	parts, err := splitValue(cs, value)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 3 {
		t.Fatalf("only %d chunks; the test needs three", len(parts))
	}
	build := func(mut func(p []string) []string) *http.Request {
		p := mut(slices.Clone(parts))
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for i, v := range p {
			if v != "\x00skip" {
				r.AddCookie(&http.Cookie{Name: chunkName(cs.Name, i), Value: v})
			}
		}
		return r
	}
	tests := []struct {
		name string
		mut  func(p []string) []string
	}{
		{"changed byte in the middle chunk", func(p []string) []string {
			b := []byte(p[1])
			b[len(b)/2] ^= 1
			p[1] = string(b)
			return p
		}},
		{"middle chunk missing", func(p []string) []string { p[1] = "\x00skip"; return p }},
		{"last chunk missing", func(p []string) []string { return p[:len(p)-1] }},
		{"first two swapped", func(p []string) []string { p[0], p[1] = p[1], p[0]; return p }},
		{"middle chunk repeated", func(p []string) []string { p[2] = p[1]; return p }},
		{"extra chunk", func(p []string) []string { return append(p, "AAAA") }},
		{"chunk shortened", func(p []string) []string { p[0] = p[0][:len(p[0])-1]; return p }},
		{"empty middle chunk", func(p []string) []string { p[1] = ""; return p }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, _ := readChunked(build(tt.mut), cs.Name)
			var s Session
			if _, err := c.decode(cs.Name, raw, &s); !errors.Is(err, errBadSession) {
				t.Fatalf("decode = %v, want errBadSession", err)
			}
			if s.AccessToken != "" {
				t.Error("a tampered cookie filled the session")
			}
		})
	}
	t.Run("untouched", func(t *testing.T) {
		raw, _ := readChunked(build(func(p []string) []string { return p }), cs.Name)
		var s Session
		if _, err := c.decode(cs.Name, raw, &s); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCookieSettingsExpire(t *testing.T) {
	cs := cookieSettings{Name: "_authgate", Path: "/", Domain: "example.test", SameSite: http.SameSiteLaxMode}
	rec := httptest.NewRecorder()
	cs.expire(rec, "_authgate_3", false)
	h := rec.Header().Get("Set-Cookie")
	for _, want := range []string{"_authgate_3=", "Max-Age=0", "Path=/", "Domain=example.test", "HttpOnly"} {
		if !strings.Contains(h, want) {
			t.Errorf("Set-Cookie %q lacks %q", h, want)
		}
	}
	if strings.Contains(h, "Secure") {
		t.Errorf("Secure on a plain-http expiry: %q", h)
	}
	if cs.pendingPrefix() != "_authgate_login_" {
		t.Errorf("pendingPrefix = %q", cs.pendingPrefix())
	}
}

func itoaSessionTest(n int) string { b, _ := json.Marshal(n); return string(b) }

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
		// With authgate's cookies among others, the header forward
		// builds from the scan is the one stripCookies makes.
		if sc.ours && sc.others {
			stripped := r.Clone(r.Context())
			stripCookies(stripped, cs.Name)
			if h, ok := sc.othersHeader(); ok && (len(stripped.Header["Cookie"]) != 1 || stripped.Header["Cookie"][0] != h) {
				t.Fatalf("the scan keeps %q, stripCookies %q", h, stripped.Header["Cookie"])
			}
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

// readChunked returns the session cookie value from r, joining numbered
// chunks when the session did not fit one cookie, as net/http would read
// the cookies: values that are not cookie-octets are skipped. It also
// returns the names of every session cookie present, so that writers can
// clear stale ones.
func readChunked(r *http.Request, base string) (value string, present []string) {
	sc, present := readSessionCookie(r, base, true)
	return sc.value(), present
}

// goldenCookieKey is the key testdata/cookies-v1.json was written with.
const goldenCookieKey = "golden-cookie-key-0123456789abcdef-0123456789"

// TestCookiesOfThePreviousVersionStillRead: cookies written by the
// version before pooled deflaters and jsonReader (testdata/cookies-v1.json:
// a small login session with escapes, unicode and nested claims, 300
// groups deflated, access and ID tokens, a store reference, a pending
// login) decode to what they were made from, so that an upgrade signs
// nobody out. Sessions are read by jsonReader, not by the fallback.
func TestCookiesOfThePreviousVersionStillRead(t *testing.T) {
	raw, err := os.ReadFile("testdata/cookies-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden []struct {
		Name, Kind, Cookie string
		Value              json.RawMessage
	}
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	// No maximum age: the cookies were written long before this test runs.
	codec, err := newCookieCodec([]string{goldenCookieKey}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range golden {
		t.Run(g.Name, func(t *testing.T) {
			var got any
			name := "_authgate"
			switch g.Kind {
			case "session":
				got = new(Session)
				if !new(Session).decodeJSON(g.Value) {
					t.Error("jsonReader gave up on the session's JSON")
				}
			case "storeRef":
				got = new(storeRef)
			case "pendingLogin":
				got, name = new(pendingLogin), "_authgate_login_abc"
			}
			if _, err := codec.decode(name, g.Cookie, got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := reflect.New(reflect.TypeOf(got).Elem()).Interface()
			if err := stdDecode(g.Value, want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decoded\n%#v\nwant\n%#v", got, want)
			}
		})
	}
}

// TestCookieOctetTable: the table is RFC 6265's cookie-octet, byte by byte.
func TestCookieOctetTable(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := c == 0x21 || c >= 0x23 && c <= 0x2b || c >= 0x2d && c <= 0x3a || c >= 0x3c && c <= 0x5b || c >= 0x5d && c <= 0x7e
		if got := cookieOctets(string([]byte{byte(c)})); got != want {
			t.Errorf("byte %#x: cookieOctets %v, want %v", c, got, want)
		}
	}
}

// TestScanKeepsOtherCookies: the scan keeps the site's other cookies as
// stripCookies would, so that forward need not scan the header again;
// with more than it keeps, forward strips the header itself.
func TestScanKeepsOtherCookies(t *testing.T) {
	many := make([]string, maxKeptCookies+1)
	for i := range many {
		many[i] = "c" + strconv.Itoa(i) + "=v"
	}
	for _, tc := range []struct {
		name, header, want string
		ok                 bool
	}{
		{"others around the session", "a=1; _authgate=x;b=2;  ; _authgate_0=y; c=3", "a=1; b=2; c=3", true},
		{"a pending login and a look-alike", "_authgate_login_q=p; _authgateX=1; d=\"q\"", "_authgateX=1; d=\"q\"", true},
		{"space and tabs", "\t_authgate=x ; e=5 \t", "e=5", true},
		{"more than kept", strings.Join(append(many, "_authgate=x"), "; "), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://app.test/", nil)
			r.Header.Set("Cookie", tc.header)
			sc := scanSessionCookie(r, "_authgate")
			got, ok := sc.othersHeader()
			if ok != tc.ok || got != tc.want || !sc.ours || !sc.others {
				t.Fatalf("othersHeader = %q, %v (ours %v, others %v); want %q, %v", got, ok, sc.ours, sc.others, tc.want, tc.ok)
			}
			stripCookies(r, "_authgate")
			if tc.ok && r.Header.Get("Cookie") != got {
				t.Errorf("stripCookies made %q", r.Header.Get("Cookie"))
			}
		})
	}
}

// previousDeserializer is how the version before pooled deflaters and
// jsonReader read payloads.
type previousDeserializer struct{ jsonSerializer }

func (previousDeserializer) Deserialize(src []byte, dst any) error {
	if len(src) == 0 {
		return errBadSession
	}
	body := src[1:]
	switch src[0] {
	case tagJSON:
	case tagDeflate:
		inflated, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(body)), maxInflated+1))
		if err != nil || len(inflated) > maxInflated {
			return errBadSession
		}
		body = inflated
	default:
		return errBadSession
	}
	return stdDecode(body, dst)
}

// TestPreviousVersionReadsNewCookies: during a rolling upgrade an
// instance of the previous version may get a cookie this one wrote (or
// sealed for a refresh); it reads it as this one does.
func TestPreviousVersionReadsNewCookies(t *testing.T) {
	codec := sessionTestCodec(t, sessionTestKey)
	previous := sessionTestCodec(t, sessionTestKey)
	for _, c := range previous.codecs {
		c.(*securecookie.SecureCookie).SetSerializer(previousDeserializer{})
	}
	for _, s := range []*Session{benchLoginSession("alice", 2), benchLoginSession("bob", 300), benchSession("carol", 2)} {
		v, err := codec.encode("_authgate", s)
		if err != nil {
			t.Fatal(err)
		}
		var now, before Session
		if _, err := codec.decode("_authgate", v, &now); err != nil {
			t.Fatal(err)
		}
		if _, err := previous.decode("_authgate", v, &before); err != nil {
			t.Fatalf("the previous version cannot read a %d-byte cookie: %v", len(v), err)
		}
		if !reflect.DeepEqual(now, before) {
			t.Errorf("the versions read the cookie differently:\n%+v\n%+v", now, before)
		}
	}
}

// scanSessionCookie and readSessionCookie are the sessionManager's scan
// and read for a cookie name alone, without __Host- names.
func scanSessionCookie(r *http.Request, base string) sessionCookie {
	sc, _ := readSessionCookie(r, base, false)
	return sc
}

func readSessionCookie(r *http.Request, base string, strict bool) (sc sessionCookie, present []string) {
	return readCookies(r, cookieSettings{Name: base}, strict)
}

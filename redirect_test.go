package authgate

import (
	"net/url"
	"strings"
	"testing"
)

// redirectTestPolicy is the policy most cases run against: every
// subdomain of example.test, one exact host, and a port-pinned one.
var redirectTestPolicy = redirectPolicy{domains: []string{
	".example.test",
	"exact.other.test",
	"pinned.other.test:8443",
	".pinned-sub.test:9443",
}}

const redirectTestReqHost = "app.self.test:8080"

// TestSafeReturnURLRejects covers the open-redirect classics. Every one
// must fall back to "/".
func TestSafeReturnURLRejects(t *testing.T) {
	tests := []struct {
		name string
		raw  string
	}{
		{"empty", ""},
		{"protocol-relative", "//evil.com"},
		{"protocol-relative to an allowed host", "//a.example.test/x"},
		{"triple slash", "///evil.com"},
		{"slash backslash (CVE-2020-5233)", "/\\evil.com"},
		{"backslash slash", "\\/evil.com"},
		{"double backslash", "\\\\evil.com"},
		{"encoded backslash (CVE-2020-4037)", "/%5cevil.com"},
		{"encoded backslash upper", "/%5Cevil.com"},
		{"encoded backslash then slash", "/%5c/evil.com"},
		{"encoded double slash", "/%2f%2fevil.com"},
		{"encoded slash after slash", "/%2F/evil.com"},
		{"encoded triple slash", "/%2f%2f%2fbing.com%2f%3fwww.example.test"},
		{"encoded slash and backslash", "/%2f%5c%2f%67%6f%6f%67%6c%65%2e%63%6f%6d/"},
		{"tab between slashes (GHSA-5m6c-jp6f-2vcv)", "/\t/evil.com"},
		{"encoded tab between slashes", "/%09/evil.com"},
		{"tab before backslash", "/\t\\evil.com"},
		{"newline between slashes", "/\n/evil.com"},
		{"encoded newline", "/%0a/evil.com"},
		{"carriage return between slashes", "/\r/evil.com"},
		{"encoded carriage return", "/%0d/evil.com"},
		{"vertical tab", "/\v/evil.com"},
		{"space between slashes", "/ /evil.com"},
		{"space backslash", "/ \\evil.com"},
		{"many tabs", "/\t\t/\t\t\\evil.com"},
		{"NUL", "/\x00/evil.com"},
		{"encoded NUL", "/%00/evil.com"},
		{"DEL", "/\x7f/evil.com"},
		{"dot backslash", "/./\\evil.com"},
		{"dot dot backslash", "/./../../\\evil.com"},
		{"encoded https backslash", "/https:/%5cevil.com/"},
		{"bad escape", "/%zz"},
		{"scheme without slashes", "https:evil.com"},
		{"scheme one slash", "https:/evil.com"},
		{"scheme three slashes", "https:///evil.com"},
		{"scheme backslashes", "https:\\\\evil.com"},
		{"userinfo", "http://a.example.test@evil.com"},
		{"userinfo with allowed host as user", "https://www.example.test@evil.com/"},
		{"userinfo with port-looking user", "https://a.example.test:443@evil.com/"},
		{"empty userinfo", "https://:@evil.com\\@a.example.test"},
		{"userinfo on an allowed host", "https://user:pass@a.example.test/"},
		{"encoded slash in host", "https://evil.com%2f.example.test"},
		{"encoded double slash in host", "http://evil.com%2f%2f.example.test/"},
		{"encoded hash in host", "http://evil.com%23.example.test/"},
		{"encoded question mark in host", "http://evil.com%3F.example.test/"},
		{"encoded backslash in host", "http://evil.com%5c%5c.example.test/"},
		{"encoded dot in host", "http://a.example.test%2eevil.com/"},
		{"encoded at in port", "http://a.example.test:80%40evil.com/"},
		{"backslash at", "https://evil.com\\@a.example.test"},
		{"backslash dot", "http://www.evil.com\\.a.example.test"},
		{"tab in host", "http://evil.com\ta.example.test/"},
		{"fragment at", "http://evil.com:80#@a.example.test/"},
		{"query at", "http://evil.com:80?@a.example.test/"},
		{"ideographic full stop", "https://evil.com\u3002example.test/"},
		{"encoded ideographic full stop", "https://a.example.test%E3%80%82evil.com/"},
		{"non-ASCII host", "https://ex\u0430mple.test/"},
		{"encoded host", "http://%65vil.com/"},
		{"javascript", "javascript:alert(1)"},
		{"javascript upper", "JaVaScRiPt:alert(1)"},
		{"javascript with slashes", "javascript://a.example.test/%0aalert(1)"},
		{"javascript with tab", "java\tscript:alert(1)"},
		{"data", "data:text/html,<script>alert(1)</script>"},
		{"data base64", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="},
		{"vbscript", "vbscript:msgbox(1)"},
		{"ftp", "ftp://a.example.test/"},
		{"no scheme", "evil.com/path"},
		{"no scheme allowed host", "a.example.test/path"},
		{"at host", "@evil.com"},
		{"relative path", "path/x"},
		{"dot relative", "./x"},
		{"suffix confusion (CVE-2021-21291)", "https://evilexample.test/"},
		{"suffix confusion no dot", "https://xexample.test"},
		{"allowed domain as a prefix", "https://example.test.evil.com/"},
		{"allowed subdomain as a prefix", "https://a.example.test.evil.com/"},
		{"exact entry does not allow subdomains", "https://sub.exact.other.test/"},
		{"exact entry suffix", "https://notexact.other.test/"},
		{"upper-case evil", "HTTPS://EVIL.COM"},
		{"upper-case evil path", "HTTPS://EVIL.COM/a.example.test"},
		{"evil with allowed in path", "https://evil.com/https://a.example.test/"},
		{"evil with allowed in query", "https://evil.com/?rd=a.example.test"},
		{"pinned port wrong", "https://pinned.other.test:9999/"},
		{"pinned port missing", "https://pinned.other.test/"},
		{"pinned subdomain wrong port", "https://a.pinned-sub.test/"},
		{"request host other port", "https://app.self.test/"},
		{"request host with port but other host", "https://evil.com:8080/"},
		{"bad port", "https://a.example.test:http/"},
		{"IP not allowed", "http://127.0.0.1/"},
		{"decimal IP", "http://3627734734/"},
		{"hex IP", "http://0xd83ad6ce/"},
		{"IPv6 not allowed", "http://[::ffff:216.58.214.206]/"},
		{"IPv6 zone", "http://[fe80::1%25eth0]/"},
		{"empty host", "https:///a.example.test"},
		{"host with double dot", "https://a..example.test/"},
		{"very long path", "/" + strings.Repeat("a", maxReturnURLLen)},
		{"very long absolute", "https://a.example.test/" + strings.Repeat("a", maxReturnURLLen)},
		{"very long host", "https://" + strings.Repeat("a.", 130) + "example.test/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redirectTestPolicy.safeReturnURL(tt.raw, redirectTestReqHost); got != "/" {
				t.Errorf("safeReturnURL(%q) = %q, want /", tt.raw, got)
			}
			// The same payload arriving URL-encoded in ?rd= decodes to the
			// same string; decoding once more must not open a hole either.
			if dec, err := url.QueryUnescape(tt.raw); err == nil && dec != tt.raw {
				if got := redirectTestPolicy.safeReturnURL(dec, redirectTestReqHost); got != "/" && redirectTestLeavesOrigin(got) {
					t.Errorf("decoded form %q passed as %q", dec, got)
				}
			}
		})
	}
}

// redirectTestLeavesOrigin reports whether a browser following Location:
// u would leave the request's origin for a host outside the policy.
func redirectTestLeavesOrigin(u string) bool {
	parsed, err := url.Parse(u)
	if err != nil {
		return true
	}
	if parsed.Scheme == "" && parsed.Host == "" && strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") {
		return false
	}
	return !strings.EqualFold(parsed.Host, redirectTestReqHost) && !redirectTestPolicy.allows(strings.ToLower(parsed.Hostname()), parsed.Port())
}

func TestSafeReturnURLAccepts(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		reqHost string
		want    string // empty: raw itself
	}{
		{name: "root", raw: "/"},
		{name: "path with query and fragment", raw: "/path?q=1#frag"},
		{name: "path with encoded query", raw: "/search?q=a%20b&rd=%2F%2Fevil.com"},
		{name: "path with colon", raw: "/a:b/c"},
		{name: "path with at", raw: "/@user"},
		{name: "path with dot segments stays on this host", raw: "/a/../b"},
		{name: "path that looks like a URL stays on this host", raw: "/https://evil.com"},
		{name: "unicode path", raw: "/caf\u00e9"},
		{name: "subdomain of allowed", raw: "https://a.example.test/x"},
		{name: "deep subdomain", raw: "https://a.b.c.example.test/x?y=1#z"},
		{name: "apex of dotted entry", raw: "https://example.test/"},
		{name: "apex with trailing dot", raw: "https://example.test./"},
		{name: "http scheme", raw: "http://a.example.test/"},
		{name: "any port on an unpinned entry", raw: "https://a.example.test:8443/"},
		{name: "upper-case allowed host", raw: "HTTPS://A.EXAMPLE.TEST/x", want: "https://A.EXAMPLE.TEST/x"},
		{name: "exact entry", raw: "https://exact.other.test/p"},
		{name: "pinned port", raw: "https://pinned.other.test:8443/p"},
		{name: "pinned subdomain port", raw: "https://a.pinned-sub.test:9443/"},
		{name: "pinned apex port", raw: "https://pinned-sub.test:9443/"},
		{name: "request host with port", raw: "https://app.self.test:8080/back"},
		{name: "request host case-insensitive", raw: "https://APP.self.test:8080/back", reqHost: "app.SELF.test:8080"},
		{name: "request host IP", raw: "http://127.0.0.1:2015/x", reqHost: "127.0.0.1:2015"},
		{name: "request host IPv6", raw: "http://[::1]:2015/x", reqHost: "[::1]:2015"},
		{name: "longest allowed path", raw: "/" + strings.Repeat("a", maxReturnURLLen-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqHost := tt.reqHost
			if reqHost == "" {
				reqHost = redirectTestReqHost
			}
			want := tt.want
			if want == "" {
				want = tt.raw
			}
			if got := redirectTestPolicy.safeReturnURL(tt.raw, reqHost); got != want {
				t.Errorf("safeReturnURL(%q, %q) = %q, want %q", tt.raw, reqHost, got, want)
			}
		})
	}
}

// TestSafeReturnURLNoDomains: with no allowed domains only the request's
// own origin is reachable.
func TestSafeReturnURLNoDomains(t *testing.T) {
	var p redirectPolicy
	tests := []struct {
		raw, want string
	}{
		{"/x", "/x"},
		{"https://app.self.test:8080/x", "https://app.self.test:8080/x"},
		{"https://a.example.test/x", "/"},
		{"https://app.self.test/x", "/"},
		{"https://evil.com/", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			if got := p.safeReturnURL(tt.raw, redirectTestReqHost); got != tt.want {
				t.Errorf("safeReturnURL(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestRedirectPolicyAllows(t *testing.T) {
	tests := []struct {
		host, port string
		want       bool
	}{
		{"example.test", "", true},
		{"a.example.test", "", true},
		{"a.example.test.", "", true},
		{"evilexample.test", "", false},
		{"example.test.evil.com", "", false},
		{"exact.other.test", "", true},
		{"exact.other.test", "1234", true},
		{"a.exact.other.test", "", false},
		{"pinned.other.test", "8443", true},
		{"pinned.other.test", "", false},
		{"pinned.other.test", "443", false},
		{"x.pinned-sub.test", "9443", true},
		{"x.pinned-sub.test", "9444", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.host+":"+tt.port, func(t *testing.T) {
			if got := redirectTestPolicy.allows(tt.host, tt.port); got != tt.want {
				t.Errorf("allows(%q, %q) = %v, want %v", tt.host, tt.port, got, tt.want)
			}
		})
	}
}

func TestValidHostname(t *testing.T) {
	tests := []struct {
		h    string
		want bool
	}{
		{"example.test", true},
		{"a-b.example.test", true},
		{"under_score.test", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"", false},
		{"a..b", false},
		{"ex ample.test", false},
		{"evil.com/", false},
		{"evil.com\\", false},
		{"évil.test", false},
		{"EXAMPLE.TEST", false}, // callers lower-case first
		{strings.Repeat("a", 254), false},
		{strings.Repeat("a", 253), true},
	}
	for _, tt := range tests {
		t.Run(tt.h, func(t *testing.T) {
			if got := validHostname(tt.h); got != tt.want {
				t.Errorf("validHostname(%q) = %v, want %v", tt.h, got, tt.want)
			}
		})
	}
}

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

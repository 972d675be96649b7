package authgate

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// decodeHeaderList reads a list header as the README tells a backend to:
// split on ",", trim spaces, percent-decode each part.
func decodeHeaderList(h string) ([]string, error) {
	if h == "" {
		return nil, nil
	}
	parts := strings.Split(h, ",")
	for i, p := range parts {
		v, err := url.PathUnescape(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("part %d %q: %w", i, p, err)
		}
		parts[i] = v
	}
	return parts, nil
}

func TestGroupValueEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string
	}{
		{"plain names as before", []string{"admins", "Domain Users", "équipe", "a/b"}, "admins,Domain Users,équipe,a/b"},
		{"a comma", []string{"x,admins"}, "x%2Cadmins"},
		{"a percent sign", []string{"100%", "%2C"}, "100%25,%252C"},
		{"control characters", []string{"ad\x00mins", "a\r\nb", "\x7f", "tab\tin"}, "ad%00mins,a%0D%0Ab,%7F,tab%09in"},
		{"outer spaces", []string{" admins", "admins ", " ", "in side"}, "%20admins,admins%20,%20,in side"},
		{"outer Unicode spaces", []string{"\u00a0admins", "admins\u3000", "\ufeffadmins", "\u00a0"}, "%C2%A0admins,admins%E3%80%80,%EF%BB%BFadmins,%C2%A0"},
		{"inner Unicode spaces stay", []string{"a\u00a0b"}, "a\u00a0b"},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := joinHeaderList(tc.in)
			if got != tc.want {
				t.Fatalf("joinHeaderList(%q) = %q, want %q", tc.in, got, tc.want)
			}
			back, err := decodeHeaderList(got)
			if err != nil || !slices.Equal(back, tc.in) {
				t.Errorf("decoded %q (%v), want %q", back, err, tc.in)
			}
		})
	}
}

// TestGroupValueEncodingAllocations: the hot path joins claim headers on
// every request; values that need no encoding cost what strings.Join does.
func TestGroupValueEncodingAllocations(t *testing.T) {
	one, two := []string{"admins"}, []string{"admins", "staff"}
	if n := testing.AllocsPerRun(100, func() { _ = joinHeaderList(one) }); n != 0 {
		t.Errorf("one clean value: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = joinHeaderList(two) }); n != 1 {
		t.Errorf("two clean values: %v allocations, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = joinHeaderList([]string{"x,admins", " staff"}) }); n != 1 {
		t.Errorf("values to encode: %v allocations, want 1", n)
	}
}

// TestGroupValueLongList: a list too long for a header is still cut
// between values, never inside one, encoded commas included.
func TestGroupValueLongList(t *testing.T) {
	groups := make([]string, 0, 4000)
	for i := 0; len(groups) < cap(groups); i++ {
		groups = append(groups, fmt.Sprintf("team,%d", i))
	}
	h := sanitizeHeaderValue(joinHeaderList(groups))
	if len(h) > maxHeaderValueLen {
		t.Fatalf("%d bytes", len(h))
	}
	got, err := decodeHeaderList(h)
	if err != nil || len(got) == 0 || !slices.Equal(got, groups[:len(got)]) {
		t.Errorf("the cut list decodes to %d values (%v), not a prefix of the groups", len(got), err)
	}
}

// TestGroupValueHeaders: through Caddy, the groups header, a claim header
// on a list and {http.auth.user.groups} carry values with commas,
// percent signs, control characters and outer spaces so that a backend
// reads back exactly the user's groups.
func TestGroupValueHeaders(t *testing.T) {
	groups := []any{"x,admins", "100%", " staff", "ad\nmins", "Domain Users"}
	want := []string{"x,admins", "100%", " staff", "ad\nmins", "Domain Users"}
	s := setupSiteWith(t, siteConfig{
		opts: testidp.Options{Users: []testidp.User{{Username: "mallory", Password: "m", Claims: map[string]any{
			"sub": "mallory-sub", "email": "mallory@example.test", "groups": groups, "roles": []any{"a,b", "c"},
		}}}, AutoLogin: "mallory"},
		handler: "claim_header X-Roles roles",
		proxy:   "header_up X-Placeholder-Groups {http.auth.user.groups}",
	})
	saw := s.login(t, newBrowser(t))
	for h, want := range map[string][]string{
		"X-Forwarded-Groups":   want,
		"X-Placeholder-Groups": want,
		"X-Roles":              {"a,b", "c"},
	} {
		raw := saw.Headers.Values(h)
		if len(raw) != 1 {
			t.Errorf("%s: %q, want one header", h, raw)
			continue
		}
		got, err := decodeHeaderList(raw[0])
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %q decodes to %q (%v), want %q", h, raw[0], got, err, want)
		}
		if slices.Contains(strings.Split(raw[0], ","), "admins") {
			t.Errorf("%s: %q: a backend splitting on commas sees admins", h, raw[0])
		}
	}
}

// TestGroupValueRulesThroughCaddy: a user in "x,admins" is not in admins
// for authgate's rules either.
func TestGroupValueRulesThroughCaddy(t *testing.T) {
	s := setupSiteWith(t, siteConfig{
		opts: testidp.Options{Users: []testidp.User{{Username: "mallory", Password: "m", Claims: map[string]any{
			"sub": "mallory-sub", "groups": []any{"x,admins", "staff,"},
		}}}, AutoLogin: "mallory"},
		handler: "allow group admins staff",
	})
	resp, body := newBrowser(t).get(s.origin + "/")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a user in x,admins and staff, passed allow group admins staff: %d %.200s", resp.StatusCode, body)
	}
}

// FuzzGroupEncoding: any list of values survives the round trip through
// the header, and the header splits into exactly one part per value. The
// input is the values joined by sep (a byte each run chooses, so every
// byte appears in values). A list of one empty value encodes to "", which
// is no header: authgate never sends empty values (claim paths drop them).
func FuzzGroupEncoding(f *testing.F) {
	for _, seed := range []string{"admins\x00staff", "x,admins", "100%\x00%2C", " a \x00\u00a0b\u3000", "\ufeff", "a\r\nb\x00\x7f", ",,", "\xc2\x00\xa0", "\xff\xfe%", "é\x00李"} {
		f.Add(seed, byte(0))
	}
	f.Add("ad\x00mins|x,admins| staff", byte('|'))
	f.Fuzz(func(t *testing.T, in string, sep byte) {
		groups := strings.Split(in, string([]byte{sep}))
		if len(groups) == 1 && groups[0] == "" {
			return
		}
		h := joinHeaderList(groups)
		if n := len(strings.Split(h, ",")); n != len(groups) {
			t.Fatalf("%q: %q splits into %d parts, want %d", groups, h, n, len(groups))
		}
		for i := 0; i < len(h); i++ {
			if c := h[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("%q: %q has control character %#x", groups, h, c)
			}
		}
		if sanitizeHeaderValue(h) != h && len(h) <= maxHeaderValueLen {
			t.Fatalf("%q: sanitizing %q changes it", groups, h)
		}
		back, err := decodeHeaderList(h)
		if err != nil || !slices.Equal(back, groups) {
			t.Fatalf("%q: %q decodes to %q (%v)", groups, h, back, err)
		}
	})
}

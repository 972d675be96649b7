package authgate

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseClaimPath(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want claimPath
		err  bool
	}{
		{name: "single key", in: "sub", want: claimPath{{key: "sub", index: -1}}},
		{name: "nested", in: "contactInformation.instituteWebmailAddress", want: claimPath{{key: "contactInformation", index: -1}, {key: "instituteWebmailAddress", index: -1}}},
		{name: "all elements", in: "person.roles[].role", want: claimPath{{key: "person", index: -1}, {key: "roles", all: true, index: -1}, {key: "role", index: -1}}},
		{name: "index", in: "a[0].b", want: claimPath{{key: "a", index: 0}, {key: "b", index: -1}}},
		{name: "index at end", in: "emails[12]", want: claimPath{{key: "emails", index: 12}}},
		{name: "key with dash and colon", in: "urn:x-claim.roles", want: claimPath{{key: "urn:x-claim", index: -1}, {key: "roles", index: -1}}},
		{name: "empty", in: "", err: true},
		{name: "too long", in: strings.Repeat("a", maxClaimPathLen+1), err: true},
		{name: "longest allowed", in: strings.Repeat("a", maxClaimPathLen), want: claimPath{{key: strings.Repeat("a", maxClaimPathLen), index: -1}}},
		{name: "leading dot", in: ".sub", err: true},
		{name: "trailing dot", in: "sub.", err: true},
		{name: "double dot", in: "a..b", err: true},
		{name: "only brackets", in: "[]", err: true},
		{name: "brackets without key", in: "a.[0]", err: true},
		{name: "unclosed bracket", in: "a[", err: true},
		{name: "unclosed index", in: "a[0", err: true},
		{name: "text after bracket", in: "a[0]b", err: true},
		{name: "two brackets", in: "a[0][1]", err: true},
		{name: "nested brackets", in: "a[[0]]", err: true},
		{name: "negative index", in: "a[-1]", err: true},
		{name: "signed index", in: "a[+1]", err: true},
		{name: "index with space", in: "a[ 1]", err: true},
		{name: "non-numeric index", in: "a[x]", err: true},
		{name: "huge index", in: "a[99999999999999999999999]", err: true},
		{name: "closing bracket only", in: "a]", err: true},
		{name: "closing bracket in key", in: "a]b.c", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseClaimPath(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("parseClaimPath(%q) = %+v, want an error", tt.in, got)
				}
				if !errors.Is(err, errClaimPath) {
					t.Errorf("error %v does not wrap errClaimPath", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseClaimPath(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseClaimPath(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := pathString(got); s != tt.in {
				t.Errorf("pathString round trip = %q, want %q", s, tt.in)
			}
		})
	}
}

func TestClaimPathStrings(t *testing.T) {
	tests := []struct {
		path string
		want []string
	}{
		{"sub", []string{"u-1"}},
		{"email", []string{"Ada@Example.test"}},
		{"groups", []string{"admins", "dev"}},
		{"groups[]", []string{"admins", "dev"}},
		{"groups[1]", []string{"dev"}},
		{"groups[2]", []string{}},
		{"single_group", []string{"ops"}},
		{"person.roles[].role", []string{"teacher", "admin", "nested", "list"}},
		{"person.roles[0].role", []string{"teacher"}},
		{"person.roles[2].role", []string{}},
		{"person.roles[3].role", []string{}}, // a string, not an object
		{"person.roles[].dept", []string{"cs", "math"}},
		{"person.id", []string{"42"}},
		{"contactInformation.instituteWebmailAddress", []string{"ada@ntpu.test"}},
		{"a[0].b", []string{"first"}},
		{"a[1].b", []string{"second"}},
		{"a[].b", []string{"first", "second"}},
		{"emails[0]", []string{"one@example.test"}},
		{"age", []string{"36"}},
		{"ratio", []string{"0.5"}},
		{"active", []string{"true"}},
		{"matrix[]", []string{"1", "2", "3"}}, // [] then the final one-level flatten
		{"matrix[0]", []string{"1", "2"}},
		{"nothing", []string{}},
		{"empty", []string{}},
		{"missing", []string{}},
		{"missing.deeper", []string{}},
		{"sub.deeper", []string{}}, // a string has no keys
		{"sub[]", []string{}},      // a string is not an array
		{"sub[0]", []string{}},     // nor indexable
		{"person", []string{}},     // objects are not scalars
		{"person.roles[5].role", []string{}},
		{"person.roles[1000000].role", []string{}},
	}
	for _, number := range []bool{true, false} {
		claims := claimsTestDecode(t, claimsTestDoc, number)
		for _, tt := range tests {
			name := tt.path + "/float64"
			if number {
				name = tt.path + "/json.Number"
			}
			t.Run(name, func(t *testing.T) {
				p, err := parseClaimPath(tt.path)
				if err != nil {
					t.Fatal(err)
				}
				got := p.strings(claims)
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("strings(%q) = %q, want %q", tt.path, got, tt.want)
				}
			})
		}
	}
}

func TestClaimPathEval(t *testing.T) {
	claims := claimsTestDecode(t, claimsTestDoc, true)
	tests := []struct {
		name string
		path string
		want []any
	}{
		{"number stays json.Number", "age", []any{json.Number("36")}},
		{"big number keeps its digits", "big", []any{json.Number("12345678901234567890")}},
		{"bool", "active", []any{true}},
		{"object", "contactInformation", []any{map[string]any{"instituteWebmailAddress": "ada@ntpu.test"}}},
		{"null is nothing", "nothing", nil},
		{"arrays flatten one level", "matrix", []any{[]any{json.Number("1"), json.Number("2")}, []any{json.Number("3")}}},
		{"missing", "nope", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseClaimPath(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.eval(claims); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("eval(%q) = %#v, want %#v", tt.path, got, tt.want)
			}
		})
	}
	t.Run("nil claims", func(t *testing.T) {
		p, _ := parseClaimPath("a[].b")
		if got := p.eval(nil); got != nil {
			t.Errorf("eval(nil) = %v", got)
		}
	})
}

func TestScalarString(t *testing.T) {
	tests := []struct {
		in   any
		want string
		ok   bool
	}{
		{"x", "x", true},
		{json.Number("1.50"), "1.50", true},
		{float64(3), "3", true},
		{float64(1e21), "1000000000000000000000", true},
		{float64(-0.25), "-0.25", true},
		{true, "true", true},
		{false, "false", true},
		{nil, "", false},
		{map[string]any{}, "", false},
		{[]any{"a"}, "", false},
	}
	for _, tt := range tests {
		got, ok := scalarString(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("scalarString(%#v) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzClaimPath(f *testing.F) {
	for _, seed := range []string{
		"sub", "person.roles[].role", "contactInformation.instituteWebmailAddress", "a[0].b",
		"a[].b", "matrix[0]", "matrix[]", "groups[1]", "person.roles[5].role", "a[", "a]", "a[+1]",
		"a..b", "[]", "a[99999999999999999999]", "x.y.z.w[3][]", "é.ü[0]",
		"person.roles[role=admin].dept", "person[keys]", "person.roles[].(role/dept)", "groups|single_group",
		"'a.b'[0]", "a|", "(a/b)", "a.(b", "x[a=]", "'unclosed",
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
		alternatives := 1
		if p[0].alts != nil {
			alternatives = len(p[0].alts)
		}
		for _, doc := range []map[string]any{numbers, floats, nil, {}} {
			vals := p.eval(doc)
			if len(vals) > nodes*alternatives {
				t.Fatalf("%q reached %d values in %d nodes", s, len(vals), nodes)
			}
			for _, str := range p.strings(doc) {
				if str == "" {
					t.Fatalf("%q yielded an empty string", s)
				}
			}
			// The one-key shortcut of strings and first is what eval
			// reaches.
			var want []string
			for _, v := range vals {
				if str, ok := scalarString(v); ok && str != "" {
					want = append(want, str)
				}
			}
			if got := p.strings(doc); len(got) != len(want) || !slices.Equal(got, want) {
				t.Fatalf("%q: strings %q, eval reaches %q", s, got, want)
			}
			if got := p.first(doc); len(want) > 0 && got != want[0] || len(want) == 0 && got != "" {
				t.Fatalf("%q: first %q, eval reaches %q", s, got, want)
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

// TestClaimPathAPIForms: the path forms that read identities spread over an
// API's lists (GitHub's /user/emails and /user/teams): filters, member
// names, joined tuples, alternatives and quoted keys.
func TestClaimPathAPIForms(t *testing.T) {
	claims := claimsTestDecode(t, `{
		"emails": [
			{"email": "old@example.test", "primary": false, "verified": true},
			{"email": "main@example.test", "primary": true, "verified": false},
			{"email": "work@example.test", "primary": true, "verified": true}
		],
		"orgs": [{"login": "acme"}, {"login": "myorg"}],
		"teams": [
			{"slug": "ops", "organization": {"login": "myorg"}},
			{"slug": "dev", "organization": {"login": "acme"}},
			{"slug": "orphan"}
		],
		"urn:zitadel:iam:org:project:roles": {"viewer": {"1": "a"}, "admin": {"1": "a"}},
		"https://example.com/roles": ["editor"],
		"n": 7, "sub": "u1"
	}`, true)
	for _, tt := range []struct {
		path string
		want []string
	}{
		{"emails[primary=true,verified=true].email", []string{"work@example.test"}},
		{"emails[verified=true].email", []string{"old@example.test", "work@example.test"}},
		{"emails[primary=maybe].email", []string{}},
		{"orgs[].login|teams[].(organization.login/slug)", []string{"acme", "myorg", "myorg/ops", "acme/dev"}},
		{"missing|orgs[0].login", []string{"acme"}},
		{"urn:zitadel:iam:org:project:roles[keys]", []string{"admin", "viewer"}},
		{"'https://example.com/roles'", []string{"editor"}},
		{"'https://example.com/roles'[0]", []string{"editor"}},
		{"(n/orgs[1].login)", []string{"7/myorg"}},
		{"n[keys]", []string{}},
		{"orgs[login=acme]", []string{}}, // objects are not scalars
	} {
		t.Run(tt.path, func(t *testing.T) {
			p, err := parseClaimPath(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.strings(claims); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("strings(%q) = %q, want %q", tt.path, got, tt.want)
			}
			if s := pathString(p); s != tt.path {
				t.Errorf("pathString round trip = %q, want %q", s, tt.path)
			}
		})
	}
	for _, bad := range []string{
		"a|", "|a", "(a)", "(a/b", "a.(b/c).d", "(a/(b/c))", "x[a=]", "x[=b]", "x[a=b,]", "'unclosed", "''",
		"a/b", "a'b", "x[a=b=c]", "(a|b/c)",
	} {
		if p, err := parseClaimPath(bad); err == nil || !errors.Is(err, errClaimPath) {
			t.Errorf("parseClaimPath(%q) = %+v, %v; want an error wrapping errClaimPath", bad, p, err)
		}
	}
	// keep_groups leaves claims read through these forms whole (the
	// identity is filtered instead).
	c, err := compileClaimMap(ClaimMap{Groups: "orgs[].login|teams[].(organization.login/slug)", KeepGroups: []string{"myorg*"}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.identity("gh", claims, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(id.Groups, []string{"myorg", "myorg/ops"}) {
		t.Errorf("groups %q, want myorg and myorg/ops", id.Groups)
	}
	if stored, print := c.narrowForSession("gh", claims, id); print != "" || !reflect.DeepEqual(stored, claims) {
		t.Errorf("narrowForSession changed the claims or fingerprinted them (%q)", print)
	}
}

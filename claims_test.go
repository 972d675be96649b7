package authgate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// claimsTestDoc is a nested provider answer in the shape of the NTPU and
// Citesphere dialects, decoded the way userinfo decodes (json.Number).
const claimsTestDoc = `{
	"sub": "u-1",
	"email": "Ada@Example.test",
	"preferred_username": "ada",
	"name": "Ada Lovelace",
	"groups": ["admins", "dev"],
	"single_group": "ops",
	"age": 36,
	"ratio": 0.5,
	"big": 12345678901234567890,
	"active": true,
	"nothing": null,
	"empty": "",
	"person": {
		"roles": [
			{"role": "teacher", "dept": "cs"},
			{"role": "admin"},
			{"dept": "math"},
			"not-an-object",
			{"role": ["nested", "list"]},
			{"role": {"deep": "object"}}
		],
		"id": 42
	},
	"contactInformation": {"instituteWebmailAddress": "ada@ntpu.test"},
	"a": [{"b": "first"}, {"b": "second"}],
	"matrix": [[1, 2], [3]],
	"emails": ["one@example.test", "two@example.test"]
}`

func claimsTestDecode(t testing.TB, s string, useNumber bool) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	if useNumber {
		dec.UseNumber()
	}
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding test document: %v", err)
	}
	return m
}

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

func TestCompileClaimMap(t *testing.T) {
	tests := []struct {
		name string
		m    ClaimMap
		err  string
	}{
		{name: "defaults", m: ClaimMap{}},
		{name: "nested paths", m: ClaimMap{Email: "contactInformation.instituteWebmailAddress", Groups: "person.roles[].role"}},
		{name: "bad user", m: ClaimMap{User: "a..b"}, err: "claim user"},
		{name: "bad email", m: ClaimMap{Email: "x["}, err: "claim email"},
		{name: "bad username", m: ClaimMap{PreferredUsername: "[0]"}, err: "claim preferred_username"},
		{name: "bad name", m: ClaimMap{Name: "."}, err: "claim name"},
		{name: "bad groups", m: ClaimMap{Groups: "g[-1]"}, err: "claim groups"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compileClaimMap(tt.m)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, errClaimPath) {
					t.Fatalf("compileClaimMap = %v, want an error about %q wrapping errClaimPath", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.user == nil || c.email == nil || c.username == nil || c.name == nil || c.groups == nil {
				t.Errorf("a path is missing: %+v", c)
			}
		})
	}
}

func TestClaimMapIdentity(t *testing.T) {
	doc := claimsTestDecode(t, claimsTestDoc, true)
	ntpu := claimsTestDecode(t, `{"person":{"id":"410","roles":[{"role":"student"},{"role":"ta"}]},"contactInformation":{"instituteWebmailAddress":"s410@ntpu.test"}}`, true)
	tests := []struct {
		name   string
		m      ClaimMap
		claims map[string]any
		strict bool
		want   *Identity // Claims not compared
		err    string
	}{
		{
			name: "default mapping", claims: doc, strict: true,
			want: &Identity{Provider: "p", ID: "u-1", Email: "Ada@Example.test", PreferredUsername: "ada", Name: "Ada Lovelace", Groups: []string{"admins", "dev"}},
		},
		{
			name: "nested mapping", claims: ntpu, strict: true,
			m:    ClaimMap{User: "person.id", Email: "contactInformation.instituteWebmailAddress", Groups: "person.roles[].role"},
			want: &Identity{Provider: "p", ID: "410", Email: "s410@ntpu.test", Groups: []string{"student", "ta"}},
		},
		{
			name: "number as id", claims: doc, strict: true, m: ClaimMap{User: "person.id"},
			want: &Identity{Provider: "p", ID: "42", Email: "Ada@Example.test", PreferredUsername: "ada", Name: "Ada Lovelace", Groups: []string{"admins", "dev"}},
		},
		{
			name: "first of several values", claims: doc, strict: true, m: ClaimMap{Email: "emails"},
			want: &Identity{Provider: "p", ID: "u-1", Email: "one@example.test", PreferredUsername: "ada", Name: "Ada Lovelace", Groups: []string{"admins", "dev"}},
		},
		{
			name: "default paths may be absent", claims: map[string]any{"sub": "x"}, strict: true,
			want: &Identity{Provider: "p", ID: "x", Groups: []string{}},
		},
		{name: "no user id is an error when strict", claims: map[string]any{"email": "a@b"}, strict: true, err: "claim user"},
		{
			name: "no user id is tolerated when lenient", claims: map[string]any{"email": "a@b"},
			want: &Identity{Provider: "p", Email: "a@b", Groups: []string{}},
		},
		// Only the user id is required: an explicit path that finds nothing
		// is an empty field, at login as later (issue 16, item 7).
		{
			name: "explicit paths that find nothing are empty, strict too", claims: doc, strict: true,
			m:    ClaimMap{Email: "mail", PreferredUsername: "login", Name: "display.name", Groups: "person.roles[].title"},
			want: &Identity{Provider: "p", ID: "u-1", Groups: []string{}},
		},
		{
			name: "explicit path to an object is empty", claims: doc, strict: true, m: ClaimMap{Email: "contactInformation"},
			want: &Identity{Provider: "p", ID: "u-1", PreferredUsername: "ada", Name: "Ada Lovelace", Groups: []string{"admins", "dev"}},
		},
		{name: "required field absent", claims: doc, strict: true, m: ClaimMap{Name: "display.name", Required: []string{"name"}}, err: "require_claim name"},
		{name: "required groups absent", claims: map[string]any{"sub": "x"}, strict: true, m: ClaimMap{Required: []string{"groups"}}, err: "require_claim groups"},
		{name: "required path absent", claims: doc, strict: true, m: ClaimMap{Required: []string{"person.department"}}, err: "require_claim person.department"},
		{
			name: "required fields and paths present", claims: doc, strict: true,
			m:    ClaimMap{Required: []string{"email", "groups", "person.id", "user"}},
			want: &Identity{Provider: "p", ID: "u-1", Email: "Ada@Example.test", PreferredUsername: "ada", Name: "Ada Lovelace", Groups: []string{"admins", "dev"}},
		},
		{
			name: "required claims are not enforced on stored sessions", claims: map[string]any{"sub": "x"},
			m:    ClaimMap{Required: []string{"groups"}},
			want: &Identity{Provider: "p", ID: "x", Groups: []string{}},
		},
		// email_verified (item 6).
		{
			name: "email_verified false hides the address", claims: map[string]any{"sub": "x", "email": "x@example.test", "email_verified": false}, strict: true,
			want: &Identity{Provider: "p", ID: "x", Groups: []string{}, EmailUnverified: true},
		},
		{
			name: `email_verified "false" as a string hides it too`, claims: map[string]any{"sub": "x", "email": "x@example.test", "email_verified": "False"},
			want: &Identity{Provider: "p", ID: "x", Groups: []string{}, EmailUnverified: true},
		},
		{
			name: "email_verified true keeps it", claims: map[string]any{"sub": "x", "email": "x@example.test", "email_verified": true}, strict: true,
			want: &Identity{Provider: "p", ID: "x", Email: "x@example.test", Groups: []string{}},
		},
		{
			name: "no email_verified keeps it (as before)", claims: map[string]any{"sub": "x", "email": "x@example.test"}, strict: true,
			want: &Identity{Provider: "p", ID: "x", Email: "x@example.test", Groups: []string{}},
		},
		{
			name: "allow_unverified_email keeps it", claims: map[string]any{"sub": "x", "email": "x@example.test", "email_verified": false}, strict: true,
			m:    ClaimMap{AllowUnverifiedEmail: true},
			want: &Identity{Provider: "p", ID: "x", Email: "x@example.test", Groups: []string{}},
		},
		{
			name: "a required address that is unverified", claims: map[string]any{"sub": "x", "email": "x@example.test", "email_verified": false}, strict: true,
			m: ClaimMap{Required: []string{"email"}}, err: "unverified",
		},
		{
			name: "a user id read from an unverified address is no user id", claims: map[string]any{"email": "x@example.test", "email_verified": "false"},
			m: ClaimMap{User: "email"}, err: "unverified",
		},
		{
			name: "explicit paths lenient", claims: doc, m: ClaimMap{Email: "mail", Groups: "person.roles[].title"},
			want: &Identity{Provider: "p", ID: "u-1", PreferredUsername: "ada", Name: "Ada Lovelace", Groups: []string{}},
		},
		{name: "nil claims strict", strict: true, err: "claim user"},
		{name: "nil claims lenient", want: &Identity{Provider: "p", Groups: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compileClaimMap(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.identity("p", tt.claims, tt.strict)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("identity = %+v, %v; want an error about %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Claims = nil
			// The header-ready values are derived from the fields compared
			// below; check them on their own.
			if got.out.id != sanitizeHeaderValue(got.ID) || got.out.groups != strings.Join(got.Groups, ",") {
				t.Errorf("header values %+v do not match the identity", got.out)
			}
			got.out = identityOut{}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("identity =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestSanitizeHeaderValue(t *testing.T) {
	long := strings.Repeat("x", maxHeaderValueLen+10)
	// A group list just over the limit: the cut must fall on a comma.
	var groups strings.Builder
	for i := 0; groups.Len() <= maxHeaderValueLen; i++ {
		if i > 0 {
			groups.WriteByte(',')
		}
		groups.WriteString("group-" + strings.Repeat("g", i%7))
	}
	list := groups.String()
	tests := []struct {
		name, in, want string
	}{
		{"clean", "Ada Lovelace", "Ada Lovelace"},
		{"empty", "", ""},
		{"CRLF injection", "ada\r\nX-Forwarded-User: admin", "adaX-Forwarded-User: admin"},
		{"bare LF", "a\nb", "ab"},
		{"NUL", "a\x00b", "ab"},
		{"DEL", "a\x7fb", "ab"},
		{"tab and other controls", "a\tb\x01c\x1fd", "abcd"},
		{"unicode kept", "Zoë 李", "Zoë 李"},
		{"unicode with control", "Zoë\r\n李", "Zoë李"},
		{"exactly the limit", long[:maxHeaderValueLen], long[:maxHeaderValueLen]},
		{"too long without a separator is dropped", long, ""},
		{"too long list cut at a comma", list, list[:strings.LastIndexByte(list[:maxHeaderValueLen], ',')]},
		{"controls removed before measuring", strings.Repeat("\r", 50) + long[:maxHeaderValueLen], long[:maxHeaderValueLen]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sanitizeHeaderValue(tt.in); got != tt.want {
				t.Errorf("sanitizeHeaderValue(%q) = %q, want %q", claimsTestShort(tt.in), claimsTestShort(got), claimsTestShort(tt.want))
			}
		})
	}
	t.Run("bounded and valid UTF-8 at the limit", func(t *testing.T) {
		for _, in := range []string{
			strings.Repeat("a", maxHeaderValueLen-1) + "é,b",
			strings.Repeat("é,", maxHeaderValueLen),
			strings.Repeat("李", maxHeaderValueLen),
		} {
			got := sanitizeHeaderValue(in)
			if len(got) > maxHeaderValueLen || !utf8.ValidString(got) {
				t.Errorf("got %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
			}
		}
	})
	t.Run("no control byte survives", func(t *testing.T) {
		var b bytes.Buffer
		for c := 0; c < 256; c++ {
			b.WriteByte(byte(c))
		}
		got := sanitizeHeaderValue(b.String())
		for i := 0; i < len(got); i++ {
			if c := got[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("byte %#x survived in %q", c, got)
			}
		}
	})
}

func claimsTestShort(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func TestMergeClaims(t *testing.T) {
	big := strings.Repeat("x", maxClaimsJSON)
	tests := []struct {
		name     string
		id, info map[string]any
		want     map[string]any
		err      bool
	}{
		{
			name: "userinfo wins",
			id:   map[string]any{"sub": "s", "email": "old@example.test", "name": "Old"},
			info: map[string]any{"email": "new@example.test", "groups": []any{"g"}},
			want: map[string]any{"sub": "s", "email": "new@example.test", "name": "Old", "groups": []any{"g"}},
		},
		{
			name: "registered claims dropped",
			id: map[string]any{
				"sub": "s", "iss": "https://idp", "aud": "c", "exp": 1.0, "iat": 1.0, "nbf": 1.0, "auth_time": 1.0,
				"at_hash": "h", "c_hash": "h", "nonce": "n", "jti": "j", "azp": "c", "typ": "ID", "session_state": "x",
				"acr": "1", "amr": []any{"pwd"},
			},
			info: map[string]any{"exp": 2.0, "locale": "de"},
			want: map[string]any{"sub": "s", "locale": "de"},
		},
		{name: "both nil", want: map[string]any{}},
		{name: "only userinfo", info: map[string]any{"sub": "s"}, want: map[string]any{"sub": "s"}},
		{name: "too large", id: map[string]any{"sub": "s", "blob": big}, err: true},
		{name: "too large from userinfo", id: map[string]any{"sub": "s"}, info: map[string]any{"blob": big}, err: true},
		{name: "large but only bookkeeping", id: map[string]any{"sub": "s", "nonce": big}, want: map[string]any{"sub": "s"}},
		{name: "unencodable", id: map[string]any{"sub": "s", "f": func() {}}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idCopy := claimsTestCopy(tt.id)
			got := mergeClaims(tt.id, tt.info)
			err := checkClaimsSize(got)
			if tt.err {
				if err == nil {
					t.Fatalf("mergeClaims succeeded with %d keys, want an error", len(got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("mergeClaims = %v, want %v", got, tt.want)
			}
			if len(idCopy) != len(tt.id) {
				t.Errorf("mergeClaims modified its input")
			}
		})
	}
}

func claimsTestCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestKeepGroups: keep_groups narrows the identity's groups, and the
// stored claims where the path allows, without touching the input.
func TestKeepGroups(t *testing.T) {
	c, err := compileClaimMap(ClaimMap{KeepGroups: []string{"app-*", "admins"}})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"sub": "u", "groups": []any{"app-read", "staff", "admins", "app-write", "administrators", 7.0}}
	before := fmt.Sprint(claims)

	id, err := c.identity("p", claims, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"app-read", "admins", "app-write"}; !reflect.DeepEqual(id.Groups, want) {
		t.Errorf("identity groups = %q, want %q", id.Groups, want)
	}
	if id.out.groups != "app-read,admins,app-write" {
		t.Errorf("groups header = %q", id.out.groups)
	}
	pruned, _ := c.pruneGroups(claims)
	if want := []any{"app-read", "admins", "app-write"}; !reflect.DeepEqual(pruned["groups"], want) {
		t.Errorf("stored groups = %v, want %v", pruned["groups"], want)
	}
	if fmt.Sprint(claims) != before {
		t.Errorf("pruneGroups changed its input: %v", claims)
	}

	t.Run("none kept is no missing claim", func(t *testing.T) {
		c, _ := compileClaimMap(ClaimMap{Groups: "groups", KeepGroups: []string{"nothing-*"}})
		id, err := c.identity("p", claims, true)
		if err != nil || len(id.Groups) != 0 {
			t.Fatalf("identity = %v, %v; want no groups, no error", id, err)
		}
		stored, _ := c.pruneGroups(claims)
		if g, ok := stored["groups"].([]any); !ok || len(g) != 0 {
			t.Errorf("stored groups = %#v, want an empty list", stored["groups"])
		}
		// The stored session maps to the same identity later.
		if id, err := c.identity("p", stored, false); err != nil || len(id.Groups) != 0 {
			t.Errorf("stored session's identity = %v, %v", id, err)
		}
	})
	t.Run("nested path is copied along the way", func(t *testing.T) {
		c, _ := compileClaimMap(ClaimMap{Groups: "realm_access.roles", KeepGroups: []string{"app-*"}})
		inner := map[string]any{"roles": []any{"app-a", "offline_access"}, "other": "x"}
		claims := map[string]any{"sub": "u", "realm_access": inner}
		stored, _ := c.pruneGroups(claims)
		got := stored["realm_access"].(map[string]any)
		if !reflect.DeepEqual(got["roles"], []any{"app-a"}) || got["other"] != "x" {
			t.Errorf("stored realm_access = %v", got)
		}
		if len(inner["roles"].([]any)) != 2 {
			t.Error("the provider's nested map was changed")
		}
	})
	t.Run("single value", func(t *testing.T) {
		c, _ := compileClaimMap(ClaimMap{Groups: "role", KeepGroups: []string{"app-*"}})
		if stored, _ := c.pruneGroups(map[string]any{"role": "staff"}); stored["role"] != nil {
			t.Error("a single unkept value must go")
		}
		if stored, _ := c.pruneGroups(map[string]any{"role": "app-x"}); stored["role"] != "app-x" {
			t.Errorf("a single kept value = %v", stored["role"])
		}
	})
	t.Run("arrays of objects stay whole in the session", func(t *testing.T) {
		c, _ := compileClaimMap(ClaimMap{Groups: "roles[].name", KeepGroups: []string{"app-*"}})
		claims := map[string]any{"sub": "u", "roles": []any{map[string]any{"name": "app-a"}, map[string]any{"name": "staff"}}}
		if stored, narrowed := c.pruneGroups(claims); narrowed || !reflect.DeepEqual(stored, claims) {
			t.Errorf("stored = %v, want the claims unchanged", stored)
		}
		id, _ := c.identity("p", claims, false)
		if !reflect.DeepEqual(id.Groups, []string{"app-a"}) {
			t.Errorf("identity groups = %q", id.Groups)
		}
	})
	t.Run("no keep_groups keeps everything", func(t *testing.T) {
		c, _ := compileClaimMap(ClaimMap{})
		if stored, narrowed := c.pruneGroups(claims); narrowed || !reflect.DeepEqual(stored, claims) {
			t.Errorf("stored = %v", stored)
		}
	})
	t.Run("what is not a group stays", func(t *testing.T) {
		// Another field's path may lie under the groups claim.
		c, _ := compileClaimMap(ClaimMap{Groups: "groups", Email: "groups.mail", KeepGroups: []string{"app-*"}})
		claims := map[string]any{"sub": "u", "groups": map[string]any{"mail": "a@b.test"}}
		if stored, _ := c.pruneGroups(claims); !reflect.DeepEqual(stored, claims) {
			t.Errorf("stored = %v, want the object kept", stored)
		}
		mixed := map[string]any{"sub": "u", "groups": []any{"app-a", "staff", map[string]any{"x": 1.0}}}
		stored, _ := c.pruneGroups(mixed)
		if want := []any{"app-a", map[string]any{"x": 1.0}}; !reflect.DeepEqual(stored["groups"], want) {
			t.Errorf("stored groups = %v, want %v", stored["groups"], want)
		}
	})
	t.Run("narrowing never changes who the user is", func(t *testing.T) {
		// Email read from the first group: narrowing would change it,
		// so the session keeps the claims whole.
		c, _ := compileClaimMap(ClaimMap{Groups: "groups", Email: "groups[0]", KeepGroups: []string{"app-*"}})
		claims := map[string]any{"sub": "u", "groups": []any{"first@x.test", "app-a"}}
		id, err := c.identity("p", claims, true)
		if err != nil {
			t.Fatal(err)
		}
		stored, print := c.narrowForSession("p", claims, id)
		if print != "" || !reflect.DeepEqual(stored, claims) {
			t.Errorf("narrowForSession = %v, %q; want the claims whole, no fingerprint", stored, print)
		}
		plain, _ := compileClaimMap(ClaimMap{KeepGroups: []string{"app-*"}})
		id, _ = plain.identity("p", claims, true)
		if _, print := plain.narrowForSession("p", claims, id); print == "" || print != plain.keepPrint {
			t.Errorf("fingerprint %q, want %q", print, plain.keepPrint)
		}
		other, _ := compileClaimMap(ClaimMap{KeepGroups: []string{"app-*", "staff"}})
		if other.keepPrint == plain.keepPrint {
			t.Error("other keep_groups, same fingerprint")
		}
	})
	if _, err := compileClaimMap(ClaimMap{KeepGroups: []string{""}}); err == nil {
		t.Error("an empty pattern must be refused")
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

package authgate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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

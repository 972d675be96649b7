package authgate

import (
	"reflect"
	"strings"
	"testing"
)

func TestCompileRules(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		err   string
	}{
		{name: "none", rules: nil},
		{name: "every field", rules: []Rule{
			{Action: "allow", Field: "email", Values: []string{"*@example.test"}},
			{Action: "deny", Field: "domain", Values: []string{"evil.test"}},
			{Action: "allow", Field: "user", Values: []string{"u-1"}},
			{Action: "allow", Field: "group", Values: []string{"admins"}},
			{Action: "allow", Field: "claim", Claim: "person.roles[].role", Values: []string{"teacher"}},
		}},
		{name: "bad action", rules: []Rule{{Action: "permit", Field: "user", Values: []string{"x"}}}, err: `rule 1: action must be allow or deny, not "permit"`},
		{name: "action is case-sensitive", rules: []Rule{{Action: "Allow", Field: "user", Values: []string{"x"}}}, err: "rule 1: action"},
		{name: "empty action", rules: []Rule{{Field: "user", Values: []string{"x"}}}, err: "rule 1: action"},
		{name: "unknown field", rules: []Rule{{Action: "allow", Field: "role", Values: []string{"x"}}}, err: `rule 1: unknown field "role"`},
		{name: "no values", rules: []Rule{{Action: "allow", Field: "group"}}, err: "rule 1: needs at least one value"},
		{name: "claim without path", rules: []Rule{{Action: "allow", Field: "claim", Values: []string{"x"}}}, err: "rule 1: invalid claim path"},
		{name: "claim with bad path", rules: []Rule{{Action: "allow", Field: "claim", Claim: "a[", Values: []string{"x"}}}, err: "rule 1: invalid claim path"},
		{name: "error names the right rule", rules: []Rule{
			{Action: "allow", Field: "user", Values: []string{"x"}},
			{Action: "deny", Field: "nope", Values: []string{"x"}},
		}, err: "rule 2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := compileRules(tt.rules)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("compileRules = %v, want an error containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.rules) {
				t.Errorf("compiled %d rules, want %d", len(got), len(tt.rules))
			}
		})
	}
}

// TestCompileRulesLeavesConfigAlone: lower-casing email and domain values
// must not rewrite the operator's config (it is re-marshalled by Caddy
// and may be shared between handlers).
func TestCompileRulesLeavesConfigAlone(t *testing.T) {
	rules := []Rule{{Action: "allow", Field: "email", Values: []string{"Ada@Example.TEST"}}}
	if _, err := compileRules(rules); err != nil {
		t.Fatal(err)
	}
	if got := rules[0].Values[0]; got != "Ada@Example.TEST" {
		t.Errorf("config value changed to %q", got)
	}
}

func TestRulesAllowed(t *testing.T) {
	ada := &Identity{
		ID: "u-1", Email: "Ada@Example.TEST", Groups: []string{"admins", "Dev"},
		Claims: map[string]any{"person": map[string]any{"roles": []any{map[string]any{"role": "teacher"}, map[string]any{"role": "admin"}}}, "level": 3.0},
	}
	bob := &Identity{ID: "u-2", Email: "bob@partner.test", Claims: map[string]any{}}
	noEmail := &Identity{ID: "u-3", Groups: []string{""}}
	tests := []struct {
		name  string
		rules []Rule
		id    *Identity
		want  bool
	}{
		{name: "no rules allows everyone", id: bob, want: true},
		{name: "email glob", rules: []Rule{{Action: "allow", Field: "email", Values: []string{"*@example.test"}}}, id: ada, want: true},
		{name: "email glob is case-insensitive on the pattern", rules: []Rule{{Action: "allow", Field: "email", Values: []string{"ADA@EXAMPLE.test"}}}, id: ada, want: true},
		{name: "email glob no match denies", rules: []Rule{{Action: "allow", Field: "email", Values: []string{"*@example.test"}}}, id: bob, want: false},
		{name: "email suffix confusion", rules: []Rule{{Action: "allow", Field: "email", Values: []string{"*@example.test"}}}, id: &Identity{ID: "x", Email: "eve@evilexample.test"}, want: false},
		{name: "email one of several values", rules: []Rule{{Action: "allow", Field: "email", Values: []string{"nobody@x.test", "bob@*"}}}, id: bob, want: true},
		{name: "domain exact", rules: []Rule{{Action: "allow", Field: "domain", Values: []string{"example.test"}}}, id: ada, want: true},
		{name: "domain is case-insensitive", rules: []Rule{{Action: "allow", Field: "domain", Values: []string{"EXAMPLE.TEST"}}}, id: ada, want: true},
		{name: "domain is not a suffix", rules: []Rule{{Action: "allow", Field: "domain", Values: []string{"test"}}}, id: ada, want: false},
		{name: "domain glob", rules: []Rule{{Action: "allow", Field: "domain", Values: []string{"*.test"}}}, id: bob, want: true},
		{name: "domain uses the last @", rules: []Rule{{Action: "allow", Field: "domain", Values: []string{"example.test"}}}, id: &Identity{ID: "x", Email: "a@example.test@evil.test"}, want: false},
		{name: "domain without email", rules: []Rule{{Action: "allow", Field: "domain", Values: []string{"*"}}}, id: noEmail, want: false},
		{name: "email star does not match an empty email", rules: []Rule{{Action: "allow", Field: "email", Values: []string{"*"}}}, id: noEmail, want: false},
		{name: "user", rules: []Rule{{Action: "allow", Field: "user", Values: []string{"u-1"}}}, id: ada, want: true},
		{name: "user is case-sensitive", rules: []Rule{{Action: "allow", Field: "user", Values: []string{"U-1"}}}, id: ada, want: false},
		{name: "group any of", rules: []Rule{{Action: "allow", Field: "group", Values: []string{"ops", "admins"}}}, id: ada, want: true},
		{name: "group is case-sensitive", rules: []Rule{{Action: "allow", Field: "group", Values: []string{"dev"}}}, id: ada, want: false},
		{name: "group glob", rules: []Rule{{Action: "allow", Field: "group", Values: []string{"adm*"}}}, id: ada, want: true},
		{name: "empty group never matches", rules: []Rule{{Action: "allow", Field: "group", Values: []string{"*"}}}, id: noEmail, want: false},
		{name: "claim path", rules: []Rule{{Action: "allow", Field: "claim", Claim: "person.roles[].role", Values: []string{"admin"}}}, id: ada, want: true},
		{name: "claim number", rules: []Rule{{Action: "allow", Field: "claim", Claim: "level", Values: []string{"3"}}}, id: ada, want: true},
		{name: "claim missing", rules: []Rule{{Action: "allow", Field: "claim", Claim: "person.roles[].role", Values: []string{"*"}}}, id: bob, want: false},
		{name: "claim with nil claims", rules: []Rule{{Action: "allow", Field: "claim", Claim: "x", Values: []string{"*"}}}, id: &Identity{ID: "x"}, want: false},
		{name: "deny only: unmatched allowed", rules: []Rule{{Action: "deny", Field: "domain", Values: []string{"partner.test"}}}, id: ada, want: true},
		{name: "deny only: matched denied", rules: []Rule{{Action: "deny", Field: "domain", Values: []string{"partner.test"}}}, id: bob, want: false},
		{name: "first match wins: deny before allow", rules: []Rule{
			{Action: "deny", Field: "user", Values: []string{"u-1"}},
			{Action: "allow", Field: "email", Values: []string{"*@example.test"}},
		}, id: ada, want: false},
		{name: "first match wins: allow before deny", rules: []Rule{
			{Action: "allow", Field: "email", Values: []string{"*@example.test"}},
			{Action: "deny", Field: "user", Values: []string{"u-1"}},
		}, id: ada, want: true},
		{name: "deny then allow: unmatched by both is denied", rules: []Rule{
			{Action: "deny", Field: "user", Values: []string{"u-9"}},
			{Action: "allow", Field: "group", Values: []string{"admins"}},
		}, id: bob, want: false},
		{name: "an allow rule after the match still makes the default deny", rules: []Rule{
			{Action: "deny", Field: "user", Values: []string{"u-9"}},
			{Action: "allow", Field: "group", Values: []string{"nobody"}},
		}, id: ada, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			compiled, err := compileRules(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			if got := allowed(compiled, tt.id); got != tt.want {
				t.Errorf("allowed = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAllowedClaimsFromCookie: claims that went through a session cookie
// hold numbers as json.Number; rules must see the same text.
func TestRulesAllowedClaimsFromCookie(t *testing.T) {
	claims := claimsTestDecode(t, `{"level": 3, "roles": [{"id": 7}]}`, true)
	rules, err := compileRules([]Rule{
		{Action: "allow", Field: "claim", Claim: "roles[].id", Values: []string{"7"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !allowed(rules, &Identity{ID: "x", Claims: claims}) {
		t.Error("json.Number claim did not match")
	}
	if !reflect.DeepEqual(rules[0].values, []string{"7"}) {
		t.Errorf("values = %q", rules[0].values)
	}
}

// TestWithinKept: a deny pattern passes only when every group it matches
// is kept; the check may refuse a safe pattern, never pass an unsafe one.
func TestWithinKept(t *testing.T) {
	for _, tc := range []struct {
		d    string
		kept []string
		want bool
	}{
		{"app-x*", []string{"app-*"}, true},
		{"app-?", []string{"app-*"}, true},
		{"*", []string{"*"}, true},
		{"*a", []string{"*a*"}, true},
		{"a*", []string{"*b"}, false},
		{"a*", []string{"a*b*"}, false},
		{"?*", []string{"a*"}, false},
		{"a*c", []string{"a?c"}, false}, // "abbc" matches a*c, not a?c
		{"x*", []string{"app-*", "x*"}, true},
	} {
		if got := withinKept(tc.d, tc.kept); got != tc.want {
			t.Errorf("withinKept(%q, %q) = %v, want %v", tc.d, tc.kept, got, tc.want)
		}
	}
}

// TestGroupValueRules: group rules match the user's groups one by one,
// exactly (or by glob), never a substring of the joined header: a group
// named "x,admins" is not admins.
func TestGroupValueRules(t *testing.T) {
	rules, err := compileRules([]Rule{{Action: "allow", Field: "group", Values: []string{"admins"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		groups []string
		want   bool
	}{
		{[]string{"admins"}, true},
		{[]string{"x", "admins"}, true},
		{[]string{"x,admins"}, false},
		{[]string{"admins,x"}, false},
		{[]string{"x%2Cadmins"}, false},
		{[]string{" admins"}, false},
		{[]string{"admins "}, false},
		{[]string{"ad\nmins"}, false},
		{[]string{"Admins"}, false},
	} {
		id := (&Identity{ID: "u", Groups: tc.groups}).prepare()
		if got := allowed(rules, id); got != tc.want {
			t.Errorf("groups %q: allowed %v, want %v", tc.groups, got, tc.want)
		}
	}
	deny, err := compileRules([]Rule{{Action: "deny", Field: "group", Values: []string{"x,admins"}}})
	if err != nil {
		t.Fatal(err)
	}
	if allowed(deny, &Identity{ID: "u", Groups: []string{"x", "admins"}}) != true {
		t.Error("deny group x,admins refused a user in x and admins")
	}
	if allowed(deny, &Identity{ID: "u", Groups: []string{"x,admins"}}) != false {
		t.Error("deny group x,admins let the user in x,admins through")
	}
}

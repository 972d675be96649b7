package authgate

import (
	"fmt"
	"slices"
	"strings"
)

// Rule allows or denies signed-in users by one attribute.
type Rule struct {
	// Action is "allow" or "deny".
	Action string `json:"action"`
	// Field is what the rule looks at: "email" (glob on the address),
	// "domain" (the email's domain, exact or glob), "user" (user id),
	// "group" (any of the groups) or "claim" (any value at Claim).
	Field string `json:"field"`
	// Claim is the claim path, for Field "claim".
	Claim string `json:"claim,omitempty"`
	// Values are glob patterns (`*` any run, `?` one character); the rule
	// matches when any matches. Email and domain compare case-insensitively.
	Values []string `json:"values"`
}

type compiledRule struct {
	allow  bool
	field  string
	claim  claimPath
	values []string
	fold   bool
}

func compileRules(rules []Rule) ([]compiledRule, error) {
	out := make([]compiledRule, 0, len(rules))
	for i, r := range rules {
		// A copy: lower-casing below must not rewrite the caller's config.
		cr := compiledRule{field: r.Field, values: slices.Clone(r.Values)}
		switch r.Action {
		case "allow":
			cr.allow = true
		case "deny":
		default:
			return nil, fmt.Errorf("rule %d: action must be allow or deny, not %q", i+1, r.Action)
		}
		switch r.Field {
		case "email", "domain":
			cr.fold = true
			for j, v := range cr.values {
				cr.values[j] = strings.ToLower(v)
			}
		case "user", "group":
		case "claim":
			p, err := parseClaimPath(r.Claim)
			if err != nil {
				return nil, fmt.Errorf("rule %d: %w", i+1, err)
			}
			cr.claim = p
		default:
			return nil, fmt.Errorf("rule %d: unknown field %q (email, domain, user, group or claim)", i+1, r.Field)
		}
		if len(r.Values) == 0 {
			return nil, fmt.Errorf("rule %d: needs at least one value", i+1)
		}
		out = append(out, cr)
	}
	return out, nil
}

// allowed evaluates the rules in order; the first match decides. With no
// match, the user is denied if any allow rule exists, else allowed.
func allowed(rules []compiledRule, id *Identity) bool {
	anyAllow := false
	for i := range rules {
		r := &rules[i]
		anyAllow = anyAllow || r.allow
		if r.matches(id) {
			return r.allow
		}
	}
	return !anyAllow
}

func (r *compiledRule) matches(id *Identity) bool {
	var subjects []string
	switch r.field {
	case "email":
		subjects = []string{id.Email}
	case "domain":
		if at := strings.LastIndexByte(id.Email, '@'); at >= 0 {
			subjects = []string{id.Email[at+1:]}
		}
	case "user":
		subjects = []string{id.ID}
	case "group":
		// Each group as the provider sent it, never the joined header:
		// "x,admins" is not admins.
		subjects = id.Groups
	case "claim":
		subjects = r.claim.strings(id.Claims)
	}
	for _, s := range subjects {
		if s == "" {
			continue
		}
		if r.fold {
			s = strings.ToLower(s)
		}
		for _, pat := range r.values {
			if globMatch(pat, s) {
				return true
			}
		}
	}
	return false
}

// checkRulesAgainstKeptGroups refuses rules that a provider's keep_groups
// would silently blunt, since a deny rule that never matches lets in the
// users it was written for:
//
//   - a group rule naming a group that keep_groups drops;
//   - a deny group rule whose pattern matches groups keep_groups may drop.
//     It must lie within a kept pattern: pattern D is safe when, read as
//     plain text, it matches a kept pattern K without '?', for then every
//     group matching D matches K (D's wildcards fall inside K's `*`);
//   - a claim rule on a path that reads into the groups claim, or that the
//     groups claim lies under: it would see narrowed claims.
//
// Allow rules with wildcards are not checked: one that can never match
// only turns users away.
func checkRulesAgainstKeptGroups(rules []Rule, provider string, c *compiledClaimMap) error {
	if len(c.keepGroups) == 0 {
		return nil
	}
	for i, r := range rules {
		refuse := func(what string) error {
			return fmt.Errorf("rule %d (%s %s %s) %s: provider %s keeps only the groups matching %s (keep_groups)",
				i+1, r.Action, r.Field, strings.Join(append(ruleClaim(r), r.Values...), " "), what, provider, strings.Join(c.keepGroups, " "))
		}
		switch r.Field {
		case "group":
			for _, v := range r.Values {
				if !strings.ContainsAny(v, "*?") {
					if !c.keeps(v) {
						return refuse("can never match")
					}
					continue
				}
				if r.Action == "deny" && !withinKept(v, c.keepGroups) {
					return refuse(fmt.Sprintf("may miss groups that are dropped: %s is not within a kept pattern", v))
				}
			}
		case "claim":
			if path, err := parseClaimPath(r.Claim); err == nil && c.overlapsGroups(path) {
				return refuse("reads the groups claim, which keep_groups narrows; use a group rule")
			}
		}
	}
	return nil
}

func ruleClaim(r Rule) []string {
	if r.Field == "claim" {
		return []string{r.Claim}
	}
	return nil
}

// withinKept reports whether every group matching pattern d matches one of
// the kept patterns (conservatively: see checkRulesAgainstKeptGroups).
func withinKept(d string, kept []string) bool {
	for _, k := range kept {
		if !strings.Contains(k, "?") && globMatch(k, d) {
			return true
		}
	}
	return false
}

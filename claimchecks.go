package authgate

// Checks on the claims a provider sends at login, before any site's rules:
// values the provider must vouch for (one Google Workspace domain, some
// Entra tenants), and the distributed claims of OpenID Connect Core §5.6.2
// by which a provider says it left a claim out of the token (Entra's
// groups overage).

import (
	"fmt"
	"slices"
	"strings"
)

// ClaimRequirement refuses a sign-in unless the claim at Path has one of
// Values.
type ClaimRequirement struct {
	// Path is a claim path (see ClaimMap), e.g. "hd" or "tid".
	Path string `json:"path"`
	// Values are glob patterns (`*`, `?`); one must match a value at Path.
	Values []string `json:"values"`
}

// compiledRequirement is a ClaimRequirement with its path parsed.
type compiledRequirement struct {
	path   claimPath
	values []string
}

func compileRequirements(reqs []ClaimRequirement) ([]compiledRequirement, error) {
	out := make([]compiledRequirement, 0, len(reqs))
	for _, r := range reqs {
		p, err := parseClaimPath(r.Path)
		if err != nil {
			return nil, fmt.Errorf("require_claim_value: %w", err)
		}
		if len(r.Values) == 0 || slices.Contains(r.Values, "") {
			return nil, fmt.Errorf("require_claim_value %s: needs one or more non-empty values", r.Path)
		}
		out = append(out, compiledRequirement{path: p, values: r.Values})
	}
	return out, nil
}

// checkRequirements returns an error naming the first requirement the
// claims do not meet.
func checkRequirements(reqs []compiledRequirement, claims map[string]any) error {
	for _, r := range reqs {
		got := r.path.strings(claims)
		ok := false
		for _, v := range got {
			for _, pat := range r.values {
				if globMatch(pat, v) {
					ok = true
				}
			}
		}
		if !ok {
			return fmt.Errorf("claim %s is %q, not one of %s (require_claim_value)", pathString(r.path), got, strings.Join(r.values, " "))
		}
	}
	return nil
}

// omittedClaim names the claim that the provider says it left out of the
// token because it was too large: OpenID Connect distributed claims
// (_claim_names naming it, §5.6.2), which is how Microsoft Entra ID marks
// the groups overage of a user in more than 200 groups, or Entra's
// hasgroups of the implicit flow. "" when the groups claim is whole.
func omittedClaim(groups claimPath, claims map[string]any) string {
	if len(groups) == 0 || groups[0].alts != nil || groups[0].tuple != nil {
		return ""
	}
	top := groups[0].key
	if names, ok := claims["_claim_names"].(map[string]any); ok {
		if _, ok := names[top]; ok {
			return top
		}
	}
	if v, _ := claims["has"+top].(bool); v {
		return top
	}
	return ""
}

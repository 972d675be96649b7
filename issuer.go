package authgate

// Issuers of multi-tenant providers. Microsoft Entra ID's common and
// organizations endpoints publish a discovery document whose issuer is a
// template, https://login.microsoftonline.com/{tenantid}/v2.0, while each
// token's iss names the user's tenant. go-oidc refuses both, rightly, for
// any other provider; here the template is configuration
// (multi_tenant_issuer), and a token's issuer must be the template filled
// in with the token's own claim, as Microsoft documents for multi-tenant
// applications.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
)

// issuerTemplate is an issuer with one {claim} in it.
type issuerTemplate struct {
	prefix, claim, suffix string
}

func parseIssuerTemplate(s string) (*issuerTemplate, error) {
	open := strings.IndexByte(s, '{')
	closing := strings.IndexByte(s, '}')
	if open < 0 || closing < open || strings.Count(s, "{") != 1 || strings.Count(s, "}") != 1 {
		return nil, fmt.Errorf("%q must contain exactly one {claim}, e.g. https://login.microsoftonline.com/{tid}/v2.0", s)
	}
	t := &issuerTemplate{prefix: s[:open], claim: s[open+1 : closing], suffix: s[closing+1:]}
	if t.claim == "" || strings.ContainsAny(t.claim, claimKeyStops) {
		return nil, fmt.Errorf("%q: {%s} must name a top-level claim", s, t.claim)
	}
	if !strings.HasPrefix(t.prefix, "https://") && !strings.HasPrefix(t.prefix, "http://") {
		return nil, fmt.Errorf("%q is not an http(s) URL", s)
	}
	return t, nil
}

// match reports whether iss has the template's form, and whether it is
// the template itself (its tenant a placeholder such as {tenantid}) rather
// than one tenant's issuer.
func (t *issuerTemplate) match(iss string) (isTemplate, ok bool) {
	middle, found := strings.CutPrefix(iss, t.prefix)
	if !found {
		return false, false
	}
	middle, found = strings.CutSuffix(middle, t.suffix)
	if !found || middle == "" || strings.ContainsAny(middle, "/?#") {
		return false, false
	}
	if strings.HasPrefix(middle, "{") && strings.HasSuffix(middle, "}") {
		return true, true
	}
	return false, !strings.ContainsAny(middle, "{}")
}

// issuerFor is the issuer a token with these claims must have.
func (t *issuerTemplate) issuerFor(claims map[string]any) (string, bool) {
	v, _ := claims[t.claim].(string)
	if v == "" || strings.ContainsAny(v, "/?#{}") {
		return "", false
	}
	return t.prefix + v + t.suffix, true
}

// idVerifier verifies ID tokens (and JWTs signed like them) with go-oidc,
// and, for a multi-tenant provider, checks each token's issuer against its
// own tenant. Every verification of a provider's tokens goes through it.
type idVerifier struct {
	v *oidc.IDTokenVerifier
	// tenants is the issuer template when discovery named the template
	// itself: go-oidc then skips the issuer check and Verify does it.
	tenants *issuerTemplate
}

// Verify checks raw and returns the token.
func (iv *idVerifier) Verify(ctx context.Context, raw string) (*oidc.IDToken, error) {
	tok, err := iv.v.Verify(ctx, raw)
	if err != nil || iv.tenants == nil {
		return tok, err
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, fmt.Errorf("reading the token's claims: %w", err)
	}
	want, ok := iv.tenants.issuerFor(claims)
	if !ok {
		return nil, fmt.Errorf("oidc: the token has no usable %s claim to check its issuer %q against", iv.tenants.claim, tok.Issuer)
	}
	if tok.Issuer != want {
		return nil, fmt.Errorf("oidc: id token issued by a different provider, expected %q (its %s) got %q", want, iv.tenants.claim, tok.Issuer)
	}
	return tok, nil
}

// fits reports whether iss can be this provider's issuer: configured
// exactly, or one tenant's of a multi-tenant provider.
func (iv *idVerifier) fits(iss, configured string) bool {
	if iv != nil && iv.tenants != nil {
		isTemplate, ok := iv.tenants.match(iss)
		return ok && !isTemplate
	}
	return iss == configured
}

// issuerMatches reports whether iss is the issuer of a token with these
// claims (the session's), for front-channel logout requests.
func (iv *idVerifier) issuerMatches(iss, configured string, claims map[string]any) bool {
	if iv != nil && iv.tenants != nil {
		want, ok := iv.tenants.issuerFor(claims)
		return ok && iss == want
	}
	return iss == configured
}

// errIssuerTemplate: discovery named an issuer of another form.
var errIssuerTemplate = errors.New("the discovery document's issuer does not have the form of multi_tenant_issuer")

package authgate

// Who the user is, derived from what the provider has just said. Login,
// refresh and the userinfo re-read all come here, so that each checks the
// same things the same way: the ID token in full, userinfo against it, the
// claims mapped with the same rules. Errors are classified as tokens.go
// says: an identity refusal (401/403, the session ends) or a provider
// failure (502/504, nothing of the user's lost).

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// providerAnswer is one answer of the provider to derive the identity
// from: a token response (at login or refresh) or, for a userinfo re-read,
// only the access token to read userinfo with.
type providerAnswer struct {
	idToken     string // "" when the answer has none
	accessToken string
	// login: the answer to a code exchange. An ID token is then due when
	// openid was asked for, and its nonce (and c_hash) are checked.
	login bool
	nonce string
	code  string
	// readUserinfo: read the provider's userinfo endpoint, when it has one.
	readUserinfo bool
	// session: the binding of the session a later answer (refresh,
	// userinfo re-read) is for; the answer must repeat it. nil at login.
	session *recordedBinding
}

// identityBinding is who an answer is about and to whom it was issued:
// what every later answer for a session must repeat exactly.
type identityBinding struct {
	Issuer   string // providerIssuer: the ID token's iss was checked against it
	ClientID string
	Subject  string   // the ID token's sub, else subjectOf the claims
	Audience []string // the ID token's aud; nil: no ID token
	AZP      string   // the ID token's azp, "" when it had none
}

// recordedBinding is an identityBinding as a session keeps it, in few
// bytes (every request carries it): the issuer and client_id as
// fingerprints, the audience only when it is not just the client_id, and
// whether the ID token had an azp (which can only be the client_id).
type recordedBinding struct {
	Issuer, ClientID string // bindingPrint; "" in sessions made before bindings were recorded
	Subject          string
	Audience         []string // nil: [client_id], or no ID token
	IDToken          int      // 0: no ID token (or not recorded), 1: one without azp, 2: one with azp
}

// recorded is b as a session keeps it.
func (b identityBinding) recorded() recordedBinding {
	r := recordedBinding{Issuer: bindingPrint(b.Issuer), ClientID: bindingPrint(b.ClientID), Subject: b.Subject}
	if b.Audience != nil {
		r.IDToken = 1
		if b.AZP != "" {
			r.IDToken = 2
		}
		if len(b.Audience) != 1 || b.Audience[0] != b.ClientID {
			r.Audience = b.Audience
		}
	}
	return r
}

// bindingPrint is how a session records an issuer or a client_id: 12
// characters of its SHA-256, whatever the length of the URL or id; enough
// to tell one from another, not to be guessed back (nor needed to be).
func bindingPrint(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:9])
}

// derived is the identity an answer yields, ready to store in a session.
type derived struct {
	claims     map[string]any // merged, bookkeeping dropped, narrowed by keep_groups
	keptGroups string
	identity   *Identity
	binding    identityBinding
	// fresh: the answer said who the user is (an ID token or userinfo).
	// A refresh without either leaves the session's claims as they are.
	fresh bool
	// userinfoRead: userinfo was read for this answer.
	userinfoRead bool
	// omitted names a groups claim the provider says it left out of the
	// token (claimchecks.go: Entra's groups overage); "" when none.
	omitted string
	// idClaims are the verified ID token's claims as it has them (auth_time,
	// acr and amr included, which claims drops); nil without one.
	idClaims map[string]any
}

// iatLeeway is how far in the future an ID token's iat may be (clock skew).
const iatLeeway = 5 * time.Minute

// deriveIdentity verifies an answer and maps it to an identity: the ID
// token fully (signature, iss, aud, azp, exp, iat, sub; the nonce and
// c_hash at login; at_hash whenever present) and, for a session, its iss,
// sub, aud and azp the session's; userinfo when asked for and the provider
// has it (its sub must be the ID token's, or without one the session's);
// the claims merged
// (userinfo over the ID token), email_verified applied, the claims mapped
// with the required ones enforced, and the groups narrowed by keep_groups.
func deriveIdentity(ctx context.Context, p *provider, st *providerState, a providerAnswer) (*derived, error) {
	b := identityBinding{Issuer: providerIssuer(p), ClientID: p.cfg.ClientID}
	var idClaims map[string]any
	if st.verifier != nil && (a.idToken != "" || a.login && scopeHasOpenID(p.scopes())) {
		if a.idToken == "" {
			return nil, withReason("id_token_missing", fmt.Errorf("%w: the token response has no ID token", errProviderBadResponse))
		}
		tok, claims, err := verifyIDToken(ctx, st, p.cfg.ClientID, a)
		if err != nil {
			return nil, err
		}
		idClaims = claims
		// The session is bound to the provider as configured, which the
		// session check compares against: the verifier has matched the
		// token's iss to it (exactly; for Google also its scheme-less
		// form accounts.google.com; for a multi-tenant provider its
		// tenant's issuer by the template).
		b.Subject, b.Audience = tok.Subject, tok.Audience
		b.AZP, _ = claims["azp"].(string)
		if a.session != nil {
			// Another user's ID token is that, whatever userinfo says.
			if err := b.recorded().changedFrom(*a.session); err != nil {
				return nil, err
			}
		}
	}
	var userinfo map[string]any
	read := false
	if a.readUserinfo && st.client.userinfoURL != "" {
		ui, err := st.client.userinfo(ctx, a.accessToken)
		if err == nil {
			// The rest of the identity from the provider's API (GitHub).
			ui, err = addExtraUserinfo(ctx, st.client.httpClient, p.cfg.ExtraUserinfo, a.accessToken, ui)
		}
		if err != nil {
			return nil, withReason("userinfo_failed", err)
		}
		userinfo, read = ui, true
		if idClaims != nil {
			// OIDC Core 5.3.2: the userinfo sub must be the ID token's, or
			// the details are somebody else's (token substitution).
			if sub, ok := scalarString(ui["sub"]); ok && sub != "" && sub != b.Subject {
				return nil, refuseIdentity("userinfo_mismatch", errors.New("the userinfo sub is not the ID token's"))
			}
		}
	}
	if idClaims == nil && userinfo == nil {
		return &derived{binding: b}, nil
	}
	claims := mergeClaims(idClaims, userinfo)
	if err := checkRequirements(p.required, claims); err != nil {
		return nil, refuseIdentity("account_not_allowed", err)
	}
	omitted := omittedClaim(p.claims.groups, claims)
	id, err := p.claims.identity(p.name, claims, true)
	switch {
	case errors.Is(err, errEmailUnverified):
		return nil, refuseIdentity("email_unverified", err)
	case err != nil:
		return nil, refuseIdentity("claims_missing", err)
	}
	if b.Subject == "" {
		b.Subject = subjectOf(claims, id)
		if a.session != nil {
			if err := b.recorded().changedFrom(*a.session); err != nil {
				return nil, err
			}
		}
	}
	// Only then narrow the groups (keep_groups): a path that found groups,
	// none of them kept, is no missing field.
	claims, kept := p.claims.narrowForSession(p.name, claims, id)
	if err := checkClaimsSize(claims); err != nil {
		return nil, withReason("claims_too_large", fmt.Errorf("%w: %v", errProviderBadResponse, err))
	}
	return &derived{claims: claims, keptGroups: kept, identity: id, binding: b, fresh: true, userinfoRead: read, omitted: omitted, idClaims: idClaims}, nil
}

// verifyIDToken checks an ID token's signature (JWKS), iss, aud, exp and
// nbf through go-oidc, then sub, iat, azp, at_hash here, and at login the
// nonce and c_hash; it returns the token and its claims. A key set that
// could not be fetched is a provider failure; everything else that does
// not verify is an identity refusal.
func verifyIDToken(ctx context.Context, st *providerState, clientID string, a providerAnswer) (*oidc.IDToken, map[string]any, error) {
	refuse := func(format string, args ...any) error {
		return refuseIdentity("id_token_invalid", fmt.Errorf("verifying ID token: "+format, args...))
	}
	tok, err := st.verifier.Verify(ctx, a.idToken)
	if err != nil {
		if perr := keysUnavailable(err); perr != nil {
			return nil, nil, perr
		}
		if !a.login {
			// A refreshed token of another issuer or client is about
			// somebody else: say so (the token is refused either way).
			if iss, aud, ok := peekIssuerAudience(a.idToken); ok && (iss != st.issuer || !slices.Contains(aud, clientID)) {
				return nil, nil, refuseIdentity("identity_changed", fmt.Errorf("the refreshed ID token is for issuer %q and audience %q", iss, aud))
			}
		}
		return nil, nil, refuse("%w", err)
	}
	if tok.Subject == "" {
		return nil, nil, refuse("no sub claim")
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, nil, refuse("reading its claims: %w", err)
	}
	if a.login && subtle.ConstantTimeCompare([]byte(tok.Nonce), []byte(a.nonce)) != 1 {
		return nil, nil, refuse("nonce does not match this login")
	}
	// azp, when present, names the party the token was issued to: this
	// client, whatever the audience (OIDC Core 2); with several audiences
	// it must be present.
	if azp, present := claims["azp"]; present {
		if s, _ := azp.(string); s != clientID {
			if !a.login {
				return nil, nil, refuseIdentity("identity_changed", errors.New("the refreshed ID token's azp is another client"))
			}
			return nil, nil, refuse("azp is not this client")
		}
	} else if len(tok.Audience) > 1 {
		return nil, nil, refuse("several audiences and no azp")
	}
	if iat, ok := claims["iat"].(float64); !ok || time.Unix(int64(iat), 0).After(timeNow().Add(iatLeeway)) {
		return nil, nil, refuse("iat missing or in the future")
	}
	if tok.AccessTokenHash != "" {
		if err := tok.VerifyAccessToken(a.accessToken); err != nil {
			return nil, nil, refuse("at_hash does not match the access token: %w", err)
		}
	}
	if ch, _ := claims["c_hash"].(string); ch != "" && a.login {
		// c_hash is at_hash's rule applied to the code; go-oidc checks
		// at_hash with the token's own algorithm, so let it.
		c := *tok
		c.AccessTokenHash = ch
		if err := c.VerifyAccessToken(a.code); err != nil {
			return nil, nil, refuse("c_hash does not match the code: %w", err)
		}
	}
	return tok, claims, nil
}

// keysUnavailable tells a key set that could not be fetched (the provider's
// failure, not the token's) from a signature that does not verify. go-oidc
// reports both as text only.
func keysUnavailable(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "fetching keys") && strings.Contains(msg, "deadline exceeded"):
		return fmt.Errorf("%w: fetching the provider's keys: %v", errProviderTimeout, err)
	case strings.Contains(msg, "fetching keys"):
		return fmt.Errorf("%w: fetching the provider's keys: %v", errProviderDown, err)
	}
	return nil
}

// peekIssuerAudience reads iss and aud of a JWT without verifying it, only
// to name what a refused token was about.
func peekIssuerAudience(raw string) (string, []string, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(parts[1]) > maxProviderBody {
		return "", nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", nil, false
	}
	var c struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return "", nil, false
	}
	var aud []string
	if json.Unmarshal(c.Aud, &aud) != nil {
		var one string
		if json.Unmarshal(c.Aud, &one) == nil {
			aud = []string{one}
		}
	}
	return c.Iss, aud, true
}

// changedFrom compares a later answer's binding with the session's: nil
// when it is about the same user at the same issuer for the same client,
// else an identity_changed refusal naming what differs. A session made
// before bindings were recorded has no issuer or client id; those are not
// compared (its sub still is). aud and azp are compared when both answers
// had an ID token.
func (b recordedBinding) changedFrom(prev recordedBinding) error {
	var what string
	switch {
	case prev.Issuer != "" && b.Issuer != prev.Issuer:
		what = "iss"
	case prev.ClientID != "" && b.ClientID != prev.ClientID:
		what = "client_id"
	case prev.Subject != "" && b.Subject != prev.Subject:
		what = "sub"
	case b.IDToken != 0 && prev.IDToken != 0 && !sameSet(b.Audience, prev.Audience):
		what = "aud"
	case b.IDToken != 0 && prev.IDToken != 0 && b.IDToken != prev.IDToken:
		what = "azp"
	default:
		return nil
	}
	return refuseIdentity("identity_changed", fmt.Errorf("the provider's answer has another %s than the session", what))
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// subjectOf is who claims are about, when no ID token says it: their sub,
// else the mapped user id (plain OAuth 2.0 userinfo often has no sub).
func subjectOf(claims map[string]any, id *Identity) string {
	if s, ok := scalarString(claims["sub"]); ok && s != "" {
		return s
	}
	if id == nil {
		return ""
	}
	return id.ID
}

// providerIssuer names the authorization server a session was made with:
// its OpenID Connect issuer, or for plain OAuth 2.0 (no issuer) its token
// endpoint.
func providerIssuer(p *provider) string {
	if p.cfg.Issuer != "" {
		return p.cfg.Issuer
	}
	return p.cfg.TokenURL
}

func scopeHasOpenID(scopes []string) bool {
	return slices.Contains(scopes, oidc.ScopeOpenID)
}

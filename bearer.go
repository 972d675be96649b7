package authgate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// BearerConfig lets API clients present `Authorization: Bearer <token>`
// instead of a session cookie. A JWT is verified against the provider's
// JWKS (signature, issuer, audience, expiry); any other token is checked at
// the provider's userinfo endpoint. Results are cached briefly.
type BearerConfig struct {
	// Audiences a JWT's aud must contain one of. Default: the client id.
	Audiences []string `json:"audiences,omitempty"`
}

// Bearer cache bounds. A positive result lives until the token expires or
// bearerCacheTTL, whichever is sooner; a refusal lives bearerNegativeTTL,
// so that junk tokens cannot make us call the provider on every request.
const (
	bearerCacheTTL      = time.Minute
	bearerNegativeTTL   = 10 * time.Second
	maxBearerCacheItems = 10000
	maxBearerTokenLen   = 16 << 10
)

var errBadBearer = errors.New("bearer token invalid")

type bearerCache struct {
	mu    sync.Mutex
	items map[[32]byte]bearerResult
}

type bearerResult struct {
	id    *Identity
	err   error
	until time.Time
}

func newBearerCache() *bearerCache { return &bearerCache{items: map[[32]byte]bearerResult{}} }

func (c *bearerCache) get(k [32]byte) (bearerResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.items[k]
	if !ok || !timeNow().Before(r.until) {
		return bearerResult{}, false
	}
	return r, true
}

func (c *bearerCache) put(k [32]byte, r bearerResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.items) >= maxBearerCacheItems {
		now := timeNow()
		for key, v := range c.items {
			if !now.Before(v.until) {
				delete(c.items, key)
			}
		}
		if len(c.items) >= maxBearerCacheItems {
			clear(c.items)
		}
	}
	c.items[k] = r
}

// bearerToken returns the token of an `Authorization: Bearer` header.
func bearerToken(r *http.Request) string {
	v := r.Header.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(v[7:])
}

// bearerValidator checks bearer tokens for one site: with its providers,
// in order, caching the answers.
type bearerValidator struct {
	cfg       BearerConfig
	providers []*provider
	cache     *bearerCache
}

func newBearerValidator(cfg BearerConfig, providers []*provider) *bearerValidator {
	return &bearerValidator{cfg: cfg, providers: providers, cache: newBearerCache()}
}

// identify validates a bearer token and maps its claims to an identity.
func (v *bearerValidator) identify(ctx context.Context, token string) (*Identity, error) {
	if len(token) > maxBearerTokenLen {
		return nil, fmt.Errorf("%w: over %d bytes", errBadBearer, maxBearerTokenLen)
	}
	key := sha256.Sum256([]byte(token))
	if r, ok := v.cache.get(key); ok {
		return r.id, r.err
	}
	var lastErr error
	for _, p := range v.providers {
		id, until, err := v.verifyAt(ctx, p, token)
		if err == nil {
			v.cache.put(key, bearerResult{id: id, until: until})
			return id, nil
		}
		if isProviderFailure(err) && !errors.Is(err, errBadBearer) {
			return nil, err // not the token's fault: do not cache
		}
		lastErr = err
	}
	v.cache.put(key, bearerResult{err: lastErr, until: timeNow().Add(bearerNegativeTTL)})
	return nil, lastErr
}

// verifyAt checks a token with one provider: a JWT against its keys, any
// other token at its userinfo endpoint.
func (v *bearerValidator) verifyAt(ctx context.Context, p *provider, token string) (*Identity, time.Time, error) {
	st, err := p.state(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	until := timeNow().Add(bearerCacheTTL)
	var claims map[string]any
	if strings.Count(token, ".") == 2 && st.accessVerifier != nil {
		tok, err := st.accessVerifier.Verify(ctx, token)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("%w: %v", errBadBearer, err)
		}
		audiences := v.cfg.Audiences
		if len(audiences) == 0 {
			audiences = []string{p.cfg.ClientID}
		}
		if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(audiences, a) }) {
			return nil, time.Time{}, fmt.Errorf("%w: audience %v is not %v", errBadBearer, tok.Audience, audiences)
		}
		if err := tok.Claims(&claims); err != nil {
			return nil, time.Time{}, fmt.Errorf("%w: %v", errBadBearer, err)
		}
		if isIDToken(claims) {
			// An ID token is addressed to this client, not a credential for
			// APIs; accepting it would let one picked up from a log or URL
			// stand in for an access token (token substitution).
			return nil, time.Time{}, fmt.Errorf("%w: an ID token is not an access token", errBadBearer)
		}
		if tok.Expiry.Before(until) {
			until = tok.Expiry
		}
	} else {
		ctx, cancel := context.WithTimeout(ctx, p.timeout())
		defer cancel()
		claims, err = st.client.userinfo(ctx, token)
		if err != nil {
			if errors.Is(err, errInvalidGrant) || errors.Is(err, errProviderRejected) {
				return nil, time.Time{}, fmt.Errorf("%w: userinfo refused it", errBadBearer)
			}
			return nil, time.Time{}, err
		}
		if claims == nil {
			return nil, time.Time{}, fmt.Errorf("%w: provider %s has no userinfo endpoint to check opaque tokens", errBadBearer, p.name)
		}
	}
	merged, _ := p.claims.pruneGroups(mergeClaims(claims, nil))
	if err := checkClaimsSize(merged); err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %v", errBadBearer, err)
	}
	id, err := p.claims.identity(p.name, merged, true)
	switch {
	case errors.Is(err, errEmailUnverified):
		return nil, time.Time{}, refuseIdentity("email_unverified", err)
	case err != nil && len(p.claims.user.strings(merged)) > 0:
		return nil, time.Time{}, refuseIdentity("claims_missing", err) // a user, lacking what the site requires
	case err != nil:
		return nil, time.Time{}, fmt.Errorf("%w: no user id in its claims", errBadBearer)
	}
	return id, until, nil
}

// isIDToken recognises an ID token by the claims only ID tokens carry
// (nonce, at_hash, c_hash) or Keycloak's typ "ID". RFC 9068 access tokens
// have none of them.
func isIDToken(claims map[string]any) bool {
	for _, k := range []string{"nonce", "at_hash", "c_hash"} {
		if _, ok := claims[k]; ok {
			return true
		}
	}
	typ, _ := claims["typ"].(string)
	return strings.EqualFold(typ, "ID")
}

package authgate

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// BearerConfig lets API clients present `Authorization: Bearer <token>`
// instead of a session cookie. A JWT is verified against the provider's
// JWKS (signature, issuer, audience, expiry) and must not be an ID token;
// any other (opaque) token is checked by RFC 7662 introspection where the
// provider has an endpoint for it, or, only when Userinfo is set, at its
// userinfo endpoint. Answers are cached briefly, refusals too.
type BearerConfig struct {
	// Audiences a token's aud must contain one of (for an introspected
	// token without aud: its client_id must be one of them). Default: the
	// provider's client id, unless ResourceAudience is set.
	Audiences []string `json:"audiences,omitempty"`

	// ResourceAudience is this API's identifier as a resource server
	// (RFC 9068, RFC 8707). When set, tokens must name it in aud (it is
	// added to Audiences, and the client id is no longer accepted by
	// default), and every JWT must have the header typ "at+jwt", which ID
	// tokens and other JWTs signed by the provider never have. Default:
	// none.
	ResourceAudience string `json:"resource_audience,omitempty"`

	// DisableIntrospection stops opaque tokens from being checked at the
	// provider's introspection endpoint. Default: false (introspection is
	// used whenever the provider has an endpoint: introspection_url or
	// discovery's introspection_endpoint).
	DisableIntrospection bool `json:"disable_introspection,omitempty"`

	// Userinfo checks opaque tokens at the provider's userinfo endpoint
	// when there is no introspection. Userinfo says whose token it is but
	// not for whom it was issued: any token of the provider for any client
	// is accepted, so enable it only for providers without introspection
	// (GitHub, Google) and where that is acceptable. Default: false.
	// Before this option existed, userinfo was used by default; such
	// configurations must now add it.
	Userinfo bool `json:"userinfo,omitempty"`

	// RateLimit caps the calls made to each provider to check tokens
	// (introspection or userinfo), per second; tokens that would exceed it
	// get 503 with Retry-After, and cached answers are not affected.
	// Default: 20.
	RateLimit float64 `json:"rate_limit,omitempty"`
}

// Bearer validation bounds. A positive answer lives until the token
// expires or bearerCacheTTL, whichever is sooner; a refusal lives
// bearerNegativeTTL, so that junk tokens cannot make us call the provider
// on every request. Answers and refusals are kept apart, so a flood of junk
// never evicts a good token's answer; each is an LRU that evicts one entry
// at a time.
const (
	bearerCacheTTL         = time.Minute
	bearerNegativeTTL      = 10 * time.Second
	maxBearerCacheItems    = 10000
	maxBearerRejections    = 10000
	maxBearerTokenLen      = 16 << 10
	defaultBearerRateLimit = 20
)

var (
	errBadBearer = errors.New("bearer token invalid")
	// errBearerBusy: the token could be checked only by calling the
	// provider, and the rate limit for that is spent. Nothing is cached.
	errBearerBusy = errors.New("bearer token validation rate limit reached")
)

// bearerCache keeps recent answers about bearer tokens, keyed by the
// token's SHA-256.
type bearerCache struct {
	good *lru.Cache[[32]byte, bearerResult]
	bad  *lru.Cache[[32]byte, bearerResult]
}

type bearerResult struct {
	id    *Identity
	err   error
	until time.Time
}

func newBearerCache(goodSize, badSize int) *bearerCache {
	good, _ := lru.New[[32]byte, bearerResult](goodSize)
	bad, _ := lru.New[[32]byte, bearerResult](badSize)
	return &bearerCache{good: good, bad: bad}
}

func (c *bearerCache) get(k [32]byte) (bearerResult, bool) {
	now := timeNow()
	for _, l := range []*lru.Cache[[32]byte, bearerResult]{c.good, c.bad} {
		if r, ok := l.Get(k); ok {
			if now.Before(r.until) {
				return r, true
			}
			l.Remove(k)
		}
	}
	return bearerResult{}, false
}

func (c *bearerCache) put(k [32]byte, r bearerResult) {
	if r.err != nil {
		c.bad.Add(k, r)
		return
	}
	c.good.Add(k, r)
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
// in order, caching the answers, and calling each provider at most at its
// rate.
type bearerValidator struct {
	cfg       BearerConfig
	providers []*provider
	cache     *bearerCache
	limits    map[*provider]*rate.Limiter
}

func newBearerValidator(cfg BearerConfig, providers []*provider) *bearerValidator {
	v := &bearerValidator{cfg: cfg, providers: providers,
		cache: newBearerCache(maxBearerCacheItems, maxBearerRejections), limits: map[*provider]*rate.Limiter{}}
	perSec := cfg.RateLimit
	if perSec <= 0 {
		perSec = defaultBearerRateLimit
	}
	burst := max(1, int(perSec))
	for _, p := range providers {
		v.limits[p] = rate.NewLimiter(rate.Limit(perSec), burst)
	}
	return v
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
		if errors.Is(err, errBearerBusy) || (isProviderFailure(err) && !errors.Is(err, errBadBearer)) {
			return nil, err // not the token's fault: do not cache
		}
		lastErr = err
	}
	v.cache.put(key, bearerResult{err: lastErr, until: timeNow().Add(bearerNegativeTTL)})
	return nil, lastErr
}

// audiences is what a token's aud (or an introspected token's client_id)
// must contain one of.
func (v *bearerValidator) audiences(p *provider) []string {
	out := slices.Clone(v.cfg.Audiences)
	if v.cfg.ResourceAudience != "" {
		out = append(out, v.cfg.ResourceAudience)
	}
	if len(out) == 0 {
		out = []string{p.cfg.ClientID}
	}
	return out
}

// verifyAt checks a token with one provider: a JWT against its keys, any
// other token by introspection or, when enabled, at userinfo.
func (v *bearerValidator) verifyAt(ctx context.Context, p *provider, token string) (*Identity, time.Time, error) {
	st, err := p.state(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	until := timeNow().Add(bearerCacheTTL)
	var claims map[string]any
	switch {
	case strings.Count(token, ".") == 2 && st.accessVerifier != nil:
		var exp time.Time
		if claims, exp, err = v.verifyJWT(ctx, p, st, token); err != nil {
			return nil, time.Time{}, err
		}
		if exp.Before(until) {
			until = exp
		}
	case st.client.introspectURL != "" && !v.cfg.DisableIntrospection:
		if !v.limits[p].AllowN(timeNow(), 1) {
			return nil, time.Time{}, fmt.Errorf("%w: provider %s", errBearerBusy, p.name)
		}
		var exp time.Time
		if claims, exp, err = v.introspect(ctx, p, st, token); err != nil {
			return nil, time.Time{}, err
		}
		if !exp.IsZero() && exp.Before(until) {
			until = exp
		}
	case v.cfg.Userinfo && st.client.userinfoURL != "":
		if !v.limits[p].AllowN(timeNow(), 1) {
			return nil, time.Time{}, fmt.Errorf("%w: provider %s", errBearerBusy, p.name)
		}
		uctx, cancel := context.WithTimeout(ctx, p.timeout())
		defer cancel()
		claims, err = st.client.userinfo(uctx, token)
		if err != nil {
			if errors.Is(err, errInvalidGrant) || errors.Is(err, errProviderRejected) {
				return nil, time.Time{}, fmt.Errorf("%w: userinfo refused it", errBadBearer)
			}
			return nil, time.Time{}, err
		}
	default:
		return nil, time.Time{}, fmt.Errorf("%w: provider %s has no introspection endpoint to check opaque tokens (and bearer_tokens userinfo is off)", errBadBearer, p.name)
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
	for _, k := range []string{"auth_time", "acr", "amr"} {
		if v, ok := claims[k]; ok {
			if id.tokenAuth == nil {
				id.tokenAuth = map[string]any{}
			}
			id.tokenAuth[k] = v
		}
	}
	return id, until, nil
}

// verifyJWT checks a JWT access token: header typ, signature, issuer,
// expiry, audience, and that it is no ID token or logout token.
func (v *bearerValidator) verifyJWT(ctx context.Context, p *provider, st *providerState, token string) (map[string]any, time.Time, error) {
	typ, err := jwtHeaderType(token)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %v", errBadBearer, err)
	}
	switch {
	case v.cfg.ResourceAudience != "" && typ != "at+jwt":
		return nil, time.Time{}, fmt.Errorf("%w: header typ %q is not at+jwt (RFC 9068), required with a resource audience", errBadBearer, typ)
	case typ != "" && typ != "jwt" && typ != "at+jwt":
		// logout+jwt, secevent+jwt, dpop+jwt, ...: signed by the
		// provider, meant for something else.
		return nil, time.Time{}, fmt.Errorf("%w: header typ %q is no access token's", errBadBearer, typ)
	}
	tok, err := st.accessVerifier.Verify(ctx, token)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %v", errBadBearer, err)
	}
	audiences := v.audiences(p)
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(audiences, a) }) {
		return nil, time.Time{}, fmt.Errorf("%w: audience %v is not %v", errBadBearer, tok.Audience, audiences)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, time.Time{}, fmt.Errorf("%w: %v", errBadBearer, err)
	}
	if why := notAnAccessToken(claims); why != "" {
		// An ID token is addressed to this client, not a credential for
		// APIs; accepting it would let one picked up from a log or URL
		// stand in for an access token (token substitution). The same
		// goes for logout tokens.
		return nil, time.Time{}, fmt.Errorf("%w: %s", errBadBearer, why)
	}
	return claims, tok.Expiry, nil
}

// introspect checks an opaque token by RFC 7662 introspection: active,
// an access token, within exp and nbf (tokens.go), then the issuer and
// the audience: aud must name one of the audiences or, when the answer has
// no aud, client_id must be one.
func (v *bearerValidator) introspect(ctx context.Context, p *provider, st *providerState, token string) (map[string]any, time.Time, error) {
	ictx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	in, err := st.client.introspect(ictx, token)
	switch {
	case errors.Is(err, errTokenInactive), errors.Is(err, errTokenNotAccess), errors.Is(err, errTokenTime):
		return nil, time.Time{}, fmt.Errorf("%w: introspection: %v", errBadBearer, err)
	case err != nil:
		return nil, time.Time{}, err
	}
	if in.Issuer != "" && st.issuer != "" && in.Issuer != st.issuer {
		return nil, time.Time{}, fmt.Errorf("%w: introspection names issuer %q", errBadBearer, in.Issuer)
	}
	audiences := v.audiences(p)
	switch {
	case len(in.Audience) > 0:
		if !slices.ContainsFunc(in.Audience, func(a string) bool { return slices.Contains(audiences, a) }) {
			return nil, time.Time{}, fmt.Errorf("%w: audience %v is not %v", errBadBearer, in.Audience, audiences)
		}
	case in.ClientID == "" || !slices.Contains(audiences, in.ClientID):
		return nil, time.Time{}, fmt.Errorf("%w: no aud, and client_id %q is not %v", errBadBearer, in.ClientID, audiences)
	}
	claims := in.Claims
	if _, ok := claims["preferred_username"]; !ok {
		if u, ok := claims["username"].(string); ok {
			claims["preferred_username"] = u
		}
	}
	delete(claims, "active")
	return claims, in.Expiry, nil
}

// jwtHeaderType returns a JWT's header typ, lower-cased and without an
// "application/" prefix (RFC 8725 §3.11); "" when there is none.
func jwtHeaderType(token string) (string, error) {
	head, _, _ := strings.Cut(token, ".")
	if len(head) > 4096 {
		return "", errors.New("JWT header too large")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(head, "="))
	if err != nil {
		return "", errors.New("JWT header is not base64url")
	}
	var h struct {
		Typ *string `json:"typ"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return "", errors.New("JWT header is not a JSON object with a string typ")
	}
	if h.Typ == nil {
		return "", nil
	}
	return strings.TrimPrefix(strings.ToLower(*h.Typ), "application/"), nil
}

// notAnAccessToken says why claims are those of an ID token or a logout
// token rather than an access token, or "" when they are not: the claims
// only ID tokens carry (nonce, at_hash, c_hash, s_hash), a logout token's
// events, or a typ claim other than Bearer (Keycloak marks ID tokens "ID",
// refresh tokens "Refresh"). RFC 9068 access tokens have none of them.
func notAnAccessToken(claims map[string]any) string {
	for _, k := range []string{"nonce", "at_hash", "c_hash", "s_hash"} {
		if _, ok := claims[k]; ok {
			return "an ID token (" + k + ") is not an access token"
		}
	}
	if _, ok := claims["events"]; ok {
		return "a security event or logout token is not an access token"
	}
	if typ, ok := claims["typ"]; ok {
		if s, _ := typ.(string); !strings.EqualFold(s, "Bearer") && !strings.EqualFold(s, "at+jwt") {
			return fmt.Sprintf("a token of typ %q is not an access token", s)
		}
	}
	return ""
}

package authgate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
)

// ProviderConfig configures one identity provider. Either Issuer (OpenID
// Connect discovery) or AuthorizeURL and TokenURL (plain OAuth 2.0) must be
// set.
type ProviderConfig struct {
	// Issuer is the OpenID Connect issuer URL. Discovery, ID-token
	// verification and JWKS key rotation follow from it. When AuthorizeURL
	// and TokenURL are also set, discovery is skipped and Issuer is only
	// used to check ID tokens (with JWKSURL).
	Issuer string `json:"issuer,omitempty"`

	// ClientID is the client registered at the provider. Required.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret is the client's secret. Use an {env.*} or {file.*}
	// placeholder: a literal secret works but prints a warning.
	ClientSecret string `json:"client_secret,omitempty"`

	// Scopes requested. Default: "openid profile email" for OpenID Connect
	// providers, none for plain OAuth 2.0 ones.
	Scopes []string `json:"scopes,omitempty"`

	// AuthorizeURL is the authorization endpoint (plain OAuth 2.0, or to
	// override discovery).
	AuthorizeURL string `json:"authorize_url,omitempty"`
	// TokenURL is the token endpoint.
	TokenURL string `json:"token_url,omitempty"`
	// UserinfoURL is fetched after login with the access token; its JSON
	// claims are merged over the ID token's. Default: from discovery.
	UserinfoURL string `json:"userinfo_url,omitempty"`
	// RevokeURL is an RFC 7009 revocation endpoint, called at logout.
	// Default: from discovery.
	RevokeURL string `json:"revoke_url,omitempty"`
	// EndSessionURL is an OpenID Connect RP-initiated logout endpoint the
	// browser is sent to after logout. Default: from discovery.
	EndSessionURL string `json:"end_session_url,omitempty"`
	// IntrospectionURL is an RFC 7662 token introspection endpoint. With
	// bearer_tokens, opaque bearer tokens are checked there (active, aud
	// or client_id, exp), the client authenticated as at the token
	// endpoint. Default: from discovery (introspection_endpoint).
	IntrospectionURL string `json:"introspection_url,omitempty"`
	// JWKSURL verifies ID tokens when there is no discovery.
	JWKSURL string `json:"jwks_url,omitempty"`

	// RedirectURL is the callback URL registered at the provider, when it
	// must be fixed (for example behind another proxy). Default: the
	// request's scheme and host (or auth_host) with <prefix>callback.
	RedirectURL string `json:"redirect_url,omitempty"`

	// Dialect describes how the provider bends the standard.
	Dialect Dialect `json:"dialect,omitzero"`

	// Claims maps provider claims to the identity.
	Claims ClaimMap `json:"claims,omitzero"`

	// DefaultExpiresIn is the access-token lifetime assumed when the token
	// response has no expires_in and the token is no JWT with exp.
	// Default: none, the token lasts as long as the session.
	DefaultExpiresIn caddy.Duration `json:"default_expires_in,omitempty"`

	// IDTokenHint keeps the ID token in cookie sessions so that logout can
	// send it as id_token_hint (with it, Keycloak and others end the
	// session without asking the user to confirm). It costs about 1 KiB
	// on every request. With session_store the ID token is always kept.
	// Default: off; logout then sends client_id.
	IDTokenHint bool `json:"id_token_hint,omitempty"`

	// Timeout bounds every request to the provider, discovery included.
	// Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// UserinfoRefreshInterval re-reads userinfo with the session's access
	// token this long after it was last read, and updates the identity
	// from it: for providers without a refresh grant (or with long-lived
	// tokens), so that a user removed from a group or disabled at the
	// provider is seen within the interval. A 401 or 403 from userinfo ends
	// the session; a 5xx or timeout keeps it (logged, tried again after
	// 30s). Sessions then keep the access token (a larger cookie). Needs a
	// userinfo endpoint. Default: off.
	UserinfoRefreshInterval caddy.Duration `json:"userinfo_refresh_interval,omitempty"`
}

func (pc *ProviderConfig) isOIDC() bool { return pc.Issuer != "" }

func (pc *ProviderConfig) validate(name string) error {
	if pc.ClientID == "" {
		return fmt.Errorf("provider %s: client_id is required", name)
	}
	if pc.Issuer == "" && (pc.AuthorizeURL == "" || pc.TokenURL == "") {
		return fmt.Errorf("provider %s: set issuer (OpenID Connect) or both authorize_url and token_url (OAuth 2.0)", name)
	}
	if pc.Issuer == "" && pc.JWKSURL != "" {
		return fmt.Errorf("provider %s: jwks_url needs issuer to check ID tokens against", name)
	}
	if pc.UserinfoRefreshInterval < 0 {
		return fmt.Errorf("provider %s: userinfo_refresh_interval must be positive", name)
	}
	if pc.UserinfoRefreshInterval > 0 && pc.Issuer == "" && pc.UserinfoURL == "" {
		return fmt.Errorf("provider %s: userinfo_refresh_interval needs userinfo_url", name)
	}
	switch pc.Dialect.TokenEncoding {
	case "", "form", "json", "query":
	default:
		return fmt.Errorf("provider %s: token_request must be form, json or query, not %q", name, pc.Dialect.TokenEncoding)
	}
	switch pc.Dialect.ClientAuth {
	case "", "basic", "body":
	default:
		return fmt.Errorf("provider %s: client_auth must be basic or body, not %q", name, pc.Dialect.ClientAuth)
	}
	return nil
}

// provider is a configured provider at run time. Discovery happens lazily
// and in the background, bounded by the timeout, so that an unreachable
// provider neither blocks start-up nor other sites.
type provider struct {
	name   string
	cfg    ProviderConfig
	claims *compiledClaimMap
	logger *zap.Logger

	transport http.RoundTripper
	ready     atomic.Pointer[providerState]

	mu          sync.Mutex
	lastAttempt time.Time
	lastErr     error
}

// providerState is what discovery (or static config) produced.
type providerState struct {
	client   *oauthClient
	verifier *oidc.IDTokenVerifier // nil for plain OAuth 2.0
	// accessVerifier checks JWT bearer tokens (audience checked apart).
	accessVerifier *oidc.IDTokenVerifier
	issuer         string
	endSession     string
	// issParam: the provider adds RFC 9207 `iss` to its callbacks.
	issParam bool
	jwksURL  string
}

// discoveryRetry is how long a failed discovery is remembered before the
// next request tries again.
const discoveryRetry = 5 * time.Second

func newProvider(name string, cfg ProviderConfig, logger *zap.Logger, transport http.RoundTripper) (*provider, error) {
	if err := cfg.validate(name); err != nil {
		return nil, err
	}
	cm, err := compileClaimMap(cfg.Claims)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", name, err)
	}
	if cfg.Dialect.NoState && cfg.Dialect.NoPKCE && cfg.isOIDC() {
		// Nonce still binds the ID token; fine, but worth knowing.
		logger.Warn("provider has neither state nor PKCE; the login is bound by the pending-login cookie and the nonce", zap.String("provider", name))
	}
	if transport == nil {
		transport = newTransport()
	}
	p := &provider{name: name, cfg: cfg, claims: cm, logger: logger}
	p.transport = &timedTransport{base: limitedTransport{base: transport}, provider: name, endpoints: p.endpointName}
	if cfg.AuthorizeURL != "" && cfg.TokenURL != "" {
		p.ready.Store(p.staticState())
	}
	return p, nil
}

// endpointName names the provider endpoint a request path belongs to, for
// the latency metric.
func (p *provider) endpointName(path string) string {
	if strings.HasSuffix(path, "/.well-known/openid-configuration") {
		return "discovery"
	}
	st := p.ready.Load()
	if st == nil {
		return "other"
	}
	for name, u := range map[string]string{
		"token": st.client.config.Endpoint.TokenURL, "userinfo": st.client.userinfoURL,
		"revocation": st.client.revokeURL, "introspection": st.client.introspectURL, "jwks": st.jwksURL,
	} {
		if u != "" && strings.HasSuffix(u, path) {
			return name
		}
	}
	return "other"
}

func (p *provider) timeout() time.Duration {
	if p.cfg.Timeout > 0 {
		return time.Duration(p.cfg.Timeout)
	}
	return 10 * time.Second
}

func (p *provider) scopes() []string {
	if len(p.cfg.Scopes) > 0 {
		return p.cfg.Scopes
	}
	if p.cfg.isOIDC() {
		return []string{oidc.ScopeOpenID, "profile", "email"}
	}
	return nil
}

func (p *provider) clientConfig() oauthClientConfig {
	return oauthClientConfig{
		ClientID:         p.cfg.ClientID,
		ClientSecret:     p.cfg.ClientSecret,
		AuthorizeURL:     p.cfg.AuthorizeURL,
		TokenURL:         p.cfg.TokenURL,
		UserinfoURL:      p.cfg.UserinfoURL,
		RevokeURL:        p.cfg.RevokeURL,
		IntrospectURL:    p.cfg.IntrospectionURL,
		Scopes:           p.scopes(),
		Dialect:          p.cfg.Dialect,
		Timeout:          p.timeout(),
		DefaultExpiresIn: time.Duration(p.cfg.DefaultExpiresIn),
		Transport:        p.transport,
	}
}

func (p *provider) oidcConfig() *oidc.Config {
	return &oidc.Config{ClientID: p.cfg.ClientID, Now: timeNow}
}

// staticState builds the state of a provider configured by URLs.
func (p *provider) staticState() *providerState {
	st := &providerState{
		client:     newOAuthClient(p.clientConfig()),
		issuer:     p.cfg.Issuer,
		endSession: p.cfg.EndSessionURL,
		jwksURL:    p.cfg.JWKSURL,
	}
	if p.cfg.Issuer != "" && p.cfg.JWKSURL != "" {
		ctx := oidc.ClientContext(context.Background(), p.keysClient())
		keys := oidc.NewRemoteKeySet(ctx, p.cfg.JWKSURL)
		st.verifier = oidc.NewVerifier(p.cfg.Issuer, keys, p.oidcConfig())
		st.accessVerifier = newAccessVerifier(p.cfg.Issuer, keys, nil)
	}
	return st
}

// keysClient fetches JWKS documents. Its transport remembers the last
// answer for a short while, so that tokens with unknown key ids (an
// attacker's, or a rotation in progress) cause at most one fetch per
// interval.
func (p *provider) keysClient() *http.Client {
	return &http.Client{Timeout: p.timeout(), Transport: newJWKSLimiter(p.transport, jwksMinInterval)}
}

// state returns the provider's endpoints, discovering them first if need
// be. Concurrent callers share one discovery.
func (p *provider) state(ctx context.Context) (*providerState, error) {
	if st := p.ready.Load(); st != nil {
		return st, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.ready.Load(); st != nil {
		return st, nil
	}
	if p.lastErr != nil && timeNow().Sub(p.lastAttempt) < discoveryRetry {
		return nil, p.lastErr
	}
	p.lastAttempt = timeNow()
	st, err := p.discover(ctx)
	if err != nil {
		p.lastErr = fmt.Errorf("provider %s: discovery at %s failed: %w", p.name, p.cfg.Issuer, err)
		return nil, p.lastErr
	}
	p.lastErr = nil
	p.ready.Store(st)
	return st, nil
}

// discoveryDoc holds the discovery fields go-oidc does not expose.
type discoveryDoc struct {
	Revocation       string   `json:"revocation_endpoint"`
	Introspection    string   `json:"introspection_endpoint"`
	EndSession       string   `json:"end_session_endpoint"`
	AuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
	IssParam         bool     `json:"authorization_response_iss_parameter_supported"`
	SigningAlgs      []string `json:"id_token_signing_alg_values_supported"`
	ChallengeMethods []string `json:"code_challenge_methods_supported"`
}

func (p *provider) discover(ctx context.Context) (*providerState, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	hc := &http.Client{Timeout: p.timeout(), Transport: p.transport}
	// go-oidc compares the document's issuer with ours exactly and fails
	// on any difference, so no authorization request can go to a
	// provider that claims another identity.
	op, err := oidc.NewProvider(oidc.ClientContext(ctx, hc), p.cfg.Issuer)
	if err != nil {
		return nil, classifyDiscovery(err)
	}
	var doc discoveryDoc
	if err := op.Claims(&doc); err != nil {
		return nil, fmt.Errorf("%w: %v", errProviderBadResponse, err)
	}
	ep := op.Endpoint()
	cc := p.clientConfig()
	cc.AuthorizeURL = orDefault(p.cfg.AuthorizeURL, ep.AuthURL)
	cc.TokenURL = orDefault(p.cfg.TokenURL, ep.TokenURL)
	cc.UserinfoURL = orDefault(p.cfg.UserinfoURL, op.UserInfoEndpoint())
	cc.RevokeURL = orDefault(p.cfg.RevokeURL, doc.Revocation)
	cc.IntrospectURL = orDefault(p.cfg.IntrospectionURL, doc.Introspection)
	if len(doc.AuthMethods) > 0 {
		cc.AuthStyleFromDiscoveryKnown = true
		cc.AuthStyleFromDiscoveryBasic = slices.Contains(doc.AuthMethods, "client_secret_basic")
		cc.AuthStyleFromDiscoveryPostOK = slices.Contains(doc.AuthMethods, "client_secret_post")
	} else {
		cc.AuthStyleFromDiscoveryKnown = true
		cc.AuthStyleFromDiscoveryBasic = true
	}
	var jwksURL string
	var raw struct {
		JWKS string `json:"jwks_uri"`
	}
	_ = op.Claims(&raw)
	jwksURL = orDefault(p.cfg.JWKSURL, raw.JWKS)
	if jwksURL == "" {
		return nil, fmt.Errorf("%w: discovery document has no jwks_uri", errProviderBadResponse)
	}
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), p.keysClient()), jwksURL)
	vc := p.oidcConfig()
	for _, alg := range doc.SigningAlgs {
		if alg != "none" && alg != "" {
			vc.SupportedSigningAlgs = append(vc.SupportedSigningAlgs, alg)
		}
	}
	return &providerState{
		client:         newOAuthClient(cc),
		verifier:       oidc.NewVerifier(p.cfg.Issuer, keys, vc),
		accessVerifier: newAccessVerifier(p.cfg.Issuer, keys, vc.SupportedSigningAlgs),
		issuer:         p.cfg.Issuer,
		endSession:     orDefault(p.cfg.EndSessionURL, doc.EndSession),
		issParam:       doc.IssParam,
		jwksURL:        jwksURL,
	}, nil
}

func classifyDiscovery(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "issuer did not match"):
		return fmt.Errorf("%w: the discovery document names another issuer", errProviderBadResponse)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %v", errProviderTimeout, err)
	case strings.Contains(msg, "connect:") || strings.Contains(msg, "dial") || strings.Contains(msg, "no such host"):
		return fmt.Errorf("%w: %v", errProviderDown, err)
	case strings.Contains(msg, ": 5"):
		return fmt.Errorf("%w: %v", errProviderDown, err)
	}
	return fmt.Errorf("%w: %v", errProviderBadResponse, err)
}

// newAccessVerifier verifies JWT access tokens: like ID tokens, but the
// audience is checked by authgate against the configured list.
func newAccessVerifier(issuer string, keys oidc.KeySet, algs []string) *oidc.IDTokenVerifier {
	return oidc.NewVerifier(issuer, keys, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: algs, Now: timeNow})
}

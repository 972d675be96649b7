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
	jose "github.com/go-jose/go-jose/v4"
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

	// ExtraUserinfo are more endpoints of the provider's API read at
	// login, their answers stored in the claims (GitHub's emails,
	// organizations and teams). Default: none.
	ExtraUserinfo []ExtraUserinfo `json:"userinfo_extra,omitempty"`

	// RequireClaimValues refuse the sign-in of a user whose claims lack one of
	// these values (Google's hd for one Workspace domain, Entra's tid for
	// some tenants): a provider-wide rule checked at login, before any
	// site's. Default: none.
	RequireClaimValues []ClaimRequirement `json:"require_claim_values,omitempty"`

	// MultiTenantIssuer is the issuer of a multi-tenant provider whose
	// discovery document names a template rather than itself, with
	// {claim} standing for a claim of each token, as Microsoft Entra ID's
	// common and organizations endpoints do:
	// https://login.microsoftonline.com/{tid}/v2.0. Discovery's issuer
	// must have this form; when it names one tenant, ID tokens must come
	// from exactly it; when it is the template itself, each ID token's
	// iss must be the template with the token's own claim (tid) filled
	// in. Restrict the tenants with require_claim_value tid. Default: the
	// issuer must match exactly.
	MultiTenantIssuer string `json:"multi_tenant_issuer,omitempty"`

	// ClientCredentials holds the key or certificate of the client
	// authentication methods private_key_jwt, client_secret_jwt and
	// tls_client_auth (dialect client_auth). Default: none.
	ClientCredentials *ClientCredentials `json:"client_credentials,omitempty"`

	// TLSTrustedCA is a PEM file of the CA certificates the provider's
	// TLS certificate must chain to, instead of the system's (a provider
	// with an internal CA). Default: the system's roots.
	TLSTrustedCA string `json:"tls_trusted_ca,omitempty"`

	// PAR is when the authorization request is pushed (RFC 9126) to the
	// provider's pushed authorization request endpoint, with client
	// authentication, the browser then carrying only client_id and
	// request_uri: "on" (always; a provider that offers no endpoint is an
	// error), "auto" (when discovery names an endpoint) or "off".
	// Default: only when discovery says the provider requires it.
	PAR string `json:"par,omitempty"`

	// PARURL is the pushed authorization request endpoint. Default: from
	// discovery.
	PARURL string `json:"par_url,omitempty"`
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
	case "", "basic", "body", authPrivateKeyJWT, authClientSecretJWT, authTLSClientAuth:
	default:
		return fmt.Errorf("provider %s: client_auth must be basic, body, private_key_jwt, client_secret_jwt or tls_client_auth, not %q", name, pc.Dialect.ClientAuth)
	}
	switch pc.PAR {
	case "", "on", "auto", "off":
	default:
		return fmt.Errorf("provider %s: par must be on, auto or off, not %q", name, pc.PAR)
	}
	if pc.PAR == "on" && pc.Issuer == "" && pc.PARURL == "" {
		return fmt.Errorf("provider %s: par on needs par_url, or an issuer whose discovery names the endpoint", name)
	}
	if err := validateExtraUserinfo(pc.ExtraUserinfo); err != nil {
		return fmt.Errorf("provider %s: %w", name, err)
	}
	if pc.MultiTenantIssuer != "" {
		if _, err := parseIssuerTemplate(pc.MultiTenantIssuer); err != nil {
			return fmt.Errorf("provider %s: multi_tenant_issuer: %w", name, err)
		}
		if pc.Issuer == "" {
			return fmt.Errorf("provider %s: multi_tenant_issuer needs issuer (the discovery URL)", name)
		}
	}
	return nil
}

// provider is a configured provider at run time. Discovery happens lazily
// and in the background, bounded by the timeout, so that an unreachable
// provider neither blocks start-up nor other sites.
type provider struct {
	name     string
	cfg      ProviderConfig
	claims   *compiledClaimMap
	required []compiledRequirement // require_claim_value
	logger   *zap.Logger
	// clientKey is the public private_key_jwt key, for the client JWKS.
	clientKey *jose.JSONWebKey

	transport http.RoundTripper
	ready     atomic.Pointer[providerState]

	mu          sync.Mutex
	lastAttempt time.Time
	lastErr     error
}

// providerState is what discovery (or static config) produced.
type providerState struct {
	client   *oauthClient
	verifier *idVerifier // nil for plain OAuth 2.0
	// accessVerifier checks JWT bearer tokens (audience checked apart).
	accessVerifier *idVerifier
	issuer         string
	endSession     string
	// issParam: the provider adds RFC 9207 `iss` to its callbacks.
	issParam bool
	jwksURL  string
	// parURL is where authorization requests are pushed (RFC 9126); ""
	// when they go in the browser's URL.
	parURL string
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
	required, err := compileRequirements(cfg.RequireClaimValues)
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
	tlsConfig, err := providerTLS(cfg.Dialect.ClientAuth, cfg.ClientCredentials, cfg.TLSTrustedCA)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", name, err)
	}
	if tlsConfig != nil {
		// A client certificate or CAs of its own: a transport of its own.
		t := newTransport()
		t.TLSClientConfig = tlsConfig
		transport = t
	}
	p := &provider{name: name, cfg: cfg, claims: cm, required: required, logger: logger}
	auth, err := newClientAuth(cfg.Dialect.ClientAuth, cfg.ClientID, cfg.ClientSecret, cfg.ClientCredentials, p.tokenURL, p.issuer)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", name, err)
	}
	if auth != nil {
		transport = &assertionTransport{base: transport, auth: auth}
		p.clientKey = auth.public
	}
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

// tokenURL and issuer are the provider's token endpoint and issuer as
// known now (after discovery, the discovered ones), for client assertions.
func (p *provider) tokenURL() string {
	if st := p.ready.Load(); st != nil {
		return st.client.config.Endpoint.TokenURL
	}
	return p.cfg.TokenURL
}

func (p *provider) issuer() string {
	if st := p.ready.Load(); st != nil && st.issuer != "" {
		return st.issuer
	}
	return p.cfg.Issuer
}

// sentSecret is the client secret x/oauth2 and revocation send: none when
// the client authenticates with an assertion or a certificate (a
// client_secret_jwt secret only keys the HMAC).
func (p *provider) sentSecret() string {
	switch p.cfg.Dialect.ClientAuth {
	case authPrivateKeyJWT, authClientSecretJWT, authTLSClientAuth:
		return ""
	}
	return p.cfg.ClientSecret
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
		ClientSecret:     p.sentSecret(),
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
		keys := newJWKSKeySet(p.keysClient(), p.cfg.JWKSURL)
		st.verifier = &idVerifier{v: oidc.NewVerifier(p.cfg.Issuer, keys, p.oidcConfig())}
		st.accessVerifier = &idVerifier{v: newAccessVerifier(p.cfg.Issuer, keys, nil)}
	}
	if p.cfg.PAR == "on" || p.cfg.PAR == "auto" {
		st.parURL = p.cfg.PARURL
	}
	return st
}

// keysClient fetches JWKS documents (jwksKeySet limits how often).
func (p *provider) keysClient() *http.Client {
	return &http.Client{Timeout: p.timeout(), Transport: p.transport}
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
	Issuer           string   `json:"issuer"`
	PAR              string   `json:"pushed_authorization_request_endpoint"`
	RequirePAR       bool     `json:"require_pushed_authorization_requests"`
	// MTLSAliases are RFC 8705 §5's endpoints for clients that
	// authenticate with a certificate.
	MTLSAliases map[string]string `json:"mtls_endpoint_aliases"`
}

func (p *provider) discover(ctx context.Context) (*providerState, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	hc := &http.Client{Timeout: p.timeout(), Transport: p.transport}
	// go-oidc compares the document's issuer with ours exactly and fails
	// on any difference, so no authorization request can go to a
	// provider that claims another identity. A multi-tenant provider's
	// issuer is checked here instead, against its template.
	dctx := oidc.ClientContext(ctx, hc)
	var tmpl *issuerTemplate
	if p.cfg.MultiTenantIssuer != "" {
		tmpl, _ = parseIssuerTemplate(p.cfg.MultiTenantIssuer) // checked by validate
		dctx = oidc.InsecureIssuerURLContext(dctx, p.cfg.Issuer)
	}
	op, err := oidc.NewProvider(dctx, p.cfg.Issuer)
	if err != nil {
		return nil, classifyDiscovery(err)
	}
	var doc discoveryDoc
	if err := op.Claims(&doc); err != nil {
		return nil, fmt.Errorf("%w: %v", errProviderBadResponse, err)
	}
	issuer := p.cfg.Issuer
	var tenants *issuerTemplate
	if tmpl != nil {
		isTemplate, ok := tmpl.match(doc.Issuer)
		if !ok {
			return nil, fmt.Errorf("%w: %w: %q", errProviderBadResponse, errIssuerTemplate, doc.Issuer)
		}
		if isTemplate {
			tenants = tmpl
		} else {
			issuer = doc.Issuer
		}
	}
	ep := op.Endpoint()
	cc := p.clientConfig()
	cc.AuthorizeURL = orDefault(p.cfg.AuthorizeURL, ep.AuthURL)
	cc.TokenURL = orDefault(p.cfg.TokenURL, ep.TokenURL)
	cc.UserinfoURL = orDefault(p.cfg.UserinfoURL, op.UserInfoEndpoint())
	cc.RevokeURL = orDefault(p.cfg.RevokeURL, doc.Revocation)
	cc.IntrospectURL = orDefault(p.cfg.IntrospectionURL, doc.Introspection)
	parURL := orDefault(p.cfg.PARURL, doc.PAR)
	if p.cfg.Dialect.ClientAuth == authTLSClientAuth {
		// RFC 8705 §5: a client with a certificate uses the aliases.
		alias := func(configured, key, discovered string) string {
			return orDefault(configured, orDefault(doc.MTLSAliases[key], discovered))
		}
		cc.TokenURL = alias(p.cfg.TokenURL, "token_endpoint", ep.TokenURL)
		cc.UserinfoURL = alias(p.cfg.UserinfoURL, "userinfo_endpoint", op.UserInfoEndpoint())
		cc.RevokeURL = alias(p.cfg.RevokeURL, "revocation_endpoint", doc.Revocation)
		cc.IntrospectURL = alias(p.cfg.IntrospectionURL, "introspection_endpoint", doc.Introspection)
		parURL = alias(p.cfg.PARURL, "pushed_authorization_request_endpoint", doc.PAR)
	}
	switch {
	case p.cfg.PAR == "off":
		parURL = ""
	case p.cfg.PAR == "on" || doc.RequirePAR && p.cfg.PAR == "":
		if parURL == "" {
			return nil, fmt.Errorf("%w: par on (or the provider requires pushed authorization requests), but discovery names no pushed_authorization_request_endpoint; set par_url", errProviderBadResponse)
		}
	case p.cfg.PAR == "":
		parURL = ""
	}
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
	keys := newJWKSKeySet(p.keysClient(), jwksURL)
	vc := p.oidcConfig()
	for _, alg := range doc.SigningAlgs {
		if alg != "none" && alg != "" {
			vc.SupportedSigningAlgs = append(vc.SupportedSigningAlgs, alg)
		}
	}
	vc.SkipIssuerCheck = tenants != nil // idVerifier checks each token's tenant
	access := newAccessVerifier(issuer, keys, vc.SupportedSigningAlgs)
	if tenants != nil {
		access = oidc.NewVerifier(issuer, keys, &oidc.Config{SkipClientIDCheck: true, SkipIssuerCheck: true, SupportedSigningAlgs: vc.SupportedSigningAlgs, Now: timeNow})
	}
	return &providerState{
		client:         newOAuthClient(cc),
		verifier:       &idVerifier{v: oidc.NewVerifier(issuer, keys, vc), tenants: tenants},
		accessVerifier: &idVerifier{v: access, tenants: tenants},
		issuer:         issuer,
		endSession:     orDefault(p.cfg.EndSessionURL, doc.EndSession),
		issParam:       doc.IssParam,
		jwksURL:        jwksURL,
		parURL:         parURL,
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

// providerError is a failure at one provider, carrying its name for the
// log line and the page that report it.
type providerError struct {
	provider string
	err      error
}

func (e *providerError) Error() string { return "provider " + e.provider + ": " + e.err.Error() }
func (e *providerError) Unwrap() error { return e.err }

// failedProvider names the provider an error came from, or "".
func failedProvider(err error) string {
	var pe *providerError
	if errors.As(err, &pe) {
		return pe.provider
	}
	return ""
}

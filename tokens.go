package authgate

// This file is the only place that speaks OAuth 2.0 to providers. It has no
// Caddy imports: it takes plain data (endpoints, client credentials, a
// Dialect) and returns tokens or typed errors.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// maxProviderBody bounds every response body read from a provider.
const maxProviderBody = 1 << 20

// Sentinel errors of a conversation with a provider. Callers map them to
// HTTP statuses; their text is for logs only.
var (
	// errInvalidGrant: the provider refused a code or refresh token for
	// good (RFC 6749 invalid_grant); the session must end.
	errInvalidGrant = errors.New("provider rejected the grant")
	// errProviderRejected: the provider answered with another 4xx.
	errProviderRejected = errors.New("provider rejected the request")
	// errProviderDown: no answer, a 5xx, or a refused connection.
	errProviderDown = errors.New("provider unavailable")
	// errProviderTimeout: the provider did not answer in time.
	errProviderTimeout = errors.New("provider timed out")
	// errProviderBadResponse: an answer we cannot use (malformed JSON,
	// no access token, HTML where JSON was due).
	errProviderBadResponse = errors.New("provider sent an unusable response")
)

// The other half of the classification: the provider answered, and what it
// said about the user cannot be accepted (an ID token whose signature, iss,
// aud, azp, sub, at_hash or c_hash does not verify; a userinfo sub that is
// not the ID token's; a claim the site requires that is absent; an address
// not verified where it decides). Such an answer is the user's 401 or 403
// and ends the session, if any: it is never a 5xx and never retried. The
// provider failures above (unreachable, slow, 5xx, garbage) are 502/504 and
// keep what the user has. pages.go maps both to answers.
var (
	// errIdentityRefused: the provider's statement of the identity does not
	// verify or does not satisfy the site; see identityRefusal.
	errIdentityRefused = errors.New("identity refused")
	// errIdentityChanged: a later answer (refresh, userinfo re-read) is
	// about another user, issuer or client than the session's. Every
	// errIdentityChanged is an errIdentityRefused.
	errIdentityChanged = errors.New("identity at the provider changed")
)

// identityRefusal is an errIdentityRefused with the reason people and logs
// see: id_token_invalid, userinfo_mismatch, identity_changed,
// claims_missing or email_unverified. err says exactly what, for the log.
type identityRefusal struct {
	reason string
	err    error
}

func refuseIdentity(reason string, err error) error {
	return &identityRefusal{reason: reason, err: err}
}

func (e *identityRefusal) Error() string { return e.reason + ": " + e.err.Error() }

func (e *identityRefusal) Unwrap() error { return e.err }

func (e *identityRefusal) Is(target error) bool {
	return target == errIdentityRefused || target == errIdentityChanged && e.reason == "identity_changed"
}

// reasoned gives a provider failure the reason its page and log line name
// (userinfo_failed, id_token_missing, ...); it stays a provider failure.
type reasoned struct {
	reason string
	err    error
}

func withReason(reason string, err error) error { return &reasoned{reason: reason, err: err} }

func (e *reasoned) Error() string { return e.err.Error() }

func (e *reasoned) Unwrap() error { return e.err }

// reasonOf is the reason an identity refusal or a reasoned provider
// failure carries; "" for other errors.
func reasonOf(err error) string {
	var ir *identityRefusal
	if errors.As(err, &ir) {
		return ir.reason
	}
	var re *reasoned
	if errors.As(err, &re) {
		return re.reason
	}
	return ""
}

// maxTokenLifetimeSecs caps the lifetime a provider may claim for a token
// (ten years), so that huge values cannot overflow.
const maxTokenLifetimeSecs = 10 * 365 * 24 * 3600

// tokenSet is what a token endpoint gave us, normalised.
type tokenSet struct {
	AccessToken  string
	RefreshToken string
	IDToken      string
	Expiry       time.Time // zero: unknown
	// Issued is when a response with expires_in arrived, on the clock
	// Expiry was dated with; with Expiry it gives the token's lifetime.
	// Zero without expires_in.
	Issued time.Time
}

// oauthClient talks to one provider's token, userinfo and revocation
// endpoints with the provider's dialect applied.
type oauthClient struct {
	config      oauth2.Config
	httpClient  *http.Client
	userinfoURL string
	revokeURL   string
	// introspectURL is the RFC 7662 introspection endpoint; "": none.
	introspectURL string
	dialect       Dialect
	// defaultExpiresIn applies when neither expires_in nor a JWT exp says
	// when an access token ends. Zero: the token is taken to last as long
	// as the session.
	defaultExpiresIn time.Duration
}

type oauthClientConfig struct {
	ClientID, ClientSecret       string
	AuthorizeURL, TokenURL       string
	UserinfoURL, RevokeURL       string
	IntrospectURL                string
	Scopes                       []string
	Dialect                      Dialect
	Timeout                      time.Duration
	DefaultExpiresIn             time.Duration
	Transport                    http.RoundTripper // nil: a fresh transport
	AuthStyleFromDiscoveryBasic  bool              // the provider lists client_secret_basic
	AuthStyleFromDiscoveryKnown  bool              // discovery listed methods at all
	AuthStyleFromDiscoveryPostOK bool              // the provider lists client_secret_post
}

func newOAuthClient(c oauthClientConfig) *oauthClient {
	base := c.Transport
	if base == nil {
		base = newTransport()
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	style := oauth2.AuthStyleInParams
	switch c.Dialect.ClientAuth {
	case "basic":
		style = oauth2.AuthStyleInHeader
	case "body", "private_key_jwt", "client_secret_jwt", "tls_client_auth":
		// The assertion methods send client_id in the body and no secret
		// (clientauth.go adds the assertion); a certificate needs no more.
		style = oauth2.AuthStyleInParams
	default:
		// RFC 6749 §2.3.1 makes Basic the one every server supports;
		// follow discovery when it says otherwise.
		if c.AuthStyleFromDiscoveryKnown && !c.AuthStyleFromDiscoveryBasic && c.AuthStyleFromDiscoveryPostOK {
			style = oauth2.AuthStyleInParams
		} else if c.AuthStyleFromDiscoveryKnown || c.Dialect.isStandard() {
			style = oauth2.AuthStyleInHeader
		}
	}
	oc := &oauthClient{
		config: oauth2.Config{
			ClientID:     c.ClientID,
			ClientSecret: c.ClientSecret,
			Endpoint: oauth2.Endpoint{
				AuthURL:   c.AuthorizeURL,
				TokenURL:  c.TokenURL,
				AuthStyle: style,
			},
			Scopes: c.Scopes,
		},
		userinfoURL:      c.UserinfoURL,
		revokeURL:        c.RevokeURL,
		introspectURL:    c.IntrospectURL,
		dialect:          c.Dialect,
		defaultExpiresIn: c.DefaultExpiresIn,
	}
	oc.httpClient = &http.Client{
		Timeout: timeout,
		Transport: &dialectTransport{
			base:     base,
			tokenURL: c.TokenURL,
			params:   c.Dialect.TokenParams,
			encoding: c.Dialect.TokenEncoding,
		},
		// A token or userinfo endpoint that redirects is misconfigured;
		// following it could leak credentials to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return oc
}

// newTransport is a dedicated transport with bounded timeouts, never
// http.DefaultTransport, so that a slow provider cannot hold connections
// of unrelated code.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
}

func (c *oauthClient) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.httpClient)
}

// authCodeURL builds the authorization request, then applies the
// dialect's renames, omissions and additions. extra parameters (login
// hints, prompt, step-up) are added under their standard names first, so
// that the dialect's renames apply to them too; a pushed authorization
// request must carry the same.
func (c *oauthClient) authCodeURL(redirectURI, state, verifier, nonce string, extra ...url.Values) string {
	conf := c.config
	conf.RedirectURL = redirectURI
	var opts []oauth2.AuthCodeOption
	if verifier != "" {
		opts = append(opts, oauth2.S256ChallengeOption(verifier))
	}
	if nonce != "" {
		opts = append(opts, oauth2.SetAuthURLParam("nonce", nonce))
	}
	for _, ex := range extra {
		for k := range ex {
			opts = append(opts, oauth2.SetAuthURLParam(k, ex.Get(k)))
		}
	}
	raw := conf.AuthCodeURL(state, opts...)
	if c.dialect.AuthorizeParams.empty() {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	c.dialect.AuthorizeParams.apply(q, true)
	u.RawQuery = q.Encode()
	return u.String()
}

// exchange redeems an authorization code.
func (c *oauthClient) exchange(ctx context.Context, code, verifier, redirectURI string) (*tokenSet, error) {
	conf := c.config
	conf.RedirectURL = redirectURI
	var opts []oauth2.AuthCodeOption
	if verifier != "" {
		opts = append(opts, oauth2.VerifierOption(verifier))
	}
	tok, err := conf.Exchange(c.ctx(ctx), code, opts...)
	if err != nil {
		return nil, fmt.Errorf("exchanging code: %w", classify(c.grantError(err)))
	}
	return c.normalise(tok), nil
}

// refresh uses a refresh token. A provider that does not rotate refresh
// tokens returns none, and the old one is kept (x/oauth2 does this).
func (c *oauthClient) refresh(ctx context.Context, refreshToken string) (*tokenSet, error) {
	src := c.config.TokenSource(c.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken})
	tok, err := src.Token()
	if err != nil {
		return nil, fmt.Errorf("refreshing token: %w", classify(c.grantError(err)))
	}
	return c.normalise(tok), nil
}

// grantError turns the provider's own words for invalid_grant (the
// dialect's InvalidGrantErrors) into errInvalidGrant.
func (c *oauthClient) grantError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" && slices.Contains(c.dialect.InvalidGrantErrors, re.ErrorCode) {
		return fmt.Errorf("%w (the provider's %q)", errInvalidGrant, re.ErrorCode)
	}
	return err
}

func (c *oauthClient) normalise(tok *oauth2.Token) *tokenSet {
	now := timeNow()
	ts := &tokenSet{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry}
	switch {
	case tok.ExpiresIn > 0:
		// x/oauth2 dates expires_in with time.Now; every other expiry
		// check here uses timeNow, so date it with that clock too. Absurd
		// lifetimes are capped rather than overflowing into the past.
		ts.Expiry = now.Add(time.Duration(min(tok.ExpiresIn, maxTokenLifetimeSecs)) * time.Second)
		ts.Issued = now
	case tok.ExpiresIn < 0:
		ts.Expiry = time.Time{} // meaningless: fall back as if absent
	}
	if id, ok := tok.Extra("id_token").(string); ok {
		ts.IDToken = id
	}
	if ts.Expiry.IsZero() {
		if exp, ok := jwtExpiry(tok.AccessToken); ok {
			ts.Expiry = exp
		} else if c.defaultExpiresIn > 0 {
			ts.Expiry = now.Add(c.defaultExpiresIn)
		}
	}
	return ts
}

// jwtExpiry reads exp from a JWT's payload without verifying it. It is used
// only to learn when a token the provider just handed us over TLS expires;
// nothing is authorised on it.
func jwtExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > maxProviderBody {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	secs, err := claims.Exp.Float64()
	if err != nil || secs <= 0 {
		return time.Time{}, false
	}
	if limit := float64(timeNow().Unix() + maxTokenLifetimeSecs); secs > limit {
		secs = limit // an exp of 1e19 would overflow int64 into the past
	}
	return time.Unix(int64(secs), 0), true
}

// userinfo fetches the userinfo endpoint with the access token.
func (c *oauthClient) userinfo(ctx context.Context, accessToken string) (map[string]any, error) {
	if c.userinfoURL == "" {
		return nil, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.userinfoURL, nil)
	if err != nil {
		return nil, fmt.Errorf("userinfo request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching userinfo: %w", classify(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody+1))
	if errors.Is(err, errBodyTooLarge) {
		return nil, fmt.Errorf("userinfo: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading userinfo: %w", errProviderDown)
	}
	if err := apiStatusError("userinfo", resp); err != nil {
		return nil, err
	}
	switch {
	case len(body) > maxProviderBody:
		return nil, fmt.Errorf("userinfo: body over %d bytes: %w", maxProviderBody, errProviderBadResponse)
	}
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, fmt.Errorf("userinfo: not a JSON object: %w", errProviderBadResponse)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("userinfo: data after the JSON object: %w", errProviderBadResponse)
	}
	return claims, nil
}

// apiStatusError maps the status of a provider's answer to an API request
// made with the access token (userinfo and the like) to the sentinels: 401
// and 403 refuse the token, 5xx is the provider down. A rate limit (429, or
// GitHub's 403 with X-RateLimit-Remaining: 0) is the provider unavailable
// for now, never a refused token: the user must not be told to sign in
// again, nor half signed in. Nil for 200.
func apiStatusError(what string, resp *http.Response) error {
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests || code == http.StatusForbidden && resp.Header.Get("X-RateLimit-Remaining") == "0":
		return fmt.Errorf("%s: status %d, rate limited (reset %s): %w", what, code, safeHeader(resp.Header.Get("X-RateLimit-Reset")), errProviderDown)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("%s: status %d: %w", what, code, errInvalidGrant)
	case code >= 500:
		return fmt.Errorf("%s: status %d: %w", what, code, errProviderDown)
	case code != http.StatusOK:
		return fmt.Errorf("%s: status %d: %w", what, code, errProviderRejected)
	}
	return nil
}

// safeHeader keeps a provider's header value printable and short for a log.
func safeHeader(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// revoke asks the provider to revoke a token (RFC 7009). x/oauth2 has no
// revocation support, so the request is built here; it goes through the
// same transport, so the dialect's encoding and renames apply.
func (c *oauthClient) revoke(ctx context.Context, token, hint string) error {
	if c.revokeURL == "" || token == "" {
		return nil
	}
	resp, err := c.postForm(ctx, c.revokeURL, url.Values{"token": {token}, "token_type_hint": {hint}})
	if err != nil {
		return fmt.Errorf("revoking token: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProviderBody))
	switch {
	case resp.StatusCode >= 500:
		return fmt.Errorf("revoking token: status %d: %w", resp.StatusCode, errProviderDown)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("revoking token: status %d: %w", resp.StatusCode, errProviderRejected)
	}
	return nil
}

// postForm POSTs form to one of the provider's endpoints with the client
// authenticated as at the token endpoint: HTTP Basic or credentials in the
// body, whichever the token requests use.
func (c *oauthClient) postForm(ctx context.Context, endpoint string, form url.Values) (*http.Response, error) {
	if c.config.Endpoint.AuthStyle == oauth2.AuthStyleInParams {
		form.Set("client_id", c.config.ClientID)
		if c.config.ClientSecret != "" {
			// None with client assertions (clientauth.go adds them) and
			// client certificates.
			form.Set("client_secret", c.config.ClientSecret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.config.Endpoint.AuthStyle == oauth2.AuthStyleInHeader {
		req.SetBasicAuth(url.QueryEscape(c.config.ClientID), url.QueryEscape(c.config.ClientSecret))
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, classify(err)
	}
	return resp, nil
}

// Refusals of a token by introspection: the token's fault, not the
// provider's.
var (
	// errTokenInactive: the provider says the token is not active
	// (unknown, expired, revoked, or of a disabled account).
	errTokenInactive = errors.New("token is not active")
	// errTokenNotAccess: active, but not an access token (a refresh
	// token, say), or it does not say what it is.
	errTokenNotAccess = errors.New("token is not an access token")
	// errTokenTime: exp passed or nbf still ahead.
	errTokenTime = errors.New("token is expired or not yet valid")
)

// introspection is a provider's RFC 7662 answer about an active access
// token, with the members authgate checks parsed out.
type introspection struct {
	// Claims are all members of the answer, for the claim mapping.
	Claims    map[string]any
	Audience  []string
	ClientID  string
	Issuer    string
	Expiry    time.Time // zero: the answer gives none
	NotBefore time.Time
}

// introspect asks the provider about an access token (RFC 7662), with the
// client authenticated as at the token endpoint, and parses the answer.
// An inactive token, a token of another kind and a token outside its
// validity times are errTokenInactive, errTokenNotAccess and errTokenTime;
// anything the provider gets wrong is one of the provider errors.
func (c *oauthClient) introspect(ctx context.Context, token string) (*introspection, error) {
	if c.introspectURL == "" {
		return nil, errors.New("introspection: the provider has no introspection endpoint")
	}
	resp, err := c.postForm(ctx, c.introspectURL, url.Values{"token": {token}, "token_type_hint": {"access_token"}})
	if err != nil {
		return nil, fmt.Errorf("introspecting token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		if errors.Is(err, errBodyTooLarge) {
			return nil, fmt.Errorf("introspection: %w", err)
		}
		return nil, fmt.Errorf("reading introspection: %w", errProviderDown)
	case resp.StatusCode >= 500:
		return nil, fmt.Errorf("introspection: status %d: %w", resp.StatusCode, errProviderDown)
	case resp.StatusCode != http.StatusOK:
		// 401/403 here refuse our client, not the token: a configuration
		// error to report, never an answer about the token to cache.
		return nil, fmt.Errorf("introspection: status %d: %w", resp.StatusCode, errProviderRejected)
	}
	return parseIntrospection(body, timeNow())
}

// parseIntrospection reads an RFC 7662 answer. Only a JSON object whose
// active member is the boolean true, that says it is about an access token
// (token_type Bearer; or Keycloak's typ Bearer, or token_use access_token)
// and whose exp and nbf, when given, hold at now, is an active access
// token.
func parseIntrospection(body []byte, now time.Time) (*introspection, error) {
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, fmt.Errorf("introspection: not a JSON object: %w", errProviderBadResponse)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("introspection: data after the JSON object: %w", errProviderBadResponse)
	}
	active, ok := claims["active"].(bool)
	if !ok {
		return nil, fmt.Errorf("introspection: active is missing or not a boolean: %w", errProviderBadResponse)
	}
	if !active {
		return nil, errTokenInactive
	}
	in := &introspection{Claims: claims}
	var err error
	str := func(name string) string {
		v, present := claims[name]
		if !present || err != nil {
			return ""
		}
		s, ok := v.(string)
		if !ok {
			err = fmt.Errorf("introspection: %s is not a string: %w", name, errProviderBadResponse)
		}
		return s
	}
	in.ClientID = str("client_id")
	in.Issuer = str("iss")
	kinds := 0
	for _, k := range []string{"token_type", "typ", "token_use"} {
		v := str(k)
		if _, present := claims[k]; !present || err != nil {
			continue
		}
		switch strings.ToLower(v) {
		case "bearer", "access_token":
			kinds++
		default:
			// A refresh token, a DPoP-bound token (whose proof authgate
			// cannot check), an ID token: no bearer credential.
			return nil, fmt.Errorf("%w: %s is %q", errTokenNotAccess, k, v)
		}
	}
	if err != nil {
		return nil, err
	}
	if kinds == 0 {
		return nil, fmt.Errorf("%w: the answer has no token_type", errTokenNotAccess)
	}
	switch aud := claims["aud"].(type) {
	case nil:
		if _, present := claims["aud"]; present {
			return nil, fmt.Errorf("introspection: aud is null: %w", errProviderBadResponse)
		}
	case string:
		in.Audience = []string{aud}
	case []any:
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return nil, fmt.Errorf("introspection: aud holds a non-string: %w", errProviderBadResponse)
			}
			in.Audience = append(in.Audience, s)
		}
	default:
		return nil, fmt.Errorf("introspection: aud is neither a string nor an array: %w", errProviderBadResponse)
	}
	if in.Expiry, err = numericDate(claims, "exp", now); err != nil {
		return nil, err
	}
	if in.NotBefore, err = numericDate(claims, "nbf", now); err != nil {
		return nil, err
	}
	switch {
	case !in.Expiry.IsZero() && !now.Before(in.Expiry):
		return nil, fmt.Errorf("%w: exp %s is past", errTokenTime, in.Expiry.UTC().Format(time.RFC3339))
	case !in.NotBefore.IsZero() && now.Add(introspectionLeeway).Before(in.NotBefore):
		return nil, fmt.Errorf("%w: nbf %s is ahead", errTokenTime, in.NotBefore.UTC().Format(time.RFC3339))
	}
	return in, nil
}

// introspectionLeeway tolerates clocks a little apart for nbf.
const introspectionLeeway = time.Minute

// numericDate reads a NumericDate member (seconds since the epoch); zero
// when absent. Values beyond maxTokenLifetimeSecs from now are capped
// rather than overflowing.
func numericDate(claims map[string]any, name string, now time.Time) (time.Time, error) {
	v, present := claims[name]
	if !present {
		return time.Time{}, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, fmt.Errorf("introspection: %s is not a number: %w", name, errProviderBadResponse)
	}
	secs, err := n.Float64()
	if err != nil || secs != secs {
		return time.Time{}, fmt.Errorf("introspection: %s is not a number: %w", name, errProviderBadResponse)
	}
	limit := float64(now.Unix() + maxTokenLifetimeSecs)
	switch {
	case secs > limit:
		secs = limit
	case secs < 1:
		secs = 1 // before the epoch: long past
	}
	return time.Unix(int64(secs), 0), nil
}

// classify maps x/oauth2 and net/http errors onto our sentinels, keeping
// the original for the log.
func classify(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		switch {
		case re.ErrorCode == "invalid_grant":
			return fmt.Errorf("%w (status %d)", errInvalidGrant, status)
		case status >= 500:
			return fmt.Errorf("%w (status %d)", errProviderDown, status)
		case status == http.StatusOK || status == 0:
			return fmt.Errorf("%w: %v", errProviderBadResponse, err)
		default:
			return fmt.Errorf("%w (status %d, error %q)", errProviderRejected, status, re.ErrorCode)
		}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %v", errProviderTimeout, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%w: %v", errProviderDown, err)
	}
	if errors.Is(err, errInvalidGrant) || errors.Is(err, errProviderDown) || errors.Is(err, errProviderRejected) ||
		errors.Is(err, errProviderBadResponse) || errors.Is(err, errProviderTimeout) {
		return err
	}
	// x/oauth2 reports unparsable bodies and a missing access_token as
	// plain errors.
	return fmt.Errorf("%w: %v", errProviderBadResponse, err)
}

// dialectTransport rewrites requests to the token endpoint into the
// provider's dialect: renamed, omitted or added parameters and the
// encoding the provider wants. x/oauth2 always sends a standard form body;
// rewriting it here lets x/oauth2 keep doing the exchange and parsing.
type dialectTransport struct {
	base     http.RoundTripper
	tokenURL string
	params   ParamRewrite
	encoding string
}

func (t *dialectTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.Body == nil || req.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		return t.base.RoundTrip(req)
	}
	isToken := req.URL.String() == t.tokenURL
	if !isToken && t.encoding == "" && t.params.empty() {
		return t.base.RoundTrip(req)
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, err
	}
	if isToken {
		t.params.apply(form, true)
	} else {
		t.params.apply(form, false) // revocation: renames and omissions only
	}
	out := req.Clone(req.Context())
	out.Header.Set("Accept", "application/json")
	switch t.encoding {
	case "json":
		obj := make(map[string]string, len(form))
		for k := range form {
			obj[k] = form.Get(k)
		}
		b, _ := json.Marshal(obj)
		setBody(out, b)
		out.Header.Set("Content-Type", "application/json")
	case "query":
		q := out.URL.Query()
		for k, v := range form {
			q[k] = v
		}
		out.URL.RawQuery = q.Encode()
		setBody(out, nil)
		out.Header.Del("Content-Type")
	default:
		setBody(out, []byte(form.Encode()))
	}
	return t.base.RoundTrip(out)
}

func setBody(r *http.Request, b []byte) {
	r.ContentLength = int64(len(b))
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// limitedTransport bounds every response body a provider sends. go-oidc
// reads discovery documents whole; a provider (or whoever answers in its
// place) must not make us buffer more than maxProviderBody.
type limitedTransport struct {
	base http.RoundTripper
}

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxProviderBody}
	return resp, nil
}

// errBodyTooLarge is what reading past the limit returns.
var errBodyTooLarge = fmt.Errorf("%w: response body over %d bytes", errProviderBadResponse, maxProviderBody)

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

func isProviderFailure(err error) bool {
	return errors.Is(err, errProviderDown) || errors.Is(err, errProviderTimeout) ||
		errors.Is(err, errProviderBadResponse) || errors.Is(err, errProviderRejected)
}

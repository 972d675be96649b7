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
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

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

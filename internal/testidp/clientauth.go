package testidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Client authentication methods (the token_endpoint_auth_method values of
// RFC 7591 / OIDC Discovery) accepted in Client.AuthMethod.
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthClientSecretJWT   = "client_secret_jwt" // RFC 7523, HS256 with Client.Secret
	AuthPrivateKeyJWT     = "private_key_jwt"   // RFC 7523, RS256/ES256 with Client.JWKS
	AuthTLSClientAuth     = "tls_client_auth"   // RFC 8705 §2.1, PKI mutual TLS
	AuthNone              = "none"              // public client
)

// ClientAssertionType is the client_assertion_type of RFC 7523 §2.2.
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// MaxAssertionLifetime is how far in the future the exp of a client
// assertion may be; assertions valid for longer are refused.
const MaxAssertionLifetime = 5 * time.Minute

var allAuthMethods = []string{AuthClientSecretBasic, AuthClientSecretPost, AuthClientSecretJWT, AuthPrivateKeyJWT, AuthTLSClientAuth, AuthNone}

// authMethods lists the methods a client may authenticate with: its
// AuthMethod alone, or else every method its credentials allow.
func (c *Client) authMethods() []string {
	if c.AuthMethod != "" {
		return []string{c.AuthMethod}
	}
	var m []string
	if c.Secret != "" {
		m = append(m, AuthClientSecretBasic, AuthClientSecretPost, AuthClientSecretJWT)
	}
	if c.JWKS != nil && len(c.JWKS.Keys) > 0 {
		m = append(m, AuthPrivateKeyJWT)
	}
	if c.TLSClientAuthSubjectDN != "" {
		m = append(m, AuthTLSClientAuth)
	}
	if len(m) == 0 {
		m = []string{AuthNone}
	}
	return m
}

// public reports whether the client authenticates with client_id only.
func (c *Client) public() bool {
	m := c.authMethods()
	return len(m) == 1 && m[0] == AuthNone
}

func validateClientAuth(c *Client) error {
	if c.AuthMethod != "" && !slices.Contains(allAuthMethods, c.AuthMethod) {
		return fmt.Errorf("testidp: client %q: unknown AuthMethod %q", c.ID, c.AuthMethod)
	}
	switch c.AuthMethod {
	case AuthClientSecretBasic, AuthClientSecretPost, AuthClientSecretJWT:
		if c.Secret == "" {
			return fmt.Errorf("testidp: client %q: %s needs a Secret", c.ID, c.AuthMethod)
		}
	case AuthPrivateKeyJWT:
		if c.JWKS == nil || len(c.JWKS.Keys) == 0 {
			return fmt.Errorf("testidp: client %q: private_key_jwt needs JWKS", c.ID)
		}
	case AuthTLSClientAuth:
		if c.TLSClientAuthSubjectDN == "" {
			return fmt.Errorf("testidp: client %q: tls_client_auth needs TLSClientAuthSubjectDN", c.ID)
		}
	case AuthNone:
		if c.Secret != "" {
			return fmt.Errorf("testidp: client %q: auth method none with a Secret", c.ID)
		}
	}
	if c.JWKS != nil {
		for _, k := range c.JWKS.Keys {
			switch k.Key.(type) {
			case *rsa.PublicKey, *rsa.PrivateKey, *ecdsa.PublicKey, *ecdsa.PrivateKey:
			default:
				return fmt.Errorf("testidp: client %q: JWKS key %q is not an RSA or EC key", c.ID, k.KeyID)
			}
		}
	}
	return nil
}

func invalidClient(desc string, basic bool) *oauthError {
	e := &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: desc}
	if basic {
		e.wwwAuth = `Basic realm="testidp"`
	}
	return e
}

// authenticateClient authenticates the client of a request to a client
// endpoint (token, revocation, introspection, PAR) and returns it with
// the method it used. The form must already be parsed. Exactly one method
// per request (RFC 6749 §2.3): Basic, client_secret in the body, or a
// client assertion; a TLS client certificate counts only when none of
// those is present.
func (s *Server) authenticateClient(r *http.Request) (*Client, string, *oauthError) {
	form := r.PostForm
	basicID, basicSecret, hasBasic := r.BasicAuth()
	if hasBasic {
		// RFC 6749 §2.3.1: both are form-urlencoded before Base64.
		id, err1 := url.QueryUnescape(basicID)
		sec, err2 := url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil {
			return nil, "", invalidClient("malformed Basic credentials", true)
		}
		basicID, basicSecret = id, sec
	} else if h := r.Header.Get("Authorization"); h != "" {
		return nil, "", badRequest("invalid_request", "unsupported Authorization scheme")
	}
	hasAssertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	n := 0
	for _, used := range []bool{hasBasic, form.Has("client_secret"), hasAssertion} {
		if used {
			n++
		}
	}
	if n > 1 {
		return nil, "", badRequest("invalid_request", "multiple client authentication methods used")
	}
	formID := form.Get("client_id")
	lookup := func(id string) (*Client, *oauthError) {
		if id == "" {
			return nil, invalidClient("client authentication required", hasBasic)
		}
		s.mu.Lock()
		c := s.clients[id]
		var cp Client
		if c != nil {
			cp = *c
		}
		s.mu.Unlock()
		if c == nil {
			return nil, invalidClient("unknown client", hasBasic)
		}
		return &cp, nil
	}
	allowed := func(c *Client, method string) *oauthError {
		if !slices.Contains(c.authMethods(), method) {
			if c.public() {
				return invalidClient("public client must not send credentials", hasBasic)
			}
			return invalidClient(fmt.Sprintf("client is not allowed to authenticate with %s", method), hasBasic)
		}
		return nil
	}

	switch {
	case hasBasic, form.Has("client_secret"):
		id, secret, method := basicID, basicSecret, AuthClientSecretBasic
		if !hasBasic {
			id, secret, method = formID, form.Get("client_secret"), AuthClientSecretPost
		} else if formID != "" && formID != basicID {
			return nil, "", badRequest("invalid_request", "client_id does not match the authenticated client")
		}
		c, oe := lookup(id)
		if oe != nil {
			return nil, "", oe
		}
		if oe := allowed(c, method); oe != nil {
			return nil, "", oe
		}
		if subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
			return nil, "", invalidClient("invalid client credentials", hasBasic)
		}
		return c, method, nil

	case hasAssertion:
		return s.authenticateAssertion(r)
	}

	c, oe := lookup(formID)
	if oe != nil {
		return nil, "", oe
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && slices.Contains(c.authMethods(), AuthTLSClientAuth) {
		// The handshake verified the chain (tls.VerifyClientCertIfGiven
		// against the server's client CAs); RFC 8705 §2.1.2: the
		// registered subject DN must match.
		if len(r.TLS.VerifiedChains) == 0 {
			return nil, "", invalidClient("client certificate not trusted", false)
		}
		if dn := r.TLS.PeerCertificates[0].Subject.String(); dn != c.TLSClientAuthSubjectDN {
			return nil, "", invalidClient("client certificate subject "+dn+" does not match the registered one", false)
		}
		return c, AuthTLSClientAuth, nil
	}
	if !c.public() {
		if slices.Contains(c.authMethods(), AuthTLSClientAuth) {
			return nil, "", invalidClient("client certificate required", false)
		}
		return nil, "", invalidClient("client authentication required", false)
	}
	return c, AuthNone, nil
}

// authenticateAssertion implements client_secret_jwt and private_key_jwt
// (RFC 7523 §2.2 and §3, OIDC Core §9).
func (s *Server) authenticateAssertion(r *http.Request) (*Client, string, *oauthError) {
	form := r.PostForm
	if t := form.Get("client_assertion_type"); t != ClientAssertionType {
		if t == "" {
			return nil, "", badRequest("invalid_request", "missing client_assertion_type")
		}
		return nil, "", badRequest("invalid_request", "unsupported client_assertion_type")
	}
	assertion := form.Get("client_assertion")
	if assertion == "" {
		return nil, "", badRequest("invalid_request", "missing client_assertion")
	}
	bad := func(desc string) (*Client, string, *oauthError) {
		return nil, "", invalidClient("invalid client assertion: "+desc, false)
	}
	p, err := parseJWT(assertion)
	if err != nil {
		return bad(err.Error())
	}
	iss, _ := p.claims["iss"].(string)
	sub, _ := p.claims["sub"].(string)
	if iss == "" || iss != sub {
		return bad("iss and sub must both be the client_id")
	}
	if id := form.Get("client_id"); id != "" && id != iss {
		return nil, "", badRequest("invalid_request", "client_id does not match the client assertion")
	}
	s.mu.Lock()
	c := s.clients[iss]
	var client Client
	if c != nil {
		client = *c
	}
	s.mu.Unlock()
	if c == nil {
		return bad("unknown client")
	}
	var method string
	switch p.alg {
	case "HS256":
		method = AuthClientSecretJWT
	case "RS256", "ES256":
		method = AuthPrivateKeyJWT
	default:
		return bad(fmt.Sprintf("unsupported alg %q", p.alg))
	}
	if !slices.Contains(client.authMethods(), method) {
		return bad(fmt.Sprintf("client is not allowed to authenticate with %s", method))
	}
	if method == AuthClientSecretJWT {
		mac := hmac.New(sha256.New, []byte(client.Secret))
		mac.Write(p.signed)
		if !hmac.Equal(mac.Sum(nil), p.sig) {
			return bad("signature verification failed")
		}
	} else if !verifyWithClientKeys(client.JWKS, p) {
		return bad("signature verification failed")
	}

	now := s.now()
	if !s.assertionAudienceOK(audiences(p.claims), r) {
		return bad("aud does not identify this authorization server")
	}
	exp, ok := numClaim(p.claims, "exp")
	if !ok {
		return bad("missing exp")
	}
	if now.Unix() >= exp {
		return bad("expired")
	}
	if time.Unix(exp, 0).After(now.Add(MaxAssertionLifetime)) {
		return bad(fmt.Sprintf("exp is more than %s away", MaxAssertionLifetime))
	}
	if nbf, ok := numClaim(p.claims, "nbf"); ok && now.Unix() < nbf {
		return bad("not yet valid")
	}
	if iat, ok := numClaim(p.claims, "iat"); ok && iat > now.Add(time.Minute).Unix() {
		return bad("issued in the future")
	}
	jti, _ := p.claims["jti"].(string)
	if jti == "" {
		return bad("missing jti")
	}
	key := client.ID + "\x00" + jti
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, seen := s.assertionJTIs[key]; seen {
		return bad("jti already used (replay)")
	}
	s.assertionJTIs[key] = time.Unix(exp, 0)
	s.maybePruneLocked(now)
	return &client, method, nil
}

// assertionAudienceOK checks the aud of a client assertion: the issuer,
// the token endpoint URL (or its mTLS alias), or the URL of the endpoint
// the assertion was sent to; Options.AssertionAudience narrows it.
func (s *Server) assertionAudienceOK(auds []string, r *http.Request) bool {
	issuer := s.issuerFor(r)
	tokenURLs := []string{issuer + PathToken}
	here := []string{issuer + strings.TrimPrefix(r.URL.Path, s.issuerPath)}
	if alias := s.mtlsIssuer(); alias != "" {
		tokenURLs = append(tokenURLs, alias+PathToken)
		here = append(here, alias+strings.TrimPrefix(r.URL.Path, s.issuerPath))
	}
	var ok []string
	switch s.opts.AssertionAudience {
	case "token_endpoint":
		ok = tokenURLs
	case "issuer":
		ok = []string{issuer}
	default:
		ok = append(append([]string{issuer}, tokenURLs...), here...)
	}
	for _, a := range auds {
		if slices.Contains(ok, a) {
			return true
		}
	}
	return false
}

func verifyWithClientKeys(set *jose.JSONWebKeySet, p *parsedJWT) bool {
	if set == nil {
		return false
	}
	for _, k := range set.Keys {
		if p.kid != "" && k.KeyID != p.kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != p.alg {
			continue
		}
		pub := k.Key
		if sg, ok := pub.(crypto.Signer); ok {
			pub = sg.Public()
		}
		if verifyRaw(pub, p.alg, p.signed, p.sig) {
			return true
		}
	}
	return false
}

// ClientKey is a key pair a test client uses for private_key_jwt.
type ClientKey struct {
	// Alg is "RS256" or "ES256".
	Alg string
	// KID is the key ID, put in the JWK and in the header of assertions.
	KID string
	// Signer is the private key.
	Signer crypto.Signer
}

// GenerateClientKey creates a key pair for private_key_jwt: RSA 2048 for
// "RS256", P-256 for "ES256". The kid is the key's JWK thumbprint.
func GenerateClientKey(alg string) (*ClientKey, error) {
	k, err := newSigningKey(alg)
	if err != nil {
		return nil, err
	}
	return &ClientKey{Alg: alg, KID: k.kid, Signer: k.priv}, nil
}

// PublicJWK returns the public key as a JWK (kid, alg, use "sig").
func (k *ClientKey) PublicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Signer.Public(), KeyID: k.KID, Algorithm: k.Alg, Use: "sig"}
}

// JWKS returns a key set holding the public key, for Client.JWKS.
func (k *ClientKey) JWKS() *jose.JSONWebKeySet {
	return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.PublicJWK()}}
}

// Sign signs claims with the key (header alg, kid and typ "JWT") and
// returns the compact JWS, for example a client assertion.
func (k *ClientKey) Sign(claims map[string]any) string {
	sk := &signingKey{kid: k.KID, alg: k.Alg, priv: k.Signer}
	return encodeJWS(map[string]any{"alg": k.Alg, "kid": k.KID, "typ": "JWT"}, claims, sk.signRaw)
}

// SignHS256 signs claims with HMAC SHA-256 under secret (header alg HS256,
// typ "JWT"), as client_secret_jwt assertions are.
func SignHS256(claims map[string]any, secret string) string {
	return encodeJWS(map[string]any{"alg": "HS256", "typ": "JWT"}, claims, func(b []byte) []byte {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(b)
		return mac.Sum(nil)
	})
}

// ClientAssertionClaims returns the claims of a valid client assertion for
// clientID (RFC 7523 §3): iss and sub the client_id, aud the token
// endpoint URL, iat now, exp one minute later, a fresh jti. Mutate them and
// sign with [ClientKey.Sign] or [SignHS256]; send the result as
// client_assertion with client_assertion_type [ClientAssertionType].
func (s *Server) ClientAssertionClaims(clientID string) map[string]any {
	now := s.now()
	return map[string]any{
		"iss": clientID,
		"sub": clientID,
		"aud": s.Issuer() + PathToken,
		"iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(),
		"jti": randomString(16),
	}
}

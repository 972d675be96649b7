package authgate

// Client authentication stronger than a shared secret in the request:
// RFC 7523 client assertions (private_key_jwt, signed with a private key;
// client_secret_jwt, an HMAC of the secret that never leaves authgate) and
// RFC 8705 mutual TLS (tls_client_auth). x/oauth2 keeps doing the token
// exchange and refresh: it sends client_id alone (AuthStyleInParams with
// no secret), and the transport here adds the assertion to every request
// that authenticates the client (token, revocation, introspection, PAR),
// or presents the client certificate on every connection to the provider.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The client authentication methods beyond basic and body, with their
// OpenID Connect Discovery names.
const (
	authPrivateKeyJWT   = "private_key_jwt"
	authClientSecretJWT = "client_secret_jwt"
	authTLSClientAuth   = "tls_client_auth"
)

// clientAssertionType is RFC 7523 §2.2's client_assertion_type.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a client assertion is valid: one request's
// worth, as providers cap it (Keycloak and others refuse long ones).
const assertionLifetime = time.Minute

// ClientCredentials are the key or certificate of a client authentication
// method (provider option client_auth).
type ClientCredentials struct {
	// Key is a PEM file with the private key that signs private_key_jwt
	// assertions: RSA, or EC on P-256, P-384 or P-521 (PKCS #8, PKCS #1
	// or SEC 1). Read at start; a key that does not parse, or does not
	// fit Algorithm, is an error naming the file.
	Key string `json:"key,omitempty"`

	// KeyID is the kid of the assertions' header, as the key is
	// registered at the provider. Default: the key's JWK thumbprint
	// (RFC 7638, SHA-256, base64url).
	KeyID string `json:"key_id,omitempty"`

	// Algorithm signs the assertions: RS256, RS384, RS512, PS256, PS384,
	// PS512 with an RSA key; ES256, ES384, ES512 with an EC key of the
	// matching curve; HS256, HS384, HS512 for client_secret_jwt (the
	// secret must be at least as long as the hash). Default: RS256 for
	// RSA keys, the curve's ES algorithm for EC keys, HS256 for
	// client_secret_jwt.
	Algorithm string `json:"alg,omitempty"`

	// Audience is the assertions' aud: "token_endpoint" (the token
	// endpoint URL, RFC 7523 §3), "issuer" (for providers that want
	// their issuer identifier), or a literal URL. Default: token_endpoint.
	Audience string `json:"audience,omitempty"`

	// Certificate and CertificateKey are PEM files of the TLS client
	// certificate and its private key for tls_client_auth (RFC 8705
	// §2.1). The certificate is presented on every connection to the
	// provider, and its mTLS endpoint aliases are used when discovery
	// names them.
	Certificate    string `json:"certificate,omitempty"`
	CertificateKey string `json:"certificate_key,omitempty"`
}

// clientAuth signs client assertions for one provider.
type clientAuth struct {
	method   string
	clientID string
	signer   jose.Signer // nil for tls_client_auth
	// audience returns the assertion's aud for a request to u.
	audience func() string
}

// newClientAuth prepares the method's credentials; nil for basic, body
// and tls_client_auth (whose certificate is in the TLS configuration).
// tokenURL and issuer give the assertion audience when it is needed:
// after discovery.
func newClientAuth(method, clientID, secret string, creds *ClientCredentials, tokenURL, issuer func() string) (*clientAuth, error) {
	if method != authPrivateKeyJWT && method != authClientSecretJWT {
		return nil, nil
	}
	c := ClientCredentials{}
	if creds != nil {
		c = *creds
	}
	ca := &clientAuth{method: method, clientID: clientID}
	switch c.Audience {
	case "", "token_endpoint":
		ca.audience = tokenURL
	case "issuer":
		ca.audience = issuer
	default:
		if u, err := url.Parse(c.Audience); err != nil || !u.IsAbs() {
			return nil, fmt.Errorf("client_auth %s: audience must be token_endpoint, issuer or a URL, not %q", method, c.Audience)
		}
		aud := c.Audience
		ca.audience = func() string { return aud }
	}
	var key jose.SigningKey
	if method == authClientSecretJWT {
		alg := orDefault(c.Algorithm, "HS256")
		var min int
		switch alg {
		case "HS256":
			min = 32
		case "HS384":
			min = 48
		case "HS512":
			min = 64
		default:
			return nil, fmt.Errorf("client_auth client_secret_jwt: alg must be HS256, HS384 or HS512, not %q", alg)
		}
		if len(secret) < min {
			return nil, fmt.Errorf("client_auth client_secret_jwt: %s needs a client secret of at least %d bytes (RFC 7518 §3.2); this one has %d", alg, min, len(secret))
		}
		key = jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: []byte(secret)}
	} else {
		if c.Key == "" {
			return nil, errors.New("client_auth private_key_jwt needs a key (a PEM file of the private key)")
		}
		priv, err := loadPrivateKey(c.Key)
		if err != nil {
			return nil, fmt.Errorf("client_auth private_key_jwt: %w", err)
		}
		alg, err := keyAlgorithm(priv, c.Algorithm)
		if err != nil {
			return nil, fmt.Errorf("client_auth private_key_jwt: key %s: %w", c.Key, err)
		}
		kid := c.KeyID
		if kid == "" {
			tp, err := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
			if err != nil {
				return nil, fmt.Errorf("client_auth private_key_jwt: key %s: %w", c.Key, err)
			}
			kid = base64.RawURLEncoding.EncodeToString(tp)
		}
		key = jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}
	}
	signer, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("client_auth %s: %w", method, err)
	}
	ca.signer = signer
	return ca, nil
}

// loadPrivateKey reads a PEM private key; its errors name the file.
func loadPrivateKey(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w", path, err)
	}
	var block *pem.Block
	for rest := raw; ; {
		block, rest = pem.Decode(rest)
		if block == nil || strings.Contains(block.Type, "PRIVATE KEY") {
			break
		}
	}
	if block == nil {
		return nil, fmt.Errorf("key %s: no PEM private key in the file", path)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %s does not parse: %w", path, block.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("key %s: RSA keys must have 2048 bits or more, this one has %d", path, k.N.BitLen())
		}
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("key %s: a %T; only RSA and EC keys sign client assertions", path, key)
}

// keyAlgorithm checks alg against the key, or picks the key's default.
func keyAlgorithm(key crypto.Signer, alg string) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		switch alg {
		case "":
			return jose.RS256, nil
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return jose.SignatureAlgorithm(alg), nil
		}
		return "", fmt.Errorf("an RSA key signs RS256, RS384, RS512, PS256, PS384 or PS512, not %q", alg)
	case *ecdsa.PrivateKey:
		want := map[elliptic.Curve]string{elliptic.P256(): "ES256", elliptic.P384(): "ES384", elliptic.P521(): "ES512"}[k.Curve]
		if want == "" {
			return "", fmt.Errorf("an EC key on %s; use P-256, P-384 or P-521", k.Curve.Params().Name)
		}
		if alg != "" && alg != want {
			return "", fmt.Errorf("an EC key on %s signs %s, not %q", k.Curve.Params().Name, want, alg)
		}
		return jose.SignatureAlgorithm(want), nil
	}
	return "", fmt.Errorf("unsupported key %T", key)
}

// assertion is a fresh client assertion (RFC 7523 §3): iss and sub the
// client, aud the provider, a new jti, a short exp.
func (ca *clientAuth) assertion() (string, error) {
	aud := ca.audience()
	if aud == "" {
		return "", errors.New("client assertion: the provider's token endpoint is not known yet")
	}
	now := timeNow()
	claims := jwt.Claims{
		Issuer:    ca.clientID,
		Subject:   ca.clientID,
		Audience:  jwt.Audience{aud},
		ID:        randomString(18),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
		Expiry:    jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	return jwt.Signed(ca.signer).Claims(claims).Serialize()
}

// assertionTransport adds a client assertion to every form POST that
// authenticates the client by client_id alone: what x/oauth2 sends for the
// code exchange and the refresh, and what revocation, introspection and
// pushed authorization requests send.
type assertionTransport struct {
	base http.RoundTripper
	auth *clientAuth
}

func (t *assertionTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isFormPost(req) {
		return t.base.RoundTrip(req)
	}
	form, err := readForm(req)
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context())
	if form.Get("client_id") == t.auth.clientID && !form.Has("client_secret") && !form.Has("client_assertion") && req.Header.Get("Authorization") == "" {
		a, err := t.auth.assertion()
		if err != nil {
			return nil, err
		}
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", a)
	}
	setBody(out, []byte(form.Encode()))
	return t.base.RoundTrip(out)
}

// providerTLS returns the TLS configuration for a provider with a client
// certificate (tls_client_auth) or its own CAs (tls_trusted_ca), nil when
// it needs neither. Errors name the files.
func providerTLS(method string, creds *ClientCredentials, trustedCA string) (*tls.Config, error) {
	if method != authTLSClientAuth && trustedCA == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if trustedCA != "" {
		raw, err := os.ReadFile(trustedCA)
		if err != nil {
			return nil, fmt.Errorf("tls_trusted_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("tls_trusted_ca %s: no PEM certificate in the file", trustedCA)
		}
		cfg.RootCAs = pool
	}
	if method == authTLSClientAuth {
		if creds == nil || creds.Certificate == "" || creds.CertificateKey == "" {
			return nil, errors.New("client_auth tls_client_auth needs certificate and key (PEM files)")
		}
		cert, err := tls.LoadX509KeyPair(creds.Certificate, creds.CertificateKey)
		if err != nil {
			return nil, fmt.Errorf("client_auth tls_client_auth: certificate %s with key %s: %w", creds.Certificate, creds.CertificateKey, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

package authgate

// Client authentication stronger than a shared secret in the request:
// RFC 7523 client assertions (private_key_jwt, signed with a private key;
// client_secret_jwt, an HMAC of the secret that never leaves authgate) and
// RFC 8705 mutual TLS (tls_client_auth). x/oauth2 keeps doing the token
// exchange and refresh: it sends client_id alone (AuthStyleInParams with
// no secret), and the transport here adds the assertion to every request
// that authenticates the client (token, revocation, introspection, PAR),
// or presents the client certificate on every connection to the provider.
// A private_key_jwt key is read from a PEM file or kept in Caddy's
// storage (generated on first start, shared by every instance on that
// storage); the public keys are published as the client JWKS.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
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

	// KeyStorage keeps the private_key_jwt key in Caddy's storage instead
	// of a file (Key is then empty): made on first start, of the type
	// Algorithm needs (RSA 2048 bits for RS and PS algorithms, the
	// matching EC curve for ES ones), under
	// authgate/client_keys/<provider>.pem, and read from there by every
	// instance and configuration using that storage. Its public key is
	// logged when it is made and published, with every other
	// private_key_jwt key, at /.well-known/authgate/client-jwks.json: the
	// JWKS URL to register at the provider. A stored key that does not
	// parse, or does not fit Algorithm, fails the start naming its place
	// in the storage, and is never replaced. Default: false.
	KeyStorage bool `json:"key_storage,omitempty"`

	// storedKey is the key read from Caddy's storage (withStoredKey),
	// storedAt its place there for messages.
	storedKey crypto.Signer
	storedAt  string

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
	// public is the private_key_jwt key's public half, for the client
	// JWKS; nil for client_secret_jwt.
	public *jose.JSONWebKey
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
		var priv crypto.Signer
		where := c.Key
		switch {
		case c.KeyStorage && c.Key != "":
			return nil, errors.New("client_auth private_key_jwt: the key is a file or kept in storage, not both")
		case c.KeyStorage:
			if c.storedKey == nil {
				return nil, errors.New("client_auth private_key_jwt: the key kept in storage was not loaded")
			}
			priv, where = c.storedKey, c.storedAt
		case c.Key == "":
			return nil, errors.New("client_auth private_key_jwt needs a key (a PEM file of the private key, or storage)")
		default:
			var err error
			if priv, err = loadPrivateKey(c.Key); err != nil {
				return nil, fmt.Errorf("client_auth private_key_jwt: %w", err)
			}
		}
		alg, err := keyAlgorithm(priv, c.Algorithm)
		if err != nil {
			return nil, fmt.Errorf("client_auth private_key_jwt: key %s: %w", where, err)
		}
		pub, err := clientPublicKey(priv, alg, c.KeyID)
		if err != nil {
			return nil, fmt.Errorf("client_auth private_key_jwt: key %s: %w", where, err)
		}
		ca.public = &pub
		key = jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: priv, KeyID: pub.KeyID}}
	}
	signer, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("client_auth %s: %w", method, err)
	}
	ca.signer = signer
	return ca, nil
}

// clientPublicKey is the JWK of priv's public half as the provider
// registers it: kid the configured one, else the RFC 7638 thumbprint.
func clientPublicKey(priv crypto.Signer, alg jose.SignatureAlgorithm, kid string) (jose.JSONWebKey, error) {
	pub := jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: string(alg), Use: "sig"}
	if kid == "" {
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return pub, err
		}
		pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	}
	return pub, nil
}

// loadPrivateKey reads a PEM private key; its errors name the file.
func loadPrivateKey(path string) (crypto.Signer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key %s: %w", path, err)
	}
	return parseClientKey(raw, path)
}

// parseClientKey reads the private key of a PEM document; where names
// it in errors (a file, or a place in Caddy's storage).
func parseClientKey(raw []byte, where string) (crypto.Signer, error) {
	var block *pem.Block
	for rest := raw; ; {
		block, rest = pem.Decode(rest)
		if block == nil || strings.Contains(block.Type, "PRIVATE KEY") {
			break
		}
	}
	if block == nil {
		return nil, fmt.Errorf("key %s: no PEM private key in the file", where)
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %s does not parse: %w", where, block.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("key %s: RSA keys must have 2048 bits or more, this one has %d", where, k.N.BitLen())
		}
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("key %s: a %T; only RSA and EC keys sign client assertions", where, key)
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

const (
	// clientKeysStorageDir holds the private_key_jwt keys kept in Caddy's
	// storage, <provider>.pem each.
	clientKeysStorageDir = "authgate/client_keys/"
	// clientKeyLockPrefix, with the provider's name, serialises making
	// its key across instances.
	clientKeyLockPrefix = "authgate_client_key_"
	// clientJWKSPath is where every authgate site publishes the public
	// keys of private_key_jwt: the JWKS URL to register at providers.
	clientJWKSPath = "/.well-known/authgate/client-jwks.json"
	// clientJWKSMaxAge is how long providers may cache it.
	clientJWKSMaxAge = 5 * time.Minute
)

// withStoredKey returns creds with the private_key_jwt key kept in
// Caddy's storage for provider (ClientCredentials.KeyStorage) loaded,
// made first when the storage has none: under the storage's lock, so two
// instances starting together make one key, not two. Other credentials
// come back as they are. Errors name the key's place in the storage.
func withStoredKey(ctx context.Context, storage certmagic.Storage, provider, method string, creds *ClientCredentials, logger *zap.Logger) (*ClientCredentials, error) {
	if method != authPrivateKeyJWT || creds == nil || !creds.KeyStorage || creds.Key != "" {
		return creds, nil // newClientAuth refuses a key that is both
	}
	const errPrefix = "client_auth private_key_jwt"
	if provider == "" || strings.HasPrefix(provider, ".") || strings.Trim(provider, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return nil, fmt.Errorf("%s: key storage: the provider name %q cannot name a storage key (letters, digits, '.', '_' and '-')", errPrefix, provider)
	}
	if storage == nil {
		return nil, fmt.Errorf("%s: key storage: Caddy has no storage to keep the key in", errPrefix)
	}
	name := clientKeysStorageDir + provider + ".pem"
	where := storageWhere(storage, name)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	raw, err := storage.Load(ctx, name)
	made := false
	if errors.Is(err, fs.ErrNotExist) {
		if raw, made, err = makeStoredKey(ctx, storage, name, clientKeyLockPrefix+provider, creds.Algorithm); err != nil {
			return nil, fmt.Errorf("%s: key %s: %w", errPrefix, where, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("%s: reading key %s: %w", errPrefix, where, err)
	}
	priv, err := parseClientKey(raw, where)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	alg, err := keyAlgorithm(priv, creds.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("%s: key %s: %w", errPrefix, where, err)
	}
	if made {
		pub, err := clientPublicKey(priv, alg, creds.KeyID)
		if err != nil {
			return nil, fmt.Errorf("%s: key %s: %w", errPrefix, where, err)
		}
		jwk, _ := json.Marshal(pub)
		logger.Info("private_key_jwt key made in storage; register its public key at the provider, or the JWKS URL "+clientJWKSPath+" of any authgate site",
			zap.String("provider", provider), zap.String("storage", where), zap.String("kid", pub.KeyID), zap.String("jwk", string(jwk)))
	}
	out := *creds
	out.storedKey, out.storedAt = priv, where
	return &out, nil
}

// makeStoredKey stores a new key of the type alg needs at name, unless
// another instance did while this one waited for the lock; made says
// whether this one did.
func makeStoredKey(ctx context.Context, storage certmagic.Storage, name, lock, alg string) (raw []byte, made bool, err error) {
	var gen func() (crypto.Signer, error)
	switch alg {
	case "", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		gen = func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) }
	case "ES256", "ES384", "ES512":
		curve := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		gen = func() (crypto.Signer, error) { return ecdsa.GenerateKey(curve, rand.Reader) }
	default:
		return nil, false, fmt.Errorf("alg must be RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or ES512 to make a key, not %q", alg)
	}
	if err := storage.Lock(ctx, lock); err != nil {
		return nil, false, fmt.Errorf("locking: %w", err)
	}
	defer func() { _ = storage.Unlock(context.WithoutCancel(ctx), lock) }()
	if raw, err := storage.Load(ctx, name); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return raw, false, err
	}
	priv, err := gen()
	if err != nil {
		return nil, false, fmt.Errorf("generating: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("encoding: %w", err)
	}
	raw = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := storage.Store(ctx, name, raw); err != nil {
		return nil, false, fmt.Errorf("writing: %w", err)
	}
	return raw, true, nil
}

// storageWhere names a storage key for messages: the file, for file
// storage.
func storageWhere(storage certmagic.Storage, name string) string {
	if fsys, ok := storage.(*certmagic.FileStorage); ok {
		return fsys.Filename(name)
	}
	return fmt.Sprintf("%s in storage %v", name, storage)
}

// encodeClientJWKS is the client JWKS document of keys, those with the
// same kid once.
func encodeClientJWKS(keys []jose.JSONWebKey) ([]byte, error) {
	doc := jose.JSONWebKeySet{}
	seen := map[string]bool{}
	for _, k := range keys {
		if !seen[k.KeyID] {
			seen[k.KeyID] = true
			doc.Keys = append(doc.Keys, k)
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding the client key set: %w", err)
	}
	return b, nil
}

// serveClientJWKS publishes the client JWKS document, for providers that
// fetch the client's keys from a JWKS URL and for operators registering
// them.
func serveClientJWKS(w http.ResponseWriter, r *http.Request, doc []byte) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	}
	h := w.Header()
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(clientJWKSMaxAge/time.Second)))
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(doc)
	return err
}

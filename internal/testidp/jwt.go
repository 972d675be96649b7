package testidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

var b64 = base64.RawURLEncoding

// signingKey is one private key with its JOSE metadata.
type signingKey struct {
	kid       string
	alg       string // "RS256" or "ES256"
	priv      crypto.Signer
	published bool
}

func newSigningKey(alg string) (*signingKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("testidp: unsupported signing algorithm %q", alg)
	}
	if err != nil {
		return nil, err
	}
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &signingKey{kid: b64.EncodeToString(tp)[:16], alg: alg, priv: priv, published: true}, nil
}

func (k *signingKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

// signRaw signs data with the key's algorithm and returns the JWS signature.
func (k *signingKey) signRaw(data []byte) []byte {
	sum := sha256.Sum256(data)
	switch k.alg {
	case "RS256":
		sig, err := rsa.SignPKCS1v15(nil, k.priv.(*rsa.PrivateKey), crypto.SHA256, sum[:])
		if err != nil {
			panic("testidp: RSA signing failed: " + err.Error())
		}
		return sig
	case "ES256":
		r, s, err := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), sum[:])
		if err != nil {
			panic("testidp: ECDSA signing failed: " + err.Error())
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
	panic("testidp: unknown alg " + k.alg)
}

func verifyRaw(pub crypto.PublicKey, alg string, data, sig []byte) bool {
	sum := sha256.Sum256(data)
	switch alg {
	case "RS256":
		p, ok := pub.(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(p, crypto.SHA256, sum[:], sig) == nil
	case "ES256":
		p, ok := pub.(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return false
		}
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(p, sum[:], r, s)
	}
	return false
}

// encodeJWS builds a compact JWS. sign == nil produces an empty signature.
func encodeJWS(header, claims map[string]any, sign func([]byte) []byte) string {
	h, err := json.Marshal(header)
	if err != nil {
		panic("testidp: marshal JWT header: " + err.Error())
	}
	c, err := json.Marshal(claims)
	if err != nil {
		panic("testidp: marshal JWT claims: " + err.Error())
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	if sign == nil {
		return input + "."
	}
	return input + "." + b64.EncodeToString(sign([]byte(input)))
}

type parsedJWT struct {
	header  map[string]any
	claims  map[string]any
	signed  []byte
	sig     []byte
	alg     string
	kid     string
	typ     string
	payload []byte
}

func parseJWT(token string) (*parsedJWT, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, errors.New("bad header encoding")
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("bad payload encoding")
	}
	sb, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("bad signature encoding")
	}
	p := &parsedJWT{signed: []byte(parts[0] + "." + parts[1]), sig: sb, payload: pb}
	if err := json.Unmarshal(hb, &p.header); err != nil {
		return nil, errors.New("bad header JSON")
	}
	if err := json.Unmarshal(pb, &p.claims); err != nil || p.claims == nil {
		return nil, errors.New("bad claims JSON")
	}
	p.alg, _ = p.header["alg"].(string)
	p.kid, _ = p.header["kid"].(string)
	p.typ, _ = p.header["typ"].(string)
	return p, nil
}

// SignOpt changes how [Server.SignJWT] signs a token.
type SignOpt func(*signConfig)

type signConfig struct {
	algNone     bool
	wrongKey    bool
	es256       bool
	unpublished bool
	noKID       bool
	kid         *string
	header      map[string]any
}

// SignAlgNone produces an unsecured JWT: header alg "none", empty signature.
func SignAlgNone() SignOpt { return func(c *signConfig) { c.algNone = true } }

// SignWrongKey signs with a key that is not the server's but keeps the kid
// of the current key, so the signature does not verify.
func SignWrongKey() SignOpt { return func(c *signConfig) { c.wrongKey = true } }

// SignES256 signs with the server's ES256 key. That key is published in the
// JWKS but discovery only advertises the primary algorithm (RS256 by
// default), so an RS256-only verifier must reject it.
func SignES256() SignOpt { return func(c *signConfig) { c.es256 = true } }

// SignUnpublishedKey signs with a valid key whose kid is not in the JWKS.
func SignUnpublishedKey() SignOpt { return func(c *signConfig) { c.unpublished = true } }

// SignKID signs with the selected key but sets the header kid to kid.
func SignKID(kid string) SignOpt { return func(c *signConfig) { c.kid = &kid } }

// SignNoKID omits the kid header.
func SignNoKID() SignOpt { return func(c *signConfig) { c.noKID = true } }

// SignHeader sets an arbitrary JOSE header (for example "typ"). It is applied
// last; alg cannot be changed this way without breaking the signature.
func SignHeader(name string, value any) SignOpt {
	return func(c *signConfig) {
		if c.header == nil {
			c.header = map[string]any{}
		}
		c.header[name] = value
	}
}

// SignJWT signs claims with the current signing key (typ "JWT") and returns
// the compact serialization. Options select broken or alternative variants.
func (s *Server) SignJWT(claims map[string]any, opts ...SignOpt) string {
	var cfg signConfig
	for _, o := range opts {
		o(&cfg)
	}
	return s.signWith(claims, "JWT", cfg)
}

// signWith signs claims; the lock is held only to pick the key.
func (s *Server) signWith(claims map[string]any, typ string, cfg signConfig) string {
	s.mu.Lock()
	header, sign := s.signerLocked(typ, cfg)
	s.mu.Unlock()
	if claims == nil {
		claims = map[string]any{}
	}
	return encodeJWS(header, claims, sign)
}

// signerLocked returns the JOSE header and signing function for a token
// of type typ signed as cfg says. Signing itself needs no lock: keys are
// immutable once created.
func (s *Server) signerLocked(typ string, cfg signConfig) (map[string]any, func([]byte) []byte) {
	key := s.current
	switch {
	case cfg.es256:
		key = s.es256Key()
	case cfg.unpublished:
		key = s.unpublishedKeyLocked()
	}
	sign := key.signRaw
	if cfg.wrongKey {
		sign = s.wrongKeyLocked(key.alg).signRaw
	}
	header := map[string]any{"alg": key.alg, "kid": key.kid}
	if typ != "" {
		header["typ"] = typ
	}
	if cfg.kid != nil {
		header["kid"] = *cfg.kid
	}
	if cfg.noKID {
		delete(header, "kid")
	}
	if cfg.algNone {
		header["alg"] = "none"
		sign = nil
	}
	for k, v := range cfg.header {
		header[k] = v
	}
	return header, sign
}

// es256Key returns the published ES256 key (the primary key when the
// server signs with ES256). Caller holds s.mu.
func (s *Server) es256Key() *signingKey {
	if s.current.alg == "ES256" {
		return s.current
	}
	return s.ecKey
}

func (s *Server) wrongKeyLocked(alg string) *signingKey {
	if k := s.wrongKeys[alg]; k != nil {
		return k
	}
	k, err := newSigningKey(alg)
	if err != nil {
		panic(err)
	}
	k.published = false
	s.wrongKeys[alg] = k
	return k
}

func (s *Server) unpublishedKeyLocked() *signingKey {
	if s.unpublished == nil {
		k, err := newSigningKey(s.current.alg)
		if err != nil {
			panic(err)
		}
		k.published = false
		k.kid = "unpublished-" + k.kid
		s.unpublished = k
	}
	return s.unpublished
}

// verifyOwnJWT checks the signature of a token against every key this
// server owns (published or not when anyKey is true, else published only) and
// returns the parsed token.
func (s *Server) verifyOwnJWT(token string, anyKey bool) (*parsedJWT, error) {
	p, err := parseJWT(token)
	if err != nil {
		return nil, err
	}
	if p.alg != "RS256" && p.alg != "ES256" {
		return nil, fmt.Errorf("unsupported alg %q", p.alg)
	}
	s.mu.Lock()
	var candidates []*signingKey
	for _, k := range s.allKeysLocked() {
		if (k.published || anyKey) && k.alg == p.alg && (p.kid == "" || p.kid == k.kid) {
			candidates = append(candidates, k)
		}
	}
	s.mu.Unlock()
	for _, k := range candidates {
		if verifyRaw(k.priv.Public(), p.alg, p.signed, p.sig) {
			return p, nil
		}
	}
	return nil, errors.New("signature verification failed")
}

// allKeysLocked lists the signing keys (primary history and the ES256 key).
func (s *Server) allKeysLocked() []*signingKey {
	keys := append([]*signingKey(nil), s.keys...)
	if s.ecKey != nil {
		keys = append(keys, s.ecKey)
	}
	return keys
}

// JWKS returns the JSON Web Key Set currently published.
func (s *Server) JWKS() jose.JSONWebKeySet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jwksLocked()
}

func (s *Server) jwksLocked() jose.JSONWebKeySet {
	var set jose.JSONWebKeySet
	// Newest first, as most IdPs do.
	for i := len(s.keys) - 1; i >= 0; i-- {
		if s.keys[i].published {
			set.Keys = append(set.Keys, s.keys[i].jwk())
		}
	}
	if s.ecKey != nil && s.ecKey.published {
		set.Keys = append(set.Keys, s.ecKey.jwk())
	}
	return set
}

// RotateKey creates a new signing key of the same algorithm and makes it
// current. The old key stays in the JWKS unless Options.RotateDropsOldKey is
// set (use UnpublishKey to remove it later).
func (s *Server) RotateKey() (oldKID, newKID string) {
	s.mu.Lock()
	alg := s.current.alg
	s.mu.Unlock()
	k, err := newSigningKey(alg)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current
	if s.opts.RotateDropsOldKey {
		old.published = false
	}
	s.keys = append(s.keys, k)
	s.current = k
	return old.kid, k.kid
}

// UnpublishKey removes the key with the given kid from the JWKS (the server
// keeps it to recognise its own id_token_hint values). It reports whether
// such a key existed. The current key can be unpublished too, which makes
// every newly issued token unverifiable.
func (s *Server) UnpublishKey(kid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.allKeysLocked() {
		if k.kid == kid {
			k.published = false
			return true
		}
	}
	return false
}

// CurrentKID returns the kid of the key used to sign new tokens.
func (s *Server) CurrentKID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current.kid
}

// ES256KID returns the kid of the key used by SignES256.
func (s *Server) ES256KID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.es256Key().kid
}

package authgate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// A provider's signing keys (its JWKS) are fetched when a token names a
// key id they lack: that is how a rotation is seen, on the first token the
// new key signs. Anybody can send tokens with made-up key ids, so:
const (
	// jwksMinInterval is the least time between two JWKS fetches of one
	// provider. A token with an unknown kid arriving sooner waits for the
	// rest of the interval (sharing the fetch with every other such
	// token) rather than failing.
	jwksMinInterval = time.Second
	// jwksAbsentMemory is how long a kid that a fresh key set did not
	// contain is refused without fetching again.
	jwksAbsentMemory = 10 * time.Second
	// maxAbsentKIDs bounds how many such kids are remembered.
	maxAbsentKIDs = 1024
)

// verifyAlgs are the signature algorithms a key set checks: asymmetric
// ones only, so that no key published in a JWKS (a symmetric "oct" key is
// public there) can sign a token we accept. The verifier checks each
// token's alg against the provider's list before the key set sees it.
var verifyAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// jwksKeySet is the key set (an oidc.KeySet) of one provider: the usable
// keys of its JWKS, fetched again on an unknown kid, at most once per
// jwksMinInterval. A JWKS entry that cannot be used (unknown kty or alg, a
// malformed or symmetric key, an encryption key) is skipped; the others
// still verify.
type jwksKeySet struct {
	url    string
	client *http.Client

	mu   sync.RWMutex
	keys []jose.JSONWebKey
	gen  uint64 // key sets fetched so far

	// fetchMu lets one fetch run at a time; fetched is when the last one
	// began.
	fetchMu sync.Mutex
	fetched time.Time

	absent *expiringTable[string, struct{}]
}

func newJWKSKeySet(client *http.Client, url string) *jwksKeySet {
	return &jwksKeySet{url: url, client: client, absent: newExpiringTable[string, struct{}](jwksAbsentMemory, maxAbsentKIDs)}
}

// errUnknownKey: no key of the provider's key set has the token's kid.
var errUnknownKey = errors.New("no key with the token's key id in the provider's key set")

// VerifySignature checks a JWT's signature and returns its payload.
func (ks *jwksKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, verifyAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("a jwt must carry exactly one signature")
	}
	h := jws.Signatures[0].Header
	keys, gen := ks.current()
	if payload, known, err := verifyWithKeys(jws, keys, h.KeyID, h.Algorithm); known {
		return payload, err
	}
	if _, ok := ks.absent.get(h.KeyID); ok {
		return nil, errUnknownKey
	}
	keys, err = ks.refetch(ctx, gen)
	if err != nil {
		// go-oidc passes this on as text only: "fetching keys" is what
		// keysUnavailable (identity.go) reads as the provider's failure.
		return nil, fmt.Errorf("fetching keys: %w", err)
	}
	if payload, known, err := verifyWithKeys(jws, keys, h.KeyID, h.Algorithm); known {
		return payload, err
	}
	ks.absent.put(h.KeyID, struct{}{})
	return nil, errUnknownKey
}

func (ks *jwksKeySet) current() ([]jose.JSONWebKey, uint64) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.keys, ks.gen
}

// verifyWithKeys checks jws with the keys of kid (every key when the
// token names none). known is false when no key could be the one: the
// set may be out of date.
func verifyWithKeys(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid, alg string) (payload []byte, known bool, err error) {
	for i := range keys {
		k := &keys[i]
		if kid != "" && k.KeyID != kid || k.Algorithm != "" && k.Algorithm != alg {
			continue
		}
		if kid != "" {
			known = true
		}
		if payload, err := jws.Verify(k); err == nil {
			return payload, true, nil
		}
	}
	if known {
		return nil, true, errors.New("the signature does not verify with the provider's key")
	}
	return nil, false, nil
}

// refetch returns a key set fetched after the caller's look at set gen:
// one another caller fetched meanwhile, or a new one, no sooner than
// jwksMinInterval after the previous fetch.
func (ks *jwksKeySet) refetch(ctx context.Context, gen uint64) ([]jose.JSONWebKey, error) {
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()
	if keys, g := ks.current(); g != gen {
		return keys, nil
	}
	if wait := ks.fetched.Add(jwksMinInterval).Sub(timeNow()); wait > 0 {
		t := time.NewTimer(min(wait, jwksMinInterval))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ks.fetched = timeNow()
	keys, err := ks.fetch(ctx)
	if err != nil {
		return nil, err
	}
	ks.mu.Lock()
	ks.keys, ks.gen = keys, ks.gen+1
	ks.mu.Unlock()
	return keys, nil
}

// fetch reads the JWKS and keeps the keys that can verify signatures.
func (ks *jwksKeySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	// Detached: other callers may be waiting on this fetch.
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errProviderDown, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the JWKS: %v", errProviderDown, err)
	}
	if resp.StatusCode != http.StatusOK {
		kind := errProviderBadResponse
		if resp.StatusCode >= 500 {
			kind = errProviderDown
		}
		return nil, fmt.Errorf("%w: JWKS status %d", kind, resp.StatusCode)
	}
	return usableKeys(body)
}

// usableKeys parses a JWKS document key by key, skipping what cannot
// verify a signature here (RFC 7517 §5: implementations SHOULD ignore keys
// they do not understand). go-jose refuses a whole set for one odd key,
// and go-oidc skips only unknown kty and alg values.
func usableKeys(body []byte) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%w: the JWKS is not a JSON key set: %v", errProviderBadResponse, err)
	}
	supported := map[string]bool{}
	for _, a := range verifyAlgs {
		supported[string(a)] = true
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue // unknown kty, malformed or unsupported parameters
		}
		if k.Use != "" && k.Use != "sig" || k.Algorithm != "" && !supported[k.Algorithm] {
			continue
		}
		if !k.IsPublic() {
			if _, symmetric := k.Key.([]byte); symmetric {
				continue
			}
			k = k.Public()
			if !k.Valid() {
				continue
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

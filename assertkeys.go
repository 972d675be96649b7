package authgate

// The keys that sign identity assertions (assertion.go): kept in Caddy's
// storage, generated on first start and rotated there, so that every
// instance sharing the storage signs with the same key; or read from PEM
// files. Backends fetch the public keys from the JWKS endpoint.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// AssertionKeysConfig says where the keys that sign identity assertions
// come from.
type AssertionKeysConfig struct {
	// Files are PEM files of private keys (PKCS #8, SEC 1 or PKCS #1): an
	// EC P-256 key signs ES256 (P-384 ES384, P-521 ES512), an RSA key of
	// 2048 bits or more RS256, an Ed25519 key EdDSA. The first signs;
	// every one is published, so to rotate, put the new key first and
	// keep the previous one listed for as long as backends may hold
	// assertions it signed. Placeholders are replaced. Default: an ES256
	// key generated in Caddy's storage on first start and shared by every
	// instance using that storage.
	Files []string `json:"files,omitempty"`

	// Rotate is how often a key kept in Caddy's storage is replaced. The
	// new key is published 10 minutes before it signs. Not used with
	// Files. Default: 720h (30 days).
	Rotate caddy.Duration `json:"rotate,omitempty"`

	// Grace is how long a replaced key stays published after its
	// successor began signing: longer than any assertion lives, at least
	// 2h. Not used with Files. Default: 24h.
	Grace caddy.Duration `json:"grace,omitempty"`
}

const (
	// assertionKeysStorageKey is where the keys live in Caddy's storage.
	assertionKeysStorageKey = "authgate/assertion_keys.json"
	// assertionKeysLock serialises changes to them across instances.
	assertionKeysLock = "authgate_assertion_keys"

	defaultKeyRotate = 30 * 24 * time.Hour
	defaultKeyGrace  = 24 * time.Hour
	// minKeyGrace keeps a replaced key published for longer than the
	// longest assertion lifetime (1h), which may still be served after
	// its key stopped signing, plus jwksMaxAge.
	minKeyGrace = 2 * time.Hour
	// keyPrePublish is how long a new key is published before it signs:
	// longer than keyCheckInterval (every instance has seen it) plus
	// jwksMaxAge (every backend that caches the key set has too).
	keyPrePublish = 10 * time.Minute
	// keyCheckInterval is how often an instance looks at the storage for
	// a rotation that is due or that another instance made.
	keyCheckInterval = time.Minute
	// jwksMaxAge is how long backends may cache the key set.
	jwksMaxAge = 5 * time.Minute
	// jwksPath is where every site with authgate publishes the keys.
	jwksPath = "/.well-known/authgate/jwks.json"
)

// signingKey is one key of the ring. Its pointer stays the same for as
// long as the key exists, so signed assertions can tell which one made
// them.
type signingKey struct {
	kid        string
	alg        jose.SignatureAlgorithm
	signer     jose.Signer
	public     jose.JSONWebKey
	activeFrom int64 // unix seconds: signs from then on
}

// keySet is the ring's keys at one time: the one signing, the one that
// will sign next (already published), and the JWKS document of all.
type keySet struct {
	current, next *signingKey
	jwks          []byte
	etag          string
}

// keyRing holds a gateway's assertion keys.
type keyRing struct {
	storage       certmagic.Storage // nil: keys from files, never rotated
	rotate, grace time.Duration
	logger        *zap.Logger

	set     atomic.Pointer[keySet]
	checked atomic.Int64 // unix nanoseconds of the last look at the storage
	busy    atomic.Bool  // a look at the storage is under way

	mu     sync.Mutex             // serialises looks at the storage
	parsed map[string]*signingKey // by PEM, so pointers survive reloads
}

// keyRingSlot is a gateway's key ring, opened when the first site that
// sends assertions is provisioned: a configuration without assertions
// never touches the storage.
type keyRingSlot struct {
	cfg  *AssertionKeysConfig
	mu   sync.Mutex
	ring atomic.Pointer[keyRing]
}

// loaded returns the ring, or nil when no site opened it.
func (ks *keyRingSlot) loaded() *keyRing { return ks.ring.Load() }

// open returns the ring, loading (and on first start generating) the
// keys. Errors name the file or the storage key that failed.
func (ks *keyRingSlot) open(ctx caddy.Context, logger *zap.Logger) (*keyRing, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if kr := ks.ring.Load(); kr != nil {
		return kr, nil
	}
	var cfg AssertionKeysConfig
	if ks.cfg != nil {
		cfg = *ks.cfg
	}
	kr := &keyRing{
		rotate: time.Duration(cfg.Rotate), grace: time.Duration(cfg.Grace),
		logger: logger, parsed: map[string]*signingKey{},
	}
	if kr.rotate <= 0 {
		kr.rotate = defaultKeyRotate
	}
	if kr.grace <= 0 {
		kr.grace = defaultKeyGrace
	}
	if kr.rotate < time.Hour {
		return nil, fmt.Errorf("assertion_keys: rotate %s is too short (at least 1h)", kr.rotate)
	}
	if kr.grace < minKeyGrace {
		return nil, fmt.Errorf("assertion_keys: grace %s is too short (at least %s)", kr.grace, minKeyGrace)
	}
	if len(cfg.Files) > 0 {
		set, err := loadKeyFiles(cfg.Files)
		if err != nil {
			return nil, err
		}
		kr.set.Store(set)
	} else {
		kr.storage = ctx.Storage()
		if kr.storage == nil {
			return nil, errors.New("assertion_keys: Caddy has no storage to keep the keys in; configure one or set assertion_keys file")
		}
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := kr.maintain(c, timeNow()); err != nil {
			return nil, fmt.Errorf("assertion keys: %w", err)
		}
	}
	ks.ring.Store(kr)
	return kr, nil
}

// signer returns the key that signs at now.
func (kr *keyRing) signer(now time.Time) *signingKey {
	set := kr.set.Load()
	if set.next != nil && now.Unix() >= set.next.activeFrom {
		return set.next
	}
	return set.current
}

// keepFresh looks at the storage again, in the background, when
// keyCheckInterval has passed since the last look: a rotation may be due,
// or another instance may have made one.
func (kr *keyRing) keepFresh(now time.Time) {
	if !kr.due(now) || !kr.busy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer kr.busy.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := kr.maintain(ctx, timeNow()); err != nil {
			kr.logger.Error("assertion keys: the storage could not be read or updated; signing with the keys loaded before", zap.Error(err))
		}
	}()
}

// freshen is keepFresh done now, for the JWKS endpoint, so that a key
// set served is never a minute older than the storage. It is bounded; on
// failure the keys loaded before are served.
func (kr *keyRing) freshen(ctx context.Context, now time.Time) {
	if !kr.due(now) || !kr.busy.CompareAndSwap(false, true) {
		return
	}
	defer kr.busy.Store(false)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := kr.maintain(ctx, now); err != nil {
		kr.logger.Error("assertion keys: the storage could not be read or updated; publishing the keys loaded before", zap.Error(err))
	}
}

func (kr *keyRing) due(now time.Time) bool {
	return kr.storage != nil && now.UnixNano()-kr.checked.Load() >= int64(keyCheckInterval)
}

// storedKeys is the keys as the storage keeps them.
type storedKeys struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	PEM        string `json:"pem"`
	Created    int64  `json:"created"`
	ActiveFrom int64  `json:"active_from"`
}

// maintain reads the keys from the storage and, when the first key is
// missing, a rotation is due or a replaced key's grace is over, changes
// them under the storage's lock: two instances starting together make one
// key, not two.
func (kr *keyRing) maintain(ctx context.Context, now time.Time) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.checked.Store(now.UnixNano())
	doc, err := kr.load(ctx)
	if err != nil {
		return err
	}
	if planned, changed, err := kr.plan(doc, now); err != nil {
		return err
	} else if changed {
		if err := kr.storage.Lock(ctx, assertionKeysLock); err != nil {
			return fmt.Errorf("locking %s: %w", kr.where(), err)
		}
		defer func() { _ = kr.storage.Unlock(context.WithoutCancel(ctx), assertionKeysLock) }()
		// Another instance may have changed them while we waited.
		if doc, err = kr.load(ctx); err != nil {
			return err
		}
		if planned, changed, err = kr.plan(doc, now); err != nil {
			return err
		}
		if changed {
			data, err := json.MarshalIndent(planned, "", "\t")
			if err != nil {
				return err
			}
			if err := kr.storage.Store(ctx, assertionKeysStorageKey, data); err != nil {
				return fmt.Errorf("writing %s: %w", kr.where(), err)
			}
			kr.logger.Info("assertion keys updated in storage", zap.Int("keys", len(planned.Keys)), zap.String("storage", kr.where()))
			doc = planned
		}
	}
	set, err := kr.build(doc, now)
	if err != nil {
		return err
	}
	kr.set.Store(set)
	return nil
}

// where names the keys' place in the storage for messages: the file for
// file storage.
func (kr *keyRing) where() string {
	if fsys, ok := kr.storage.(*certmagic.FileStorage); ok {
		return fsys.Filename(assertionKeysStorageKey)
	}
	return fmt.Sprintf("%s in storage %v", assertionKeysStorageKey, kr.storage)
}

func (kr *keyRing) load(ctx context.Context) (*storedKeys, error) {
	data, err := kr.storage.Load(ctx, assertionKeysStorageKey)
	if errors.Is(err, fs.ErrNotExist) {
		return &storedKeys{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", kr.where(), err)
	}
	var doc storedKeys
	if err := json.Unmarshal(data, &doc); err != nil {
		// Never overwrite what may be another version's keys.
		return nil, fmt.Errorf("reading %s: not authgate's key file: %w", kr.where(), err)
	}
	return &doc, nil
}

// plan returns the keys as they should be at now: a first key, a new one
// when the signing key is older than rotate (published keyPrePublish
// before it signs), and without keys whose grace is over.
func (kr *keyRing) plan(doc *storedKeys, now time.Time) (*storedKeys, bool, error) {
	keys := slices.Clone(doc.Keys)
	slices.SortStableFunc(keys, func(a, b storedKey) int { return int(b.ActiveFrom - a.ActiveFrom) }) // newest first
	t := now.Unix()
	if len(keys) == 0 {
		k, err := generateStoredKey(t, t)
		if err != nil {
			return nil, false, err
		}
		return &storedKeys{Keys: []storedKey{k}}, true, nil
	}
	changed := false
	cur := slices.IndexFunc(keys, func(k storedKey) bool { return k.ActiveFrom <= t })
	if cur < 0 {
		cur = len(keys) - 1 // every key starts later (the clock went back): the oldest signs
	}
	if cur == 0 && t >= keys[0].ActiveFrom+int64(kr.rotate/time.Second) {
		k, err := generateStoredKey(t, t+int64(keyPrePublish/time.Second))
		if err != nil {
			return nil, false, err
		}
		keys = append([]storedKey{k}, keys...)
		cur++
		changed = true
	}
	kept := keys[:cur+1]
	for i := cur + 1; i < len(keys); i++ {
		// Replaced when the next newer key began signing.
		if t < keys[i-1].ActiveFrom+int64(kr.grace/time.Second) {
			kept = append(kept, keys[i])
		} else {
			changed = true
		}
	}
	return &storedKeys{Keys: kept}, changed, nil
}

func generateStoredKey(created, activeFrom int64) (storedKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return storedKey{}, fmt.Errorf("generating a key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return storedKey{}, fmt.Errorf("encoding a key: %w", err)
	}
	return storedKey{
		PEM:     string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		Created: created, ActiveFrom: activeFrom,
	}, nil
}

// build makes the key set of stored keys, reusing the signing keys of
// PEMs seen before.
func (kr *keyRing) build(doc *storedKeys, now time.Time) (*keySet, error) {
	var keys []*signingKey
	seen := map[string]*signingKey{}
	for i, sk := range doc.Keys {
		k := kr.parsed[sk.PEM]
		if k == nil {
			priv, err := parsePrivateKeyPEM([]byte(sk.PEM))
			if err != nil {
				return nil, fmt.Errorf("reading %s: key %d: %w", kr.where(), i+1, err)
			}
			if k, err = newSigningKey(priv, sk.ActiveFrom); err != nil {
				return nil, fmt.Errorf("reading %s: key %d: %w", kr.where(), i+1, err)
			}
		}
		seen[sk.PEM] = k
		keys = append(keys, k)
	}
	kr.parsed = seen
	slices.SortStableFunc(keys, func(a, b *signingKey) int { return int(b.activeFrom - a.activeFrom) })
	set := &keySet{}
	t := now.Unix()
	for _, k := range keys {
		if k.activeFrom <= t {
			set.current = k
			break
		}
		set.next = k // the earliest of those still to come
	}
	if set.current == nil {
		set.current, set.next = keys[len(keys)-1], nil
	}
	return set.withJWKS(keys)
}

// loadKeyFiles reads keys from PEM files: the first signs.
func loadKeyFiles(paths []string) (*keySet, error) {
	repl := caddy.NewReplacer()
	var keys []*signingKey
	for _, p := range paths {
		path := repl.ReplaceKnown(p, "")
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("assertion_keys: reading key file %s: %w", path, err)
		}
		priv, err := parsePrivateKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("assertion_keys: key file %s: %w", path, err)
		}
		k, err := newSigningKey(priv, 0)
		if err != nil {
			return nil, fmt.Errorf("assertion_keys: key file %s: %w", path, err)
		}
		if !slices.ContainsFunc(keys, func(o *signingKey) bool { return o.kid == k.kid }) {
			keys = append(keys, k)
		}
	}
	return (&keySet{current: keys[0]}).withJWKS(keys)
}

// withJWKS adds the JWKS document of keys to set.
func (set *keySet) withJWKS(keys []*signingKey) (*keySet, error) {
	doc := jose.JSONWebKeySet{}
	for _, k := range keys {
		doc.Keys = append(doc.Keys, k.public)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding the key set: %w", err)
	}
	sum := sha256.Sum256(b)
	set.jwks = b
	set.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
	return set, nil
}

// parsePrivateKeyPEM reads the first private key of a PEM document.
func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key found")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted private keys are not supported")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", key)
		}
		return signer, nil
	}
}

// newSigningKey makes a signer for priv with the algorithm its type
// calls for; the key id is the RFC 7638 thumbprint, the same on every
// instance.
func newSigningKey(priv crypto.Signer, activeFrom int64) (*signingKey, error) {
	var alg jose.SignatureAlgorithm
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		case elliptic.P521():
			alg = jose.ES512
		default:
			return nil, errors.New("unsupported EC curve (P-256, P-384 or P-521)")
		}
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: at least 2048 are needed", k.N.BitLen())
		}
		alg = jose.RS256
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	default:
		return nil, fmt.Errorf("unsupported key type %T (EC, RSA or Ed25519)", priv)
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(alg), Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("key thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: priv, KeyID: pub.KeyID, Algorithm: string(alg)}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("signer: %w", err)
	}
	return &signingKey{kid: pub.KeyID, alg: alg, signer: signer, public: pub, activeFrom: activeFrom}, nil
}

// serveJWKS publishes the public keys, for backends to verify
// assertions: cacheable for jwksMaxAge, with an ETag.
func (kr *keyRing) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	}
	kr.freshen(r.Context(), timeNow())
	set := kr.set.Load()
	h := w.Header()
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(jwksMaxAge/time.Second)))
	h.Set("ETag", set.etag)
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, set.etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(set.jwks)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(set.jwks)
	return err
}

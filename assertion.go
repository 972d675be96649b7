package authgate

// The signed identity assertion: a short JWT that authgate adds to every
// authenticated request (assertion_header), so that a backend can verify
// who is calling instead of trusting headers anybody who reaches it could
// send. It is signed once per identity, site and key, and again only when
// it is within a minute of expiry: the hot path copies a string.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

const (
	// defaultAssertionHeader carries the assertion; the client's copy of
	// it is always removed, whether the site sends assertions or not.
	defaultAssertionHeader = "X-Authgate-Assertion"
	// defaultAssertionLifetime is how long an assertion is valid.
	defaultAssertionLifetime = 5 * time.Minute
	// assertionRenewBefore is how long before its expiry an assertion is
	// signed again, so that no backend receives one about to expire.
	assertionRenewBefore = time.Minute
	// maxAssertionsPerIdentity bounds the assertions remembered with one
	// identity (one per site, scheme and host it is used on).
	maxAssertionsPerIdentity = 4
	// assertionCacheItems bounds each generation of the signer's cache.
	assertionCacheItems = 4096
)

// assertionSigner signs one site's assertions.
type assertionSigner struct {
	header   string // canonical
	audience string // "": the request's host
	lifetime time.Duration
	keys     *keyRing

	// The cache finds an assertion by its content for identities that
	// have none remembered yet (a session re-read from the store, a
	// refreshed one with the same claims): two generations, bounded.
	mu       sync.Mutex
	cur, old map[[32]byte]*signedAssertion
	group    singleflight.Group
}

// signedAssertion is one signed assertion, for the site, scheme and host
// it was made for.
type signedAssertion struct {
	signer  *assertionSigner
	host    string // the request's Host, as sent
	https   bool
	jwt     string
	renewAt int64 // unix nanoseconds
	values  atomic.Pointer[headerValues]
}

// headerValues hands out the header's value, one element per request:
// a request owns its element (a handler after authgate may rewrite a
// header value in place), and one allocation serves headerValuesBatch
// requests instead of each request allocating its own.
type headerValues struct {
	vals []string
	next atomic.Int32
}

const headerValuesBatch = 32

// header returns a fresh one-element value of the assertion's header.
func (sa *signedAssertion) header() []string {
	for {
		hv := sa.values.Load()
		if hv != nil {
			if i := hv.next.Add(1) - 1; i < headerValuesBatch {
				return hv.vals[i : i+1 : i+1]
			}
		}
		nv := &headerValues{vals: make([]string, headerValuesBatch)}
		for i := range nv.vals {
			nv.vals[i] = sa.jwt
		}
		nv.next.Store(1)
		if sa.values.CompareAndSwap(hv, nv) {
			return nv.vals[0:1:1]
		}
	}
}

// assertionSet is what an Identity remembers of its assertions (its
// memo); replaced whole, never changed.
type assertionSet struct {
	items []*signedAssertion
}

// assertionClaims is the assertion's payload.
type assertionClaims struct {
	Iss               string   `json:"iss"`
	Aud               string   `json:"aud"`
	Sub               string   `json:"sub"`
	Email             string   `json:"email,omitempty"`
	Name              string   `json:"name,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Groups            []string `json:"groups,omitempty"`
	Provider          string   `json:"provider"`
	AuthTime          int64    `json:"auth_time,omitempty"`
	ACR               string   `json:"acr,omitempty"`
	AMR               []string `json:"amr,omitempty"`
	Iat               int64    `json:"iat,omitempty"`
	Exp               int64    `json:"exp,omitempty"`
	Jti               string   `json:"jti,omitempty"`
}

var errAssertion = errors.New("identity assertion")

func newAssertionSigner(header, audience string, lifetime time.Duration, keys *keyRing) (*assertionSigner, error) {
	if lifetime == 0 {
		lifetime = defaultAssertionLifetime
	}
	if lifetime < 2*assertionRenewBefore || lifetime > time.Hour {
		return nil, fmt.Errorf("assertion_lifetime %s: must be between %s and 1h", lifetime, 2*assertionRenewBefore)
	}
	if strings.ContainsAny(audience, " \t\r\n\"") {
		return nil, fmt.Errorf("assertion_audience %q: no spaces or quotes", audience)
	}
	return &assertionSigner{
		header:   http.CanonicalHeaderKey(orDefault(header, defaultAssertionHeader)),
		audience: audience,
		lifetime: lifetime,
		keys:     keys,
		cur:      map[[32]byte]*signedAssertion{},
		old:      map[[32]byte]*signedAssertion{},
	}, nil
}

// attach sets the assertion header on r, for id (and its session, which
// has the authentication context; nil for a bearer token). now is when
// the request's session was checked (reading the clock is most of what
// this would cost otherwise); zero: read the clock. The client's copy was
// removed with the other identity headers.
func (a *assertionSigner) attach(r *http.Request, id *Identity, sess *Session, now time.Time) error {
	if now.IsZero() {
		now = timeNow()
	}
	https := r.TLS != nil
	if set, _ := id.memo.Load().(*assertionSet); set != nil {
		// An assertion made with a key that no longer signs is still
		// served until its renewal: the key stays published for longer
		// than any assertion lives (keyRing's grace).
		n := now.UnixNano()
		for _, sa := range set.items {
			if n < sa.renewAt && sa.signer == a && sa.host == r.Host && sa.https == https {
				r.Header[a.header] = sa.header()
				return nil
			}
		}
	}
	sa, err := a.find(r, id, sess, a.keys.signer(now), https, now)
	if err != nil {
		return err
	}
	a.remember(id, sa, now.UnixNano())
	r.Header[a.header] = sa.header()
	return nil
}

// drop removes the client's copy of the assertion header from a request
// that will not reach the backend with authgate's (the header is not
// stripped on the way in: attach overwrites it). a may be nil.
func (a *assertionSigner) drop(r *http.Request) {
	if a != nil {
		delete(r.Header, a.header)
	}
}

// find returns an assertion for the request, from the cache when one
// with the same content is fresh, else newly signed; concurrent callers
// for the same content share one signature.
func (a *assertionSigner) find(r *http.Request, id *Identity, sess *Session, key *signingKey, https bool, now time.Time) (*signedAssertion, error) {
	a.keys.keepFresh(now)
	host := strings.ToLower(r.Host)
	scheme := "http://"
	if https {
		scheme = "https://"
	}
	c := assertionClaims{
		Iss: scheme + host, Aud: orDefault(a.audience, host),
		Sub: id.ID, Email: id.Email, Name: id.Name, PreferredUsername: id.PreferredUsername,
		Groups: id.Groups, Provider: id.Provider,
	}
	var ac authContext
	if sess != nil {
		ac = sessionAuthContext(sess)
	} else {
		ac = claimsAuthContext(id.tokenAuth)
	}
	c.AuthTime, c.ACR, c.AMR = ac.authTime, ac.acr, ac.amr
	content, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errAssertion, err)
	}
	h := sha256.New()
	h.Write([]byte(key.kid))
	var lt [8]byte
	binary.LittleEndian.PutUint64(lt[:], uint64(a.lifetime))
	h.Write(lt[:])
	h.Write(content)
	var fp [32]byte
	h.Sum(fp[:0])
	mine := func(sa *signedAssertion) *signedAssertion {
		if sa.host == r.Host && sa.https == https {
			return sa
		}
		return &signedAssertion{signer: sa.signer, host: r.Host, https: https, jwt: sa.jwt, renewAt: sa.renewAt}
	}
	if sa := a.cached(fp, now); sa != nil {
		return mine(sa), nil
	}
	v, err, _ := a.group.Do(string(fp[:]), func() (any, error) {
		if sa := a.cached(fp, now); sa != nil {
			return sa, nil
		}
		c.Iat = now.Unix()
		c.Exp = now.Add(a.lifetime).Unix()
		c.Jti = randomString(12)
		payload, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		obj, err := key.signer.Sign(payload)
		if err != nil {
			return nil, err
		}
		jwt, err := obj.CompactSerialize()
		if err != nil {
			return nil, err
		}
		if len(jwt) > maxHeaderValueLen {
			return nil, fmt.Errorf("the assertion would be %d bytes, more than a header carries (narrow the groups with keep_groups)", len(jwt))
		}
		sa := &signedAssertion{signer: a, host: r.Host, https: https, jwt: jwt,
			renewAt: now.Add(a.lifetime - assertionRenewBefore).UnixNano()}
		a.put(fp, sa)
		return sa, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: signing: %w", errAssertion, err)
	}
	return mine(v.(*signedAssertion)), nil
}

// remember keeps sa with the identity, replacing one for the same site,
// scheme and host, and dropping those due for renewal.
func (a *assertionSigner) remember(id *Identity, sa *signedAssertion, now int64) {
	ns := &assertionSet{items: []*signedAssertion{sa}}
	if old, _ := id.memo.Load().(*assertionSet); old != nil {
		for _, it := range old.items {
			if len(ns.items) < maxAssertionsPerIdentity && now < it.renewAt &&
				(it.signer != sa.signer || it.host != sa.host || it.https != sa.https) {
				ns.items = append(ns.items, it)
			}
		}
	}
	// Two requests may race here; the loser's assertion is found in the
	// cache next time.
	id.memo.Store(ns)
}

func (a *assertionSigner) cached(fp [32]byte, now time.Time) *signedAssertion {
	a.mu.Lock()
	defer a.mu.Unlock()
	sa := a.cur[fp]
	if sa == nil {
		sa = a.old[fp]
	}
	if sa == nil || now.UnixNano() >= sa.renewAt {
		return nil
	}
	return sa
}

func (a *assertionSigner) put(fp [32]byte, sa *signedAssertion) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cur) >= assertionCacheItems {
		a.old, a.cur = a.cur, make(map[[32]byte]*signedAssertion, assertionCacheItems)
	}
	a.cur[fp] = sa
}

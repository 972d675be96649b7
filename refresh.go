package authgate

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// refreshGrace is how long the result of a refresh is kept for requests
// that still carry the cookie from before it. With rotating refresh tokens
// those requests would otherwise replay a spent token and be logged out.
const refreshGrace = 30 * time.Second

// maxGraceEntries bounds the grace table; it is pruned when full.
const maxGraceEntries = 10000

// refresher makes sure that concurrent requests carrying one session cause
// one refresh at the provider.
type refresher struct {
	group singleflight.Group

	mu    sync.Mutex
	grace map[[32]byte]graceEntry
}

type graceEntry struct {
	sess  *Session
	until time.Time
}

func newRefresher() *refresher {
	return &refresher{grace: map[[32]byte]graceEntry{}}
}

// refreshFunc performs the actual refresh at the provider.
type refreshFunc func(ctx context.Context, old *Session) (*Session, error)

// refresh returns a session with fresh tokens for old. Callers with the
// same refresh token share one call; callers arriving within refreshGrace
// after it get its result. The provider call is detached from any single
// request's cancellation so that one client hanging up does not fail the
// others waiting on it.
func (rf *refresher) refresh(ctx context.Context, old *Session, timeout time.Duration, do refreshFunc) (*Session, error) {
	key := sha256.Sum256([]byte(old.Provider + "\x00" + old.RefreshToken))
	return rf.run(ctx, key, true, timeout, func(ctx context.Context) (*Session, error) { return do(ctx, old) })
}

// run calls fn once for all concurrent callers with the same key. With
// grace, the result is also kept for refreshGrace and handed to later
// callers with the same key.
func (rf *refresher) run(ctx context.Context, key [32]byte, grace bool, timeout time.Duration, fn func(context.Context) (*Session, error)) (*Session, error) {
	if grace {
		if s := rf.lookup(key); s != nil {
			return s, nil
		}
	}
	ch := rf.group.DoChan(string(key[:]), func() (any, error) {
		if grace {
			if s := rf.lookup(key); s != nil {
				return s, nil
			}
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		s, err := fn(cctx)
		if err != nil {
			return nil, err
		}
		if grace {
			rf.store(key, s)
		}
		return s, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Session), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for refresh: %w", errors.Join(errProviderTimeout, ctx.Err()))
	}
}

func (rf *refresher) lookup(key [32]byte) *Session {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if e, ok := rf.grace[key]; ok && timeNow().Before(e.until) {
		return e.sess
	}
	return nil
}

func (rf *refresher) store(key [32]byte, s *Session) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	now := timeNow()
	if len(rf.grace) >= maxGraceEntries {
		for k, e := range rf.grace {
			if !now.Before(e.until) {
				delete(rf.grace, k)
			}
		}
		if len(rf.grace) >= maxGraceEntries {
			clear(rf.grace) // under attack or overload: forget, never grow
		}
	}
	rf.grace[key] = graceEntry{sess: s, until: now.Add(refreshGrace)}
}

// sessionCache remembers decoded sessions by their exact cookie value, so
// that the hot path skips decryption, MAC and JSON decoding. A tampered or
// different cookie is a different key and goes through full decoding. It
// is bounded in bytes: two generations, the older dropped when the newer
// fills half the budget, so memory stays flat however many users there are.
//
// A value is looked up as the pieces it came in (the chunks of a chunked
// cookie, read in place, never joined): the key hashes its length and
// tail (see key), and every hit is confirmed by comparing the pieces with
// the value the entry was made from. Entries of different kinds (cookie
// values, stored session ids) never answer for each other, whatever their
// bytes.
type sessionCache struct {
	seed     maphash.Seed
	mu       sync.RWMutex
	cur, old map[uint64]*sessionEntry
	curBytes int
	budget   int
}

// cacheKind keeps the cache's two kinds of keys apart.
type cacheKind uint8

const (
	kindCookie cacheKind = iota + 1 // a session cookie's value
	kindStored                      // a session id in the session store
)

// sessionCacheSize is the byte budget of the cache.
const sessionCacheSize = 32 << 20

// sessionEntry is a decoded session with its identity worked out.
type sessionEntry struct {
	sess     *Session
	identity *Identity
	oldKey   bool // decoded with a retired key: re-encode
	size     int
	// kind and raw are the key the entry was stored under.
	kind cacheKind
	raw  string
	// ref and fetched are used with a session store: the cookie's
	// session id, and when the session was read from the store.
	ref     *storeRef
	fetched time.Time
}

func newSessionCache(budget int) *sessionCache {
	return &sessionCache{
		seed:   maphash.MakeSeed(),
		cur:    map[uint64]*sessionEntry{},
		old:    map[uint64]*sessionEntry{},
		budget: budget,
	}
}

// keyTail is how many of a value's last bytes its key hashes.
const keyTail = 64

// key is the cache key of a value made of pieces: a seeded hash of its
// kind, its length and its last keyTail bytes, the same however the value
// is cut into pieces (a client may split one cookie differently on every
// request; each split must find the same entry). Hashing only the tail
// costs the same for a 6 KB session as for a small one, and spreads well:
// a session cookie ends in its MAC. Correctness never rests on the key:
// every hit is confirmed by matches.
func (c *sessionCache) key(kind cacheKind, pieces []string) uint64 {
	var buf [keyTail + 9]byte
	total := 0
	for _, p := range pieces {
		total += len(p)
	}
	buf[0] = byte(kind)
	binary.LittleEndian.PutUint64(buf[1:9], uint64(total))
	// Fill the tail from the last piece backwards.
	n := min(total, keyTail)
	tail := buf[9 : 9+n]
	at := n
	for i := len(pieces) - 1; i >= 0 && at > 0; i-- {
		p := pieces[i]
		take := min(len(p), at)
		copy(tail[at-take:at], p[len(p)-take:])
		at -= take
	}
	return maphash.Bytes(c.seed, buf[:9+n])
}

// matches reports whether e was stored for these pieces.
func (e *sessionEntry) matches(kind cacheKind, pieces []string) bool {
	if e.kind != kind {
		return false
	}
	rest := e.raw
	for _, p := range pieces {
		if len(p) > len(rest) || rest[:len(p)] != p {
			return false
		}
		rest = rest[len(p):]
	}
	return rest == ""
}

func (c *sessionCache) get(kind cacheKind, pieces ...string) *sessionEntry {
	k := c.key(kind, pieces)
	c.mu.RLock()
	e, ok := c.cur[k]
	if !ok {
		e = c.old[k]
	}
	c.mu.RUnlock()
	if e == nil || !e.matches(kind, pieces) {
		return nil
	}
	return e
}

// put stores e for the value made of pieces. A hash collision replaces the
// older entry; get's comparison keeps it from answering for the newer.
func (c *sessionCache) put(kind cacheKind, e *sessionEntry, pieces ...string) {
	e.kind = kind
	// A copy: a piece is a substring of the request's Cookie header, which
	// would otherwise stay in memory whole, uncounted by the budget.
	if len(pieces) == 1 {
		e.raw = strings.Clone(pieces[0])
	} else {
		e.raw = strings.Join(pieces, "")
	}
	e.size = 2*len(e.raw) + 512 // the key, the decoded tokens, overhead
	k := c.key(kind, pieces)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.curBytes+e.size > c.budget/2 {
		c.old = c.cur
		c.cur = make(map[uint64]*sessionEntry, len(c.old))
		c.curBytes = 0
	}
	c.cur[k] = e
	c.curBytes += e.size
}

// forget drops a value, so that a logged-out cookie is decoded afresh (and
// its expiry checked) should it come back.
func (c *sessionCache) forget(kind cacheKind, pieces ...string) {
	k := c.key(kind, pieces)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range []map[uint64]*sessionEntry{c.cur, c.old} {
		if e := m[k]; e != nil && e.matches(kind, pieces) {
			delete(m, k)
		}
	}
}

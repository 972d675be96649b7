package authgate

import (
	"encoding/binary"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

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

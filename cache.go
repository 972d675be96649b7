package authgate

import (
	"encoding/binary"
	"hash/maphash"
	"strings"
	"sync"
)

// sessionCache remembers what session cookies decoded to, by their exact
// value, so that the hot path skips decryption, MAC and JSON decoding. A
// tampered or different cookie is a different key and goes through full
// decoding. It is bounded in bytes: two generations, the older dropped when
// the newer fills half the budget, so memory stays flat however many users
// there are.
//
// A value is looked up as the pieces it came in (the chunks of a chunked
// cookie, read in place, never joined): the key hashes its length and
// tail (see key), and every hit is confirmed by comparing the pieces with
// the value the item was made from. Items of different kinds (cookie
// values, stored session ids) never answer for each other, whatever their
// bytes. V is what a value decoded to; the cache knows nothing of it.
type sessionCache[V any] struct {
	seed     maphash.Seed
	mu       sync.RWMutex
	cur, old map[uint64]*cacheItem[V]
	curBytes int
	budget   int
}

// cacheKind keeps the cache's two kinds of keys apart.
type cacheKind uint8

const (
	kindCookie cacheKind = iota + 1 // a session cookie's value
	kindStored                      // a session id in the session store
)

// The byte budget of the cache: the default, and the bounds of
// session_cache_size.
const (
	sessionCacheSize    = 32 << 20
	minSessionCacheSize = 1 << 20
	maxSessionCacheSize = 1 << 40
)

// cacheItem is one cached value and the key it was stored under.
type cacheItem[V any] struct {
	val  V
	kind cacheKind
	raw  string
	size int
}

func newSessionCache[V any](budget int) *sessionCache[V] {
	return &sessionCache[V]{
		seed:   maphash.MakeSeed(),
		cur:    map[uint64]*cacheItem[V]{},
		old:    map[uint64]*cacheItem[V]{},
		budget: budget,
	}
}

// keyTail is how many of a value's last bytes its key hashes.
const keyTail = 64

// key is the cache key of a value made of pieces: a seeded hash of its
// kind, its length and its last keyTail bytes, the same however the value
// is cut into pieces (a client may split one cookie differently on every
// request; each split must find the same item). Hashing only the tail
// costs the same for a 6 KB session as for a small one, and spreads well:
// a session cookie ends in its MAC. Correctness never rests on the key:
// every hit is confirmed by matches.
func (c *sessionCache[V]) key(kind cacheKind, pieces []string) uint64 {
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

// matches reports whether it was stored for these pieces.
func (it *cacheItem[V]) matches(kind cacheKind, pieces []string) bool {
	if it.kind != kind {
		return false
	}
	rest := it.raw
	for _, p := range pieces {
		if len(p) > len(rest) || rest[:len(p)] != p {
			return false
		}
		rest = rest[len(p):]
	}
	return rest == ""
}

// get returns the value stored for the value made of pieces.
func (c *sessionCache[V]) get(kind cacheKind, pieces ...string) (V, bool) {
	k := c.key(kind, pieces)
	c.mu.RLock()
	it, ok := c.cur[k]
	if !ok {
		it = c.old[k]
	}
	c.mu.RUnlock()
	if it == nil || !it.matches(kind, pieces) {
		var zero V
		return zero, false
	}
	return it.val, true
}

// put stores v for the value made of pieces. A hash collision replaces the
// older item; get's comparison keeps it from answering for the newer.
func (c *sessionCache[V]) put(kind cacheKind, v V, pieces ...string) {
	// A copy: a piece is a substring of the request's Cookie header, which
	// would otherwise stay in memory whole, uncounted by the budget.
	raw := strings.Join(pieces, "")
	if len(pieces) == 1 {
		raw = strings.Clone(pieces[0])
	}
	c.insert(kind, v, raw)
}

// putOwn stores v for raw, a value of its own (not cut from a larger
// string), without copying it: the value authgate itself just encoded.
func (c *sessionCache[V]) putOwn(kind cacheKind, v V, raw string) {
	c.insert(kind, v, raw)
}

// sizer is a cached value that knows about how many bytes it holds.
type sizer interface{ cacheSize() int }

func (c *sessionCache[V]) insert(kind cacheKind, v V, raw string) {
	it := &cacheItem[V]{val: v, kind: kind, raw: raw}
	if s, ok := any(v).(sizer); ok {
		it.size = len(raw) + 160 + s.cacheSize() // the key, the item and its slot, the value
	} else {
		it.size = 2*len(it.raw) + 512 // the key, a decoded copy, overhead
	}
	k := c.key(kind, []string{raw})
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.curBytes+it.size > c.budget/2 {
		c.old = c.cur
		c.cur = make(map[uint64]*cacheItem[V], len(c.old))
		c.curBytes = 0
	}
	c.cur[k] = it
	c.curBytes += it.size
}

// forget drops a value, so that a logged-out cookie is decoded afresh (and
// its expiry checked) should it come back.
func (c *sessionCache[V]) forget(kind cacheKind, pieces ...string) {
	k := c.key(kind, pieces)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range []map[uint64]*cacheItem[V]{c.cur, c.old} {
		if it := m[k]; it != nil && it.matches(kind, pieces) {
			delete(m, k)
		}
	}
}

package authgate

import (
	"sync"
	"time"
)

// expiringTable is a bounded map whose entries all live the same ttl.
// Entries expire in the order they were added, so a queue in insertion
// order is also the expiry order: adding an entry drops the expired ones
// at the queue's head, and, when the table is full, the oldest live one.
// It is never cleared whole, and its memory is at most max entries
// whatever the load: past max, the oldest entries go before their time.
type expiringTable[K comparable, V any] struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[K]expiringEntry[V]
	// queue holds the keys in insertion order from head on; a key that
	// was added again (or deleted) since has a stale slot, recognised by
	// its seq. It grows with the load, up to max live slots.
	queue []expiringSlot[K]
	head  int
	seq   uint64
}

type expiringEntry[V any] struct {
	val   V
	until time.Time
	seq   uint64
}

type expiringSlot[K comparable] struct {
	key   K
	until time.Time
	seq   uint64
}

func newExpiringTable[K comparable, V any](ttl time.Duration, max int) *expiringTable[K, V] {
	return &expiringTable[K, V]{ttl: ttl, max: max, entries: map[K]expiringEntry[V]{}}
}

// get returns the live value of key.
func (t *expiringTable[K, V]) get(key K) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[key]
	if !ok || !timeNow().Before(e.until) {
		var zero V
		return zero, false
	}
	return e.val, true
}

// put adds key for ttl from now, replacing any value it had.
func (t *expiringTable[K, V]) put(key K, val V) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := timeNow()
	for t.head < len(t.queue) && !now.Before(t.queue[t.head].until) {
		t.pop()
	}
	if len(t.queue)-t.head >= t.max {
		t.pop() // full: the oldest goes early
	}
	if t.head > 0 && t.head >= len(t.queue)/2 {
		// Reuse the popped half rather than growing forever.
		n := copy(t.queue, t.queue[t.head:])
		clear(t.queue[n:])
		t.queue = t.queue[:n]
		t.head = 0
	}
	t.seq++
	until := now.Add(t.ttl)
	t.queue = append(t.queue, expiringSlot[K]{key: key, until: until, seq: t.seq})
	t.entries[key] = expiringEntry[V]{val: val, until: until, seq: t.seq}
}

// delete removes key.
func (t *expiringTable[K, V]) delete(key K) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, key)
}

// len is the number of entries held, live or not yet dropped.
func (t *expiringTable[K, V]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// pop drops the queue's head, and its entry unless the key was added
// again since.
func (t *expiringTable[K, V]) pop() {
	s := t.queue[t.head]
	if e, ok := t.entries[s.key]; ok && e.seq == s.seq {
		delete(t.entries, s.key)
	}
	var zero expiringSlot[K]
	t.queue[t.head] = zero // let the value behind the key go
	t.head++
}

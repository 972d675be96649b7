package authgate

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"go.uber.org/zap"
)

// TestSessionCache: entries answer only for the exact pieces and kind
// they were stored under, so that a cookie value can never be taken for a
// stored session's id (or the reverse), whatever its bytes.
func TestSessionCache(t *testing.T) {
	c := newSessionCache[*sessionEntry](1 << 20)
	get := func(kind cacheKind, pieces ...string) *sessionEntry {
		v, _ := c.get(kind, pieces...)
		return v
	}
	item := func(kind cacheKind, pieces ...string) *cacheItem[*sessionEntry] {
		return c.cur[c.key(kind, pieces)]
	}
	cookie := &sessionEntry{}
	stored := &sessionEntry{}
	c.put(kindCookie, cookie, "AAAA", "BBBB")
	c.put(kindStored, stored, "sess-1")

	for _, tt := range []struct {
		name   string
		kind   cacheKind
		pieces []string
		want   *sessionEntry
	}{
		{"the cookie's chunks", kindCookie, []string{"AAAA", "BBBB"}, cookie},
		{"the same bytes cut elsewhere", kindCookie, []string{"AAAAB", "BBB"}, cookie},
		{"the same bytes in one piece", kindCookie, []string{"AAAABBBB"}, cookie},
		{"the same bytes in many pieces", kindCookie, []string{"A", "AAA", "", "BB", "B", "B"}, cookie},
		{"a changed chunk", kindCookie, []string{"AAAA", "BBBC"}, nil},
		{"a missing chunk", kindCookie, []string{"AAAA"}, nil},
		{"an extra chunk", kindCookie, []string{"AAAA", "BBBB", "C"}, nil},
		{"the stored id", kindStored, []string{"sess-1"}, stored},
		{"a cookie value equal to a stored id", kindCookie, []string{"sess-1"}, nil},
		{"a stored id equal to a cookie value", kindStored, []string{"AAAA", "BBBB"}, nil},
	} {
		if got := get(tt.kind, tt.pieces...); got != tt.want {
			t.Errorf("%s: get = %p, want %p", tt.name, got, tt.want)
		}
	}
	// However a client splits one long value, it is one entry.
	long := strings.Repeat("0123456789", 300)
	first := &sessionEntry{}
	c.put(kindCookie, first, long[:1000], long[1000:])
	for k := 1; k < len(long); k += 97 {
		if got := get(kindCookie, long[:k], long[k:]); got != first {
			t.Fatalf("split at %d: a miss", k)
		}
	}
	// Values that share their length and last bytes differ in the rest.
	if get(kindCookie, "X"+long[1:]) != nil {
		t.Error("a value with the same tail but other bytes hit")
	}

	// A hit is confirmed by comparing bytes, not only by the hash.
	cookieItem := item(kindCookie, "AAAA", "BBBB")
	if cookieItem == nil || cookieItem.val != cookie {
		t.Fatal("the cookie's item is not in the current generation")
	}
	if cookieItem.matches(kindCookie, []string{"AAAA", "BBBX"}) {
		t.Error("matches took other bytes for the entry's")
	}
	if !cookieItem.matches(kindCookie, []string{"AAAAB", "BBB"}) {
		t.Error("matches must compare the joined bytes, wherever the pieces split")
	}
	// The entry keeps a copy of the value, never the request's header it
	// was cut from (which the byte budget does not count).
	header := "app=" + strings.Repeat("x", 8000) + "; _authgate=VALUE"
	piece := header[len(header)-len("VALUE"):]
	single := &sessionEntry{}
	c.put(kindCookie, single, piece)
	if unsafe.StringData(item(kindCookie, piece).raw) == unsafe.StringData(piece) {
		t.Error("the cache entry holds on to the request's Cookie header")
	}
	c.forget(kindCookie, "AAAA", "BBBB")
	if get(kindCookie, "AAAA", "BBBB") != nil || get(kindStored, "sess-1") != stored {
		t.Error("forget must drop exactly its entry")
	}
}

// TestMemoryFlatWith100kSessions decodes 100,000 distinct sessions, as
// many users would bring, and checks that the cache of decoded sessions
// stays within its byte budget, and that so does the heap: it grows by
// what the cache estimates it holds (not more: an estimate that counted
// only the cookie let 300-group sessions take three times the budget),
// and not with the number of users.
func TestMemoryFlatWith100kSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 100,000 sessions")
	}
	now := timeNow().Unix()
	checkMemoryFlat(t, 100_000, sessionCacheSize, func(i int) *Session {
		sub := fmt.Sprintf("user-%06d", i)
		return &Session{
			Version: sessionVersion, ID: fmt.Sprintf("s%08d", i), Provider: "corp", Created: now, Expiry: now + 3600,
			AccessToken: "at-" + sub + "-" + strings.Repeat("x", 200), RefreshToken: "rt-" + sub,
			Claims: map[string]any{
				"sub": sub, "email": sub + "@example.test", "name": "User " + sub,
				"preferred_username": sub, "groups": []any{"staff", "developers"},
			},
		}
	})
}

// TestMemoryFlatWithLargeSessions: the same with sessions of 300 groups
// (34 KB each once decoded) in an 8 MiB cache.
func TestMemoryFlatWithLargeSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 1,500 large sessions")
	}
	checkMemoryFlat(t, 1500, 8<<20, func(i int) *Session {
		return benchLoginSession(fmt.Sprintf("user-%06d", i), 300)
	})
}

func checkMemoryFlat(t *testing.T, sessions, budget int, newSession func(int) *Session) {
	t.Helper()
	gw := benchGateway(t)
	gw.sessions.cache = newSessionCache[*sessionEntry](budget)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	var last string
	for i := range sessions {
		raw, err := gw.sessions.codec.encode(gw.sessions.cookie.Name, newSession(i))
		if err != nil {
			t.Fatal(err)
		}
		e, err := gw.sessions.decodeCookie(cookieOf(raw))
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if want := fmt.Sprintf("user-%06d", i); e.identity.ID != want {
			t.Fatalf("session %d decoded as %q", i, e.identity.ID)
		}
		last = raw
	}
	elapsed := time.Since(start)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)

	c := gw.sessions.cache
	c.mu.RLock()
	curBytes, oldBytes, entries := c.curBytes, 0, len(c.cur)+len(c.old)
	for _, e := range c.old {
		oldBytes += e.size
	}
	c.mu.RUnlock()
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d sessions in %s; cache: %d entries, %d + %d estimated bytes of a %d budget; heap growth %.1f MiB (%.0f bytes per cached entry, %.0f estimated)",
		sessions, elapsed.Round(time.Millisecond), entries, curBytes, oldBytes, c.budget,
		float64(growth)/(1<<20), float64(growth)/float64(max(1, entries)), float64(curBytes+oldBytes)/float64(max(1, entries)))

	if curBytes > c.budget/2 {
		t.Errorf("current generation holds %d bytes, over half the %d budget", curBytes, c.budget)
	}
	if curBytes+oldBytes > c.budget {
		t.Errorf("both generations hold %d bytes, over the %d budget", curBytes+oldBytes, c.budget)
	}
	if entries >= sessions {
		t.Errorf("the cache kept all %d sessions: nothing was evicted", entries)
	}
	// The heap: within the budget (and 2 MiB for pools and the maps'
	// slack), and within a fifth of what the cache estimates it holds.
	if limit := int64(c.budget) + 2<<20; growth > limit {
		t.Errorf("heap grew by %.1f MiB, more than the %d MiB budget and 2 MiB", float64(growth)/(1<<20), c.budget>>20)
	}
	if est := int64(curBytes + oldBytes); growth > est+est/5+2<<20 {
		t.Errorf("heap grew by %.1f MiB, the cache estimates %.1f MiB: its entries are larger than it counts", float64(growth)/(1<<20), float64(est)/(1<<20))
	}
	if _, ok := c.get(kindCookie, last); !ok {
		t.Error("the most recent session is not cached")
	}
	runtime.KeepAlive(gw)
}

// TestSessionCacheSizeOption: session_cache_size from the Caddyfile sets
// the cache's budget; the default is 32 MiB; sizes out of range are
// refused.
func TestSessionCacheSizeOption(t *testing.T) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\n\tauthgate {\n\t\tsession_cache_size 64MiB\n\t}\n}\n"), nil)
	if err != nil || !strings.Contains(string(out), `"session_cache_size":67108864`) {
		t.Fatalf("adapted: %s, %v", out, err)
	}
	settings := func(size int64) Settings {
		return Settings{
			SessionKeys: []string{benchSessionKey}, SessionCacheSize: size,
			Providers: map[string]*ProviderConfig{"corp": {ClientID: "app", AuthorizeURL: "http://127.0.0.1:9/a", TokenURL: "http://127.0.0.1:9/t"}},
		}
	}
	for _, tc := range []struct {
		size   int64
		budget int
		err    string
	}{
		{0, 32 << 20, ""},
		{64 << 20, 64 << 20, ""},
		{100, 0, "session_cache_size 100 is out of range"},
		{-1, 0, "out of range"},
	} {
		gw, err := newGateway(context.Background(), nil, settings(tc.size), zap.NewNop())
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("size %d: %v, want %q", tc.size, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if gw.sessions.cache.budget != tc.budget {
			t.Errorf("size %d: budget %d, want %d", tc.size, gw.sessions.cache.budget, tc.budget)
		}
	}
}

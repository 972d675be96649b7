package authgate

import (
	"testing"
	"time"
)

func TestExpiringTable(t *testing.T) {
	t.Run("an entry lives its ttl, then is gone", func(t *testing.T) {
		tab := newExpiringTable[int, string](10*time.Second, 100)
		tab.put(1, "one")
		if v, ok := tab.get(1); !ok || v != "one" {
			t.Fatalf("get(1) = %q %v just after put", v, ok)
		}
		advanceClock(t, 9*time.Second)
		if _, ok := tab.get(1); !ok {
			t.Error("gone before its ttl")
		}
		advanceClock(t, time.Second)
		if _, ok := tab.get(1); ok {
			t.Error("still there at its ttl")
		}
		tab.put(2, "two") // drops the expired head
		if n := tab.len(); n != 1 {
			t.Errorf("%d entries held after an expired one was passed, want 1", n)
		}
	})
	t.Run("full: the oldest goes first, one at a time, never the whole table", func(t *testing.T) {
		tab := newExpiringTable[int, int](time.Hour, 1000)
		for i := 0; i < 1000; i++ {
			tab.put(i, i)
		}
		tab.put(1000, 1000)
		if _, ok := tab.get(0); ok {
			t.Error("the oldest entry survived the table filling up")
		}
		for _, k := range []int{1, 500, 999, 1000} {
			if _, ok := tab.get(k); !ok {
				t.Errorf("entry %d went when only the oldest should have", k)
			}
		}
		for i := 1001; i < 5000; i++ {
			tab.put(i, i)
			if n := tab.len(); n > 1000 {
				t.Fatalf("%d entries after %d puts, over the bound of 1000", n, i+1)
			}
		}
		for _, k := range []int{4000, 4999} {
			if _, ok := tab.get(k); !ok {
				t.Errorf("recent entry %d missing", k)
			}
		}
		if len(tab.queue) > 2*1000 {
			t.Errorf("queue of %d slots for 1000 entries: it grows without bound", len(tab.queue))
		}
	})
	t.Run("put again renews an entry; delete removes it", func(t *testing.T) {
		tab := newExpiringTable[string, int](10*time.Second, 3)
		tab.put("a", 1)
		advanceClock(t, 6*time.Second)
		tab.put("a", 2)
		advanceClock(t, 6*time.Second)
		if v, ok := tab.get("a"); !ok || v != 2 {
			t.Errorf("renewed entry: %d %v, want 2 true", v, ok)
		}
		// The stale slot of the first put must not take the renewed entry
		// with it when it leaves the queue.
		tab.put("b", 1)
		tab.put("c", 1)
		if _, ok := tab.get("a"); !ok {
			t.Error("the renewed entry went with its stale slot")
		}
		tab.delete("a")
		if _, ok := tab.get("a"); ok {
			t.Error("deleted entry still there")
		}
	})
}

package main

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// TestTinyStorm runs the refresh storm end to end, small: 50 sessions on
// 2 connections, with cookie sessions and, when redis-server is
// installed, with session_store redis on two instances. It fails when a
// correctness condition of the storm fails: refresh requests at the
// provider other than one per session, a failed request, a lost session,
// a cookie session not on its new cookie.
func TestTinyStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy, a provider and 100 logins; about half a minute")
	}
	st, err := startStack(stackConfig{storm: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.stop()
	o := options{
		concurrency: 2, stormSessions: 50, stormTurn: 2, setupConcurrency: 4,
		duration: 300 * time.Millisecond, maxRequests: 200_000,
	}
	specs := []stormSpec{{name: "storm", title: "tiny storm, cookies", cookie: stormCookie, sites: []string{st.stormURL}}}
	if len(st.stormRedisURLs) == 2 {
		specs = append(specs, stormSpec{name: "storm-redis", title: "tiny storm, redis", cookie: stormRedisCookie, sites: st.stormRedisURLs, redis: true})
	} else if os.Getenv("AUTHGATE_REQUIRE_REDIS") == "1" {
		t.Fatal("redis-server is not installed, and AUTHGATE_REQUIRE_REDIS=1 asks for the session_store storm")
	} else {
		t.Log("redis-server is not installed: the session_store storm is not run")
	}
	for _, spec := range specs {
		r := runStorm(o, st, spec)
		for _, f := range r.correct() {
			t.Error(f)
		}
		if r.setupErr == "" && (r.before.requests == 0 || r.during.requests == 0) {
			t.Errorf("%s: %d requests before the storm, %d during it: the storm was not measured", spec.name, r.before.requests, r.during.requests)
		}
		if r.setupErr == "" && r.wave+r.late != r.n {
			t.Errorf("%s: the timeline saw %d + %d refreshes for %d sessions", spec.name, r.wave, r.late, r.n)
		}
	}

	// The same storm with a provider that refuses two of the refreshes
	// (invalid_grant, as for a refresh token already spent): those two
	// users are logged out, and the storm must say so.
	spec := specs[0]
	spec.beforeLoad = func() {
		st.stormIdp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultInvalidGrant, Every: 10, Times: 2})
	}
	r := runStorm(o, st, spec)
	st.stormIdp.ClearFaults()
	got := strings.Join(r.correct(), "; ")
	for _, want := range []string{"2 sessions lost", "failed requests"} {
		if !strings.Contains(got, want) {
			t.Errorf("two refused refreshes: want %q among the failures, got %q", want, got)
		}
	}
}

// TestStormCorrect: each correctness condition, violated alone, is
// reported.
func TestStormCorrect(t *testing.T) {
	ok := stormResult{spec: stormSpec{name: "storm"}, n: 10, refreshes: 10}
	if f := ok.correct(); len(f) != 0 {
		t.Fatalf("a correct storm reported %v", f)
	}
	for _, c := range []struct {
		want string
		mod  func(*stormResult)
	}{
		{"9 refresh requests", func(r *stormResult) { r.refreshes = 9 }},
		{"11 refresh requests", func(r *stormResult) { r.refreshes = 11 }},
		{"1 failed", func(r *stormResult) { r.failed = 1 }},
		{"2 sessions lost", func(r *stormResult) { r.lost = 2 }},
		{"3 sessions not on a new cookie", func(r *stormResult) { r.stale = 3 }},
		{"setup failed", func(r *stormResult) { r.setupErr = "x" }},
	} {
		r := ok
		c.mod(&r)
		if f := strings.Join(r.correct(), "; "); !strings.Contains(f, c.want) {
			t.Errorf("want %q, got %q", c.want, f)
		}
	}
}

// TestJar: a browser's cookies follow Set-Cookie: replaced, chunked,
// deleted.
func TestJar(t *testing.T) {
	j := newJar(session{header: "_a=one"}, "_a")
	resp := func(cookies ...string) *http.Response {
		h := http.Header{}
		for _, c := range cookies {
			h.Add("Set-Cookie", c)
		}
		return &http.Response{Header: h}
	}
	now := time.Now()
	if changed, alive := j.update(resp("other=x"), now); changed || !alive || j.get() != "_a=one" {
		t.Fatalf("another cookie changed the session: %v %v %q", changed, alive, j.get())
	}
	if changed, alive := j.update(resp("_a=two; Path=/; HttpOnly"), now); !changed || !alive || j.get() != "_a=two" {
		t.Fatalf("replacing: %v %v %q", changed, alive, j.get())
	}
	j.update(resp("_a=; Max-Age=0", "_a_0=c0", "_a_1=c1"), now)
	if got := j.get(); got != "_a_0=c0; _a_1=c1" {
		t.Fatalf("chunked: %q", got)
	}
	if _, alive := j.update(resp("_a_0=; Max-Age=0", "_a_1=; Expires=Thu, 01 Jan 1970 00:00:00 GMT"), now); alive {
		t.Fatalf("deleted, still alive: %q", j.get())
	}
}

// TestCacheModel: the model of authgate's cache keeps what fits in two
// generations and forgets what does not.
func TestCacheModel(t *testing.T) {
	size := cacheEntrySize(1000) // 2,512 bytes
	m := newCacheModel(10 * size)
	for s := int32(0); s < 5; s++ {
		if m.get(s, size) {
			t.Fatalf("first sight of %d was a hit", s)
		}
	}
	for s := int32(0); s < 5; s++ {
		if !m.get(s, size) {
			t.Fatalf("%d was forgotten within one generation", s)
		}
	}
	for s := int32(5); s < 15; s++ { // two more generations' worth
		m.get(s, size)
	}
	if m.get(0, size) {
		t.Fatal("0 survived two generations of newer entries")
	}
	if cacheCapacity(1000) != authgateCacheBudget/2/cacheEntrySize(1000) || cacheEntrySize(500) != 2100 || cacheEntrySize(5900) != 33800 {
		t.Fatal("capacity")
	}
}

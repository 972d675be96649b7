package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// authgateCacheBudget and cacheEntrySize mirror authgate's session cache
// as docs/performance.md describes it (session.go, sessionCacheSize and
// sessionCache.put): 32 MiB in two generations; when the current one
// would pass half the budget it becomes the old one and the old one is
// dropped; a hit in the old generation is not moved. An entry counts what
// it holds (the value, its decoded session and identity: sessionEntry's
// cacheSize): about 2.1 KB for a 620-byte cookie and 34.5 KB for the
// 300-group session's 5.9 KB; cacheEntrySize is the line through those
// two measurements, no smaller than the first. authgate exports no hit
// count: the hit rate of a request sequence is estimated by replaying it
// through this model.
const authgateCacheBudget = 32 << 20

func cacheEntrySize(valueLen int) int { return max(2100, 6*valueLen-1600) }

// cacheModel replays requests through the model of authgate's cache.
type cacheModel struct {
	cur, old map[int32]bool
	curBytes int
	budget   int
}

func newCacheModel(budget int) *cacheModel {
	return &cacheModel{cur: map[int32]bool{}, old: map[int32]bool{}, budget: budget}
}

// get reports whether session s (its cookie value size bytes) is a hit,
// and puts it in on a miss.
func (m *cacheModel) get(s int32, size int) bool {
	if m.cur[s] || m.old[s] {
		return true
	}
	if m.curBytes+size > m.budget/2 {
		m.old, m.cur, m.curBytes = m.cur, map[int32]bool{}, 0
	}
	m.cur[s] = true
	m.curBytes += size
	return false
}

// capacity is about how many entries of this size the model holds: one
// full generation and a part of the next.
func cacheCapacity(valueLen int) int { return authgateCacheBudget / 2 / cacheEntrySize(valueLen) }

// cookieValueLen is the length of the session cookie values in a Cookie
// header ("name=value; name_0=value...").
func cookieValueLen(header string) int {
	n := 0
	for _, part := range strings.Split(header, "; ") {
		if _, v, ok := strings.Cut(part, "="); ok {
			n += len(v)
		}
	}
	return n
}

// usersResult is what the many-users scenario measured.
type usersResult struct {
	n                              int
	setupErr                       string
	setup                          time.Duration
	rssStart, rssBefore, rssAfter  float64 // MiB: before the logins, after them, after the load
	miss                           scenarioResult
	missUsed                       int64 // sessions the authgate target sent, warm-up included
	valueLen                       int
	cpuMiss, cpuHit, cpuMix        float64 // authgate's CPU per request, µs, whole process
	rpsMiss, rpsHit, rpsMix        float64
	hitRateModel, hitRateCPU, zipf float64
	sweepHitRate                   float64 // the model's hit rate of the every-request-a-miss load
	mixMissHit, mixHotHit          float64 // the model's hit rates of the mix's all-miss and all-hit targets
	mixErrors                      int
	mixFirstErr                    string
	providerCalls                  int
}

// runUsers signs o.users browsers in through the many-users site and loads
// it with a different session on every request (every request a cache
// miss), against plain and same-bytes, then a Zipf mix over the sessions
// against all-hit and all-miss.
func runUsers(o options, st *stack, direct round, fails *failures) usersResult {
	n := o.users
	res := usersResult{n: n, zipf: o.zipfS}
	title := fmt.Sprintf("Scenario: many users (%d sessions, a different one on every request)", n)
	fmt.Printf("\n%s\n", title)
	res.rssStart = rssMB()
	var sessions []session
	var setup time.Duration
	var err error
	profile(o, "many-users-setup", func() {
		sessions, setup, err = loginMany(st.usersLoginURL, usersCookie, n, o.setupConcurrency, o.setupLimit)
	})
	res.setup = setup
	if err != nil {
		res.setupErr = err.Error()
		fmt.Printf("  setup failed after %.1fs: %v\n", setup.Seconds(), err)
		return res
	}
	fmt.Printf("  setup: %d logins through %s in %.1fs (%.0f/s, %d at once); the load goes to %s, whose gateway has seen none of them\n",
		n, st.usersLoginURL, setup.Seconds(), float64(n)/setup.Seconds(), o.setupConcurrency, st.usersURL)
	first := sessions[0]
	headers := headersOf(sessions)
	sessions = nil
	res.valueLen = cookieValueLen(headers[0])
	res.rssBefore = rssMB()
	fmt.Printf("  session: %s; authgate's cache holds about %d such entries per generation (model)\n", first.describe(), cacheCapacity(res.valueLen))

	// All misses: authgate and same bytes each sweep the sessions in turn.
	targets := make([]*target, nTargets)
	targets[tPlain] = newTarget("plain reverse_proxy", st.plainURL, "", o.concurrency)
	targets[tAuth] = newTarget("authgate, every request a miss", st.usersURL, first.header, o.concurrency)
	targets[tAuth].seq = newCookieSeq(headers, nil)
	targets[tSame] = newTarget("same bytes, no authgate", st.sameSmallURL, first.header, o.concurrency)
	targets[tSame].seq = newCookieSeq(headers, nil)
	providerCalls := 0
	res.miss = compareTargets(o, st, title, st.usersURL, targets, nil, st.usersIdp, direct, &providerCalls, fails)
	res.missUsed = targets[tAuth].seq.taken()
	res.rssAfter = rssMB()
	// The load site's cache saw the echo check's session 0, then the
	// sweep: replayed through the model.
	m := newCacheModel(authgateCacheBudget)
	size := cacheEntrySize(res.valueLen)
	m.get(0, size)
	hits := 0
	for k := int64(0); k < res.missUsed; k++ {
		if m.get(int32(k%int64(n)), size) {
			hits++
		}
	}
	res.sweepHitRate = float64(hits) / float64(max(1, res.missUsed))
	wraps := ""
	if res.missUsed > int64(n) {
		wraps = fmt.Sprintf(" (it came round again: a session's next request came %d requests after its last, beyond the cache's ~%d entries)", n, 2*cacheCapacity(res.valueLen))
	}
	fmt.Printf("  the authgate target sent %d requests with %d distinct sessions%s;\n", res.missUsed, min(res.missUsed, int64(n)), wraps)
	fmt.Printf("    hit rate by the model of the cache: %.1f %%", 100*res.sweepHitRate)
	if res.sweepHitRate > 0.01 {
		fmt.Printf(" (not every request a miss: -users %d is too few for this much load; the cache holds ~%d)", n, 2*cacheCapacity(res.valueLen))
	}
	fmt.Println()
	fmt.Printf("  RSS (after GC, freed memory returned): before the logins %.1f MiB, after them %.1f MiB, after the load %.1f MiB (%+.1f MiB; cache budget %d MiB)\n",
		res.rssStart, res.rssBefore, res.rssAfter, res.rssAfter-res.rssBefore, authgateCacheBudget>>20)

	// The mix: Zipf over the sessions, against all misses and all hits.
	res.mix(o, st, headers, m, &providerCalls)
	res.providerCalls = providerCalls
	if providerCalls != 0 {
		fails.add("%s: the provider saw %d requests during the load", title, providerCalls)
	}
	if res.mixErrors > 0 {
		fails.add("%s, the mix: %d failed requests (%s)", title, res.mixErrors, res.mixFirstErr)
	}
	return res
}

const (
	mMiss = iota
	mHit
	mMix
	nMix
)

// mix loads three authgate targets side by side: every request a miss, a
// few sessions that stay cached (all hits), and a Zipf-distributed choice
// over all the sessions; the hit rate of the mix is estimated by
// replaying its requests through the model of the cache (m, as the sweep
// left it), slice by slice as they were sent, and, by CPU per request,
// from where the mix falls between all-miss and all-hit.
func (res *usersResult) mix(o options, st *stack, headers []string, m *cacheModel, providerCalls *int) {
	n := len(headers)
	hot := min(1000, n) // all cached: well below one generation
	r := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(r, o.zipfS, 1, uint64(n-1))
	order := make([]int32, zipfLength)
	for i := range order {
		order[i] = int32(z.Uint64())
	}
	ts := make([]*target, nMix)
	ts[mMiss] = newTarget("authgate, all misses", st.usersURL, "", o.concurrency)
	ts[mMiss].seq = newCookieSeq(headers, nil)
	ts[mMiss].seq.next.Store(int64(res.missUsed)) // on from where the sweep stopped
	ts[mHit] = newTarget(fmt.Sprintf("authgate, all hits (%d sessions)", hot), st.usersURL, "", o.concurrency)
	ts[mHit].seq = newCookieSeq(headers[:hot], nil)
	ts[mMix] = newTarget(fmt.Sprintf("authgate, Zipf s=%.2f", o.zipfS), st.usersURL, "", o.concurrency)
	ts[mMix].seq = newCookieSeq(headers, order)

	// The slices as they ran, to replay them through the model.
	type slice struct {
		t        int
		from, to int64
		recorded bool
	}
	var trace []slice
	run := func(t int, d time.Duration, maxReq int, recorded bool) round {
		from := ts[t].seq.taken()
		r := load(ts[t], d, o.concurrency, maxReq)
		trace = append(trace, slice{t, from, ts[t].seq.taken(), recorded})
		return r
	}
	before := providerRequests(st.usersIdp)
	run(mHit, o.warmup, o.maxRequests, false)
	run(mMix, o.warmup, o.maxRequests, false)
	c := newComparison(nMix)
	nSlices := max(1, int(o.duration/o.slice))
	sliceLen := o.duration / time.Duration(nSlices)
	for i := 0; i < o.rounds; i++ {
		parts := make([][]round, nMix)
		for k := 0; k < nSlices; k++ {
			for _, t := range rotation(nMix, i*nSlices+k) {
				parts[t] = append(parts[t], run(t, sliceLen, max(1, o.maxRequests/nSlices), true))
			}
		}
		c.add(mergeEach(parts))
	}
	*providerCalls += providerRequests(st.usersIdp) - before
	res.mixErrors, res.mixFirstErr = c.errors()

	size := cacheEntrySize(res.valueLen)
	var hits, total [nMix]int
	for _, sl := range trace {
		for k := sl.from; k < sl.to; k++ {
			var s int32
			switch sl.t {
			case mMiss:
				s = int32(k % int64(n))
			case mHit:
				s = int32(k % int64(hot))
			case mMix:
				s = order[k%int64(len(order))]
			}
			hit := m.get(s, size)
			if sl.recorded {
				total[sl.t]++
				if hit {
					hits[sl.t]++
				}
			}
		}
	}
	rate := func(t int) float64 { return float64(hits[t]) / float64(max(1, total[t])) }
	res.hitRateModel, res.mixMissHit, res.mixHotHit = rate(mMix), rate(mMiss), rate(mHit)
	res.cpuMiss = median(c.each(mMiss, round.cpuPerReq))
	res.cpuHit = median(c.each(mHit, round.cpuPerReq))
	res.cpuMix = median(c.each(mMix, round.cpuPerReq))
	res.rpsMiss, res.rpsHit, res.rpsMix = median(c.each(mMiss, rps)), median(c.each(mHit, rps)), median(c.each(mMix, rps))
	if d := res.cpuMiss - res.cpuHit; d > 0 {
		res.hitRateCPU = min(1, max(0, (res.cpuMiss-res.cpuMix)/d))
	}
	fmt.Printf("  %-34s %9s %8s %8s %11s\n", "the mix (authgate only)", "req/s", "p50 ms", "p99 ms", "CPU µs/req")
	for t, tg := range ts {
		fmt.Printf("  %-34s %9.0f %8.3f %8.3f %11.1f\n", tg.name, median(c.each(t, rps)), median(c.each(t, p50)), median(c.each(t, p99)), median(c.each(t, round.cpuPerReq)))
	}
	fmt.Printf("  hit rate of the mix (estimates; authgate counts no hits): %.1f %% replaying the %d requests of the rounds, slice by slice, through a model of\n", 100*res.hitRateModel, total[mMix])
	fmt.Printf("    the cache (32 MiB, two generations; it gives the all-miss target %.1f %%, the all-hit one %.1f %%); %.1f %% by CPU per request,\n", 100*res.mixMissHit, 100*res.mixHotHit, 100*res.hitRateCPU)
	fmt.Printf("    where the mix's %.1f µs falls between all misses (%.1f µs) and all hits (%.1f µs)\n", res.cpuMix, res.cpuMiss, res.cpuHit)
}

// zipfLength is how many choices of the mix are drawn; requests beyond
// it go round again.
const zipfLength = 1 << 20

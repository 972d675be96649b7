package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"
)

// largeOneResult is what the large-session, one-connection scenario
// measured: the hit path (one session, cached) and the miss path (a
// different session on every request), each against plain and same bytes.
type largeOneResult struct {
	n                   int
	setupErr            string
	setup               time.Duration
	hit, miss           latencyComparison
	cpuHit, cpuMiss     float64 // authgate's CPU per request, µs, whole process
	cpuSameHit, cpuSame float64
	errors              int
	firstErr            string
	providerCalls       int
}

// latencyComparison is authgate's latency on one connection against
// plain and same bytes, medians over rounds.
type latencyComparison struct {
	plainP50, plainP99, authP50, authP99, sameP50, sameP99 float64
	addedP50, addedP99                                     float64 // authgate − plain
	ownP99                                                 float64 // authgate − same bytes
	requests                                               int     // authgate's
}

func latencies(c *comparison) latencyComparison {
	l := latencyComparison{
		plainP50: median(c.each(tPlain, p50)), plainP99: median(c.each(tPlain, p99)),
		authP50: median(c.each(tAuth, p50)), authP99: median(c.each(tAuth, p99)),
		sameP50: median(c.each(tSame, p50)), sameP99: median(c.each(tSame, p99)),
		addedP50: median(c.paired(tAuth, tPlain, func(a, p round) float64 { return p50(a) - p50(p) })),
		addedP99: median(c.paired(tAuth, tPlain, func(a, p round) float64 { return p99(a) - p99(p) })),
		ownP99:   median(c.paired(tAuth, tSame, func(a, s round) float64 { return p99(a) - p99(s) })),
		requests: c.requests(tAuth),
	}
	return l
}

// runLargeOne logs o.largeSessions browsers in with the large session's
// groups and measures, on one connection, the hit path (one session) and
// the miss path (every request another session), against plain and same
// bytes. With -cpuprofile, each path gets a profile of its own.
func runLargeOne(o options, st *stack, groups []string, fails *failures) largeOneResult {
	n := o.largeSessions
	res := largeOneResult{n: n}
	title := fmt.Sprintf("Scenario: large session (%d groups) on one connection, hit and miss path", len(groups))
	fmt.Printf("\n%s\n", title)
	st.idp.SetUserClaims(benchUser, map[string]any{"groups": groupsClaim(groups)})
	sessions, setup, err := loginMany(st.authURL, cookieName, n, o.setupConcurrency, 5*time.Minute)
	st.idp.SetUserClaims(benchUser, map[string]any{"groups": groupsClaim(smallGroups)})
	res.setup = setup
	if err != nil {
		res.setupErr = err.Error()
		fmt.Printf("  setup failed: %v\n", err)
		return res
	}
	fmt.Printf("  setup: %d logins in %.1fs (%.0f/s); session: %s\n", n, setup.Seconds(), float64(n)/setup.Seconds(), sessions[0].describe())
	headers := headersOf(sessions)

	mk := func(cookie string, seq []string) []*target {
		ts := make([]*target, nTargets)
		ts[tPlain] = newTarget("plain reverse_proxy", st.plainURL, "", 1)
		ts[tAuth] = newTarget("authgate", st.largeOneURL, cookie, 1)
		ts[tSame] = newTarget("same bytes, no authgate", st.sameLargeURL, cookie, 1)
		if seq != nil {
			ts[tAuth].seq = newCookieSeq(seq, nil)
			ts[tSame].seq = newCookieSeq(seq, nil)
		}
		return ts
	}
	// Logged in through authURL, whose gateway cached them on the way
	// back from the provider; loaded through largeOneURL, whose gateway
	// has seen none: each is a miss there the first time.
	hitTargets := mk(headers[0], nil)
	missTargets := mk(headers[1], headers[1:])
	if err := checkSameBytes(hitTargets[tPlain], hitTargets[tAuth], hitTargets[tSame]); err != nil {
		fmt.Printf("  %v\n", err)
		fails.add("%s: %v", title, err)
	}
	before := st.providerRequests()

	// The hit path: rounds of o.probe per target in rotating slices.
	for _, t := range hitTargets {
		load(t, o.warmup, 1, o.maxRequests)
	}
	hit := newComparison(nTargets)
	nSlices := max(1, int(o.probe/o.slice))
	sliceLen := o.probe / time.Duration(nSlices)
	profile(o, "large-hit", func() {
		for i := 0; i < o.rounds; i++ {
			parts := make([][]round, nTargets)
			for k := 0; k < nSlices; k++ {
				for _, t := range rotation(nTargets, i*nSlices+k) {
					parts[t] = append(parts[t], load(hitTargets[t], sliceLen, 1, o.maxRequests))
				}
			}
			hit.add(mergeEach(parts))
		}
	})

	// The miss path: the sessions (after the first, which the hit path
	// used, and the second, which opened the connections) split between
	// the rounds; each target sends as many requests per round, bounded
	// in time too.
	for _, t := range missTargets {
		load(t, time.Second, 1, 1)
	}
	per := max(1, (n-3)/o.rounds)
	miss := newComparison(nTargets)
	profile(o, "large-miss", func() {
		for i := 0; i < o.rounds; i++ {
			parts := make([][]round, nTargets)
			for _, t := range rotation(nTargets, i) {
				parts[t] = append(parts[t], load(missTargets[t], 30*time.Second, 1, per))
			}
			miss.add(mergeEach(parts))
		}
	})
	res.providerCalls = st.providerRequests() - before
	if res.providerCalls != 0 {
		fails.add("%s: the provider saw %d requests during the load", title, res.providerCalls)
	}
	for _, c := range []*comparison{hit, miss} {
		if n, first := c.errors(); n > 0 {
			res.errors += n
			if res.firstErr == "" {
				res.firstErr = first
			}
		}
	}
	if res.errors > 0 {
		fails.add("%s: %d failed requests (%s)", title, res.errors, res.firstErr)
	}
	res.hit, res.miss = latencies(hit), latencies(miss)
	res.cpuHit, res.cpuMiss = median(hit.each(tAuth, round.cpuPerReq)), median(miss.each(tAuth, round.cpuPerReq))
	res.cpuSameHit, res.cpuSame = median(hit.each(tSame, round.cpuPerReq)), median(miss.each(tSame, round.cpuPerReq))
	fmt.Printf("  %-30s %9s %9s %9s %9s %9s %9s %12s %12s %11s\n", "one connection", "plain p50", "p99", "authgate", "p99", "same p50", "p99", "added p99", "vs same p99", "CPU µs/req")
	for _, row := range []struct {
		name string
		l    latencyComparison
		cpu  float64
	}{
		{fmt.Sprintf("hit path (1 session, %d req)", res.hit.requests), res.hit, res.cpuHit},
		{fmt.Sprintf("miss path (%d sessions)", res.miss.requests), res.miss, res.cpuMiss},
	} {
		l := row.l
		fmt.Printf("  %-30s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %+12.3f %+12.3f %11.1f\n", row.name,
			l.plainP50, l.plainP99, l.authP50, l.authP99, l.sameP50, l.sameP99, l.addedP99, l.ownP99, row.cpu)
	}
	fmt.Printf("  CPU per request, authgate − same bytes: hit %+.1f µs, miss %+.1f µs (whole process)\n", res.cpuHit-res.cpuSameHit, res.cpuMiss-res.cpuSame)
	return res
}

// profile runs f under a CPU profile of its own, written to
// <-cpuprofile>.<name>, when -cpuprofile is set.
func profile(o options, name string, f func()) {
	if o.cpuprofile == "" {
		f()
		return
	}
	path := o.cpuprofile + "." + name
	file, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		f()
		return
	}
	defer file.Close()
	if err := pprof.StartCPUProfile(file); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		f()
		return
	}
	f()
	pprof.StopCPUProfile()
	fmt.Printf("  CPU profile written to %s\n", path)
}

package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// assertionResult is the outcome of the assertion scenario: the authgate
// site with assertion_header against the same site without it (one
// gateway, one session), each against its same-bytes site, and plain.
type assertionResult struct {
	onOff ratio // throughput and CPU per request, assertion on over off
	// bytes is same-bytes with the assertion header over same-bytes
	// without: what carrying the header costs any gateway.
	bytes ratio
	// ownAdded is what the assertion adds to authgate's own CPU per
	// request, net of the header's bytes: per round, (on − its same
	// bytes) − (off − its same bytes), in µs, the median. It is a small
	// difference of large whole-process figures; the Go benchmark
	// BenchmarkHandlerAuthenticatedAssertion measures authgate's part
	// alone, against the 3 % budget.
	ownAdded      float64
	ownPerRound   []float64
	addedAllocs   float64 // allocations per request the assertion adds
	headerBytes   int     // the assertion header's size as forwarded
	providerCalls int
	setupErr      string
}

// Targets of the assertion scenario.
const (
	aPlain   = iota // plain reverse_proxy
	aOff            // authgate + reverse_proxy, no assertion
	aSameOff        // same bytes as aOff, no authgate
	aOn             // authgate with assertion_header + reverse_proxy
	aSameOn         // same bytes as aOn (the assertion header too), no authgate
	nAssertionTargets
)

// runAssertion loads the five sites in rounds of rotating slices with one
// session (signed in at the authgate site; the assertion site shares its
// gateway). First the backend's echo must show that the assertion site
// forwards exactly what the authgate site does plus one
// X-Authgate-Assertion header, and each same-bytes site what its authgate
// site forwards.
func runAssertion(o options, st *stack, sess session, providerDuringLoad *int, fails *failures) assertionResult {
	title := "Scenario 10: identity assertion (assertion_header) on against off, small session"
	fmt.Printf("\n%s\n", title)
	var res assertionResult
	targets := make([]*target, nAssertionTargets)
	targets[aPlain] = newTarget("plain reverse_proxy", st.plainURL, "", o.concurrency)
	targets[aOff] = newTarget("authgate, assertion off", st.authURL, sess.header, o.concurrency)
	targets[aSameOff] = newTarget("same bytes as off", st.sameSmallURL, sess.header, o.concurrency)
	targets[aOn] = newTarget("authgate, assertion on", st.assertionURL, sess.header, o.concurrency)
	targets[aSameOn] = newTarget("same bytes as on", st.sameAssertionURL, sess.header, o.concurrency)

	setup := func() error {
		off, err := echo(targets[aOff])
		if err != nil {
			return err
		}
		on, err := echo(targets[aOn])
		if err != nil {
			return err
		}
		jwt, err := checkOneMore(off, on, "X-Authgate-Assertion: ")
		if err != nil {
			return err
		}
		res.headerBytes = len(jwt)
		fmt.Printf("  echo check: ok, the assertion site forwards what the authgate site does and an X-Authgate-Assertion of %d bytes\n", len(jwt))
		// The same-bytes site sends it on every request from here on.
		os.Setenv("AUTHGATE_BENCH_ASSERTION", jwt)
		if err := checkSameBytes(targets[aPlain], targets[aOff], targets[aSameOff]); err != nil {
			return err
		}
		return checkSameBytes(targets[aPlain], targets[aOn], targets[aSameOn])
	}
	if err := setup(); err != nil {
		res.setupErr = err.Error()
		fmt.Printf("  %v\n", err)
		fails.add("%s: %v", title, err)
		return res
	}

	providerBefore := providerRequests(st.idp)
	identifiedBefore := st.identifiedAt(st.assertionURL)
	for _, t := range targets {
		load(t, o.warmup, o.concurrency, o.maxRequests)
	}
	c := newComparison(nAssertionTargets)
	nSlices := max(1, int(o.duration/o.slice))
	sliceLen := o.duration / time.Duration(nSlices)
	for i := 0; i < o.rounds; i++ {
		parts := make([][]round, nAssertionTargets)
		for k := 0; k < nSlices; k++ {
			for _, t := range rotation(nAssertionTargets, i*nSlices+k) {
				parts[t] = append(parts[t], load(targets[t], sliceLen, o.concurrency, max(1, o.maxRequests/nSlices)))
			}
		}
		c.add(mergeEach(parts))
	}
	res.providerCalls = providerRequests(st.idp) - providerBefore
	*providerDuringLoad += res.providerCalls
	if identified := st.identifiedAt(st.assertionURL) - identifiedBefore; identified < int64(c.requests(aOn)) {
		fails.add("%s: the backend saw %d identified requests through the assertion site for %d authenticated ones", title, identified, c.requests(aOn))
	}
	if n, first := c.errors(); n > 0 {
		fails.add("%s: %d failed requests (%s)", title, n, first)
	}

	fmt.Printf("  %-26s %9s %8s %8s %11s %11s\n", "under load", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "allocs/req")
	for t, tg := range targets {
		fmt.Printf("  %-26s %9.0f %8.3f %8.3f %11.1f %11.1f\n", tg.name, median(c.each(t, rps)), median(c.each(t, p50)), median(c.each(t, p99)),
			median(c.each(t, round.cpuPerReq)), median(c.each(t, round.allocsPerReq)))
	}
	res.onOff = compare(c, aOn, aOff)
	res.bytes = compare(c, aSameOn, aSameOff)
	res.addedAllocs = median(c.paired(aOn, aOff, func(on, off round) float64 { return on.allocsPerReq() - off.allocsPerReq() }))
	for i := range c.rounds[aOn] {
		without := c.rounds[aOff][i].cpuPerReq() - c.rounds[aSameOff][i].cpuPerReq()
		with := c.rounds[aOn][i].cpuPerReq() - c.rounds[aSameOn][i].cpuPerReq()
		res.ownPerRound = append(res.ownPerRound, with-without)
	}
	res.ownAdded = median(res.ownPerRound)
	fmt.Printf("  assertion on/off: throughput %.3f×, by CPU %.3f× (%+.1f µs, %+.1f allocs per request)\n",
		res.onOff.throughput, res.onOff.cpu, res.onOff.cpuAdded, res.addedAllocs)
	fmt.Printf("  the header's bytes alone (same bytes on/off): throughput %.3f×, %+.1f µs CPU per request\n", res.bytes.throughput, res.bytes.cpuAdded)
	fmt.Printf("  what the assertion adds to authgate's own CPU, net of the bytes ((on − same) − (off − same)): %+.1f µs per request, per round %s\n",
		res.ownAdded, joinFloats(res.ownPerRound, "%+.1f"))
	fmt.Printf("    (a difference of whole-process figures, within their noise; BenchmarkHandlerAuthenticatedAssertion measures\n")
	fmt.Printf("    authgate's part alone against the 3 %% budget)\n")
	fmt.Printf("  provider requests during this load: %d\n", res.providerCalls)
	return res
}

// checkOneMore checks that the dump with (on) is the dump without (off)
// plus exactly one line starting with prefix, and returns the rest of
// that line.
func checkOneMore(off, on, prefix string) (string, error) {
	a, b := echoLines(off), echoLines(on)
	onlyOn, onlyOff := multisetDiff(b, a), multisetDiff(a, b)
	if len(onlyOff) == 0 && len(onlyOn) == 1 && strings.HasPrefix(onlyOn[0], prefix) {
		return strings.TrimPrefix(onlyOn[0], prefix), nil
	}
	var sb strings.Builder
	sb.WriteString("echo check: the assertion site does not forward the authgate site's headers plus one assertion:")
	for _, l := range onlyOn {
		fmt.Fprintf(&sb, "\n      only with the assertion:    %s", shorten(l))
	}
	for _, l := range onlyOff {
		fmt.Fprintf(&sb, "\n      only without the assertion: %s", shorten(l))
	}
	return "", fmt.Errorf("%s", sb.String())
}

// resultLine of the assertion scenario.
func (r assertionResult) resultLine() string {
	l := newResult("assertion")
	if r.setupErr != "" {
		return l.kv("setup_failed", "1").String()
	}
	l.f3("on_off", r.onOff.throughput).f3("bytes_on_off", r.bytes.throughput).f1("own_added_us", r.ownAdded)
	if r.onOff.cpu > 0 {
		l.f3("on_off_cpu", r.onOff.cpu).f1("cpu_added_us", r.onOff.cpuAdded).f1("bytes_cpu_added_us", r.bytes.cpuAdded)
	}
	return l.f1("allocs_added", r.addedAllocs).i("header_bytes", r.headerBytes).i("provider_calls", r.providerCalls).String()
}

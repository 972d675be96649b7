// Command bench is authgate's load benchmark: `go run ./bench`.
//
// In one process it starts a backend, the test OpenID provider and one
// Caddy with two sites on loopback: a plain reverse_proxy to the backend,
// and authgate in front of the same reverse_proxy. It signs in through the
// authgate site for real (redirects, provider, callback), then loads both
// sites in alternating rounds and compares them:
//
//  1. a small session (one cookie);
//  2. a large session (about 300 groups, chunked cookies);
//  3. logins per second through the whole flow, a fresh browser each.
//
// It exits non-zero when the provider saw any request during the
// authenticated load (the hot path must not call it), when a request
// failed, or when a login did not work. Performance targets are reported,
// not enforced: they depend on the machine. See docs/performance.md.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
)

type options struct {
	rounds           int
	duration         time.Duration
	concurrency      int
	warmup           time.Duration
	probe            time.Duration
	slice            time.Duration
	maxRequests      int
	groups           int
	loginDuration    time.Duration
	loginConcurrency int
	plainCookie      bool
	cpuprofile       string
	scenarios        map[string]bool
}

// Targets the project is measured against.
const (
	targetSmallRatio = 0.95
	targetLargeRatio = 0.90
	targetRedisRatio = 0.90
	targetAddedP99   = 0.2 // milliseconds
)

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "alternating rounds per target and scenario")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of one round of load")
	flag.IntVar(&o.concurrency, "concurrency", 32, "concurrent keep-alive connections of the load generator")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unrecorded load per target before the rounds")
	flag.DurationVar(&o.probe, "probe", time.Second, "per round and target, the latency probe on one connection (0: off)")
	flag.DurationVar(&o.slice, "slice", 500*time.Millisecond, "a round alternates the targets in slices this long")
	flag.IntVar(&o.maxRequests, "max-requests", 2_000_000, "upper bound of requests in one round")
	flag.IntVar(&o.groups, "groups", 300, "groups of the user in the large-session scenario")
	flag.DurationVar(&o.loginDuration, "login-duration", 3*time.Second, "length of the logins-per-second scenario (0: skip)")
	flag.IntVar(&o.loginConcurrency, "login-concurrency", 4, "concurrent browsers logging in")
	flag.BoolVar(&o.plainCookie, "plain-cookie", false, "send the session cookie to the plain site too (isolates authgate's CPU from the request's size)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the load rounds (the whole process) to this file")
	scenarios := flag.String("scenarios", "small,large,redis,logins", "which scenarios to run, comma-separated")
	flag.Parse()
	o.scenarios = map[string]bool{}
	for _, sc := range strings.Split(*scenarios, ",") {
		switch sc = strings.TrimSpace(sc); sc {
		case "small", "large", "redis", "logins":
			o.scenarios[sc] = true
		default:
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (small, large, redis, logins)\n", sc)
			os.Exit(2)
		}
	}
	if o.rounds < 1 || o.duration <= 0 || o.slice <= 0 || o.concurrency < 1 || o.maxRequests < 1 || o.loginConcurrency < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds, -duration, -slice, -concurrency, -max-requests and -login-concurrency must be positive")
		os.Exit(2)
	}
	os.Exit(run(o))
}

// failures collects what makes the run exit non-zero.
type failures []string

func (f *failures) add(format string, args ...any) { *f = append(*f, fmt.Sprintf(format, args...)) }

func run(o options) int {
	printMachine(o)
	st, err := startStack()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer st.stop()
	fmt.Printf("plain site:    %s  (reverse_proxy %s)\n", st.plainURL, st.backendAddr)
	fmt.Printf("authgate site: %s  (authgate + reverse_proxy %s; provider %s)\n", st.authURL, st.backendAddr, st.idp.Issuer())

	var fails failures
	loginRT := newTransport(o.loginConcurrency)

	// Allocation baseline: the generator and the backend alone.
	direct := newTarget("direct to backend", "http://"+st.backendAddr, "", o.concurrency)
	load(direct, o.warmup, o.concurrency, o.maxRequests)
	directRound := load(direct, o.duration, o.concurrency, o.maxRequests)
	if directRound.errors > 0 {
		fails.add("direct backend load: %d errors (%s)", directRound.errors, directRound.firstErr)
	}

	var prof *os.File
	if o.cpuprofile != "" {
		if prof, err = os.Create(o.cpuprofile); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	stopProfile := func() {
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
			fmt.Printf("\nCPU profile of the load rounds written to %s\n", o.cpuprofile)
			prof = nil
		}
	}
	defer stopProfile()

	providerDuringLoad := 0
	var results []scenarioResult

	// Scenario 1: small session.
	if o.scenarios["small"] {
		small, err := login(loginRT, st.authURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: login:", err)
			return 1
		}
		if len(small.names) != 1 {
			fails.add("small session: expected one cookie, got %v", small.names)
		}
		res := runScenario(o, st, "Scenario 1: small session", small, directRound, &providerDuringLoad, &fails)
		res.target = targetSmallRatio
		results = append(results, res)
	}

	// Scenario 2: large, chunked session.
	if o.scenarios["large"] {
		// Hex names compress poorly, like real group ids: the session
		// must need several cookies (sessions carry no access token when
		// no site passes it on, so repetitive names would fit one).
		groups := make([]any, o.groups)
		for i := range groups {
			sum := sha256.Sum256([]byte(fmt.Sprint(i)))
			groups[i] = "grp-" + hex.EncodeToString(sum[:8])
		}
		st.idp.SetUserClaims(benchUser, map[string]any{"groups": groups})
		large, err := login(loginRT, st.authURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: login with a large session:", err)
			return 1
		}
		if len(large.names) < 2 || large.size <= 4096 {
			fails.add("large session is not chunked over 4 KB: %s", large.describe())
		}
		res := runScenario(o, st, fmt.Sprintf("Scenario 2: large session (%d groups)", o.groups), large, directRound, &providerDuringLoad, &fails)
		res.target = targetLargeRatio
		results = append(results, res)
	}
	st.idp.SetUserClaims(benchUser, map[string]any{"groups": smallGroups})

	// Scenario 3: sessions in Redis (session_store): the cookie holds an id.
	if o.scenarios["redis"] {
		if st.redisURL == "" {
			fmt.Println("\nScenario 3 (session_store redis): skipped, redis-server is not installed (apt-get install -y redis-server)")
		} else {
			rs, err := loginAs(loginRT, st.redisURL, "_authgate_redis")
			if err != nil {
				fmt.Fprintln(os.Stderr, "bench: login with session_store:", err)
				return 1
			}
			res := runScenario(o, st, "Scenario 3: session_store redis (small session)", rs, directRound, &providerDuringLoad, &fails)
			res.target = targetRedisRatio
			results = append(results, res)
		}
	}
	stopProfile()

	fmt.Printf("\nprovider requests during authenticated load: %d\n", providerDuringLoad)
	if providerDuringLoad != 0 {
		fails.add("the provider saw %d requests during authenticated load; the hot path must make none", providerDuringLoad)
	}

	// Scenario 4: logins per second.
	var lr loginResult
	if o.scenarios["logins"] && o.loginDuration > 0 {
		lr = runLogins(o, st, loginRT)
		if lr.errors > 0 {
			fails.add("%d of %d logins failed (%s)", lr.errors, lr.errors+len(lr.lat), lr.firstErr)
		}
	}

	printSummary(o, results, lr, providerDuringLoad)
	fmt.Printf("  at the end: %s\n", loadAverage())
	if len(fails) > 0 {
		fmt.Println("\nFAILED:")
		for _, f := range fails {
			fmt.Println("  -", f)
		}
		return 1
	}
	return 0
}

func printMachine(o options) {
	simple, _ := caddy.Version()
	fmt.Println("authgate load benchmark")
	fmt.Printf("machine:  %s/%s, %d CPUs (%s), GOMAXPROCS %d, %s, Caddy %s\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), runtime.GOMAXPROCS(0), runtime.Version(), simple)
	fmt.Printf("load:     %s\n", loadAverage())
	fmt.Printf("method:   one process: load generator, Caddy, backend and provider share the CPUs, on 127.0.0.1\n")
	fmt.Printf("          %d keep-alive connections; %d rounds × %s per target, in alternating %s slices (+%s unrecorded warm-up);\n",
		o.concurrency, o.rounds, o.duration, min(o.slice, o.duration), o.warmup)
	if o.probe > 0 {
		fmt.Printf("          after each round a %s latency probe on 1 connection; figures are medians over rounds\n", o.probe)
	} else {
		fmt.Printf("          figures are medians over rounds\n")
	}
}

// loadAverage tells whether other work competed for the CPUs.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return fmt.Sprintf("load average %s %s %s (1, 5, 15 min; above %d means other processes compete for the CPUs)", f[0], f[1], f[2], runtime.NumCPU())
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "model unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "model unknown"
}

// scenarioResult holds what the summary needs of a scenario.
type scenarioResult struct {
	name        string
	target      float64
	ratio       float64
	cpuRatio    float64 // plain CPU per request / authgate CPU per request
	cpuAdded    float64 // µs
	addedP50    float64
	addedP99    float64
	probeP50    float64
	probeP99    float64
	hasProbe    bool
	authAllocs  float64
	plainAllocs float64
}

// runScenario loads the plain and the authgate site in rounds of
// alternating slices and prints the comparison.
func runScenario(o options, st *stack, title string, sess session, direct round, providerDuringLoad *int, fails *failures) scenarioResult {
	fmt.Printf("\n%s\n", title)
	fmt.Printf("  session: %s\n", sess.describe())
	plainCookie := ""
	if o.plainCookie {
		plainCookie = sess.header
		fmt.Printf("  the plain site gets the same Cookie header (-plain-cookie)\n")
	}
	plain := newTarget("plain reverse_proxy", st.plainURL, plainCookie, o.concurrency)
	auth := newTarget("authgate + reverse_proxy", sess.site, sess.header, o.concurrency)
	plainProbe := newTarget(plain.name, plain.url, plain.cookie, 1)
	authProbe := newTarget(auth.name, auth.url, auth.cookie, 1)

	providerBefore := st.providerRequests()
	identifiedBefore := st.identified.Load()

	load(plain, o.warmup, o.concurrency, o.maxRequests)
	load(auth, o.warmup, o.concurrency, o.maxRequests)
	var c, probes comparison
	// A round gives each target o.duration in slices that alternate
	// (plain, authgate, authgate, plain, ...), so that whatever else the
	// machine does during a round falls on both alike.
	nSlices := max(1, int(o.duration/o.slice))
	sliceLen := o.duration / time.Duration(nSlices)
	for i := 0; i < o.rounds; i++ {
		var pr, ar, pp, ap []round
		for k := 0; k < nSlices; k++ {
			order := []*target{plain, auth}
			if (i*nSlices+k)%2 == 1 {
				order = []*target{auth, plain}
			}
			for _, t := range order {
				r := load(t, sliceLen, o.concurrency, max(1, o.maxRequests/nSlices))
				if t == plain {
					pr = append(pr, r)
				} else {
					ar = append(ar, r)
				}
			}
		}
		c.plain = append(c.plain, merge(pr))
		c.auth = append(c.auth, merge(ar))
		if o.probe > 0 {
			probeSlices := max(1, int(o.probe/o.slice))
			probeLen := o.probe / time.Duration(probeSlices)
			for k := 0; k < probeSlices; k++ {
				if k%2 == 0 {
					pp = append(pp, load(plainProbe, probeLen, 1, o.maxRequests))
					ap = append(ap, load(authProbe, probeLen, 1, o.maxRequests))
				} else {
					ap = append(ap, load(authProbe, probeLen, 1, o.maxRequests))
					pp = append(pp, load(plainProbe, probeLen, 1, o.maxRequests))
				}
			}
			probes.plain = append(probes.plain, merge(pp))
			probes.auth = append(probes.auth, merge(ap))
		}
	}
	providerCalls := st.providerRequests() - providerBefore
	*providerDuringLoad += providerCalls

	_, authReqs := c.requests()
	_, authProbeReqs := probes.requests()
	identified := st.identified.Load() - identifiedBefore
	// Warm-up requests reached the backend too; at least every recorded
	// one must have come with an identity.
	if identified < int64(authReqs+authProbeReqs) {
		fails.add("%s: the backend saw %d identified requests for %d authenticated ones", title, identified, authReqs+authProbeReqs)
	}
	if n, first := c.errors(); n > 0 {
		fails.add("%s: %d failed requests (%s)", title, n, first)
	}
	if n, first := probes.errors(); n > 0 {
		fails.add("%s: %d failed probe requests (%s)", title, n, first)
	}

	res := scenarioResult{name: title}
	fmt.Printf("  %-26s %9s %8s %8s %7s %11s %11s %10s\n", "under load", "req/s", "p50 ms", "p99 ms", "errors", "CPU µs/req", "allocs/req", "bytes/req")
	row := func(name string, rs []round) (allocs float64) {
		errs := 0
		for _, r := range rs {
			errs += r.errors
		}
		allocs = median(c.each(rs, round.allocsPerReq))
		fmt.Printf("  %-26s %9.0f %8.3f %8.3f %7d %11.1f %11.1f %10.0f\n", name,
			median(c.each(rs, rps)), median(c.each(rs, p50)), median(c.each(rs, p99)), errs,
			median(c.each(rs, round.cpuPerReq)), allocs, median(c.each(rs, round.bytesPerReq)))
		return allocs
	}
	res.plainAllocs = row(plain.name, c.plain)
	res.authAllocs = row(auth.name, c.auth)
	res.ratio = median(c.paired(func(p, a round) float64 { return a.rps() / p.rps() }))
	if c.auth[0].cpu > 0 {
		res.cpuRatio = median(c.paired(func(p, a round) float64 { return p.cpuPerReq() / a.cpuPerReq() }))
		res.cpuAdded = median(c.paired(func(p, a round) float64 { return a.cpuPerReq() - p.cpuPerReq() }))
	}
	res.addedP50 = median(c.paired(func(p, a round) float64 { return p50(a) - p50(p) }))
	res.addedP99 = median(c.paired(func(p, a round) float64 { return p99(a) - p99(p) }))
	fmt.Printf("  throughput authgate/plain: %.3f×   (per round: %s)\n", res.ratio,
		joinFloats(c.paired(func(p, a round) float64 { return a.rps() / p.rps() }), "%.3f"))
	if res.cpuRatio > 0 {
		fmt.Printf("  CPU per request plain/authgate: %.3f×  (authgate adds %.1f µs of CPU per request, whole process)\n", res.cpuRatio, res.cpuAdded)
	}
	fmt.Printf("  added latency under load:  p50 %+.3f ms, p99 %+.3f ms\n", res.addedP50, res.addedP99)
	if o.probe > 0 {
		res.hasProbe = true
		res.probeP50 = median(probes.paired(func(p, a round) float64 { return p50(a) - p50(p) }))
		res.probeP99 = median(probes.paired(func(p, a round) float64 { return p99(a) - p99(p) }))
		fmt.Printf("  one connection:            plain p50 %.3f / p99 %.3f ms, authgate p50 %.3f / p99 %.3f ms → added p50 %+.3f ms, p99 %+.3f ms\n",
			median(probes.each(probes.plain, p50)), median(probes.each(probes.plain, p99)),
			median(probes.each(probes.auth, p50)), median(probes.each(probes.auth, p99)),
			res.probeP50, res.probeP99)
	}
	fmt.Printf("  allocations (whole process; generator + backend alone: %.1f allocs, %.0f bytes per request):\n",
		direct.allocsPerReq(), direct.bytesPerReq())
	fmt.Printf("    Caddy reverse_proxy ≈ %.1f allocs/req; authgate adds ≈ %.1f allocs, %.0f bytes per request\n",
		res.plainAllocs-direct.allocsPerReq(), res.authAllocs-res.plainAllocs,
		median(c.each(c.auth, round.bytesPerReq))-median(c.each(c.plain, round.bytesPerReq)))
	fmt.Printf("  provider requests during this load: %d\n", providerCalls)
	return res
}

func joinFloats(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, " ")
}

// loginResult is the outcome of the logins-per-second scenario.
type loginResult struct {
	lat      []time.Duration
	elapsed  time.Duration
	errors   int
	firstErr string
	provider int
}

// runLogins signs in over and over, each time as a new browser (fresh
// cookie jar), through authgate's start, the provider, the callback and on
// to the backend, from several browsers at once.
func runLogins(o options, st *stack, rt http.RoundTripper) loginResult {
	fmt.Printf("\nScenario 4: logins per second (%d browsers at once, fresh cookie jar per login, %s)\n", o.loginConcurrency, o.loginDuration)
	const maxLogins = 100_000
	var (
		mu      sync.Mutex
		res     loginResult
		started atomic.Int64
		wg      sync.WaitGroup
	)
	providerBefore := st.providerRequests()
	start := time.Now()
	deadline := start.Add(o.loginDuration)
	for w := 0; w < o.loginConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && started.Add(1) <= maxLogins {
				t0 := time.Now()
				_, err := login(rt, st.authURL)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					res.errors++
					if res.firstErr == "" {
						res.firstErr = err.Error()
					}
				} else {
					res.lat = append(res.lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.provider = st.providerRequests() - providerBefore
	r := round{requests: len(res.lat), elapsed: res.elapsed, lat: res.lat}
	slices.Sort(r.lat)
	fmt.Printf("  %d logins in %.2fs: %.1f logins/s, p50 %.2f ms, p99 %.2f ms, %d failed; provider requests %d (%.1f per login)\n",
		len(res.lat), res.elapsed.Seconds(), r.rps(), p50(r), p99(r), res.errors, res.provider,
		float64(res.provider)/float64(max(1, len(res.lat)+res.errors)))
	return res
}

func printSummary(o options, results []scenarioResult, lr loginResult, provider int) {
	fmt.Printf("\nSummary (medians over %d rounds; targets in brackets)\n", o.rounds)
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	for _, r := range results {
		fmt.Printf("  %-40s throughput %.3f× [≥ %.2f] %s", r.name, r.ratio, r.target, verdict(r.ratio >= r.target))
		if r.cpuRatio > 0 {
			fmt.Printf(" (by CPU per request %.3f× %s)", r.cpuRatio, verdict(r.cpuRatio >= r.target))
		}
		fmt.Printf("; added p99 under load %+.3f ms", r.addedP99)
		if r.hasProbe {
			fmt.Printf(", on one connection %+.3f ms [≤ %.1f] %s", r.probeP99, targetAddedP99, verdict(r.probeP99 <= targetAddedP99))
		}
		fmt.Println()
	}
	fmt.Printf("  provider requests during authenticated load: %d [0] %s\n", provider, verdict(provider == 0))
	if len(lr.lat) > 0 {
		r := round{requests: len(lr.lat), elapsed: lr.elapsed, lat: lr.lat}
		fmt.Printf("  logins: %.1f/s, p50 %.2f ms, p99 %.2f ms\n", r.rps(), p50(r), p99(r))
	}
}

// Command bench is authgate's load benchmark: `go run ./bench`.
//
// In one process it starts a backend, the test OpenID provider and one
// Caddy with these sites on loopback: a plain reverse_proxy to the
// backend; authgate in front of the same reverse_proxy; and "same bytes,
// no authgate", a stock reverse_proxy that drops the Cookie header and
// sets authgate's identity headers as static values, so that its requests
// carry the bytes authgate's carry, without authgate. It signs in through
// the authgate site for real (redirects, provider, callback), checks that
// the same-bytes site forwards what authgate forwards, then loads the
// three sites side by side in rounds and compares them:
//
//  1. a small session (one cookie);
//  2. a large session (about 300 groups, chunked cookies);
//  3. sessions in Redis (session_store), when redis-server is installed;
//  4. the large session's groups in Redis: what session_store buys users
//     with many groups (no target of its own);
//  5. logins per second through the whole flow, a fresh browser each;
//  6. storm: a refresh storm, -storm-sessions cookie sessions whose access
//     tokens expire at one instant, against the provider's token endpoint
//     driven alone;
//  7. storm-redis: the same with session_store on two instances (two
//     sites with gateways of their own) sharing one Redis;
//  8. large-1conn: the large session on one connection, hit path and miss
//     path;
//  9. many-users: -users distinct sessions, a different one (a cache miss)
//     on every request, against plain and same bytes, RSS before and
//     after; then a Zipf mix with its hit rate estimated;
//  10. assertion: the small session on a site with assertion_header
//     against the authgate site without it, each against its same-bytes
//     site: what the signed identity assertion costs in all, what its
//     header's bytes cost any gateway, and what is left for authgate.
//
// It ends with a summary and one machine-readable RESULT line per
// scenario. It exits non-zero when the provider saw any request during the
// authenticated load (the hot path must not call it), when a request
// failed, when a login or a scenario's setup did not work, when the
// same-bytes site does not forward the same headers as authgate, or when
// a storm did not refresh every session exactly once at the provider, or
// lost a session. Performance targets are reported, not enforced: they
// depend on the machine. -quick is a smoke run of everything. See
// docs/performance.md.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"maps"
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

	"github.com/authgate/caddy-authgate/internal/testidp"
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
	cpuprofile       string
	scenarios        map[string]bool

	stormSessions    int           // sessions of the refresh storms
	stormTurn        int           // requests per session and turn in the storms
	users            int           // sessions of the many-users scenario
	largeSessions    int           // sessions of the large session's miss path
	setupConcurrency int           // browsers logging in at once during setups
	setupLimit       time.Duration // the many-users logins' time limit
	zipfS            float64       // the many-users mix's Zipf exponent
}

// allScenarios are the scenarios, in the order they run.
var allScenarios = []string{"small", "large", "redis", "redis-large", "logins", "storm", "storm-redis", "large-1conn", "many-users", "assertion"}

// quickValues are -quick's settings: a smoke run of every scenario in
// about a minute. Flags given explicitly win.
var quickValues = map[string]string{
	"rounds": "1", "duration": "1s", "warmup": "200ms", "probe": "500ms", "login-duration": "1s",
	"storm-sessions": "200", "users": "3000", "large-sessions": "300",
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
	flag.IntVar(&o.rounds, "rounds", 5, "rounds per scenario, each loading every target")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of one round of load")
	flag.IntVar(&o.concurrency, "concurrency", 32, "concurrent keep-alive connections of the load generator")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unrecorded load per target before the rounds")
	flag.DurationVar(&o.probe, "probe", time.Second, "per round and target, the latency probe on one connection (0: off)")
	flag.DurationVar(&o.slice, "slice", 500*time.Millisecond, "a round rotates the targets in slices this long")
	flag.IntVar(&o.maxRequests, "max-requests", 2_000_000, "upper bound of requests in one round")
	flag.IntVar(&o.groups, "groups", 300, "groups of the user in the large-session scenario")
	flag.DurationVar(&o.loginDuration, "login-duration", 3*time.Second, "length of the logins-per-second scenario (0: skip)")
	flag.IntVar(&o.loginConcurrency, "login-concurrency", 4, "concurrent browsers logging in")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the load rounds (the whole process) to this file")
	flag.IntVar(&o.stormSessions, "storm-sessions", 2000, "sessions of the refresh storms, whose access tokens expire at one instant")
	flag.IntVar(&o.stormTurn, "storm-turn", 2, "requests the storm sends at once per session and turn, like a browser's page and resource (1: every request another session)")
	flag.IntVar(&o.users, "users", 100_000, "distinct sessions of the many-users scenario")
	flag.IntVar(&o.largeSessions, "large-sessions", 2000, "large sessions for the miss path on one connection (large-1conn)")
	flag.IntVar(&o.setupConcurrency, "setup-concurrency", 8, "browsers logging in at once while a scenario signs its sessions in")
	flag.DurationVar(&o.setupLimit, "setup-limit", 6*time.Minute, "time limit of the many-users logins")
	flag.Float64Var(&o.zipfS, "zipf-s", 1.1, "exponent of the many-users mix's Zipf distribution over the sessions (> 1)")
	quick := flag.Bool("quick", false, "a smoke run: "+quickSummary())
	scenarios := flag.String("scenarios", strings.Join(allScenarios, ","), "which scenarios to run, comma-separated")
	flag.Parse()
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range quickValues {
			if !set[name] {
				_ = flag.Set(name, v)
			}
		}
	}
	o.scenarios = map[string]bool{}
	for _, sc := range strings.Split(*scenarios, ",") {
		sc = strings.TrimSpace(sc)
		if !slices.Contains(allScenarios, sc) {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (%s)\n", sc, strings.Join(allScenarios, ", "))
			os.Exit(2)
		}
		o.scenarios[sc] = true
	}
	if o.rounds < 1 || o.duration <= 0 || o.slice <= 0 || o.concurrency < 1 || o.maxRequests < 1 || o.loginConcurrency < 1 ||
		o.stormSessions < 1 || o.stormTurn < 1 || o.users < 2 || o.largeSessions < 3+o.rounds || o.setupConcurrency < 1 || o.setupLimit <= 0 || o.zipfS <= 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds, -duration, -slice, -concurrency, -max-requests, -login-concurrency, -storm-sessions, -storm-turn, -setup-concurrency and -setup-limit must be positive, -users at least 2, -large-sessions at least 3 + -rounds, -zipf-s above 1")
		os.Exit(2)
	}
	os.Exit(run(o))
}

func quickSummary() string {
	names := slices.Sorted(maps.Keys(quickValues))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = "-" + n + " " + quickValues[n]
	}
	return strings.Join(parts, ", ") + " (flags given explicitly win)"
}

// largeGroups are the groups of the large-session scenario. Hex names
// compress poorly, like real group ids: the session must need several
// cookies (sessions carry no access token when no site passes it on, so
// repetitive names would fit one). They are deterministic, so that the
// same-bytes site can carry them from the start.
func largeGroups(n int) []string {
	groups := make([]string, n)
	for i := range groups {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		groups[i] = "grp-" + hex.EncodeToString(sum[:8])
	}
	return groups
}

// failures collects what makes the run exit non-zero.
type failures []string

func (f *failures) add(format string, args ...any) { *f = append(*f, fmt.Sprintf(format, args...)) }

func run(o options) int {
	printMachine(o)
	var groups []string // the large session's, known before Caddy starts
	if o.scenarios["large"] || o.scenarios["redis-large"] || o.scenarios["large-1conn"] {
		groups = largeGroups(o.groups)
	}
	st, err := startStack(stackConfig{
		largeGroups: groups,
		storm:       o.scenarios["storm"] || o.scenarios["storm-redis"],
		users:       o.scenarios["many-users"],
		largeOne:    o.scenarios["large-1conn"],
		assertion:   o.scenarios["assertion"],
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer st.stop()
	fmt.Printf("plain site:      %s  (reverse_proxy %s)\n", st.plainURL, st.backendAddr)
	fmt.Printf("authgate site:   %s  (authgate + reverse_proxy %s; provider %s)\n", st.authURL, st.backendAddr, st.idp.Issuer())
	if st.redisURL != "" {
		fmt.Printf("redis site:      %s  (authgate with session_store redis + reverse_proxy %s)\n", st.redisURL, st.backendAddr)
	}
	fmt.Printf("same-bytes site: %s  (reverse_proxy %s, header_up -Cookie and the small session's identity headers, static)\n", st.sameSmallURL, st.backendAddr)
	if st.sameLargeURL != "" {
		fmt.Printf("same-bytes site: %s  (the same with the large session's %d groups)\n", st.sameLargeURL, len(groups))
	}
	if st.stormURL != "" {
		fmt.Printf("storm sites:     %s  (authgate, own gateway, cookie sessions; provider %s: ES256, rotating refresh tokens)\n", st.stormURL, st.stormIdp.Issuer())
		for i, u := range st.stormRedisURLs {
			fmt.Printf("                 %s  (instance %c: authgate, own gateway, session_store redis, shared Redis)\n", u, 'A'+i)
		}
	}
	if st.usersURL != "" {
		fmt.Printf("many-users:      %s  (logins; authgate, own gateway; provider %s, ES256), load to %s (own gateway)\n", st.usersLoginURL, st.usersIdp.Issuer(), st.usersURL)
	}
	if st.largeOneURL != "" {
		fmt.Printf("large-1conn:     %s  (authgate like the authgate site, own gateway)\n", st.largeOneURL)
	}
	if st.assertionURL != "" {
		fmt.Printf("assertion site:  %s  (authgate with assertion_header + reverse_proxy %s, the authgate site's gateway)\n", st.assertionURL, st.backendAddr)
	}

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
		res := runScenario(o, st, "Scenario 1: small session", small, st.sameSmallURL, directRound, &providerDuringLoad, &fails)
		res.target, res.key = targetSmallRatio, "small"
		results = append(results, res)
	}

	// Scenario 2: large, chunked session.
	if o.scenarios["large"] {
		st.idp.SetUserClaims(benchUser, map[string]any{"groups": groupsClaim(groups)})
		large, err := login(loginRT, st.authURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: login with a large session:", err)
			return 1
		}
		if len(large.names) < 2 || large.size <= 4096 {
			fails.add("large session is not chunked over 4 KB: %s", large.describe())
		}
		res := runScenario(o, st, fmt.Sprintf("Scenario 2: large session (%d groups)", o.groups), large, st.sameLargeURL, directRound, &providerDuringLoad, &fails)
		res.target, res.key = targetLargeRatio, "large"
		results = append(results, res)
	}
	st.idp.SetUserClaims(benchUser, map[string]any{"groups": groupsClaim(smallGroups)})

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
			res := runScenario(o, st, "Scenario 3: session_store redis (small session)", rs, st.sameSmallURL, directRound, &providerDuringLoad, &fails)
			res.target, res.key = targetRedisRatio, "redis"
			results = append(results, res)
		}
	}

	// Scenario 4: the large session's groups with session_store: the
	// cookie holds an id, the groups stay server-side. No target of its
	// own: it shows what the advice for users with many groups buys.
	if o.scenarios["redis-large"] && st.redisURL == "" {
		fmt.Println("\nScenario 4 (session_store redis, large session): skipped, redis-server is not installed")
	}
	if o.scenarios["redis-large"] && st.redisURL != "" {
		st.idp.SetUserClaims(benchUser, map[string]any{"groups": groupsClaim(groups)})
		rs, err := loginAs(loginRT, st.redisURL, "_authgate_redis")
		st.idp.SetUserClaims(benchUser, map[string]any{"groups": groupsClaim(smallGroups)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: login with session_store and a large session:", err)
			return 1
		}
		res := runScenario(o, st, fmt.Sprintf("Scenario 4: session_store redis, large session (%d groups)", o.groups), rs, st.sameLargeURL, directRound, &providerDuringLoad, &fails)
		res.key = "redis-large"
		results = append(results, res)
	}

	// Scenario 10: the signed identity assertion's cost, on the small
	// session (run with the authenticated loads: the provider must see
	// nothing here either).
	var assertion *assertionResult
	if o.scenarios["assertion"] {
		sess, err := login(loginRT, st.authURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: login for the assertion scenario:", err)
			return 1
		}
		r := runAssertion(o, st, sess, &providerDuringLoad, &fails)
		assertion = &r
	}
	stopProfile()

	fmt.Printf("\nprovider requests during authenticated load: %d\n", providerDuringLoad)
	if providerDuringLoad != 0 {
		fails.add("the provider saw %d requests during authenticated load; the hot path must make none", providerDuringLoad)
	}

	// Scenario 5: logins per second.
	var lr loginResult
	if o.scenarios["logins"] && o.loginDuration > 0 {
		lr = runLogins(o, st, loginRT)
		if lr.errors > 0 {
			fails.add("%d of %d logins failed (%s)", lr.errors, lr.errors+len(lr.lat), lr.firstErr)
		}
	}

	// The refresh storms: correctness is enforced, performance reported.
	var storms []stormResult
	if o.scenarios["storm"] {
		r := runStorm(o, st, stormSpec{
			name: "storm", cookie: stormCookie, sites: []string{st.stormURL},
			title: fmt.Sprintf("Scenario 6: refresh storm, cookie sessions (%d sessions, %d connections, turns of %d requests per session)", o.stormSessions, o.concurrency, o.stormTurn),
		})
		fails = append(fails, r.correct()...)
		storms = append(storms, r)
	}
	if o.scenarios["storm-redis"] {
		if len(st.stormRedisURLs) < 2 {
			fmt.Println("\nScenario 7 (refresh storm, session_store redis): skipped, redis-server is not installed")
			fmt.Println("RESULT scenario=storm-redis skipped=redis-server-not-installed")
			if os.Getenv("AUTHGATE_REQUIRE_REDIS") == "1" {
				fails = append(fails, "storm-redis: redis-server is not installed (AUTHGATE_REQUIRE_REDIS=1)")
			}
		} else {
			r := runStorm(o, st, stormSpec{
				name: "storm-redis", cookie: stormRedisCookie, sites: st.stormRedisURLs, redis: true,
				title: fmt.Sprintf("Scenario 7: refresh storm, session_store redis, two instances (%d sessions, %d connections, turns of %d requests per session)", o.stormSessions, o.concurrency, o.stormTurn),
			})
			fails = append(fails, r.correct()...)
			storms = append(storms, r)
		}
	}

	var large1 *largeOneResult
	if o.scenarios["large-1conn"] {
		r := runLargeOne(o, st, groups, &fails)
		if r.setupErr != "" {
			fails.add("large-1conn: setup failed: %s", r.setupErr)
		}
		large1 = &r
	}

	var users *usersResult
	if o.scenarios["many-users"] {
		r := runUsers(o, st, directRound, &fails)
		if r.setupErr != "" {
			fails.add("many-users: setup failed: %s", r.setupErr)
		}
		users = &r
	}

	printSummary(o, results, lr, providerDuringLoad)
	printNewSummary(storms, large1, users)
	if r := assertion; r != nil && r.setupErr == "" {
		fmt.Printf("  %-40s on/off throughput %.3f×, %+.1f µs CPU per request, of which the header's bytes %+.1f µs and authgate's own %+.1f µs [no target: see BenchmarkHandlerAuthenticatedAssertion]\n",
			"assertion", r.onOff.throughput, r.onOff.cpuAdded, r.bytes.cpuAdded, r.ownAdded)
	}
	fmt.Printf("  at the end: %s\n", loadAverage())
	fmt.Println()
	for _, l := range resultLines(o, results, lr, storms, large1, users) {
		fmt.Println(l)
	}
	if assertion != nil {
		fmt.Println(assertion.resultLine())
	}
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
	fmt.Printf("          three targets per scenario: plain reverse_proxy (no cookie); authgate + reverse_proxy (the session cookie);\n")
	fmt.Printf("          same bytes, no authgate: reverse_proxy with header_up -Cookie and authgate's identity headers as static\n")
	fmt.Printf("          values, sent the same Cookie header (checked before each scenario: it forwards what authgate forwards)\n")
	fmt.Printf("          %d keep-alive connections; %d rounds × %s per target, in %s slices whose order rotates (+%s unrecorded warm-up);\n",
		o.concurrency, o.rounds, o.duration, min(o.slice, o.duration), o.warmup)
	if o.probe > 0 {
		fmt.Printf("          after each round a %s latency probe per target on 1 connection; figures are medians over rounds,\n", o.probe)
	} else {
		fmt.Printf("          figures are medians over rounds,\n")
	}
	fmt.Printf("          ratios medians of per-round ratios\n")
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

// The targets of a scenario, in the order of comparison.rounds.
const (
	tPlain = iota // plain reverse_proxy, no cookie
	tAuth         // authgate + reverse_proxy, the session cookie
	tSame         // same bytes, no authgate: the cookie, static identity headers
	nTargets
)

// ratio is one comparison of two targets, num over den.
type ratio struct {
	throughput float64 // median of per-round req/s num / req/s den
	cpu        float64 // median of per-round CPU per request den / num: < 1 means num costs more
	cpuAdded   float64 // median of per-round CPU per request num − den, µs
	perRound   []float64
}

func compare(c *comparison, num, den int) ratio {
	r := ratio{perRound: c.paired(num, den, func(n, d round) float64 { return n.rps() / d.rps() })}
	r.throughput = median(r.perRound)
	if len(c.rounds[num]) > 0 && c.rounds[num][0].cpu > 0 {
		r.cpu = median(c.paired(num, den, func(n, d round) float64 { return d.cpuPerReq() / n.cpuPerReq() }))
		r.cpuAdded = median(c.paired(num, den, func(n, d round) float64 { return n.cpuPerReq() - d.cpuPerReq() }))
	}
	return r
}

// scenarioResult holds what the summary needs of a scenario.
type scenarioResult struct {
	name   string
	target float64
	// authPlain is authgate/plain, the measure of the targets; authSame
	// is authgate/same-bytes, authgate's own cost; samePlain is
	// same-bytes/plain, what the bytes alone cost.
	authPlain, authSame, samePlain ratio
	addedP50, addedP99             float64
	probeP50, probeP99             float64 // authgate − plain on one connection
	probeOwnP99                    float64 // authgate − same bytes on one connection
	hasProbe                       bool
	providerCalls                  int
	key                            string  // RESULT scenario name
	authCPU                        float64 // authgate's CPU per request, µs (whole process)
}

// runScenario loads the plain, the authgate and the same-bytes site in
// rounds of rotating slices and prints the comparison. sameURL is the
// same-bytes site for this session's identity.
func runScenario(o options, st *stack, title string, sess session, sameURL string, direct round, providerDuringLoad *int, fails *failures) scenarioResult {
	fmt.Printf("\n%s\n", title)
	fmt.Printf("  session: %s\n", sess.describe())
	targets := make([]*target, nTargets)
	targets[tPlain] = newTarget("plain reverse_proxy", st.plainURL, "", o.concurrency)
	targets[tAuth] = newTarget("authgate + reverse_proxy", sess.site, sess.header, o.concurrency)
	targets[tSame] = newTarget("same bytes, no authgate", sameURL, sess.header, o.concurrency)
	probeTargets := make([]*target, nTargets)
	for i, t := range targets {
		probeTargets[i] = newTarget(t.name, t.url, t.cookie, 1)
	}

	return compareTargets(o, st, title, sess.site, targets, probeTargets, st.idp, direct, providerDuringLoad, fails)
}

// compareTargets checks that the same-bytes target forwards what the
// authgate target forwards, then loads the targets (tPlain, tAuth, tSame)
// in rounds of rotating slices, and the probe targets on one connection
// after each round when probeTargets is not nil, and prints the
// comparison. site is the authgate site (its identified requests are
// counted); idp is its provider, which must see no request meanwhile.
func compareTargets(o options, st *stack, title, site string, targets, probeTargets []*target, idp *testidp.Server, direct round, providerDuringLoad *int, fails *failures) scenarioResult {
	if err := checkSameBytes(targets[tPlain], targets[tAuth], targets[tSame]); err != nil {
		fmt.Printf("  %v\n", err)
		fails.add("%s: %v", title, err)
	}

	providerBefore := providerRequests(idp)
	identifiedBefore := st.identifiedAt(site)

	for _, t := range targets {
		load(t, o.warmup, o.concurrency, o.maxRequests)
	}
	c, probes := newComparison(nTargets), newComparison(nTargets)
	// A round gives each target o.duration in slices; the order of the
	// targets rotates from slice to slice (plain, authgate, same bytes;
	// authgate, same bytes, plain; ...), so that whatever else the
	// machine does during a round falls on all alike.
	nSlices := max(1, int(o.duration/o.slice))
	sliceLen := o.duration / time.Duration(nSlices)
	probeSlices := max(1, int(o.probe/o.slice))
	probeLen := o.probe / time.Duration(probeSlices)
	for i := 0; i < o.rounds; i++ {
		parts := make([][]round, nTargets)
		for k := 0; k < nSlices; k++ {
			for _, t := range rotation(nTargets, i*nSlices+k) {
				parts[t] = append(parts[t], load(targets[t], sliceLen, o.concurrency, max(1, o.maxRequests/nSlices)))
			}
		}
		c.add(mergeEach(parts))
		if o.probe > 0 && probeTargets != nil {
			parts := make([][]round, nTargets)
			for k := 0; k < probeSlices; k++ {
				for _, t := range rotation(nTargets, i*probeSlices+k) {
					parts[t] = append(parts[t], load(probeTargets[t], probeLen, 1, o.maxRequests))
				}
			}
			probes.add(mergeEach(parts))
		}
	}
	providerCalls := providerRequests(idp) - providerBefore
	*providerDuringLoad += providerCalls

	authReqs := c.requests(tAuth) + probes.requests(tAuth)
	identified := st.identifiedAt(site) - identifiedBefore
	// Warm-up requests reached the backend too; at least every recorded
	// one must have come with an identity. Counted for the authgate site
	// alone (by X-Forwarded-Host): the same-bytes site's carry one too.
	if identified < int64(authReqs) {
		fails.add("%s: the backend saw %d identified requests through the authgate site for %d authenticated ones", title, identified, authReqs)
	}
	if n, first := c.errors(); n > 0 {
		fails.add("%s: %d failed requests (%s)", title, n, first)
	}
	if n, first := probes.errors(); n > 0 {
		fails.add("%s: %d failed probe requests (%s)", title, n, first)
	}

	res := scenarioResult{name: title, providerCalls: providerCalls}
	fmt.Printf("  %-26s %9s %8s %8s %7s %11s %11s %10s\n", "under load", "req/s", "p50 ms", "p99 ms", "errors", "CPU µs/req", "allocs/req", "bytes/req")
	allocs := make([]float64, nTargets)
	allocBytes := make([]float64, nTargets)
	for t, tg := range targets {
		errs := 0
		for _, r := range c.rounds[t] {
			errs += r.errors
		}
		allocs[t] = median(c.each(t, round.allocsPerReq))
		allocBytes[t] = median(c.each(t, round.bytesPerReq))
		fmt.Printf("  %-26s %9.0f %8.3f %8.3f %7d %11.1f %11.1f %10.0f\n", tg.name,
			median(c.each(t, rps)), median(c.each(t, p50)), median(c.each(t, p99)), errs,
			median(c.each(t, round.cpuPerReq)), allocs[t], allocBytes[t])
	}
	res.authCPU = median(c.each(tAuth, round.cpuPerReq))
	res.authPlain = compare(c, tAuth, tPlain)
	res.authSame = compare(c, tAuth, tSame)
	res.samePlain = compare(c, tSame, tPlain)
	fmt.Printf("  %-46s %10s %9s %11s   %s\n", "ratios (medians of per-round ratios)", "throughput", "by CPU", "CPU added", "throughput per round")
	for _, r := range []struct {
		name string
		r    ratio
	}{
		{"authgate/plain", res.authPlain},
		{"authgate/same-bytes: authgate's own cost", res.authSame},
		{"same-bytes/plain: what the bytes alone cost", res.samePlain},
	} {
		cpu, added := "", ""
		if r.r.cpu > 0 {
			cpu, added = fmt.Sprintf("%.3f×", r.r.cpu), fmt.Sprintf("%+.1f µs", r.r.cpuAdded)
		}
		fmt.Printf("  %-46s %9.3f× %9s %11s   %s\n", r.name, r.r.throughput, cpu, added, joinFloats(r.r.perRound, "%.3f"))
	}
	fmt.Printf("    (same-bytes/plain is the best any gateway carrying this cookie and these headers can do; \"by CPU\" is the\n")
	fmt.Printf("    denominator's CPU per request over the numerator's, whole process, so that below 1 means costlier, like throughput)\n")
	res.addedP50 = median(c.paired(tAuth, tPlain, func(a, p round) float64 { return p50(a) - p50(p) }))
	res.addedP99 = median(c.paired(tAuth, tPlain, func(a, p round) float64 { return p99(a) - p99(p) }))
	fmt.Printf("  added latency under load:  authgate − plain p50 %+.3f ms, p99 %+.3f ms; authgate − same bytes p50 %+.3f ms, p99 %+.3f ms\n",
		res.addedP50, res.addedP99,
		median(c.paired(tAuth, tSame, func(a, s round) float64 { return p50(a) - p50(s) })),
		median(c.paired(tAuth, tSame, func(a, s round) float64 { return p99(a) - p99(s) })))
	if o.probe > 0 && probeTargets != nil {
		res.hasProbe = true
		res.probeP50 = median(probes.paired(tAuth, tPlain, func(a, p round) float64 { return p50(a) - p50(p) }))
		res.probeP99 = median(probes.paired(tAuth, tPlain, func(a, p round) float64 { return p99(a) - p99(p) }))
		res.probeOwnP99 = median(probes.paired(tAuth, tSame, func(a, s round) float64 { return p99(a) - p99(s) }))
		fmt.Printf("  one connection:            plain p50 %.3f / p99 %.3f ms, authgate p50 %.3f / p99 %.3f ms, same bytes p50 %.3f / p99 %.3f ms\n",
			median(probes.each(tPlain, p50)), median(probes.each(tPlain, p99)),
			median(probes.each(tAuth, p50)), median(probes.each(tAuth, p99)),
			median(probes.each(tSame, p50)), median(probes.each(tSame, p99)))
		fmt.Printf("                             authgate − plain p50 %+.3f ms, p99 %+.3f ms; authgate − same bytes p50 %+.3f ms, p99 %+.3f ms\n",
			res.probeP50, res.probeP99,
			median(probes.paired(tAuth, tSame, func(a, s round) float64 { return p50(a) - p50(s) })), res.probeOwnP99)
	}
	fmt.Printf("  allocations (whole process; generator + backend alone: %.1f allocs, %.0f bytes per request):\n",
		direct.allocsPerReq(), direct.bytesPerReq())
	fmt.Printf("    Caddy reverse_proxy ≈ %.1f allocs/req; the bytes (same bytes − plain) add ≈ %.1f allocs, %.0f bytes;\n",
		allocs[tPlain]-direct.allocsPerReq(), allocs[tSame]-allocs[tPlain], allocBytes[tSame]-allocBytes[tPlain])
	fmt.Printf("    authgate (authgate − same bytes) adds ≈ %.1f allocs, %.0f bytes per request\n",
		allocs[tAuth]-allocs[tSame], allocBytes[tAuth]-allocBytes[tSame])
	fmt.Printf("  provider requests during this load: %d\n", providerCalls)
	return res
}

// mergeEach merges each target's slices into its round.
func mergeEach(parts [][]round) []round {
	out := make([]round, len(parts))
	for t, p := range parts {
		out[t] = merge(p)
	}
	return out
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
	fmt.Printf("\nScenario 5: logins per second (%d browsers at once, fresh cookie jar per login, %s)\n", o.loginConcurrency, o.loginDuration)
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
	fmt.Printf("\nSummary (medians over %d rounds; targets in brackets, judged on authgate/plain)\n", o.rounds)
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	both := func(r ratio) string {
		if r.cpu > 0 {
			return fmt.Sprintf("%.3f× (by CPU %.3f×)", r.throughput, r.cpu)
		}
		return fmt.Sprintf("%.3f×", r.throughput)
	}
	for _, r := range results {
		if r.target > 0 {
			fmt.Printf("  %-40s throughput %.3f× [≥ %.2f] %s", r.name, r.authPlain.throughput, r.target, verdict(r.authPlain.throughput >= r.target))
			if r.authPlain.cpu > 0 {
				fmt.Printf(" (by CPU per request %.3f× %s)", r.authPlain.cpu, verdict(r.authPlain.cpu >= r.target))
			}
		} else {
			fmt.Printf("  %-40s throughput %s [no target]", r.name, both(r.authPlain))
		}
		fmt.Printf("; added p99 under load %+.3f ms", r.addedP99)
		if r.hasProbe {
			fmt.Printf(", on one connection %+.3f ms [≤ %.1f] %s", r.probeP99, targetAddedP99, verdict(r.probeP99 <= targetAddedP99))
		}
		fmt.Println()
		fmt.Printf("  %-40s the bytes alone, same-bytes/plain %s; authgate's own cost, authgate/same-bytes %s", "", both(r.samePlain), both(r.authSame))
		if r.hasProbe {
			fmt.Printf("; p99 on one connection authgate − same bytes %+.3f ms", r.probeOwnP99)
		}
		fmt.Println()
	}
	fmt.Printf("  provider requests during authenticated load: %d [0] %s\n", provider, verdict(provider == 0))
	if len(lr.lat) > 0 {
		r := round{requests: len(lr.lat), elapsed: lr.elapsed, lat: lr.lat}
		fmt.Printf("  logins: %.1f/s, p50 %.2f ms, p99 %.2f ms\n", r.rps(), p50(r), p99(r))
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// refreshSkew is the storm sites' refresh_skew: a session is refreshed from
// this long before its access token expires. Shorter than the default 30s
// so that a storm's tokens, which must live twice as long to fall due at
// one instant, keep the run short.
const refreshSkew = 5 * time.Second

// stormTail is how long the generator goes on after every session was
// refreshed.
const stormTail = 300 * time.Millisecond

// stormSpec is one refresh-storm scenario.
type stormSpec struct {
	name   string   // RESULT scenario name
	title  string   //
	sites  []string // the instances: of a session's two requests per turn, one goes to each (both to the one)
	cookie string   // the session cookie's name
	redis  bool     // session_store: refreshed sessions come back with no Set-Cookie
	// beforeLoad, when set, runs after the setup, just before the load
	// (tests use it to make the provider misbehave during the storm).
	beforeLoad func()
}

// stormRequest is one request of the storm's generator.
type stormRequest struct {
	start     time.Duration // since the generator started
	lat       time.Duration
	session   int32
	status    int16
	ok        bool // the backend's 200
	refreshed bool // the response carried new session cookies
	lost      bool // sign in again: 401, a redirect, or the session cookies deleted
}

type stormResult struct {
	spec        stormSpec
	n           int
	concurrency int
	turn        int
	setupErr    string

	limit      providerLimit
	calibrated int
	calibRate  float64
	setup      time.Duration // the n logins
	expiry     time.Time     // the access tokens' expiry at the provider
	due        time.Time     // when authgate refreshes them

	requests  int
	refreshes int // provider refresh requests, storm and check after it
	failed    int
	firstFail string
	lost      int // sessions
	firstLost string
	stale     int // cookie sessions not on a new cookie after the storm

	stormSeconds float64 // due → the n-th refresh at the provider
	waveSeconds  float64 // due → the last refresh of the first wave
	wave, late   int     // refreshes in the first wave, and after it
	stormRPS     float64 // wave / waveSeconds
	jarSeconds   float64 // cookie sessions: due → the last browser on its new cookie

	before, during round
	maxDuring      time.Duration
}

// countPoint is the provider's refresh counter at a time of the storm.
type countPoint struct {
	at time.Duration // since the generator started
	n  int           // refreshes since the storm's base
}

// runStorm measures the provider alone, signs n sessions in with access
// tokens that all expire at one instant, and loads them through it.
func runStorm(o options, st *stack, spec stormSpec) stormResult {
	n := o.stormSessions
	res := stormResult{spec: spec, n: n, concurrency: o.concurrency, turn: o.stormTurn}
	idp := st.stormIdp
	fmt.Printf("\n%s\n", spec.title)
	fail := func(format string, args ...any) stormResult {
		res.setupErr = fmt.Sprintf(format, args...)
		fmt.Printf("  setup failed: %s\n", res.setupErr)
		return res
	}

	// The limit: the provider's token endpoint alone, at the same
	// concurrency, with as many refreshes as the storm will make.
	pc := newProviderClient(idp, "storm", st.stormSecret, spec.sites[0]+"/oauth2/callback", o.concurrency)
	lim, err := measureProviderLimit(pc, n, o.concurrency)
	pc.client.CloseIdleConnections()
	res.limit = lim
	if err != nil {
		return fail("the provider alone: %v", err)
	}
	fmt.Printf("  provider alone:  %d grants in %.2fs (not measured); then %d refreshes on %d connections in %.2fs: %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms (counted %d)\n",
		n, lim.grants.Seconds(), n, o.concurrency, lim.elapsed.Seconds(), lim.rps, p50(lim.lat), p99(lim.lat), ms(lim.lat.percentile(1)), lim.counted)

	// How fast logins go, to date the expiry so that every login is done
	// before any session falls due.
	res.calibrated = min(max(n/20, 10), 100)
	_, d, err := loginMany(spec.sites[0], spec.cookie, res.calibrated, o.setupConcurrency, time.Minute)
	if err != nil {
		return fail("calibration logins: %v", err)
	}
	res.calibRate = float64(res.calibrated) / d.Seconds()
	budget := time.Duration(2*float64(n)/res.calibRate*float64(time.Second)) + 2*time.Second
	before := o.duration
	// A whole second: the provider says expires_in in whole seconds
	// (rounded down) and authgate dates it on arrival and keeps whole
	// seconds, so that almost every session's expiry is the second before
	// it, and all fall due at one instant. authgate refreshes a token at
	// most half its lifetime before expiry: every login's token must live
	// at least twice refreshSkew, or sessions fall due one by one, each
	// half its own lifetime early.
	res.expiry = time.Unix(time.Now().Add(budget+max(before+refreshSkew, 2*refreshSkew)+time.Second).Unix()+1, 0)
	res.due = res.expiry.Add(-time.Second - refreshSkew)

	base := idp.Count("token:refresh_token")
	idp.SetAccessTokenExpiry(res.expiry)
	sessions, setup, err := loginMany(spec.sites[0], spec.cookie, n, o.setupConcurrency, budget)
	idp.SetAccessTokenExpiry(time.Time{}) // refreshed tokens live 24 hours
	res.setup = setup
	if err != nil {
		return fail("logins: %v", err)
	}
	if c := idp.Count("token:refresh_token"); c != base {
		return fail("%d refreshes during the logins: a session fell due too early", c-base)
	}
	fmt.Printf("  setup:           %d logins through %s in %.2fs (%.0f/s, %d at once; calibration: %d logins at %.0f/s)\n",
		n, spec.sites[0], setup.Seconds(), float64(n)/setup.Seconds(), o.setupConcurrency, res.calibrated, res.calibRate)
	fmt.Printf("                   access tokens expire at %s; authgate refreshes from %s (refresh_skew %s, expires_in in whole seconds)\n",
		res.expiry.Format("15:04:05"), res.due.Format("15:04:05.000"), refreshSkew)
	jars := make([]*jar, n)
	for i, s := range sessions {
		jars[i] = newJar(s, spec.cookie)
	}
	sessions = nil
	if wait := time.Until(res.due.Add(-before)); wait > 0 {
		time.Sleep(wait)
	}

	if spec.beforeLoad != nil {
		spec.beforeLoad()
	}
	var reqs []stormRequest
	var points []countPoint
	var genStart time.Time
	profile(o, spec.name, func() { reqs, points, genStart = stormLoad(o, st, spec, jars, base, res.due) })
	dueAt := res.due.Sub(genStart)
	res.requests = len(reqs)

	// Every session once more on every instance: each must be served on
	// its cookie as it now is, without a refresh (a session not refreshed
	// in the storm would be refreshed now, and counted).
	check := checkSessions(o, spec, jars)
	res.refreshes = idp.Count("token:refresh_token") - base

	// The refresh timeline. A session whose token response crossed a
	// second boundary between the provider and authgate has its expiry
	// dated a second later, and falls due a second after the others. When
	// the storm is over before that second and refreshes resume after a
	// quiet spell, those are late, not part of the storm: the first wave
	// ends before them.
	var waveEnd, allAt time.Duration
	res.wave = 0
	lateDue := dueAt + time.Second
	for _, p := range points {
		if p.n >= n && allAt == 0 {
			allAt = p.at
		}
	}
	inWave := 0
	var lastInWave time.Duration
	for _, p := range points {
		if p.at < lateDue {
			inWave, lastInWave = p.n, p.at
		}
	}
	if last := len(points) - 1; last >= 0 {
		if inWave > 0 && inWave < points[last].n && lateDue-lastInWave >= 200*time.Millisecond {
			res.wave, waveEnd = inWave, lastInWave
		} else {
			res.wave, waveEnd = points[last].n, points[last].at
		}
	}
	res.late = max(0, min(res.refreshes, n)-res.wave)
	res.waveSeconds = (waveEnd - dueAt).Seconds()
	if res.wave > 0 && res.waveSeconds > 0 {
		res.stormRPS = float64(res.wave) / res.waveSeconds
	}
	if allAt > 0 {
		res.stormSeconds = (allAt - dueAt).Seconds()
	}

	// Requests done before the due instant, and the others begun by the
	// end of the first wave.
	lostSessions := map[int32]bool{}
	firstNew := make([]time.Duration, n)
	var beforeLat, duringLat []time.Duration
	for _, r := range reqs {
		switch {
		case r.start+r.lat < dueAt:
			beforeLat = append(beforeLat, r.lat)
		case r.start <= waveEnd:
			duringLat = append(duringLat, r.lat)
			res.maxDuring = max(res.maxDuring, r.lat)
		}
		if !r.ok {
			res.failed++
			if res.firstFail == "" {
				res.firstFail = fmt.Sprintf("status %d at +%.3fs", r.status, (r.start - dueAt).Seconds())
			}
		}
		if r.lost && !lostSessions[r.session] {
			lostSessions[r.session] = true
			if res.firstLost == "" {
				res.firstLost = fmt.Sprintf("session %d, status %d at +%.3fs", r.session, r.status, (r.start - dueAt).Seconds())
			}
		}
		if r.refreshed && firstNew[r.session] == 0 {
			firstNew[r.session] = r.start + r.lat
		}
	}
	res.failed += check.failed
	if res.firstFail == "" {
		res.firstFail = check.firstFail
	}
	for s := range check.lost {
		lostSessions[s] = true
	}
	if res.firstLost == "" {
		res.firstLost = check.firstLost
	}
	res.lost = len(lostSessions)
	if !spec.redis {
		var last time.Duration
		for s, t := range firstNew {
			if t == 0 {
				check.stale[int32(s)] = true // never got a new cookie in the storm
			}
			last = max(last, t)
		}
		if last > 0 {
			res.jarSeconds = (last - dueAt).Seconds()
		}
		res.stale = len(check.stale)
	}
	slices.Sort(beforeLat)
	slices.Sort(duringLat)
	res.before = round{requests: len(beforeLat), lat: beforeLat}
	res.during = round{requests: len(duringLat), lat: duringLat}

	printStorm(res)
	return res
}

// stormLoad sends requests that rotate through the sessions,
// o.stormTurn at once per session and turn (2: a page and a resource, as
// a browser sends them; with two instances, one to each), from
// o.concurrency connections, from now until every
// session has been refreshed (and stormTail more), or a time or count
// limit. Each browser keeps its cookies from the responses. A poller
// records the provider's refresh counter meanwhile.
func stormLoad(o options, st *stack, spec stormSpec, jars []*jar, base int, due time.Time) ([]stormRequest, []countPoint, time.Time) {
	n := len(jars)
	idp := st.stormIdp
	rt := newTransport(o.concurrency)
	defer rt.CloseIdleConnections()
	client := &http.Client{
		Transport:     rt,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// Bounded: at most this long after the due instant, and o.maxRequests.
	deadline := due.Add(20*time.Second + time.Duration(n)*10*time.Millisecond)
	var (
		next     atomic.Int64
		done     atomic.Bool
		newJars  atomic.Int64 // cookie sessions that got a new cookie
		lostJars atomic.Int64 // sessions lost: they will get none
		mu       sync.Mutex
		all      []stormRequest
		points   []countPoint
		wg       sync.WaitGroup
		pollDone = make(chan struct{})
	)
	seen := make([]atomic.Bool, n)
	gone := make([]atomic.Bool, n)
	start := time.Now()

	go func() { // the poller
		defer close(pollDone)
		last := 0
		var allAt time.Time
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for !done.Load() {
			<-tick.C
			now := time.Now()
			c := idp.Count("token:refresh_token") - base
			if c != last {
				points = append(points, countPoint{at: now.Sub(start), n: c})
				last = c
			}
			if allAt.IsZero() && c >= n && (spec.redis || newJars.Load()+lostJars.Load() >= int64(n)) {
				allAt = now
			}
			if (!allAt.IsZero() && now.Sub(allAt) >= stormTail) || now.After(deadline) {
				done.Store(true)
			}
		}
	}()

	for range o.concurrency {
		wg.Add(1)
		go pprof.Do(context.Background(), pprof.Labels("role", "loadgen"), func(context.Context) {
			defer wg.Done()
			recs := make([]stormRequest, 0, 4096)
			buf := make([]byte, 4096)
			for !done.Load() {
				k := next.Add(1) - 1
				if k >= int64(o.maxRequests) {
					break
				}
				// The k-th request: session s's request pos of its turn in
				// pass; over a turn, and from pass to pass, a session's
				// requests go round the instances.
				turn := int64(o.stormTurn)
				s := int((k / turn) % int64(n))
				pass, pos := k/(turn*int64(n)), k%turn
				site := spec.sites[int((pos+int64(s)+pass)%int64(len(spec.sites)))]
				j := jars[s]
				req, _ := http.NewRequest(http.MethodGet, site+"/app/home", nil)
				req.Header.Set("User-Agent", "authgate-bench")
				req.Header.Set("Accept", "*/*")
				req.Header.Set("Cookie", j.get())
				t0 := time.Now()
				resp, err := client.Do(req)
				r := stormRequest{start: t0.Sub(start), session: int32(s)}
				if err != nil {
					r.lat = time.Since(t0)
					recs = append(recs, r)
					continue
				}
				nb, _ := io.CopyBuffer(discard{}, io.LimitReader(resp.Body, 1<<20), buf)
				resp.Body.Close()
				now := time.Now()
				r.lat = now.Sub(t0)
				r.status = int16(resp.StatusCode)
				r.ok = resp.StatusCode == http.StatusOK && nb == int64(len(backendBody))
				changed, alive := j.update(resp, now)
				r.refreshed = changed && alive
				r.lost = !alive || resp.StatusCode == http.StatusUnauthorized || (resp.StatusCode >= 300 && resp.StatusCode < 400)
				// Only refreshes set session cookies here (requests in
				// flight at the due instant may be refreshed too).
				if r.refreshed && !seen[s].Swap(true) && !gone[s].Load() {
					newJars.Add(1)
				}
				if r.lost && !gone[s].Swap(true) && !seen[s].Load() {
					lostJars.Add(1)
				}
				recs = append(recs, r)
			}
			mu.Lock()
			all = append(all, recs...)
			mu.Unlock()
		})
	}
	wg.Wait()
	done.Store(true)
	<-pollDone
	sort.Slice(all, func(a, b int) bool { return all[a].start < all[b].start })
	return all, points, start
}

// sessionCheck is the outcome of checkSessions.
type sessionCheck struct {
	failed    int
	firstFail string
	lost      map[int32]bool
	firstLost string
	stale     map[int32]bool // cookie sessions answered with yet another cookie
}

// checkSessions sends every session's cookie, as its browser now has it,
// once to every instance.
func checkSessions(o options, spec stormSpec, jars []*jar) sessionCheck {
	rt := newTransport(o.concurrency)
	defer rt.CloseIdleConnections()
	client := &http.Client{
		Transport:     rt,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var mu sync.Mutex
	res := sessionCheck{lost: map[int32]bool{}, stale: map[int32]bool{}}
	note := func(s int, stale, failed, lost bool, what string) {
		mu.Lock()
		defer mu.Unlock()
		if stale {
			res.stale[int32(s)] = true
		}
		if failed {
			res.failed++
			if res.firstFail == "" {
				res.firstFail = "after the storm: " + what
			}
		}
		if lost {
			res.lost[int32(s)] = true
			if res.firstLost == "" {
				res.firstLost = fmt.Sprintf("session %d after the storm: %s", s, what)
			}
		}
	}
	_ = parallel(len(jars)*len(spec.sites), o.concurrency, time.Minute, func(i int) error {
		s, site := i/len(spec.sites), spec.sites[i%len(spec.sites)]
		j := jars[s]
		req, _ := http.NewRequest(http.MethodGet, site+"/app/home", nil)
		req.Header.Set("Cookie", j.get())
		resp, err := client.Do(req)
		if err != nil {
			note(s, false, true, false, err.Error())
			return nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		changed, alive := j.update(resp, time.Now())
		ok := resp.StatusCode == http.StatusOK && string(body) == string(backendBody)
		lost := !alive || resp.StatusCode == http.StatusUnauthorized || (resp.StatusCode >= 300 && resp.StatusCode < 400)
		note(s, changed && alive, !ok, lost, fmt.Sprintf("%s: status %d", strings.TrimPrefix(site, "http://"), resp.StatusCode))
		return nil
	})
	return res
}

// stormVerdicts are the storm's performance targets (reported, not
// enforced): refreshes per second at least 0.8 of the provider's alone,
// and no request waiting longer than the provider's own p99 + 10 ms.
func (r stormResult) ratio() float64 {
	if r.limit.rps == 0 {
		return 0
	}
	return r.stormRPS / r.limit.rps
}

func (r stormResult) waitLimit() float64 { return p99(r.limit.lat) + 10 }

// correct reports the storm's correctness conditions: every session
// refreshed exactly once, no failed request, no session lost.
func (r stormResult) correct() []string {
	var out []string
	if r.setupErr != "" {
		return []string{r.spec.name + ": setup failed: " + r.setupErr}
	}
	if r.refreshes != r.n {
		out = append(out, fmt.Sprintf("%s: the provider received %d refresh requests for %d sessions (one each, none repeated)", r.spec.name, r.refreshes, r.n))
	}
	if r.failed > 0 {
		out = append(out, fmt.Sprintf("%s: %d failed requests (%s)", r.spec.name, r.failed, r.firstFail))
	}
	if r.lost > 0 {
		out = append(out, fmt.Sprintf("%s: %d sessions lost (%s)", r.spec.name, r.lost, r.firstLost))
	}
	if r.stale > 0 {
		out = append(out, fmt.Sprintf("%s: %d sessions not on a new cookie after the storm", r.spec.name, r.stale))
	}
	return out
}

func printStorm(r stormResult) {
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	fmt.Printf("  before the storm: %d requests, p50 %.3f ms, p99 %.3f ms\n", r.before.requests, p50(r.before), p99(r.before))
	fmt.Printf("  the storm:       %d refresh requests at the provider for %d sessions; the first wave %d in %.3fs from the due instant (%.0f/s)",
		r.refreshes, r.n, r.wave, r.waveSeconds, r.stormRPS)
	if r.late > 0 {
		fmt.Printf(", %d later (expiry dated a second later)", r.late)
	}
	fmt.Printf("; all refreshed at +%.3fs\n", r.stormSeconds)
	if !r.spec.redis {
		fmt.Printf("                   every browser on its new cookie at +%.3fs\n", r.jarSeconds)
	}
	fmt.Printf("  during the storm: %d requests, p50 %.3f ms, p99 %.3f ms, longest %.2f ms\n",
		r.during.requests, p50(r.during), p99(r.during), ms(r.maxDuring))
	fmt.Printf("  correctness:     %d requests in all, %d failed, %d sessions lost", r.requests, r.failed, r.lost)
	if !r.spec.redis {
		fmt.Printf(", %d not on a new cookie", r.stale)
	}
	fmt.Println()
	fmt.Printf("  targets:         storm/provider %.3f× [≥ 0.80] %s; longest wait %.2f ms [≤ provider p99 + 10 = %.2f ms] %s\n",
		r.ratio(), verdict(r.ratio() >= 0.8), ms(r.maxDuring), r.waitLimit(), verdict(ms(r.maxDuring) <= r.waitLimit()))
}

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// target is one site under load.
type target struct {
	name   string
	url    string
	cookie string // Cookie header, or ""
	// seq, when set, gives every request a Cookie header of its own in
	// turn (many sessions); cookie is then only the echo check's.
	seq    *cookieSeq
	client *http.Client
}

// cookieSeq hands out Cookie headers in turn, safe for concurrent use:
// headers[order[k]] for the k-th request, or headers[k] without order,
// wrapping around at the end.
type cookieSeq struct {
	headers []string
	order   []int32 // nil: 0, 1, 2, ...
	next    atomic.Int64
}

func newCookieSeq(headers []string, order []int32) *cookieSeq {
	return &cookieSeq{headers: headers, order: order}
}

// take returns the next Cookie header.
func (c *cookieSeq) take() string {
	k := c.next.Add(1) - 1
	if c.order != nil {
		return c.headers[c.order[k%int64(len(c.order))]]
	}
	return c.headers[k%int64(len(c.headers))]
}

// taken is how many headers were handed out.
func (c *cookieSeq) taken() int64 { return c.next.Load() }

// newTransport is the load generator's keep-alive transport: one idle
// connection kept per worker, so that the steady state opens none.
//
// WriteBufferSize makes each request one write. Go's default write buffer
// is 4 KiB: a request carrying 6 KB of session cookies would leave in two
// writes, and the server would wake up twice to read it. A browser sends
// a request's headers at once, and so does this generator.
func newTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * concurrency,
		MaxIdleConnsPerHost: concurrency,
		MaxConnsPerHost:     concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     64 << 10,
	}
}

func newTarget(name, url, cookie string, concurrency int) *target {
	return &target{
		name:   name,
		url:    url,
		cookie: cookie,
		client: &http.Client{
			Transport: newTransport(concurrency),
			Timeout:   10 * time.Second,
			// A redirect means "not signed in": count it as an error
			// rather than follow it to the provider.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// newRequest is the generator's GET of path on t, with t's Cookie header.
func (t *target) newRequest(path string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, t.url+path, nil)
	req.Header.Set("User-Agent", "authgate-bench")
	req.Header.Set("Accept", "*/*")
	if t.cookie != "" {
		req.Header.Set("Cookie", t.cookie)
	}
	return req
}

// round is the outcome of loading one target for a while.
type round struct {
	requests int
	errors   int
	firstErr string
	elapsed  time.Duration
	lat      []time.Duration // sorted
	mallocs  uint64          // heap allocations in the whole process
	bytes    uint64          // heap bytes allocated in the whole process
	cpu      time.Duration   // CPU time of the whole process; 0: unknown
}

func (r round) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r round) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(p * float64(len(r.lat)-1))
	return r.lat[i]
}

// cpuPerReq is the process's CPU time per request, in microseconds.
func (r round) cpuPerReq() float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(r.cpu) / float64(time.Microsecond) / float64(r.requests)
}

func (r round) allocsPerReq() float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(r.mallocs) / float64(r.requests)
}

func (r round) bytesPerReq() float64 {
	if r.requests == 0 {
		return 0
	}
	return float64(r.bytes) / float64(r.requests)
}

// load sends GET requests to t from concurrency workers, each on its own
// keep-alive connection, for d or until maxRequests were sent. Every
// response must be the backend's 200; anything else is counted as an error.
// The heap is collected before the round so that rounds start alike, and
// allocation counters are read around it (the whole process: generator,
// Caddy, backend).
func load(t *target, d time.Duration, concurrency, maxRequests int) round {
	lats := make([][]time.Duration, concurrency)
	for i := range lats {
		lats[i] = make([]time.Duration, 0, 4096)
	}
	reqs := make([]*http.Request, concurrency)
	for i := range reqs {
		reqs[i] = t.newRequest("/app/home")
	}
	var (
		sent     atomic.Int64
		errs     atomic.Int64
		errOnce  sync.Once
		firstErr string
		wg       sync.WaitGroup
	)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpuBefore, cpuOK := processCPU()
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go pprof.Do(context.Background(), pprof.Labels("role", "loadgen"), func(context.Context) {
			defer wg.Done()
			req := reqs[w]
			lat := lats[w]
			buf := make([]byte, 4096)
			var slot []string // the request's Cookie header, set per request
			if t.seq != nil {
				slot = []string{""}
				req.Header["Cookie"] = slot
			}
			for time.Now().Before(deadline) && sent.Add(1) <= int64(maxRequests) {
				if slot != nil {
					slot[0] = t.seq.take()
				}
				t0 := time.Now()
				resp, err := t.client.Do(req)
				if err != nil {
					errs.Add(1)
					errOnce.Do(func() { firstErr = err.Error() })
					continue
				}
				n, _ := io.CopyBuffer(discard{}, resp.Body, buf)
				resp.Body.Close()
				lat = append(lat, time.Since(t0))
				if resp.StatusCode != http.StatusOK || n != int64(len(backendBody)) {
					errs.Add(1)
					errOnce.Do(func() { firstErr = fmt.Sprintf("status %d, %d body bytes", resp.StatusCode, n) })
				}
			}
			lats[w] = lat
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpuAfter, _ := processCPU()
	runtime.ReadMemStats(&after)
	var cpu time.Duration
	if cpuOK {
		cpu = cpuAfter - cpuBefore
	}

	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	return round{
		requests: len(all),
		errors:   int(errs.Load()),
		firstErr: firstErr,
		elapsed:  elapsed,
		lat:      all,
		mallocs:  after.Mallocs - before.Mallocs,
		bytes:    after.TotalAlloc - before.TotalAlloc,
		cpu:      cpu,
	}
}

// merge adds up slices of one round.
func merge(rs []round) round {
	var m round
	for _, r := range rs {
		m.requests += r.requests
		m.errors += r.errors
		if m.firstErr == "" {
			m.firstErr = r.firstErr
		}
		m.elapsed += r.elapsed
		m.lat = append(m.lat, r.lat...)
		m.mallocs += r.mallocs
		m.bytes += r.bytes
		m.cpu += r.cpu
	}
	slices.Sort(m.lat)
	return m
}

// discard is io.Discard without its ReaderFrom, so that the worker's own
// buffer is used and reading a body allocates nothing.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// median of xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// comparison is a series of rounds of several targets loaded side by
// side: rounds[t][i] is target t's round i.
type comparison struct {
	rounds [][]round
}

func newComparison(targets int) *comparison {
	return &comparison{rounds: make([][]round, targets)}
}

// add appends one round: a round per target, in target order.
func (c *comparison) add(rs []round) {
	for t, r := range rs {
		c.rounds[t] = append(c.rounds[t], r)
	}
}

// each applies f to target t's rounds.
func (c *comparison) each(t int, f func(round) float64) []float64 {
	out := make([]float64, len(c.rounds[t]))
	for i, r := range c.rounds[t] {
		out[i] = f(r)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func p50(r round) float64 { return ms(r.percentile(0.50)) }
func p99(r round) float64 { return ms(r.percentile(0.99)) }
func rps(r round) float64 { return r.rps() }

// paired applies f to the rounds of targets a and b that ran side by side,
// round by round.
func (c *comparison) paired(a, b int, f func(a, b round) float64) []float64 {
	out := make([]float64, 0, len(c.rounds[a]))
	for i := range c.rounds[a] {
		out = append(out, f(c.rounds[a][i], c.rounds[b][i]))
	}
	return out
}

func (c *comparison) errors() (n int, first string) {
	for _, rs := range c.rounds {
		for _, r := range rs {
			n += r.errors
			if first == "" {
				first = r.firstErr
			}
		}
	}
	return n, first
}

// requests is target t's number of recorded requests.
func (c *comparison) requests(t int) int {
	n := 0
	for _, r := range c.rounds[t] {
		n += r.requests
	}
	return n
}

// rotation is the order of n targets in slice k: 0, 1, ..., n-1 rotated
// by k, so that over n consecutive slices each target takes each place
// once and whatever else the machine does falls on all alike.
func rotation(n, k int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = (k + i) % n
	}
	return order
}

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
	client *http.Client
}

// newTransport is the load generator's keep-alive transport: one idle
// connection kept per worker, so that the steady state opens none.
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
		req, _ := http.NewRequest(http.MethodGet, t.url+"/app/home", nil)
		req.Header.Set("User-Agent", "authgate-bench")
		req.Header.Set("Accept", "*/*")
		if t.cookie != "" {
			req.Header.Set("Cookie", t.cookie)
		}
		reqs[i] = req
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
			for time.Now().Before(deadline) && sent.Add(1) <= int64(maxRequests) {
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

// comparison is a series of alternating rounds of two targets.
type comparison struct {
	plain, auth []round
}

func (c comparison) each(rs []round, f func(round) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func p50(r round) float64 { return ms(r.percentile(0.50)) }
func p99(r round) float64 { return ms(r.percentile(0.99)) }
func rps(r round) float64 { return r.rps() }

// paired applies f to each pair of rounds run next to each other.
func (c comparison) paired(f func(plain, auth round) float64) []float64 {
	out := make([]float64, 0, len(c.auth))
	for i := range c.auth {
		out = append(out, f(c.plain[i], c.auth[i]))
	}
	return out
}

func (c comparison) errors() (n int, first string) {
	for _, r := range append(slices.Clone(c.plain), c.auth...) {
		n += r.errors
		if first == "" {
			first = r.firstErr
		}
	}
	return n, first
}

func (c comparison) requests() (plain, auth int) {
	for _, r := range c.plain {
		plain += r.requests
	}
	for _, r := range c.auth {
		auth += r.requests
	}
	return plain, auth
}

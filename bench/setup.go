package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// loginMany signs n browsers in through site for real (loginAs: a fresh
// cookie jar each, the whole redirect flow), concurrency at a time. It
// gives up at the first failed login or when limit has passed, and
// returns the sessions and how long it took.
func loginMany(site, cookieName string, n, concurrency int, limit time.Duration) ([]session, time.Duration, error) {
	rt := newTransport(concurrency)
	defer rt.CloseIdleConnections()
	sessions := make([]session, n)
	start := time.Now()
	err := parallel(n, concurrency, limit, func(i int) error {
		s, err := loginAs(rt, site, cookieName)
		if err != nil {
			return fmt.Errorf("login %d of %d: %w", i+1, n, err)
		}
		sessions[i] = s
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		return nil, elapsed, err
	}
	return sessions, elapsed, nil
}

// headersOf is the sessions' Cookie headers.
func headersOf(sessions []session) []string {
	out := make([]string, len(sessions))
	for i, s := range sessions {
		out[i] = s.header
	}
	return out
}

// rssMB is the process's resident set (VmRSS, Linux) in MiB after a
// collection that also returns freed memory to the OS
// (debug.FreeOSMemory), so that it counts what is live, not what the heap
// once reached; 0 where /proc is missing.
func rssMB() float64 {
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) >= 1 {
				kb, err := strconv.ParseFloat(fields[0], 64)
				if err == nil {
					return kb / 1024
				}
			}
		}
	}
	return 0
}

// jar is one browser's cookies for one site: what a browser would send
// back, updated from every response's Set-Cookie. Safe for concurrent
// use: a browser sends several requests at once.
type jar struct {
	mu      sync.Mutex
	name    string            // the session cookie's name
	cookies map[string]string // session cookie and chunks: name → value
	header  string            // the Cookie header they make
	// updated is when a response last changed the session cookies; zero
	// until then.
	updated time.Time
	updates int
}

func newJar(s session, name string) *jar {
	j := &jar{name: name, cookies: map[string]string{}, header: s.header}
	for _, part := range strings.Split(s.header, "; ") {
		if k, v, ok := strings.Cut(part, "="); ok {
			j.cookies[k] = v
		}
	}
	return j
}

// get returns the Cookie header to send.
func (j *jar) get() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.header
}

// update applies a response's Set-Cookie headers to the session cookies,
// as a browser does (a cookie with Max-Age < 0 or an expiry in the past is
// deleted). It reports whether they changed and whether any session
// cookie is left.
func (j *jar) update(resp *http.Response, now time.Time) (changed, alive bool) {
	cs := resp.Cookies()
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range cs {
		if c.Name != j.name && !isChunkName(j.name, c.Name) {
			continue
		}
		changed = true
		if c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(now)) {
			delete(j.cookies, c.Name)
		} else {
			j.cookies[c.Name] = c.Value
		}
	}
	if changed {
		j.updated = now
		j.updates++
		j.rebuild()
	}
	return changed, j.cookies[j.name] != "" || j.cookies[j.name+"_0"] != ""
}

// rebuild makes the Cookie header: the single cookie, or the chunks in
// order.
func (j *jar) rebuild() {
	if v, ok := j.cookies[j.name]; ok {
		j.header = j.name + "=" + v
		return
	}
	var parts []string
	for i := 0; ; i++ {
		n := j.name + "_" + strconv.Itoa(i)
		v, ok := j.cookies[n]
		if !ok {
			break
		}
		parts = append(parts, n+"="+v)
	}
	j.header = strings.Join(parts, "; ")
}

// state returns when the session cookies last changed and how often.
func (j *jar) state() (time.Time, int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.updated, j.updates
}

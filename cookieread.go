package authgate

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sessionCookie is the session a request's Cookie headers carry: one
// cookie, or numbered chunks that joined make the value.
type sessionCookie struct {
	base  string // the configured name, by which cookies are ours
	name  string // the name the session was read under
	parts [maxCookieChunks]string
	n     int // parts in use; 0: no session
	// seen: some session cookie or chunk was present, usable or not.
	seen bool
	// legacy: the session was read under the name before the __Host-
	// prefix, there being none under the prefixed name: rewrite it.
	legacy bool
	// dup: two different values arrived for one session cookie name, or
	// a whole cookie beside chunks (a cookie planted by a sibling
	// subdomain, with a longer Path or a Domain): parts is one of them,
	// and sessionCandidates has them all.
	dup bool
	// others: the headers also carry cookies that are not authgate's, so
	// stripping ours means rewriting the header rather than dropping it.
	others bool
	// ours: some cookie in the headers is authgate's (by stripCookies'
	// rule).
	ours bool
	// kept are those other cookies as stripCookies keeps them, nKept of
	// them (-1: more than maxKeptCookies), keptLen their length joined:
	// the Cookie header for the backend, without scanning the session's
	// kilobytes a second time.
	kept    [maxKeptCookies]string
	nKept   int
	keptLen int
	// checkedAt is when sessionFor checked the session's lifetime: later
	// steps of the same request use it rather than read the clock again.
	checkedAt time.Time
}

// maxKeptCookies is how many other cookies sessionCookie remembers.
const maxKeptCookies = 16

// keep notes a part of the Cookie header that is not authgate's by the
// scan's rule; stripCookies trims it and drops it if it is ours by its
// rule, and so does keep.
func (sc *sessionCookie) keep(part string) {
	p := strings.TrimSpace(part)
	if p == "" {
		return
	}
	sc.others = true
	if name, _, _ := strings.Cut(p, "="); isOurCookie(name, sc.base) {
		sc.ours = true
		return
	}
	if sc.nKept < 0 {
		return
	}
	if sc.nKept == maxKeptCookies {
		sc.nKept = -1
		return
	}
	if sc.nKept > 0 {
		sc.keptLen += len("; ")
	}
	sc.kept[sc.nKept] = p
	sc.nKept++
	sc.keptLen += len(p)
}

// othersHeader is the Cookie header without authgate's cookies, as
// stripCookies makes it; ok is false when there were too many to keep.
func (sc *sessionCookie) othersHeader() (h string, ok bool) {
	if sc.nKept < 0 {
		return "", false
	}
	var b strings.Builder
	b.Grow(sc.keptLen)
	for i, p := range sc.kept[:sc.nKept] {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String(), true
}

// isOurCookie reports whether a cookie name is authgate's: the session,
// a chunk, a pending login, under base or base with the __Host- prefix.
func isOurCookie(name, base string) bool {
	if sessionRest(name, base) {
		return true
	}
	rest, ok := strings.CutPrefix(name, hostPrefix)
	return ok && sessionRest(rest, base)
}

// sessionRest reports whether name is base or base_something.
func sessionRest(name, base string) bool {
	return strings.HasPrefix(name, base) && (len(name) == len(base) || name[len(base)] == '_')
}

func (sc *sessionCookie) pieces() []string { return sc.parts[:sc.n] }

// value joins the parts.
func (sc *sessionCookie) value() string { return strings.Join(sc.pieces(), "") }

// valid reports whether every part holds only cookie-octets.
func (sc *sessionCookie) valid() bool {
	for _, p := range sc.pieces() {
		if !cookieOctets(p) {
			return false
		}
	}
	return true
}

// readCookies scans the Cookie headers itself rather than through
// r.Cookies(), which parses and validates every cookie of the site on
// every request: only authgate's own cookies are looked at, and values are
// not copied. Values are checked by the MAC, not here; strict checks that
// they are cookie-octets, and collects the names of the session cookies.
// cs is as forRequest makes it: its Name is the session's, and a session
// under its legacy name is taken only when there is none under Name.
func readCookies(r *http.Request, cs cookieSettings, strict bool) (sc sessionCookie, present []string) {
	sc.base, sc.name = orDefault(cs.legacy, cs.Name), cs.Name
	var single string
	var chunks [maxCookieChunks]string
	nChunks := 0
	legacySeen := false
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " ")
			name, val, ok := strings.Cut(part, "=")
			if !isOurCookie(name, sc.base) {
				sc.keep(part)
				continue
			}
			sc.ours = true
			if !ok {
				continue
			}
			val = strings.TrimRight(val, " ")
			if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if strict && !cookieOctets(val) {
				continue // as net/http would: not a cookie
			}
			i := chunkIndex(name, cs.Name)
			if i == notSession {
				if cs.legacy != "" && chunkIndex(name, cs.legacy) != notSession {
					legacySeen = true
					if strict {
						present = append(present, name)
					}
				}
				continue // a pending login, or not a chunk
			}
			sc.seen = true
			if strict {
				present = append(present, name)
			}
			if val == "" {
				continue // an empty copy hides no other
			}
			if i == wholeCookie {
				sc.dup = sc.dup || single != "" && single != val
				single = val
				continue
			}
			if chunks[i] == "" {
				nChunks++
			} else if chunks[i] != val {
				sc.dup = true
			}
			chunks[i] = val
		}
	}
	if single != "" {
		sc.parts[0], sc.n = single, 1
		sc.dup = sc.dup || chunks[0] != ""
		return sc, present
	}
	if nChunks == 0 || chunks[0] == "" {
		if legacySeen {
			old, _ := readCookies(r, cookieSettings{Name: cs.legacy}, strict)
			sc.parts, sc.n, sc.dup, sc.name = old.parts, old.n, old.dup, old.name
			sc.seen, sc.legacy = true, true
		}
		return sc, present
	}
	for sc.n < maxCookieChunks && chunks[sc.n] != "" {
		sc.n++
	}
	sc.parts = chunks
	return sc, present
}

// What chunkIndex finds besides a chunk's number.
const (
	wholeCookie = -1 // the session in one cookie
	notSession  = -2 // another cookie: a pending login, an odd number
)

// chunkIndex says whether name is the session cookie base, one of its
// chunks (which), or neither.
func chunkIndex(name, base string) int {
	if !sessionRest(name, base) {
		return notSession
	}
	if len(name) == len(base) {
		return wholeCookie
	}
	rest := name[len(base)+1:]
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || i >= maxCookieChunks || strconv.Itoa(i) != rest {
		return notSession
	}
	return i
}

// maxSessionCandidates bounds how many sessions one request's duplicated
// cookies are tried as.
const maxSessionCandidates = 4

// sessionCandidates reads the sessions sc's name stands for in r, as
// net/http would read the cookies, when they arrived more than once
// (sc.dup): each whole cookie and each run of chunks, in the order the
// browser sent them (longest Path first, then oldest first: a planted set
// comes before or after ours, each in chunk order). A run is a chunk 0 and
// the chunks 1, 2, ... that follow it in that order; a chunk that does not
// continue the run it follows belongs to none. Chunks of two sessions are
// never taken apart and put together again differently (and a run that
// did join two would fail the MAC).
func sessionCandidates(r *http.Request, sc *sessionCookie) []sessionCookie {
	out := make([]sessionCookie, 0, maxSessionCandidates)
	run := -1 // the candidate being continued, or -1
	for _, c := range r.Cookies() {
		i := chunkIndex(c.Name, sc.name)
		switch {
		case i == notSession || c.Value == "" || !cookieOctets(c.Value):
			continue // net/http takes some bytes the strict read does not
		case i == wholeCookie || i == 0:
			run = -1
			if len(out) == maxSessionCandidates {
				continue
			}
			out = append(out, sessionCookie{base: sc.base, name: sc.name, legacy: sc.legacy, seen: true, n: 1})
			out[len(out)-1].parts[0] = c.Value
			if i == 0 {
				run = len(out) - 1
			}
		case run >= 0 && out[run].n == i:
			out[run].parts[i] = c.Value
			out[run].n++
		default:
			run = -1 // out of order: of no run
		}
	}
	return out
}

// cookieOctets reports whether v holds only RFC 6265 cookie-octets, as
// net/http requires of a cookie value.
func cookieOctets(v string) bool {
	for i := 0; i < len(v); i++ {
		if !cookieOctet[v[i]] {
			return false
		}
	}
	return true
}

// cookieOctet says which bytes are cookie-octets: a table, since a cache
// miss checks every byte of the cookie.
var cookieOctet = func() (t [256]bool) {
	for c := 0x21; c <= 0x7e; c++ {
		t[c] = c != '"' && c != ',' && c != ';' && c != '\\'
	}
	return t
}()

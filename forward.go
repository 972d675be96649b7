package authgate

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// HeaderNames are the names of the identity headers. Each is removed from
// the client's request before authgate sets it, so a client cannot forge
// it; the default names are removed too when others are configured. The
// name "off" sends no such header.
type HeaderNames struct {
	// User carries the user id. Default: X-Forwarded-User.
	User string `json:"user,omitempty"`
	// Email. Default: X-Forwarded-Email.
	Email string `json:"email,omitempty"`
	// PreferredUsername. Default: X-Forwarded-Preferred-Username.
	PreferredUsername string `json:"preferred_username,omitempty"`
	// Groups, comma-separated, each percent-encoded where it holds a
	// comma, a percent sign, a control character or whitespace at either
	// end (headerlist.go). Default: X-Forwarded-Groups.
	Groups string `json:"groups,omitempty"`
	// AccessToken, sent only with pass_access_token. Default:
	// X-Forwarded-Access-Token.
	AccessToken string `json:"access_token,omitempty"`
}

var defaultHeaders = HeaderNames{
	User:              "X-Forwarded-User",
	Email:             "X-Forwarded-Email",
	PreferredUsername: "X-Forwarded-Preferred-Username",
	Groups:            "X-Forwarded-Groups",
	AccessToken:       "X-Forwarded-Access-Token",
}

type claimHeader struct {
	name string
	path claimPath
}

// forwarder hands a signed-in request's identity to the backend: it
// removes the client's copies of the identity headers, then sets them,
// the placeholders, and drops the session cookies.
type forwarder struct {
	headers      HeaderNames // resolved: defaults filled in, "" for off
	claimHeaders []claimHeader
	// strip names every header a client must not send: the identity
	// headers under their configured and default names, claim headers.
	strip []string
	// guard names the headers a client must not list in its Connection
	// header: those in strip and the site's assertion header.
	guard           []string
	passAccessToken bool
	// forwardAuthAccessToken lets copyIdentity put the access token in
	// forward-auth answers.
	forwardAuthAccessToken bool
	passCookie             bool
	cookieName             string
	callbackPath           string
}

func newForwarder(names HeaderNames, claimHeaders map[string]string, passAccessToken, passCookie bool, cookieName, prefix string) (*forwarder, error) {
	f := &forwarder{
		passAccessToken: passAccessToken,
		passCookie:      passCookie,
		cookieName:      cookieName,
		callbackPath:    prefix + "callback",
	}
	h := &f.headers
	h.User = orDefault(names.User, defaultHeaders.User)
	h.Email = orDefault(names.Email, defaultHeaders.Email)
	h.PreferredUsername = orDefault(names.PreferredUsername, defaultHeaders.PreferredUsername)
	h.Groups = orDefault(names.Groups, defaultHeaders.Groups)
	h.AccessToken = orDefault(names.AccessToken, defaultHeaders.AccessToken)
	for name, path := range claimHeaders {
		p, err := parseClaimPath(path)
		if err != nil {
			return nil, fmt.Errorf("claim header %s: %w", name, err)
		}
		f.claimHeaders = append(f.claimHeaders, claimHeader{name: http.CanonicalHeaderKey(name), path: p})
	}
	slices.SortFunc(f.claimHeaders, func(a, b claimHeader) int { return strings.Compare(a.name, b.name) })
	for _, n := range []string{
		defaultHeaders.User, defaultHeaders.Email, defaultHeaders.PreferredUsername, defaultHeaders.Groups, defaultHeaders.AccessToken,
		h.User, h.Email, h.PreferredUsername, h.Groups, h.AccessToken,
	} {
		n = http.CanonicalHeaderKey(n)
		if !slices.Contains(f.strip, n) {
			f.strip = append(f.strip, n)
		}
	}
	for _, ch := range f.claimHeaders {
		if !slices.Contains(f.strip, ch.name) {
			f.strip = append(f.strip, ch.name)
		}
	}
	// "off" sends no such header (the client's copy is still removed).
	for _, name := range []*string{&h.User, &h.Email, &h.PreferredUsername, &h.Groups, &h.AccessToken} {
		if strings.EqualFold(*name, "off") {
			*name = ""
		}
	}
	f.strip = slices.DeleteFunc(f.strip, func(n string) bool { return n == "Off" })
	f.guard = slices.Clone(f.strip)
	return f, nil
}

// alsoStrip adds more header names a client must not send (the identity
// assertion's).
func (f *forwarder) alsoStrip(names ...string) {
	for _, n := range names {
		if n = http.CanonicalHeaderKey(n); n != "" && !slices.Contains(f.strip, n) {
			f.strip = append(f.strip, n)
		}
	}
	f.guardConnection(names...)
}

// guardConnection adds header names a client must not list in its
// Connection header, though they are not stripped (the site's own
// assertion header, replaced or dropped later).
func (f *forwarder) guardConnection(names ...string) {
	for _, n := range names {
		if n = http.CanonicalHeaderKey(n); n != "" && !slices.Contains(f.guard, n) {
			f.guard = append(f.guard, n)
		}
	}
}

// stripSpoofed removes the client's copies of the identity headers, and
// their names from the client's Connection header.
func (f *forwarder) stripSpoofed(r *http.Request) {
	for _, n := range f.strip {
		delete(r.Header, n)
	}
	if conn, ok := r.Header["Connection"]; ok {
		f.unlistIdentity(r.Header, conn)
	}
}

// unlistIdentity removes the identity header names from the Connection
// header lines conn of hd, keeping the other tokens, and the header when
// none is left. A proxy removes every header the Connection header names
// (RFC 9110 section 7.6.1; Caddy's reverse_proxy after the handlers ran), so
// `Connection: X-Forwarded-Groups` would take the groups authgate set away
// from the backend, and a backend's deny rule on them with it. Tokens are
// separated by commas (and, to be safe, spaces) and compared ignoring case.
// Browsers send `Connection: keep-alive` on every HTTP/1.1 request: that
// costs a scan and a length comparison per name.
func (f *forwarder) unlistIdentity(hd http.Header, conn []string) {
	found := false
	for _, line := range conn {
		if found {
			break
		}
		for rest := line; rest != "" && !found; {
			var tok string
			tok, rest = nextConnectionToken(rest)
			found = f.guarded(tok)
		}
	}
	if !found {
		return
	}
	var kept []string
	for _, line := range conn {
		for rest := line; rest != ""; {
			var tok string
			if tok, rest = nextConnectionToken(rest); tok != "" && !f.guarded(tok) {
				kept = append(kept, tok)
			}
		}
	}
	if len(kept) == 0 {
		delete(hd, "Connection")
		return
	}
	hd["Connection"] = []string{strings.Join(kept, ", ")}
}

// nextConnectionToken returns the first token of s ("" when s starts with
// separators only) and what follows it.
func nextConnectionToken(s string) (tok, rest string) {
	i := 0
	for i < len(s) && isConnectionSep(s[i]) {
		i++
	}
	j := i
	for j < len(s) && !isConnectionSep(s[j]) {
		j++
	}
	return s[i:j], s[j:]
}

func isConnectionSep(c byte) bool { return c == ',' || c == ' ' || c == '\t' }

func (f *forwarder) guarded(tok string) bool {
	for _, n := range f.guard {
		if len(n) == len(tok) && strings.EqualFold(tok, n) {
			return true
		}
	}
	return false
}

// copyIdentity copies the identity headers forward set on r to w, for a
// forward-auth answer. The access token is not among them unless
// forward_auth_access_token says so: whoever holds the cookie can read
// that answer, a script in the user's browser included.
func (f *forwarder) copyIdentity(w http.ResponseWriter, r *http.Request) {
	for _, n := range f.strip {
		if !f.forwardAuthAccessToken && (n == http.CanonicalHeaderKey(defaultHeaders.AccessToken) ||
			(f.headers.AccessToken != "" && n == http.CanonicalHeaderKey(f.headers.AccessToken))) {
			continue
		}
		if v, ok := r.Header[n]; ok {
			w.Header()[n] = v
		}
	}
}

// forward hands the identity to the backend: headers, placeholders, and
// the request without the session cookies, which sc (nil: none) found
// along with any others.
func (f *forwarder) forward(r *http.Request, id *Identity, sess *Session, sc *sessionCookie) {
	hd := r.Header
	o := &id.out
	// One array for the four values and the Cookie header, each header a
	// slice of it with no room to grow: appending to one copies it, and it
	// is this request's, so whatever later handlers do to it stays here.
	vals := [...]string{o.id, o.email, o.username, o.groups, ""}
	backing := vals[:]
	for i, name := range [...]string{f.headers.User, f.headers.Email, f.headers.PreferredUsername, f.headers.Groups} {
		if vals[i] != "" && name != "" {
			hd[name] = backing[i : i+1 : i+1]
		}
	}
	if f.passAccessToken && sess != nil && sess.AccessToken != "" && f.headers.AccessToken != "" {
		hd[f.headers.AccessToken] = []string{sess.AccessToken}
	}
	for _, ch := range f.claimHeaders {
		if vals := ch.path.strings(id.Claims); len(vals) > 0 {
			hd[ch.name] = []string{sanitizeHeaderValue(joinHeaderList(vals))}
		}
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if o.placeholders != nil {
			repl.Map(o.placeholders)
		} else {
			repl.Map(id.placeholder)
		}
	}
	if !f.passCookie {
		switch {
		case sc == nil || !sc.others:
			delete(hd, "Cookie")
		case sc.ours && sc.base == f.cookieName:
			if h, ok := sc.othersHeader(); ok {
				backing[4] = h
				hd["Cookie"] = backing[4:5:5]
				break
			}
			fallthrough
		default:
			stripCookies(r, f.cookieName)
		}
	}
	// A browser coming straight from the callback may name it, code
	// included, as its Referer; the backend has no use for that.
	if ref := hd.Get("Referer"); ref != "" && strings.Contains(ref, f.callbackPath) {
		delete(hd, "Referer")
	}
}

// stripCookies removes authgate's cookies (session, chunks, pending
// logins) from the request's Cookie headers, in one pass.
func stripCookies(r *http.Request, base string) {
	lines := r.Header["Cookie"]
	found := false
	for _, l := range lines {
		if strings.Contains(l, base) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var b strings.Builder
	for _, l := range lines {
		for len(l) > 0 {
			var part string
			part, l, _ = strings.Cut(l, ";")
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if name, _, _ := strings.Cut(part, "="); isOurCookie(name, base) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
	}
	if b.Len() == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = []string{b.String()}
}

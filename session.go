package authgate

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// sessionVersion is written into every session so that a later format can
// tell old cookies apart.
const sessionVersion = 1

// Errors a cookie can decode to. None of them is shown to a user verbatim.
var (
	errNoSession      = errors.New("no session cookie")
	errBadSession     = errors.New("session cookie invalid or tampered")
	errSessionExpired = errors.New("session lifetime over")
)

// Session is what a signed-in browser carries, encrypted and authenticated.
// Claims hold the merged ID-token and userinfo claims; the identity shown to
// backends is derived from them with the provider's claim mapping.
type Session struct {
	Version      int            `json:"v"`
	ID           string         `json:"i"`
	Provider     string         `json:"p"`
	Created      int64          `json:"c"`
	Expiry       int64          `json:"e,omitempty"`  // access token expiry, unix seconds; 0: unknown
	AccessToken  string         `json:"at,omitempty"` // only when needed: see gateway.sessionAccessToken
	RefreshToken string         `json:"rt,omitempty"`
	IDToken      string         `json:"it,omitempty"`
	Claims       map[string]any `json:"cl"`
	// KeptGroups names the keep_groups the claims were narrowed under
	// (compiledClaimMap.keepPrint); a session narrowed under other ones
	// lacks groups the configuration now wants, and is refused.
	KeptGroups string `json:"kg,omitempty"`
}

// lookup finds the session a cookie stands for: decoded from the cookie,
// or, with a session store, read from the store by the id in the cookie
// (trusting a local copy for storeCacheTTL). Known cookie values come from
// the cache; any other is read again as net/http would before decoding.
func (gw *gateway) lookup(r *http.Request, sc *sessionCookie) (*sessionEntry, error) {
	if gw.store == nil {
		if e := gw.sessions.get(kindCookie, sc.pieces()...); e != nil {
			return e, nil
		}
		return gw.decodeSession(gw.checked(r, sc))
	}
	refEntry := gw.sessions.get(kindCookie, sc.pieces()...)
	if refEntry == nil {
		checked := gw.checked(r, sc)
		var ref storeRef
		oldKey, err := gw.codec.decode(gw.cookie.Name, checked.value(), &ref)
		if err != nil || ref.Version != sessionVersion || ref.ID == "" {
			return nil, errBadSession
		}
		refEntry = &sessionEntry{ref: &ref, oldKey: oldKey}
		gw.sessions.put(kindCookie, refEntry, checked.pieces()...)
	}
	id := refEntry.ref.ID
	if e := gw.sessions.get(kindStored, id); e != nil && timeNow().Sub(e.fetched) < storeCacheTTL {
		return e.forCookie(refEntry.oldKey), nil
	}
	s, err := gw.store.load(r.Context(), id)
	if err != nil {
		return nil, err
	}
	e, err := gw.entryFor(s, false)
	if err != nil {
		return nil, err
	}
	e.fetched = timeNow()
	gw.sessions.put(kindStored, e, id)
	return e.forCookie(refEntry.oldKey), nil
}

// checked returns sc as net/http would read it: when a scanned value is
// not all cookie-octets, the cookie is read again, skipping such values.
func (gw *gateway) checked(r *http.Request, sc *sessionCookie) *sessionCookie {
	if sc.valid() {
		return sc
	}
	strict, _ := readSessionCookie(r, gw.cookie.Name, true)
	return &strict
}

// presentCookies names the session cookies r carries, for clearing or
// replacing them.
func (gw *gateway) presentCookies(r *http.Request) []string {
	_, present := readSessionCookie(r, gw.cookie.Name, true)
	return present
}

// forCookie returns e as seen through one cookie, which may have been
// made with a retired key.
func (e *sessionEntry) forCookie(oldKey bool) *sessionEntry {
	if !oldKey {
		return e
	}
	c := *e
	c.oldKey = true
	return &c
}

// remaining is how long a session has left of its lifetime.
func (gw *gateway) remaining(s *Session) time.Duration {
	return max(time.Second, time.Unix(s.Created, 0).Add(gw.lifetime).Sub(timeNow()))
}

// decodeSession opens a session cookie and caches what it found.
func (gw *gateway) decodeSession(sc *sessionCookie) (*sessionEntry, error) {
	if sc.n == 0 {
		return nil, errNoSession
	}
	var s Session
	oldKey, err := gw.codec.decode(gw.cookie.Name, sc.value(), &s)
	if err != nil {
		return nil, err
	}
	e, err := gw.entryFor(&s, oldKey)
	if err != nil {
		return nil, err
	}
	gw.sessions.put(kindCookie, e, sc.pieces()...)
	return e, nil
}

// entryFor checks a decoded session and works out its identity.
func (gw *gateway) entryFor(s *Session, oldKey bool) (*sessionEntry, error) {
	p, ok := gw.providers[s.Provider]
	if s.Version != sessionVersion || !ok || s.ID == "" || s.Created == 0 {
		return nil, errBadSession
	}
	if s.KeptGroups != "" && s.KeptGroups != p.claims.keepPrint {
		// Narrowed under another keep_groups: groups (and deny rules on
		// them) would be missing. Sign in again.
		return nil, errBadSession
	}
	id, err := p.claims.identity(s.Provider, s.Claims, false)
	if err != nil || id.ID == "" {
		return nil, errBadSession
	}
	return &sessionEntry{sess: s, identity: id, oldKey: oldKey}, nil
}

// writeSession stores s: in the session cookie(s) on w, or, with a
// session store, in the store and its id in the cookie. Nothing is written
// to w when the store fails.
func (gw *gateway) writeSession(w http.ResponseWriter, r *http.Request, s *Session, present []string) error {
	if gw.store != nil {
		if err := gw.store.save(r.Context(), s, gw.remaining(s)); err != nil {
			return err
		}
	}
	return gw.writeCookie(w, r, s, present)
}

// writeCookie writes the cookie for s: the session itself, or its id.
func (gw *gateway) writeCookie(w http.ResponseWriter, r *http.Request, s *Session, present []string) error {
	var v any = s
	if gw.store != nil {
		v = &storeRef{Version: sessionVersion, ID: s.ID, Provider: s.Provider}
	}
	value, err := gw.codec.encode(gw.cookie.Name, v)
	if err != nil {
		return fmt.Errorf("encoding session: %w", err)
	}
	if limit := cookieHeaderLimit(r); len(value) > limit {
		// The browser would send it back in a Cookie header the server
		// refuses (431) on every request: a login loop. Refuse it now.
		return fmt.Errorf("%w: the session cookies would be %d bytes, more than the %d this server accepts in request headers; raise the server's max_header_size or use session_store", errSessionTooLarge, len(value), limit)
	}
	maxAge := int(gw.remaining(s) / time.Second)
	return writeChunked(w, gw.cookie, value, maxAge, isHTTPS(r), present)
}

var errSessionTooLarge = errors.New("session too large")

// cookieHeaderLimit is how many bytes of session cookies the serving
// Caddy server accepts back: its max_header_size (16 KiB by default) less
// room for the request's other headers.
func cookieHeaderLimit(r *http.Request) int {
	limit := 16 << 10
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.MaxHeaderBytes > 0 {
		limit = srv.MaxHeaderBytes
	}
	return limit - 3<<10
}

// clearCookies deletes the named session cookies.
func (gw *gateway) clearCookies(w http.ResponseWriter, r *http.Request, names []string) {
	for _, n := range names {
		gw.cookie.expire(w, n, isHTTPS(r))
	}
}

func isHTTPS(r *http.Request) bool { return r.TLS != nil }

// sessionAccessToken is what a session keeps of an access token: the token
// when a site passes it on, or when nothing else could revoke the grant at
// logout; otherwise nothing. It is most of a cookie's size.
func (gw *gateway) sessionAccessToken(at, refreshToken string, st *providerState) string {
	if gw.keepAccessToken.Load() || (refreshToken == "" && st.client.revokeURL != "") {
		return at
	}
	return ""
}

// sessionIDToken is what a session keeps of an ID token: only the
// id_token_hint for the provider's logout, and in cookies only when the
// provider asks for it (id_token_hint on) and it is small.
func (gw *gateway) sessionIDToken(p *provider, st *providerState, idToken string) string {
	switch {
	case st.endSession == "":
		return ""
	case gw.store != nil:
		return idToken
	case p.cfg.IDTokenHint && len(idToken) <= maxIDTokenHint:
		return idToken
	}
	return ""
}

// maxIDTokenHint is the largest ID token kept in a session for logout.
const maxIDTokenHint = 2048

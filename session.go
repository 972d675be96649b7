package authgate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// storeCacheTTL is how long an instance trusts its copy of a stored session.
// It bounds how late a logout elsewhere is seen here.
const storeCacheTTL = time.Second

// sessionManager reads sessions from requests and writes them to
// responses: in cookies, or in the session store with their id in the
// cookie. It keeps what it decoded in the session cache.
type sessionManager struct {
	codec     *cookieCodec
	cookie    cookieSettings
	lifetime  time.Duration
	providers map[string]*provider
	cache     *sessionCache[*sessionEntry]
	store     *redisStore // nil: sessions live in cookies
	// keepAccessToken is set when a site passes the access token to its
	// backend; otherwise sessions do not carry it (the refresh token renews
	// it, and revoking the refresh token ends the grant).
	keepAccessToken atomic.Bool
	// prints are each provider's issuer and client_id fingerprints
	// (bindingPrint), which every decoded session is checked against:
	// worked out once, not on every cache miss.
	prints map[*provider][2]string
	log    eventLog // the gateway's; a no-op one until it is set
}

func newSessionManager(codec *cookieCodec, cs cookieSettings, lifetime time.Duration, providers map[string]*provider, store *redisStore, cacheSize int) *sessionManager {
	m := &sessionManager{
		codec:     codec,
		cookie:    cs,
		lifetime:  lifetime,
		providers: providers,
		cache:     newSessionCache[*sessionEntry](cacheSize),
		store:     store,
		prints:    map[*provider][2]string{},
		log:       eventLog{zap.NewNop()},
	}
	for _, p := range providers {
		m.prints[p] = [2]string{bindingPrint(providerIssuer(p)), bindingPrint(p.cfg.ClientID)}
	}
	return m
}

// scan reads r's session cookie for the hot path, under the names of r's
// cookies (cookieSettings.forRequest): values are taken in place and not
// checked, byte by byte, to be cookie-octets. That is sound only for
// looking them up among values that were checked and decoded before (the
// session cache), which an unchecked value can only equal if it is valid;
// anything else must go through read, strictly, as net/http would read it.
func (m *sessionManager) scan(r *http.Request) sessionCookie {
	sc, _ := readCookies(r, m.cookie.forRequest(r), false)
	return sc
}

// read reads r's session cookie strictly, and names the session cookies
// present (readCookies).
func (m *sessionManager) read(r *http.Request) (sessionCookie, []string) {
	return readCookies(r, m.cookie.forRequest(r), true)
}

// sessionFor returns the session that the request's cookie sc stands for,
// when it was made with one of providers. A cookie that is unusable (no
// chunk 0, tampered, past the session lifetime) is cleared on w; one of
// another provider of this gateway is left alone, for the site it belongs
// to, and is no session here. A session read under the name before the
// __Host- prefix comes back marked to be rewritten (oldKey).
func (m *sessionManager) sessionFor(w http.ResponseWriter, r *http.Request, sc *sessionCookie, providers []*provider) (*sessionEntry, error) {
	if sc.n == 0 {
		if sc.seen {
			// Stray chunks without chunk 0 are no session: clear them.
			m.clearCookies(w, r)
		}
		return nil, errNoSession
	}
	var e *sessionEntry
	var err error
	if sc.dup {
		e, err = m.lookupAmong(r, sc, providers)
	} else {
		e, err = m.lookupOne(r, sc)
	}
	if err != nil {
		if errors.Is(err, errForeignSession) {
			return nil, errNoSession
		}
		if !errors.Is(err, errStoreDown) {
			m.clearCookies(w, r)
		}
		return nil, err
	}
	if !slices.Contains(providers, e.provider) {
		return nil, errNoSession
	}
	if sc.legacy {
		e = e.seenThrough(true)
	}
	sc.checkedAt = timeNow()
	if sc.checkedAt.After(time.Unix(e.sess.Created, 0).Add(m.lifetime)) {
		m.clearCookies(w, r)
		return nil, errSessionExpired
	}
	return e, nil
}

// lookup finds the session a cookie stands for (lookupOne; lookupAmong
// when the cookie came more than once).
func (m *sessionManager) lookup(r *http.Request, sc *sessionCookie) (*sessionEntry, error) {
	if sc.dup {
		return m.lookupAmong(r, sc, nil)
	}
	return m.lookupOne(r, sc)
}

// lookupAmong is lookup for a session cookie that came more than once
// with different values: a sibling subdomain may have planted one
// (Domain, a longer Path) to shadow ours. Each candidate is looked up on
// its own, never joined with another's chunks; the first that opens and
// is bound to this site (a provider of it, with its issuer and client)
// is the session, and sc becomes that candidate. One warning is logged.
func (m *sessionManager) lookupAmong(r *http.Request, sc *sessionCookie, providers []*provider) (*sessionEntry, error) {
	cands := sessionCandidates(r, sc)
	err := errBadSession
	for i := range cands {
		e, cerr := m.lookupOne(r, &cands[i])
		switch {
		case cerr == nil && (providers == nil || slices.Contains(providers, e.provider)):
			m.log.write(r, zap.WarnLevel, "session cookie duplicated", zap.String("cookie", sc.name), zap.Int("candidates", len(cands)),
				zap.String("reason", "several different session cookies of one name (one planted by another subdomain?)"),
				zap.String("result", "using the one made for this site"))
			sc.parts, sc.n = cands[i].parts, cands[i].n
			return e, nil
		case errors.Is(cerr, errStoreDown):
			err = cerr // unknown: neither served nor cleared
		case (cerr == nil || errors.Is(cerr, errForeignSession)) && !errors.Is(err, errStoreDown):
			err = errForeignSession // another site's: leave it alone
		}
	}
	m.log.write(r, zap.WarnLevel, "session cookie duplicated", zap.String("cookie", sc.name), zap.Int("candidates", len(cands)),
		zap.String("reason", "several different session cookies of one name (one planted by another subdomain?)"),
		zap.String("result", "none is a session of this site"))
	return nil, err
}

// lookupOne finds the session a cookie stands for: decoded from the
// cookie, or, with a session store, read from the store by the id in the
// cookie (trusting a local copy for storeCacheTTL). Known cookie values
// come from the cache; any other is read again as net/http would before
// decoding. A cookie under the legacy name bypasses the cache: only its
// own name's MAC vouches for it.
func (m *sessionManager) lookupOne(r *http.Request, sc *sessionCookie) (*sessionEntry, error) {
	if m.store == nil {
		if e, ok := m.cachedCookie(sc); ok {
			return e, nil
		}
		return m.decodeCookie(m.asNetHTTPReadsIt(r, sc))
	}
	refEntry, ok := m.cachedCookie(sc)
	if !ok {
		strict := m.asNetHTTPReadsIt(r, sc)
		var ref storeRef
		oldKey, err := m.codec.decode(m.codecName(strict), strict.value(), &ref)
		if err != nil || ref.Version != sessionVersion || ref.ID == "" {
			return nil, errBadSession
		}
		refEntry = &sessionEntry{ref: &ref, oldKey: oldKey}
		if !strict.legacy {
			m.cache.put(kindCookie, refEntry, strict.pieces()...)
		}
	}
	id := refEntry.ref.ID
	if e, ok := m.cache.get(kindStored, id); ok && timeNow().Sub(e.fetched) < storeCacheTTL {
		return e.seenThrough(refEntry.oldKey), nil
	}
	s, err := m.loadStored(r.Context(), id)
	if err != nil {
		return nil, err
	}
	e, err := m.resolve(s, false)
	if err != nil {
		return nil, err
	}
	e.fetched = timeNow()
	m.cache.put(kindStored, e, id)
	return e.seenThrough(refEntry.oldKey), nil
}

// cachedCookie is the cache's entry for sc's value. The cache is keyed by
// values alone: a value made under the prefixed name, taken from its
// cookie and planted under the legacy name, must not be a hit there.
func (m *sessionManager) cachedCookie(sc *sessionCookie) (*sessionEntry, bool) {
	if sc.legacy {
		return nil, false
	}
	return m.cache.get(kindCookie, sc.pieces()...)
}

// codecName is the name sc's value is bound to: the name it was read
// under (a __Host- cookie's value is sealed for the prefixed name).
func (m *sessionManager) codecName(sc *sessionCookie) string {
	return orDefault(sc.name, m.cookie.Name)
}

// asNetHTTPReadsIt returns sc as net/http would read it: when a scanned
// value is not all cookie-octets, the cookie is read again, skipping such
// values.
func (m *sessionManager) asNetHTTPReadsIt(r *http.Request, sc *sessionCookie) *sessionCookie {
	if sc.valid() {
		return sc
	}
	strict, _ := m.read(r)
	return &strict
}

// presentCookies names the session cookies r carries, for clearing or
// replacing them.
func (m *sessionManager) presentCookies(r *http.Request) []string {
	_, present := m.read(r)
	return present
}

// remaining is how long a session has left of its lifetime.
func (m *sessionManager) remaining(s *Session) time.Duration {
	return max(time.Second, time.Unix(s.Created, 0).Add(m.lifetime).Sub(timeNow()))
}

// decodeCookie opens a session cookie and caches what it found.
func (m *sessionManager) decodeCookie(sc *sessionCookie) (*sessionEntry, error) {
	if sc.n == 0 {
		return nil, errNoSession
	}
	var s Session
	oldKey, err := m.codec.decode(m.codecName(sc), sc.value(), &s)
	if err != nil {
		return nil, err
	}
	e, err := m.resolve(&s, oldKey)
	if err != nil {
		return nil, err
	}
	if !sc.legacy {
		m.cache.put(kindCookie, e, sc.pieces()...)
	}
	return e, nil
}

// seal encodes a refreshed session's cookie and works out its entry once,
// for every request that shares the session (the waiters of one refresh
// and those arriving within its grace): writeCookie writes that value,
// resolve returns that entry, and the value goes into the session cache,
// so that the browser's next request, carrying it, is a hit rather than a
// decode. In a refresh storm each waiting request used to encode the
// cookie again: 40 % of the gateway's CPU. It must be called before s is
// shared, as it writes s; a session it cannot seal is encoded by each
// writeCookie as before. With a session store the cookie carries only the
// session's id and nothing is sealed. It is sealed for the cookie name of
// r (the request that refreshed it), which its waiters share.
func (m *sessionManager) seal(s *Session, r *http.Request) {
	if m.store != nil {
		return
	}
	e, err := m.resolveFresh(s, false)
	if err != nil {
		return
	}
	name := m.cookie.forRequest(r).Name
	value, err := m.codec.encode(name, s)
	if err != nil {
		return
	}
	s.sealed = &sealedSession{owner: s, entry: e, value: value, name: name}
	m.cache.putOwn(kindCookie, e, value)
}

// resolve checks a decoded session and works out who it is (for a sealed
// session, once: see seal).
func (m *sessionManager) resolve(s *Session, oldKey bool) (*sessionEntry, error) {
	if sl := s.sealedFor(); sl != nil && !oldKey {
		return sl.entry, nil
	}
	return m.resolveFresh(s, oldKey)
}

func (m *sessionManager) resolveFresh(s *Session, oldKey bool) (*sessionEntry, error) {
	p, ok := m.providers[s.Provider]
	if s.Version != sessionVersion || !ok || s.ID == "" || s.Created == 0 {
		return nil, errBadSession
	}
	prints, ok := m.prints[p]
	if !ok {
		prints = [2]string{bindingPrint(providerIssuer(p)), bindingPrint(p.cfg.ClientID)}
	}
	if s.Issuer != "" && s.Issuer != prints[0] || s.ClientID != "" && s.ClientID != prints[1] {
		return nil, errForeignSession
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
	return &sessionEntry{sess: s, identity: id, provider: p, oldKey: oldKey}, nil
}

// storedName binds a stored session's encryption to its id, so that a
// value cannot be moved to another key.
func storedName(id string) string { return "authgate-session-" + id }

// saveStored writes s to the session store, indexed by subject and
// provider session for back-channel logout.
func (m *sessionManager) saveStored(ctx context.Context, s *Session) error {
	val, err := m.codec.encode(storedName(s.ID), s)
	if err != nil {
		return fmt.Errorf("encoding stored session: %w", err)
	}
	var idx []storeIndex
	if sub, ok := s.Claims["sub"].(string); ok && sub != "" {
		idx = append(idx, storeIndex{"sub", s.Provider, sub})
	}
	if sid, ok := s.Claims["sid"].(string); ok && sid != "" {
		idx = append(idx, storeIndex{"sid", s.Provider, sid})
	}
	return m.store.save(ctx, s.ID, val, idx, m.remaining(s))
}

// loadStored reads a session from the store; a missing one is errNoSession.
func (m *sessionManager) loadStored(ctx context.Context, id string) (*Session, error) {
	s, _, err := m.loadStoredRaw(ctx, id)
	return s, err
}

// loadStoredRaw is loadStored that also returns the stored value, for a
// later replaceStored to check that nobody changed it meanwhile.
func (m *sessionManager) loadStoredRaw(ctx context.Context, id string) (*Session, string, error) {
	val, found, err := m.store.load(ctx, id)
	if err != nil {
		return nil, "", err
	}
	if !found {
		return nil, "", errNoSession
	}
	var s Session
	if _, err := m.codec.decode(storedName(id), val, &s); err != nil || s.ID != id {
		return nil, "", errBadSession
	}
	return &s, val, nil
}

// errSessionChanged: a stored session was replaced by another writer
// between reading and writing it.
var errSessionChanged = errors.New("stored session changed meanwhile")

// replaceStored writes s over the stored value prev, only if that is still
// what the store holds: a session deleted meanwhile (logout) is
// errNoSession and stays deleted; one changed meanwhile is
// errSessionChanged and keeps the other writer's value.
func (m *sessionManager) replaceStored(ctx context.Context, s *Session, prev string) error {
	val, err := m.codec.encode(storedName(s.ID), s)
	if err != nil {
		return fmt.Errorf("encoding stored session: %w", err)
	}
	switch res, err := m.store.swap(ctx, s.ID, prev, val, m.remaining(s)); {
	case err != nil:
		return err
	case res == swapGone:
		return errNoSession
	case res == swapChanged:
		return errSessionChanged
	}
	return nil
}

// writeSession stores s: in the session cookie(s) on w, or, with a
// session store, in the store and its id in the cookie. Nothing is written
// to w when the store fails.
func (m *sessionManager) writeSession(w http.ResponseWriter, r *http.Request, s *Session) error {
	if m.store != nil {
		if err := m.saveStored(r.Context(), s); err != nil {
			return err
		}
	}
	return m.writeCookie(w, r, s)
}

// writeCookie writes the cookie for s: the session itself, or its id, and
// deletes the request's session cookies that it does not replace.
func (m *sessionManager) writeCookie(w http.ResponseWriter, r *http.Request, s *Session) error {
	cs := m.cookie.forRequest(r)
	value, err := m.cookieValue(s, cs.Name)
	if err != nil {
		return fmt.Errorf("encoding session: %w", err)
	}
	if limit := cookieHeaderLimit(r); len(value) > limit {
		// The browser would send it back in a Cookie header the server
		// refuses (431) on every request: a login loop. Refuse it now.
		return fmt.Errorf("%w: the session cookies would be %d bytes, more than the %d this server accepts in request headers; raise the server's max_header_size or use session_store", errSessionTooLarge, len(value), limit)
	}
	maxAge := int(m.remaining(s) / time.Second)
	return writeChunked(w, cs, value, maxAge, isHTTPS(r), m.presentCookies(r))
}

// cookieValue is the encoded cookie of s for the cookie name: the session
// itself (sealed once, or encoded now), or with a session store its id.
func (m *sessionManager) cookieValue(s *Session, name string) (string, error) {
	if m.store != nil {
		return m.codec.encode(name, &storeRef{Version: sessionVersion, ID: s.ID, Provider: s.Provider})
	}
	if sl := s.sealedFor(); sl != nil && sl.name == name {
		return sl.value, nil
	}
	return m.codec.encode(name, s)
}

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

// clearCookies deletes every session cookie the request carries.
func (m *sessionManager) clearCookies(w http.ResponseWriter, r *http.Request) {
	for _, n := range m.presentCookies(r) {
		m.cookie.expire(w, n, isHTTPS(r))
	}
}

// forget drops a signed-out session: from the cache, and from the store
// (a store failure is returned; the cookies are the caller's).
func (m *sessionManager) forget(ctx context.Context, sc *sessionCookie, s *Session) error {
	m.cache.forget(kindCookie, sc.pieces()...)
	if m.store == nil {
		return nil
	}
	m.cache.forget(kindStored, s.ID)
	return m.store.delete(ctx, s.ID)
}

// accessTokenToKeep is what a session keeps of an access token: the token
// when a site passes it on, when userinfo is re-read with it
// (userinfo_refresh_interval), or when nothing else could revoke the grant
// at logout; otherwise nothing. It is most of a cookie's size.
func (m *sessionManager) accessTokenToKeep(p *provider, at, refreshToken string, st *providerState) string {
	if m.keepAccessToken.Load() || (refreshToken == "" && st.client.revokeURL != "") ||
		(p.cfg.UserinfoRefreshInterval > 0 && st.client.userinfoURL != "") {
		return at
	}
	return ""
}

// idTokenToKeep is what a session keeps of an ID token: only the
// id_token_hint for the provider's logout, and in cookies only when the
// provider asks for it (id_token_hint on) and it is small.
func (m *sessionManager) idTokenToKeep(p *provider, st *providerState, idToken string) string {
	switch {
	case st.endSession == "":
		return ""
	case m.store != nil:
		return idToken
	case p.cfg.IDTokenHint && len(idToken) <= maxIDTokenHint:
		return idToken
	}
	return ""
}

// maxIDTokenHint is the largest ID token kept in a session for logout.
const maxIDTokenHint = 2048

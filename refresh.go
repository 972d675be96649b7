package authgate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// refreshGrace is how long the result of a refresh is kept for requests
// that still carry the cookie from before it. With rotating refresh tokens
// those requests would otherwise replay a spent token and be logged out.
const refreshGrace = 30 * time.Second

// maxGraceEntries bounds the grace table: the refreshes of the last
// refreshGrace, each holding its refreshed session (a few KiB). 100,000 is
// more than 3,000 refreshes a second for the whole window, beyond what
// providers answer; past it the oldest entries go first, which can only
// affect a request still carrying a cookie from before one of the 100,000
// most recent refreshes.
const maxGraceEntries = 100_000

// refreshBackoff is how long a session waits, after a refresh that failed
// at the provider (unreachable, timeout, 5xx, unusable answer), before the
// next attempt: during an outage each session asks at most once per
// back-off, and meanwhile is served while its access token lasts.
const refreshBackoff = 5 * time.Second

// maxBackoffEntries bounds the sessions remembered as backing off.
const maxBackoffEntries = 100_000

// loggedOutMemory is how long a logout is remembered in this process, so
// that neither the grace table nor a refresh in flight brings the session
// back; maxLoggedOut bounds how many are.
const (
	loggedOutMemory = 5 * time.Minute
	maxLoggedOut    = 100_000
)

// unsavedMemory is how long this process keeps a refreshed session that
// the store could not take (it went away while the provider answered),
// to write it when the store is back instead of spending the old refresh
// token again, which a rotating provider refuses; maxUnsaved bounds how
// many it keeps.
const (
	unsavedMemory = time.Hour
	maxUnsaved    = 10_000
)

// errSessionEnded: the provider refused the refresh token for good.
var errSessionEnded = errors.New("session ended by the provider")

// refresher renews sessions whose access token is about to expire, and
// makes sure that concurrent requests carrying one session cause one
// refresh at the provider: in this process by single flight and a grace
// table, across instances by a lock in the session store.
type refresher struct {
	sessions *sessionManager
	skew     time.Duration
	log      eventLog

	group singleflight.Group
	// grace holds recent refreshes by the refresh token they spent.
	grace *expiringTable[[32]byte, *Session]
	// backoff holds the last provider failure of sessions that wait
	// before trying again, by sessionKey.
	backoff *expiringTable[[32]byte, error]
	// loggedOut holds sessions signed out here, by sessionKey.
	loggedOut *expiringTable[[32]byte, struct{}]
	// unsaved holds refreshes the store could not take, by unsavedKey.
	unsaved *expiringTable[[32]byte, unsavedRefresh]
}

// unsavedRefresh is a refreshed session that the store did not take, and
// the stored value it replaces.
type unsavedRefresh struct {
	sess *Session
	prev string
}

func unsavedKey(id string) [32]byte { return sha256.Sum256([]byte("unsaved\x00" + id)) }

func newRefresher(sessions *sessionManager, skew time.Duration, log eventLog) *refresher {
	return &refresher{
		sessions:  sessions,
		skew:      skew,
		log:       log,
		grace:     newExpiringTable[[32]byte, *Session](refreshGrace, maxGraceEntries),
		backoff:   newExpiringTable[[32]byte, error](refreshBackoff, maxBackoffEntries),
		loggedOut: newExpiringTable[[32]byte, struct{}](loggedOutMemory, maxLoggedOut),
		unsaved:   newExpiringTable[[32]byte, unsavedRefresh](unsavedMemory, maxUnsaved),
	}
}

// refreshSource says where a request's refresh result came from.
type refreshSource string

const (
	refreshedHere refreshSource = "provider"  // this request called the provider
	reusedFlight  refreshSource = "in flight" // another request's call, waited on
	reusedGrace   refreshSource = "grace"     // a call that finished within refreshGrace
	reusedStore   refreshSource = "store"     // another instance's refresh, read from the store
	backingOff    refreshSource = "back-off"  // a recent call failed; not tried again yet
	afterLogout   refreshSource = "logout"    // signed out here: nothing to refresh
)

// sessionKey names a session in the refresher's tables without its id
// or any token.
func sessionKey(s *Session) [32]byte {
	return sha256.Sum256([]byte("session\x00" + s.Provider + "\x00" + s.ID))
}

// skewFor is how long before its expiry s's access token is refreshed:
// the configured skew, but at most half the token's lifetime, so that
// short tokens are not refreshed on every request.
func (rf *refresher) skewFor(s *Session) time.Duration {
	skew := rf.skew
	if s.TokenIssued > 0 && s.Expiry > s.TokenIssued {
		skew = min(skew, time.Duration(s.Expiry-s.TokenIssued)*time.Second/2)
	}
	return skew
}

// due reports whether a session's access token is within its skew of its
// expiry.
func (rf *refresher) due(s *Session) bool {
	return s.Expiry != 0 && !timeNow().Before(time.Unix(s.Expiry, 0).Add(-rf.skewFor(s)))
}

// forgetSession records that s was signed out here: a refresh of it that
// is in flight is thrown away, and the grace table no longer hands it out.
func (rf *refresher) forgetSession(s *Session) {
	k := sessionKey(s)
	rf.loggedOut.put(k, struct{}{})
	rf.backoff.delete(k)
}

func (rf *refresher) signedOut(s *Session) bool {
	_, gone := rf.loggedOut.get(sessionKey(s))
	return gone
}

// refreshIfDue returns e, or e refreshed (and its cookie rewritten on w)
// when its access token is due. A refresh that fails at the provider
// keeps the session as it is: while its token works the request is
// served, after that it gets the provider-failure page, and a request
// after the back-off tries again. Only invalid_grant (or a logout) ends a
// session here; one that cannot be refreshed ends when its token does.
func (rf *refresher) refreshIfDue(w http.ResponseWriter, r *http.Request, e *sessionEntry) (*sessionEntry, error) {
	s, p := e.sess, e.provider
	if !rf.due(s) {
		return e, nil
	}
	expired := !timeNow().Before(time.Unix(s.Expiry, 0))
	if p.cfg.Dialect.NoRefresh || s.RefreshToken == "" {
		if expired {
			rf.sessions.clearCookies(w, r)
			return nil, errSessionExpired
		}
		return e, nil
	}
	var ns *Session
	var src refreshSource
	var err error
	if rf.sessions.store != nil {
		ns, src, err = rf.refreshStored(r, e)
	} else {
		ns, src, err = rf.refreshCookie(r, e)
	}
	if src != refreshedHere {
		// The provider call (if any) was logged once, by the request that
		// made it; this one only shared its result.
		rf.log.write(r, zap.DebugLevel, "refresh reused", zap.String("provider", p.name), zap.String("user_id", e.identity.ID),
			zap.String("reused", string(src)), zap.Bool("ok", err == nil))
	}
	switch {
	case err == nil:
		return rf.adopt(w, r, ns)
	case errors.Is(err, errNoSession):
		// Signed out while we were refreshing: logout wins.
		rf.sessions.clearCookies(w, r)
		return nil, err
	case errors.Is(err, errStoreDown):
		return nil, err
	case errors.Is(err, errIdentityRefused):
		// The provider's answer is about somebody else, or does not
		// verify: whoever this session was, the provider no longer says so.
		rf.endSession(w, r, e, "refresh", err)
		return nil, err
	case errors.Is(err, errInvalidGrant):
		rf.sessions.clearCookies(w, r)
		return nil, fmt.Errorf("%w: %w", errSessionEnded, err)
	case !expired:
		// The token still works for a while; serve now and let a later
		// request retry the refresh.
		return e, nil
	case isProviderFailure(err):
		return nil, &providerError{provider: p.name, err: err}
	default:
		return nil, err
	}
}

// callProvider is the one place a refresh reaches the provider: it is
// logged and counted here, once per call, however many requests wait on
// it. A provider failure puts the session in back-off.
func (rf *refresher) callProvider(ctx context.Context, r *http.Request, e *sessionEntry) (*Session, error) {
	p, old := e.provider, e.sess
	ns, err := rf.refreshAtProvider(ctx, p, old)
	fields := []zap.Field{zap.String("provider", p.name), zap.String("user_id", e.identity.ID)}
	switch {
	case err == nil:
		rf.log.write(r, zap.InfoLevel, "refresh", append(fields, zap.String("result", "ok"))...)
		metricRefresh(p.name, "ok")
	case errors.Is(err, errIdentityRefused):
		rf.log.write(r, zap.InfoLevel, "refresh", append(fields, zap.String("result", "identity refused"), zap.String("reason", reasonOf(err)))...)
		metricRefresh(p.name, "identity_changed")
	case errors.Is(err, errInvalidGrant):
		rf.log.write(r, zap.InfoLevel, "refresh", append(fields, zap.String("result", "invalid_grant"))...)
		metricRefresh(p.name, "invalid_grant")
	default:
		result := "failed"
		if timeNow().Before(time.Unix(old.Expiry, 0)) {
			result = "failed, token still valid"
		}
		if isProviderFailure(err) {
			rf.backoff.put(sessionKey(old), err)
			result += fmt.Sprintf("; next attempt in %s", refreshBackoff)
		}
		rf.log.write(r, zap.WarnLevel, "refresh", append(fields, zap.String("result", result), zap.Error(err))...)
		metricRefresh(p.name, "error")
	}
	return ns, err
}

// refreshCookie refreshes a cookie session. Callers with the same refresh
// token share one call; callers arriving within refreshGrace after it get
// its result, unless the session was signed out since.
func (rf *refresher) refreshCookie(r *http.Request, e *sessionEntry) (*Session, refreshSource, error) {
	old, p := e.sess, e.provider
	key := sha256.Sum256([]byte(old.Provider + "\x00" + old.RefreshToken))
	if rf.signedOut(old) {
		return nil, afterLogout, errNoSession
	}
	if s, ok := rf.grace.get(key); ok {
		return s, reusedGrace, nil
	}
	if last, ok := rf.backoff.get(sessionKey(old)); ok {
		return nil, backingOff, last
	}
	s, src, err := rf.once(r.Context(), key, p.timeout(), func(ctx context.Context) (*Session, refreshSource, error) {
		// A call that finished between the check above and this flight
		// has spent the token already: use its result.
		if s, ok := rf.grace.get(key); ok {
			return s, reusedGrace, nil
		}
		ns, err := rf.callProvider(ctx, r, e)
		if err != nil {
			return nil, refreshedHere, err
		}
		if rf.signedOut(old) {
			// Signed out while the provider answered: the new tokens
			// go nowhere.
			return nil, refreshedHere, errNoSession
		}
		rf.sessions.seal(ns, r) // encoded once for every request sharing this refresh
		rf.grace.put(key, ns)
		return ns, refreshedHere, nil
	})
	if err == nil && rf.signedOut(s) {
		return nil, afterLogout, errNoSession
	}
	return s, src, err
}

// refreshStored refreshes a stored session once across all instances: the
// instance that takes the Redis lock refreshes and saves; the others wait
// for the stored session to change and use it. No instance waits longer
// than the provider timeout. The save only replaces the very value that
// was refreshed: a session deleted meanwhile (logout, back-channel
// logout) stays deleted.
func (rf *refresher) refreshStored(r *http.Request, e *sessionEntry) (*Session, refreshSource, error) {
	m, p, old := rf.sessions, e.provider, e.sess
	if last, ok := rf.backoff.get(sessionKey(old)); ok {
		return nil, backingOff, last
	}
	key := sha256.Sum256([]byte("id:" + old.ID))
	return rf.once(r.Context(), key, p.timeout(), func(ctx context.Context) (*Session, refreshSource, error) {
		deadline := timeNow().Add(p.timeout())
		for {
			cur, raw, err := m.loadStoredRaw(ctx, old.ID)
			if err != nil {
				return nil, reusedStore, err
			}
			if ns, ok, err := rf.saveUnsaved(ctx, old.ID, raw); ok || err != nil {
				return ns, refreshedHere, err
			}
			if cur.RefreshToken != old.RefreshToken || !rf.due(cur) {
				m.cache.forget(kindStored, old.ID)
				return cur, reusedStore, nil
			}
			token, ok, err := m.store.lock(ctx, old.ID, p.timeout()+time.Second)
			if err != nil {
				return nil, reusedStore, err
			}
			if ok {
				defer m.store.unlock(ctx, old.ID, token)
				return rf.refreshLocked(ctx, r, e, cur)
			}
			if err := rf.awaitUnlock(ctx, old.ID, deadline); err != nil {
				return nil, reusedStore, err
			}
		}
	})
}

// saveUnsaved writes the refresh of session id that the store could not
// take before, if the store still holds the value it replaces (raw): no
// lock is needed, the write is conditional on that value. ok is false when
// there is none to write (or it no longer applies: the session was
// replaced or deleted meanwhile, and that stands).
func (rf *refresher) saveUnsaved(ctx context.Context, id, raw string) (s *Session, ok bool, err error) {
	k := unsavedKey(id)
	u, found := rf.unsaved.get(k)
	if !found {
		return nil, false, nil
	}
	if u.prev != raw || rf.signedOut(u.sess) {
		rf.unsaved.delete(k)
		return nil, false, nil
	}
	switch err := rf.sessions.replaceStored(ctx, u.sess, raw); {
	case errors.Is(err, errStoreDown):
		return nil, false, err // kept for the next try
	case err != nil:
		rf.unsaved.delete(k)
		return nil, false, nil
	}
	rf.unsaved.delete(k)
	rf.sessions.cache.forget(kindStored, id)
	return u.sess, true, nil
}

// awaitUnlock waits until no instance holds the refresh lock of session
// id, or until deadline. It looks at the lock in steps from 2 ms up to
// 25 ms: a refresh at a nearby provider takes a few milliseconds, and each
// look is one Redis key lookup.
func (rf *refresher) awaitUnlock(ctx context.Context, id string, deadline time.Time) error {
	for step := 2 * time.Millisecond; ; step = min(2*step, 25*time.Millisecond) {
		if timeNow().After(deadline) {
			return fmt.Errorf("waiting for another instance's refresh: %w", errProviderTimeout)
		}
		select {
		case <-time.After(step):
		case <-ctx.Done():
			return fmt.Errorf("waiting for another instance's refresh: %w", errProviderTimeout)
		}
		held, err := rf.sessions.store.locked(ctx, id)
		if err != nil {
			return err
		}
		if !held {
			return nil
		}
	}
}

// refreshLocked refreshes the stored session cur under the instances'
// lock and replaces it in the store, if it is still there unchanged.
func (rf *refresher) refreshLocked(ctx context.Context, r *http.Request, e *sessionEntry, cur *Session) (*Session, refreshSource, error) {
	m, id := rf.sessions, cur.ID
	m.cache.forget(kindStored, id)
	again, raw, err := m.loadStoredRaw(ctx, id)
	if err != nil {
		return nil, reusedStore, err
	}
	if again.RefreshToken != cur.RefreshToken {
		return again, reusedStore, nil
	}
	ce := *e
	ce.sess = again
	ns, err := rf.callProvider(ctx, r, &ce)
	if err != nil {
		if errors.Is(err, errInvalidGrant) || errors.Is(err, errIdentityRefused) {
			_ = m.store.deleteIf(ctx, id, raw)
		}
		return nil, refreshedHere, err
	}
	if err := m.replaceStored(ctx, ns, raw); err != nil {
		if errors.Is(err, errStoreDown) {
			// The provider has spent the old refresh token: keep its
			// answer for when the store is back.
			rf.unsaved.put(unsavedKey(id), unsavedRefresh{sess: ns, prev: raw})
		}
		if errors.Is(err, errSessionChanged) {
			// Another writer came first (a lock that outlived its
			// holder); its session is the one to use, ours is dropped.
			now, _, err := m.loadStoredRaw(ctx, id)
			return now, reusedStore, err
		}
		return nil, refreshedHere, err
	}
	return ns, refreshedHere, nil
}

// refreshAtProvider uses old's refresh token at p and returns the session
// with the new tokens and the identity derived again from the answer: a
// new ID token verified as at login (no nonce, OIDC Core 12.2) and
// userinfo re-read, whose iss, sub, aud and azp must be the session's;
// every mapped claim and the groups are recomputed. A provider failure
// while deriving (userinfo or the keys unavailable) keeps the new tokens,
// which a rotating provider has already spent the old ones for, and the
// claims as they were.
func (rf *refresher) refreshAtProvider(ctx context.Context, p *provider, old *Session) (*Session, error) {
	st, err := p.state(ctx)
	if err != nil {
		return nil, err
	}
	ts, err := st.client.refresh(ctx, old.RefreshToken)
	if err != nil {
		return nil, err
	}
	ns := *old
	if ts.RefreshToken != "" {
		ns.RefreshToken = ts.RefreshToken
	}
	ns.AccessToken = rf.sessions.accessTokenToKeep(p, ts.AccessToken, ns.RefreshToken, st)
	ns.Expiry, ns.TokenIssued = 0, 0
	if !ts.Expiry.IsZero() {
		ns.Expiry = ts.Expiry.Unix()
	}
	if !ts.Issued.IsZero() {
		ns.TokenIssued = ts.Issued.Unix()
	}
	prevID, _ := p.claims.identity(p.name, old.Claims, false)
	prev := old.binding(prevID)
	d, err := deriveIdentity(ctx, p, st, providerAnswer{idToken: ts.IDToken, accessToken: ts.AccessToken, readUserinfo: true, session: &prev})
	switch {
	case err == nil:
	case errors.Is(err, errIdentityRefused):
		return nil, err
	case errors.Is(err, errInvalidGrant):
		// userinfo refused the token just issued: the user is gone.
		return nil, fmt.Errorf("userinfo after refresh: %w", err)
	default:
		rf.log.logger.Warn("refresh: the identity could not be read again; tokens renewed, claims kept",
			zap.String("provider", p.name), zap.Error(err))
		return &ns, nil
	}
	if !d.fresh {
		// Neither an ID token nor userinfo: nothing new was said about
		// the user.
		return &ns, nil
	}
	ns.Claims, ns.KeptGroups = d.claims, d.keptGroups
	ns.bind(d.binding.recorded())
	// auth_time, acr and amr stay as the login recorded them unless the
	// new ID token says otherwise.
	applyAuthClaims(&ns, d.idClaims)
	if d.userinfoRead && p.cfg.UserinfoRefreshInterval > 0 {
		ns.UserinfoAt = timeNow().Unix()
	}
	if ts.IDToken != "" && old.IDToken != "" {
		ns.IDToken = rf.sessions.idTokenToKeep(p, st, ts.IDToken)
	}
	return &ns, nil
}

// endSession ends a session the provider no longer vouches for: its
// cookies cleared, its stored copy deleted, and a log line saying why.
func (rf *refresher) endSession(w http.ResponseWriter, r *http.Request, e *sessionEntry, during string, err error) {
	m := rf.sessions
	m.clearCookies(w, r)
	if m.store != nil {
		m.cache.forget(kindStored, e.sess.ID)
		if derr := m.store.delete(r.Context(), e.sess.ID); derr != nil {
			rf.log.write(r, zap.WarnLevel, "session store failure", zap.String("result", "stored session kept until it expires"), zap.Error(derr))
		}
	}
	msg, reason := "signed out: the identity provider ended the session", "session_ended"
	switch {
	case errors.Is(err, errIdentityChanged):
		msg, reason = "signed out: your identity at the provider changed", "identity_changed"
	case errors.Is(err, errIdentityRefused):
		msg, reason = "signed out: the identity provider's answer was refused", reasonOf(err)
	}
	rf.log.write(r, zap.WarnLevel, msg, zap.String("provider", e.provider.name), zap.String("user_id", e.identity.ID),
		zap.String("reason", reason), zap.String("during", during), zap.Error(err))
}

// once calls fn once for all concurrent callers with the same key and
// tells each caller where its result came from: fn's own answer for the
// caller whose fn ran, reusedFlight for the others. The call is detached
// from any single request's cancellation so that one client hanging up
// does not fail the others waiting on it.
func (rf *refresher) once(ctx context.Context, key [32]byte, timeout time.Duration, fn func(context.Context) (*Session, refreshSource, error)) (*Session, refreshSource, error) {
	type result struct {
		sess *Session
		src  refreshSource
	}
	var ran atomic.Bool
	ch := rf.group.DoChan(string(key[:]), func() (any, error) {
		ran.Store(true)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		s, src, err := fn(cctx)
		return result{s, src}, err
	})
	select {
	case res := <-ch:
		v, _ := res.Val.(result)
		src := reusedFlight
		if ran.Load() {
			src = v.src
		}
		if res.Err != nil {
			return nil, src, res.Err
		}
		return v.sess, src, nil
	case <-ctx.Done():
		return nil, reusedFlight, fmt.Errorf("waiting for refresh: %w", errors.Join(errProviderTimeout, ctx.Err()))
	}
}

// adopt makes ns, a session just refreshed or re-read, the one this
// response carries: its entry for the request, and its cookie unless the
// session lives in the store (the cookie, a reference, is unchanged).
// A session that does not resolve ends here: its cookies are cleared.
func (rf *refresher) adopt(w http.ResponseWriter, r *http.Request, ns *Session) (*sessionEntry, error) {
	ne, err := rf.sessions.resolve(ns, false)
	if err != nil {
		rf.sessions.clearCookies(w, r)
		return nil, err
	}
	if rf.sessions.store == nil {
		if err := rf.sessions.writeCookie(w, r, ns); err != nil {
			return nil, err
		}
	}
	return ne, nil
}

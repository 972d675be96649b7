package authgate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// refreshGrace is how long the result of a refresh is kept for requests
// that still carry the cookie from before it. With rotating refresh tokens
// those requests would otherwise replay a spent token and be logged out.
const refreshGrace = 30 * time.Second

// maxGraceEntries bounds the grace table; it is pruned when full.
const maxGraceEntries = 10000

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
	mu    sync.Mutex
	grace map[[32]byte]graceEntry
}

type graceEntry struct {
	sess  *Session
	until time.Time
}

func newRefresher(sessions *sessionManager, skew time.Duration, log eventLog) *refresher {
	return &refresher{sessions: sessions, skew: skew, log: log, grace: map[[32]byte]graceEntry{}}
}

// due reports whether a session's access token is within the skew of its
// expiry.
func (rf *refresher) due(s *Session) bool {
	return s.Expiry != 0 && !timeNow().Before(time.Unix(s.Expiry, 0).Add(-rf.skew))
}

// refreshIfDue returns e, or e refreshed (and its cookie rewritten on w)
// when its access token is due. A refresh that fails while the token still
// works keeps e for now; a later request tries again. A session that
// cannot be refreshed ends when its token does.
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
	var err error
	if rf.sessions.store != nil {
		ns, err = rf.refreshStored(r.Context(), p, s)
	} else {
		ns, err = rf.refreshCookie(r.Context(), p, s)
	}
	switch {
	case err == nil:
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
		rf.log.write(r, zap.InfoLevel, "refresh", zap.String("provider", p.name), zap.String("user_id", ne.identity.ID), zap.String("result", "ok"))
		metricRefresh(p.name, "ok")
		return ne, nil
	case errors.Is(err, errNoSession):
		// Logged out elsewhere while we were refreshing.
		rf.sessions.clearCookies(w, r)
		return nil, err
	case errors.Is(err, errStoreDown):
		return nil, err
	case errors.Is(err, errIdentityRefused):
		// The provider's answer is about somebody else, or does not
		// verify: whoever this session was, the provider no longer says so.
		rf.endSession(w, r, e, "refresh", err)
		metricRefresh(p.name, "identity_changed")
		return nil, err
	case errors.Is(err, errInvalidGrant):
		rf.sessions.clearCookies(w, r)
		rf.log.write(r, zap.InfoLevel, "refresh", zap.String("provider", p.name), zap.String("user_id", e.identity.ID), zap.String("result", "invalid_grant"))
		metricRefresh(p.name, "invalid_grant")
		return nil, fmt.Errorf("%w: %w", errSessionEnded, err)
	case !expired:
		// The token still works for a moment; serve now and let a later
		// request retry the refresh.
		rf.log.write(r, zap.WarnLevel, "refresh", zap.String("provider", p.name), zap.String("user_id", e.identity.ID), zap.String("result", "failed, token still valid"), zap.Error(err))
		metricRefresh(p.name, "error")
		return e, nil
	default:
		rf.log.write(r, zap.WarnLevel, "refresh", zap.String("provider", p.name), zap.String("user_id", e.identity.ID), zap.String("result", "failed"), zap.Error(err))
		metricRefresh(p.name, "error")
		return nil, err
	}
}

// refreshCookie refreshes a cookie session. Callers with the same refresh
// token share one call; callers arriving within refreshGrace after it get
// its result.
func (rf *refresher) refreshCookie(ctx context.Context, p *provider, old *Session) (*Session, error) {
	key := sha256.Sum256([]byte(old.Provider + "\x00" + old.RefreshToken))
	return rf.once(ctx, key, true, p.timeout(), func(ctx context.Context) (*Session, error) {
		return rf.refreshAtProvider(ctx, p, old)
	})
}

// refreshStored refreshes a stored session once across all instances: the
// instance that takes the Redis lock refreshes and saves; the others wait
// for the stored session to change and use it. No instance waits longer
// than the provider timeout.
func (rf *refresher) refreshStored(ctx context.Context, p *provider, old *Session) (*Session, error) {
	m := rf.sessions
	key := sha256.Sum256([]byte("id:" + old.ID))
	return rf.once(ctx, key, false, p.timeout(), func(ctx context.Context) (*Session, error) {
		deadline := timeNow().Add(p.timeout())
		for {
			cur, err := m.loadStored(ctx, old.ID)
			if err != nil {
				return nil, err
			}
			if cur.RefreshToken != old.RefreshToken || !rf.due(cur) {
				m.cache.forget(kindStored, old.ID)
				return cur, nil
			}
			token, ok, err := m.store.lock(ctx, old.ID, p.timeout()+time.Second)
			if err != nil {
				return nil, err
			}
			if ok {
				defer m.store.unlock(ctx, old.ID, token)
				if again, err := m.loadStored(ctx, old.ID); err != nil {
					return nil, err
				} else if again.RefreshToken != cur.RefreshToken {
					return again, nil
				}
				ns, err := rf.refreshAtProvider(ctx, p, cur)
				if err != nil {
					if errors.Is(err, errInvalidGrant) || errors.Is(err, errIdentityRefused) {
						_ = m.store.delete(ctx, old.ID)
					}
					return nil, err
				}
				if err := m.saveStored(ctx, ns); err != nil {
					return nil, err
				}
				m.cache.forget(kindStored, old.ID)
				return ns, nil
			}
			if timeNow().After(deadline) {
				return nil, fmt.Errorf("waiting for another instance's refresh: %w", errProviderTimeout)
			}
			select {
			case <-time.After(25 * time.Millisecond):
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for another instance's refresh: %w", errProviderTimeout)
			}
		}
	})
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
	ns.Expiry = 0
	if !ts.Expiry.IsZero() {
		ns.Expiry = ts.Expiry.Unix()
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
	if d.userinfoRead && p.cfg.UserinfoRefreshInterval > 0 {
		ns.UserinfoAt = timeNow().Unix()
	}
	if ts.IDToken != "" && old.IDToken != "" {
		ns.IDToken = rf.sessions.idTokenToKeep(p, st, ts.IDToken)
	}
	return &ns, nil
}

// revalidateIfDue re-reads userinfo for a session whose provider has
// userinfo_refresh_interval, once the interval has passed since it was last
// read, and returns the session with the identity derived from it. A 401 or
// 403 from userinfo, or an answer about another user, ends the session; a
// provider failure keeps it (logged, and not tried again for refreshGrace).
// Concurrent requests with one session cause one read.
func (rf *refresher) revalidateIfDue(w http.ResponseWriter, r *http.Request, e *sessionEntry) (*sessionEntry, error) {
	s, p := e.sess, e.provider
	interval := time.Duration(p.cfg.UserinfoRefreshInterval)
	if interval <= 0 || s.AccessToken == "" {
		return e, nil
	}
	last := s.UserinfoAt
	if last == 0 {
		last = s.Created
	}
	if timeNow().Before(time.Unix(last, 0).Add(interval)) {
		return e, nil
	}
	key := sha256.Sum256([]byte(fmt.Sprintf("userinfo\x00%s\x00%s\x00%d", s.Provider, s.ID, last)))
	ns, err := rf.once(r.Context(), key, true, p.timeout(), func(ctx context.Context) (*Session, error) {
		ns, err := rf.revalidate(ctx, p, s, e.identity)
		if err != nil {
			return nil, err
		}
		if m := rf.sessions; m.store != nil {
			if err := m.saveStored(ctx, ns); err != nil {
				return nil, err
			}
			m.cache.forget(kindStored, s.ID)
		}
		return ns, nil
	})
	switch {
	case err == nil:
	case errors.Is(err, errIdentityRefused) || errors.Is(err, errInvalidGrant):
		rf.endSession(w, r, e, "userinfo", err)
		if errors.Is(err, errIdentityRefused) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errSessionEnded, err)
	case errors.Is(err, errStoreDown):
		return nil, err
	default:
		rf.keepForGrace(key, s)
		rf.log.write(r, zap.WarnLevel, "userinfo re-read", zap.String("provider", p.name), zap.String("user_id", e.identity.ID),
			zap.String("result", "failed; session kept"), zap.Error(err))
		return e, nil
	}
	if ns == s {
		return e, nil // a failure another request met, within its back-off
	}
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
	rf.log.write(r, zap.InfoLevel, "userinfo re-read", zap.String("provider", p.name), zap.String("user_id", ne.identity.ID), zap.String("result", "ok"))
	return ne, nil
}

// revalidate reads userinfo with s's access token and returns s with the
// claims derived from it.
func (rf *refresher) revalidate(ctx context.Context, p *provider, s *Session, prevID *Identity) (*Session, error) {
	st, err := p.state(ctx)
	if err != nil {
		return nil, err
	}
	prev := s.binding(prevID)
	d, err := deriveIdentity(ctx, p, st, providerAnswer{accessToken: s.AccessToken, readUserinfo: true, session: &prev})
	if err != nil {
		return nil, err
	}
	if !d.fresh {
		return nil, fmt.Errorf("%w: the provider has no userinfo endpoint to re-read", errProviderBadResponse)
	}
	ns := *s
	ns.Claims, ns.KeptGroups = d.claims, d.keptGroups
	ns.bind(d.binding.recorded()) // no ID token: the recorded one stands
	ns.UserinfoAt = timeNow().Unix()
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

// once calls fn once for all concurrent callers with the same key. With
// grace, the result is also kept for refreshGrace and handed to later
// callers with the same key. The call is detached from any single
// request's cancellation so that one client hanging up does not fail the
// others waiting on it.
func (rf *refresher) once(ctx context.Context, key [32]byte, grace bool, timeout time.Duration, fn func(context.Context) (*Session, error)) (*Session, error) {
	if grace {
		if s := rf.graced(key); s != nil {
			return s, nil
		}
	}
	ch := rf.group.DoChan(string(key[:]), func() (any, error) {
		if grace {
			if s := rf.graced(key); s != nil {
				return s, nil
			}
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		s, err := fn(cctx)
		if err != nil {
			return nil, err
		}
		if grace {
			rf.keepForGrace(key, s)
		}
		return s, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Session), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for refresh: %w", errors.Join(errProviderTimeout, ctx.Err()))
	}
}

// graced returns the result of a refresh of key that finished within
// refreshGrace.
func (rf *refresher) graced(key [32]byte) *Session {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if e, ok := rf.grace[key]; ok && timeNow().Before(e.until) {
		return e.sess
	}
	return nil
}

func (rf *refresher) keepForGrace(key [32]byte, s *Session) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	now := timeNow()
	if len(rf.grace) >= maxGraceEntries {
		for k, e := range rf.grace {
			if !now.Before(e.until) {
				delete(rf.grace, k)
			}
		}
		if len(rf.grace) >= maxGraceEntries {
			clear(rf.grace) // under attack or overload: forget, never grow
		}
	}
	rf.grace[key] = graceEntry{sess: s, until: now.Add(refreshGrace)}
}

package authgate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// refreshGrace is how long the result of a refresh is kept for requests
// that still carry the cookie from before it. With rotating refresh tokens
// those requests would otherwise replay a spent token and be logged out.
const refreshGrace = 30 * time.Second

// maxGraceEntries bounds the grace table; it is pruned when full.
const maxGraceEntries = 10000

// refresher makes sure that concurrent requests carrying one session cause
// one refresh at the provider.
type refresher struct {
	group singleflight.Group

	mu    sync.Mutex
	grace map[[32]byte]graceEntry
}

type graceEntry struct {
	sess  *Session
	until time.Time
}

func newRefresher() *refresher {
	return &refresher{grace: map[[32]byte]graceEntry{}}
}

// refreshFunc performs the actual refresh at the provider.
type refreshFunc func(ctx context.Context, old *Session) (*Session, error)

// refresh returns a session with fresh tokens for old. Callers with the
// same refresh token share one call; callers arriving within refreshGrace
// after it get its result. The provider call is detached from any single
// request's cancellation so that one client hanging up does not fail the
// others waiting on it.
func (rf *refresher) refresh(ctx context.Context, old *Session, timeout time.Duration, do refreshFunc) (*Session, error) {
	key := sha256.Sum256([]byte(old.Provider + "\x00" + old.RefreshToken))
	return rf.run(ctx, key, true, timeout, func(ctx context.Context) (*Session, error) { return do(ctx, old) })
}

// run calls fn once for all concurrent callers with the same key. With
// grace, the result is also kept for refreshGrace and handed to later
// callers with the same key.
func (rf *refresher) run(ctx context.Context, key [32]byte, grace bool, timeout time.Duration, fn func(context.Context) (*Session, error)) (*Session, error) {
	if grace {
		if s := rf.lookup(key); s != nil {
			return s, nil
		}
	}
	ch := rf.group.DoChan(string(key[:]), func() (any, error) {
		if grace {
			if s := rf.lookup(key); s != nil {
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
			rf.store(key, s)
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

func (rf *refresher) lookup(key [32]byte) *Session {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if e, ok := rf.grace[key]; ok && timeNow().Before(e.until) {
		return e.sess
	}
	return nil
}

func (rf *refresher) store(key [32]byte, s *Session) {
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

// needsRefresh reports whether a session's access token is within the
// skew of its expiry.
func (gw *gateway) needsRefresh(s *Session) bool {
	return s.Expiry != 0 && !timeNow().Before(time.Unix(s.Expiry, 0).Add(-gw.skew))
}

// refreshStored refreshes a stored session once across all instances: the
// instance that takes the Redis lock refreshes and saves; the others wait
// for the stored session to change and use it. No instance waits longer
// than the provider timeout.
func (gw *gateway) refreshStored(ctx context.Context, p *provider, old *Session) (*Session, error) {
	key := sha256.Sum256([]byte("id:" + old.ID))
	return gw.refresher.run(ctx, key, false, p.timeout(), func(ctx context.Context) (*Session, error) {
		deadline := timeNow().Add(p.timeout())
		for {
			cur, err := gw.store.load(ctx, old.ID)
			if err != nil {
				return nil, err
			}
			if cur.RefreshToken != old.RefreshToken || !gw.needsRefresh(cur) {
				gw.sessions.forget(kindStored, old.ID)
				return cur, nil
			}
			token, ok, err := gw.store.lock(ctx, old.ID, p.timeout()+time.Second)
			if err != nil {
				return nil, err
			}
			if ok {
				defer gw.store.unlock(ctx, old.ID, token)
				if again, err := gw.store.load(ctx, old.ID); err != nil {
					return nil, err
				} else if again.RefreshToken != cur.RefreshToken {
					return again, nil
				}
				ns, err := gw.refreshAt(p)(ctx, cur)
				if err != nil {
					if errors.Is(err, errInvalidGrant) {
						_ = gw.store.delete(ctx, old.ID)
					}
					return nil, err
				}
				if err := gw.store.save(ctx, ns, gw.remaining(ns)); err != nil {
					return nil, err
				}
				gw.sessions.forget(kindStored, old.ID)
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

// refreshAt returns the function that refreshes a session at p.
func (gw *gateway) refreshAt(p *provider) refreshFunc {
	return func(ctx context.Context, old *Session) (*Session, error) {
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
		ns.AccessToken = gw.sessionAccessToken(ts.AccessToken, ns.RefreshToken, st)
		ns.Expiry = 0
		if !ts.Expiry.IsZero() {
			ns.Expiry = ts.Expiry.Unix()
		}
		if ts.IDToken != "" && st.verifier != nil {
			// A refreshed ID token must be about the same user; it has no
			// nonce (OIDC Core §12.2).
			tok, err := st.verifier.Verify(ctx, ts.IDToken)
			if err != nil {
				return nil, fmt.Errorf("verifying refreshed ID token: %w", errProviderBadResponse)
			}
			if sub, _ := old.Claims["sub"].(string); sub != "" && tok.Subject != sub {
				return nil, fmt.Errorf("refreshed ID token is for another subject: %w", errInvalidGrant)
			}
			if old.IDToken != "" {
				ns.IDToken = gw.sessionIDToken(p, st, ts.IDToken)
			}
		}
		return &ns, nil
	}
}

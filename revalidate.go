package authgate

// Re-validation for providers without refresh (userinfo_refresh_interval):
// userinfo is read again with the stored access token, and the session
// follows what it says, or ends.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// revalidator re-reads userinfo for sessions through the refresher's
// machinery: one read per session at a time, its result shared, failures
// backed off by the grace table.
type revalidator struct{ rf *refresher }

// revalidateIfDue re-reads userinfo for a session whose provider has
// userinfo_refresh_interval, once the interval has passed since it was last
// read, and returns the session with the identity derived from it. A 401 or
// 403 from userinfo, or an answer about another user, ends the session; a
// provider failure keeps it (logged, and not tried again for refreshGrace).
// Concurrent requests with one session cause one read.
func (v revalidator) revalidateIfDue(w http.ResponseWriter, r *http.Request, e *sessionEntry) (*sessionEntry, error) {
	rf := v.rf
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
	ns, ok := rf.grace.get(key)
	var err error
	if !ok {
		ns, _, err = rf.once(r.Context(), key, p.timeout(), func(ctx context.Context) (*Session, refreshSource, error) {
			if ns, ok := rf.grace.get(key); ok {
				return ns, reusedGrace, nil
			}
			ns, err := v.revalidate(ctx, p, s, e.identity)
			if err != nil {
				return nil, refreshedHere, err
			}
			if m := rf.sessions; m.store != nil {
				if err := m.saveStored(ctx, ns); err != nil {
					return nil, refreshedHere, err
				}
				m.cache.forget(kindStored, s.ID)
			}
			rf.sessions.seal(ns, r) // encoded once for every request sharing this re-read
			rf.grace.put(key, ns)
			return ns, refreshedHere, nil
		})
	}
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
		rf.grace.put(key, s)
		rf.log.write(r, zap.WarnLevel, "userinfo re-read", zap.String("provider", p.name), zap.String("user_id", e.identity.ID),
			zap.String("result", "failed; session kept"), zap.Error(err))
		return e, nil
	}
	if ns == s {
		return e, nil // a failure another request met, within its back-off
	}
	ne, err := rf.adopt(w, r, ns)
	if err != nil {
		return nil, err
	}
	rf.log.write(r, zap.InfoLevel, "userinfo re-read", zap.String("provider", p.name), zap.String("user_id", ne.identity.ID), zap.String("result", "ok"))
	return ne, nil
}

// revalidate reads userinfo with s's access token and returns s with the
// claims derived from it.
func (v revalidator) revalidate(ctx context.Context, p *provider, s *Session, prevID *Identity) (*Session, error) {
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

package testidp

import (
	"time"
)

// Limits keeping the in-memory state bounded even when the injected clock
// never advances. maxEntries is large enough for load benchmarks with tens
// of thousands of sessions.
const (
	maxPending  = 1000
	maxEntries  = 100000
	pendingTTL  = 15 * time.Minute
	pruneEveryN = 64
)

type authRequest struct {
	clientID      string
	redirectURI   string
	scopes        []string
	state         string
	hasState      bool
	nonce         string
	hasNonce      bool
	challenge     string
	prompt        map[string]bool
	maxAge        int // -1 when absent
	loginHint     string
	expires       time.Time
	created       time.Time
	loginAttempts int
}

type authCode struct {
	req      *authRequest
	username string
	sid      string
	authTime time.Time
	expires  time.Time
	used     bool
	grantID  string
}

type grant struct {
	id       string
	clientID string
	username string
	sid      string
	scopes   []string
	nonce    string
	hasNonce bool
	authTime time.Time
	revoked  bool
	jtis     []string
	refresh  []string
	expires  time.Time // latest expiry of anything issued from it
}

type refreshToken struct {
	grantID string
	issued  time.Time
	expires time.Time
	invalid bool // rotated or revoked
	rotated bool
}

// accessRecord is an issued access token, stored under its jti (JWT) or
// under the token itself (Options.OpaqueAccessTokens).
type accessRecord struct {
	grantID  string
	clientID string
	expires  time.Time
	revoked  bool

	opaque   bool
	username string
	sub      string
	scope    string
	sid      string
	issuer   string
	aud      string
	issued   time.Time
}

type session struct {
	id       string
	username string
	authTime time.Time
	expires  time.Time
	ended    bool
	clients  map[string]bool
}

func (s *Server) newSessionLocked(username string, now time.Time) *session {
	sess := &session{
		id:       randomString(16),
		username: username,
		authTime: now,
		expires:  now.Add(s.opts.SessionTTL),
		clients:  map[string]bool{},
	}
	s.sessions[sess.id] = sess
	s.maybePruneLocked(now)
	return sess
}

func (s *Server) activeSessionLocked(sid string, now time.Time) *session {
	sess := s.sessions[sid]
	if sess == nil || sess.ended || !now.Before(sess.expires) {
		return nil
	}
	return sess
}

// revokeGrantLocked invalidates every token issued from a grant.
func (s *Server) revokeGrantLocked(g *grant) {
	if g == nil {
		return
	}
	g.revoked = true
	for _, rt := range g.refresh {
		if r := s.refresh[rt]; r != nil {
			r.invalid = true
		}
	}
	for _, j := range g.jtis {
		if a := s.access[j]; a != nil {
			a.revoked = true
		}
	}
}

// endSessionLocked ends a session and revokes its grants. It returns the
// clients that took part (for back-channel logout).
func (s *Server) endSessionLocked(sess *session) []string {
	if sess == nil || sess.ended {
		return nil
	}
	sess.ended = true
	for _, g := range s.grants {
		if g.sid == sess.id {
			s.revokeGrantLocked(g)
		}
	}
	var out []string
	for c := range sess.clients {
		out = append(out, c)
	}
	return out
}

// maybePruneLocked drops expired state. A scan costs time proportional to
// the state's size, so it runs after a number of operations proportional
// to that size (amortised O(1) per operation) or when a map is over its
// cap; caps cut maps to 90% so that one full map does not make every
// operation scan.
func (s *Server) maybePruneLocked(now time.Time) {
	s.ops++
	total := len(s.pending) + len(s.codes) + len(s.access) + len(s.refresh) + len(s.sessions) + len(s.grants) + len(s.assertionJTIs) + len(s.pushed)
	if s.ops-s.lastPrune < max(pruneEveryN, total/8) && len(s.pending) <= maxPending && len(s.codes) <= maxEntries &&
		len(s.access) <= maxEntries && len(s.refresh) <= maxEntries && len(s.sessions) <= maxEntries && len(s.grants) <= maxEntries && len(s.assertionJTIs) <= maxEntries && len(s.pushed) <= maxEntries {
		return
	}
	s.lastPrune = s.ops
	for k, v := range s.pending {
		if now.After(v.expires) {
			delete(s.pending, k)
		}
	}
	for k, v := range s.codes {
		// Keep used codes around a little longer to detect replays.
		if now.After(v.expires.Add(s.opts.CodeTTL + time.Minute)) {
			delete(s.codes, k)
		}
	}
	for k, v := range s.refresh {
		if now.After(v.expires) {
			delete(s.refresh, k)
		}
	}
	for k, v := range s.access {
		if now.After(v.expires) {
			delete(s.access, k)
		}
	}
	for k, v := range s.grants {
		if now.After(v.expires) {
			delete(s.grants, k)
		}
	}
	for k, v := range s.sessions {
		if v.ended || now.After(v.expires) {
			delete(s.sessions, k)
		}
	}
	for k, p := range s.pushed {
		if now.After(p.expires) {
			delete(s.pushed, k)
		}
	}
	for k, exp := range s.assertionJTIs {
		if now.After(exp) {
			delete(s.assertionJTIs, k)
		}
	}
	// Hard caps: drop arbitrary entries (map order is random).
	capMap(s.pending, maxPending)
	capMap(s.codes, maxEntries)
	capMap(s.refresh, maxEntries)
	capMap(s.access, maxEntries)
	capMap(s.grants, maxEntries)
	capMap(s.sessions, maxEntries)
	capMap(s.assertionJTIs, maxEntries)
	capMap(s.pushed, maxEntries)
}

// capMap cuts a map over limit down to 90% of limit.
func capMap[V any](m map[string]V, limit int) {
	if len(m) <= limit {
		return
	}
	for k := range m {
		if len(m) <= limit*9/10 {
			return
		}
		delete(m, k)
	}
}

// IsRevoked reports whether a token issued by this server has been revoked
// or otherwise invalidated (revocation endpoint, code replay, refresh token
// rotation, logout). token may be an access token (JWT or opaque) or a
// refresh token.
// Unknown tokens report false.
func (s *Server) IsRevoked(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.refresh[token]; r != nil {
		g := s.grants[r.grantID]
		return r.invalid || (g != nil && g.revoked)
	}
	if a := s.access[token]; a != nil && a.opaque {
		g := s.grants[a.grantID]
		return a.revoked || (g != nil && g.revoked)
	}
	p, err := parseJWT(token)
	if err != nil {
		return false
	}
	jti, _ := p.claims["jti"].(string)
	if a := s.access[jti]; a != nil && !a.opaque {
		g := s.grants[a.grantID]
		return a.revoked || (g != nil && g.revoked)
	}
	return false
}

// EndUserSessions ends every provider session of username (an
// administrator "sign out everywhere"): tokens issued in them are revoked
// and back-channel logout tokens are sent. It returns the number of
// sessions ended and the first back-channel delivery error.
func (s *Server) EndUserSessions(username string) (int, error) {
	now := s.now()
	type bc struct{ client, sub, sid string }
	var sends []bc
	n := 0
	s.mu.Lock()
	for _, sess := range s.sessions {
		if sess.username != username || s.activeSessionLocked(sess.id, now) == nil {
			continue
		}
		n++
		sub := s.subjectLocked(username)
		for _, c := range s.endSessionLocked(sess) {
			if cl := s.clients[c]; cl != nil && cl.BackchannelLogoutURI != "" {
				sends = append(sends, bc{c, sub, sess.id})
			}
		}
	}
	s.mu.Unlock()
	var first error
	for _, b := range sends {
		if err := s.SendBackchannelLogout(b.client, b.sub, b.sid); err != nil && first == nil {
			first = err
		}
	}
	return n, first
}

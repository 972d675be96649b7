package authgate

import (
	"errors"
	"net/http"

	"go.uber.org/zap"
)

// site is one protected site at run time: the gateway it signs in
// through, the providers it accepts, its rules, what it forwards, how it
// answers errors. The endpoints are functions of a site.
type site struct {
	gw        *gateway
	providers []*provider
	rules     []compiledRule
	fwd       *forwarder
	pages     *pages
	bearer    *bearerValidator // nil: bearer tokens are not accepted
	assert    *assertionSigner // nil: no identity assertion is sent
	counts    *siteLabels
	log       eventLog
}

// identify finds who is asking: the session cookie first (refreshed when
// due), then, when enabled, a bearer token. A bearer request never gets a
// session.
func (s *site) identify(w http.ResponseWriter, r *http.Request, sc *sessionCookie) (*Identity, *Session, error) {
	e, err := s.gw.sessions.sessionFor(w, r, sc, s.providers)
	if err == nil {
		e, err = s.renew(w, r, e)
	}
	if err == nil {
		return e.identity, e.sess, nil
	}
	if s.bearer == nil || isProviderFailure(err) || errors.Is(err, errStoreDown) {
		return nil, nil, err
	}
	tok := bearerToken(r)
	if tok == "" {
		return nil, nil, err
	}
	id, err := s.bearer.identify(r.Context(), tok)
	return id, nil, err
}

// renew refreshes e when its access token is due, and otherwise rewrites
// a cookie made with a retired key under the current one.
func (s *site) renew(w http.ResponseWriter, r *http.Request, e *sessionEntry) (*sessionEntry, error) {
	ne, err := s.gw.refresher.refreshIfDue(w, r, e)
	if err == nil {
		ne, err = s.gw.revalidator.revalidateIfDue(w, r, ne)
	}
	if err != nil {
		return nil, err
	}
	if ne == e && e.oldKey {
		if err := s.gw.sessions.writeCookie(w, r, e.sess); err != nil {
			return nil, err
		}
	}
	return ne, nil
}

// forbidden is the 403 for a signed-in user the rules refuse. A user whose
// address the provider marks unverified, at a site whose rules look at
// addresses, is told so, and the session ends: once the address is
// verified, signing in again reads it anew.
func (s *site) forbidden(w http.ResponseWriter, r *http.Request, id *Identity, sess *Session) error {
	s.counts.count(r.Host, decisionDenied)
	if id.EmailUnverified && rulesReadEmail(s.rules) {
		s.log.write(r, zap.InfoLevel, "denied", zap.String("provider", id.Provider), zap.String("user_id", id.ID), zap.String("host", r.Host),
			zap.String("reason", "email_unverified"))
		if sess != nil {
			m := s.gw.sessions
			m.clearCookies(w, r)
			if m.store != nil {
				m.cache.forget(kindStored, sess.ID)
				if err := m.store.delete(r.Context(), sess.ID); err != nil {
					s.log.write(r, zap.WarnLevel, "session store failure", zap.String("result", "stored session kept until it expires"), zap.Error(err))
				}
			}
		}
		_, reason, msg, _ := refusal(refuseIdentity("email_unverified", errEmailUnverified))
		return s.pages.fail(w, r, http.StatusForbidden, reason, msg)
	}
	s.log.write(r, zap.InfoLevel, "denied", zap.String("provider", id.Provider), zap.String("user_id", id.ID), zap.String("host", r.Host))
	who := id.ID
	if id.Email != "" {
		who = id.Email
	}
	msg := "You are signed in as " + who + ", but this account may not use this site."
	if !wantsHTML(r) {
		return s.pages.fail(w, r, http.StatusForbidden, "forbidden", msg) // JSON for APIs, as for every other answer
	}
	return s.pages.render(w, r, http.StatusForbidden, "forbidden", msg, who)
}

// rulesReadEmail reports whether any rule looks at the email address.
func rulesReadEmail(rules []compiledRule) bool {
	for _, r := range rules {
		if r.field == "email" || r.field == "domain" {
			return true
		}
	}
	return false
}

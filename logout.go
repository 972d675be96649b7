package authgate

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
)

// serveLogout clears every session cookie and pending login, revokes the
// tokens where the provider can, and ends the provider session where it
// offers an end-session endpoint.
func serveLogout(s *site, w http.ResponseWriter, r *http.Request) error {
	gw := s.gw
	rd := gw.redirects.safeReturnURL(r.URL.Query().Get("rd"), r.Host)
	sc, present := readSessionCookie(r, gw.sessions.cookie.Name, true)
	gw.sessions.clearCookies(w, r)
	if len(present) == 0 {
		gw.sessions.cookie.expire(w, gw.sessions.cookie.Name, isHTTPS(r))
	}
	_, pendingNames := pendingLogins(gw, r)
	for _, n := range pendingNames {
		expirePending(gw, w, r, n)
	}
	// No Clear-Site-Data: it would wipe every cookie of the site, the
	// application's own included, and Chromium refuses the Set-Cookie
	// deletions of a response that carries it (on plain http it is ignored
	// too), which left users signed in.
	w.Header().Set("Cache-Control", "no-store")
	if sc.n == 0 {
		http.Redirect(w, r, rd, http.StatusFound)
		return nil
	}
	e, err := gw.sessions.lookup(r, &sc)
	if err != nil {
		if errors.Is(err, errStoreDown) {
			gw.log.write(r, zap.WarnLevel, "logout", zap.String("result", "cookies cleared; session store unavailable, stored session kept until it expires"), zap.Error(err))
		}
		http.Redirect(w, r, rd, http.StatusFound)
		return nil
	}
	p := e.provider
	// Before anything else: a refresh of this session in flight, or one
	// a racing request with an older cookie would reuse, must not bring it
	// back.
	gw.refresher.forgetSession(e.sess)
	if err := gw.sessions.forget(r.Context(), &sc, e.sess); err != nil {
		gw.log.write(r, zap.WarnLevel, "logout", zap.String("result", "session store unavailable; stored session kept until it expires"), zap.Error(err))
	}
	st, err := p.state(r.Context())
	if err != nil {
		gw.log.write(r, zap.WarnLevel, "logout", zap.String("provider", p.name), zap.String("user_id", e.identity.ID), zap.String("result", "provider unreachable; cookies cleared"), zap.Error(err))
		http.Redirect(w, r, rd, http.StatusFound)
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout())
	defer cancel()
	result := "ok"
	if err := st.client.revoke(ctx, e.sess.RefreshToken, "refresh_token"); err != nil {
		result = "revocation failed"
		gw.log.write(r, zap.WarnLevel, "revocation failed", zap.String("provider", p.name), zap.Error(err))
	}
	if err := st.client.revoke(ctx, e.sess.AccessToken, "access_token"); err != nil {
		result = "revocation failed"
		gw.log.write(r, zap.WarnLevel, "revocation failed", zap.String("provider", p.name), zap.Error(err))
	}
	gw.log.write(r, zap.InfoLevel, "logout", zap.String("provider", p.name), zap.String("user_id", e.identity.ID), zap.String("result", result))
	if st.endSession != "" {
		target := rd
		if strings.HasPrefix(target, "/") {
			scheme := "http"
			if isHTTPS(r) {
				scheme = "https"
			}
			target = scheme + "://" + r.Host + target
		}
		v := url.Values{"client_id": {p.cfg.ClientID}, "post_logout_redirect_uri": {target}}
		if e.sess.IDToken != "" {
			// The hint is an ID token: POST it, never put it in a URL where
			// logs (Caddy's access log records Location), browser history
			// and the provider's access log would keep it.
			v.Set("id_token_hint", e.sess.IDToken)
			return writeAutoPost(w, st.endSession, v)
		}
		sep := "?"
		if strings.Contains(st.endSession, "?") {
			sep = "&"
		}
		http.Redirect(w, r, st.endSession+sep+v.Encode(), http.StatusFound)
		return nil
	}
	http.Redirect(w, r, rd, http.StatusFound)
	return nil
}

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
//
// A sign-out that another site asked for is not done: a cross-site GET
// gets a page that asks the user to confirm by a POST to this site, and a
// cross-site POST (or any other method) is refused (see crossSiteLogout).
func serveLogout(s *site, w http.ResponseWriter, r *http.Request) error {
	gw := s.gw
	rawRD := r.URL.Query().Get("rd")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// The confirmation form carries rd in its body.
		r.Body = http.MaxBytesReader(w, r.Body, maxLogoutBody)
		if err := r.ParseForm(); err != nil {
			gw.log.write(r, zap.WarnLevel, "logout refused", zap.String("reason", "the body is not a form of at most 64 KiB"))
			return s.pages.failAs(w, r, http.StatusBadRequest, "invalid_request", "The sign-out request is not a form.", navigation(r))
		}
		if v := r.PostForm.Get("rd"); v != "" {
			rawRD = v
		}
	}
	rd := gw.redirects.safeReturnURL(rawRD, r.Host)
	if foreign, why := crossSiteLogout(r); foreign {
		return confirmLogout(s, w, r, rd, why)
	}
	sc, present := gw.sessions.read(r)
	clear := func() {
		gw.sessions.clearCookies(w, r)
		if len(present) == 0 {
			gw.sessions.cookie.expire(w, gw.sessions.cookie.forRequest(r).Name, isHTTPS(r))
		}
		_, pendingNames := pendingLogins(gw, r)
		for _, n := range pendingNames {
			expirePending(gw, w, r, n)
		}
	}
	// No Clear-Site-Data: it would wipe every cookie of the site, the
	// application's own included, and Chromium refuses the Set-Cookie
	// deletions of a response that carries it (on plain http it is ignored
	// too), which left users signed in.
	w.Header().Set("Cache-Control", "no-store")
	if sc.n == 0 {
		clear()
		http.Redirect(w, r, rd, http.StatusFound)
		return nil
	}
	// With the session store away the stored session cannot be ended:
	// a 503, and the cookie kept, so that the user can sign out when it
	// is back (clearing it would leave the session alive for a copy of
	// the cookie, with no way left to end it).
	notYet := func(err error) error {
		gw.log.write(r, zap.ErrorLevel, "session store failure", zap.String("during", "logout"), zap.String("result", "not signed out; cookies kept"), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return s.pages.fail(w, r, http.StatusServiceUnavailable, "store_unavailable",
			"You are not signed out yet: sessions are temporarily unavailable. Please try again in a moment.")
	}
	e, err := gw.sessions.lookup(r, &sc)
	if errors.Is(err, errStoreDown) {
		return notYet(err)
	}
	if err != nil {
		clear()
		http.Redirect(w, r, rd, http.StatusFound)
		return nil
	}
	p := e.provider
	// Before anything else: a refresh of this session in flight, or one
	// a racing request with an older cookie would reuse, must not bring it
	// back.
	gw.refresher.forgetSession(e.sess)
	if err := gw.sessions.forget(r.Context(), &sc, e.sess); err != nil {
		return notYet(err)
	}
	clear()
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

// crossSiteLogout reports whether another site started this sign-out
// request, and why it looks so. Sec-Fetch-Site decides when the browser
// sends it: same-origin and none (the user typed the URL or used a
// bookmark) are this site; cross-site is not, and neither is same-site: a
// sibling subdomain is another application, which may be anyone's,
// unless its Origin or Referer names this very host (the same host by
// another scheme or from a redirect). Without Sec-Fetch-Site (plain http
// sites other than localhost, older browsers) a foreign Origin, then a
// foreign Referer, says so. A request with none of the three (curl, old
// clients, a page that hides its Referer from a browser that sends no
// Sec-Fetch-Site) is taken as this site's: that residual risk is in the
// README.
func crossSiteLogout(r *http.Request) (bool, string) {
	switch sfs := r.Header.Get("Sec-Fetch-Site"); sfs {
	case "same-origin", "none":
		return false, ""
	case "":
	case "same-site":
		if sameHost(r.Header.Get("Origin"), r.Host) || sameHost(r.Header.Get("Referer"), r.Host) {
			return false, ""
		}
		return true, "Sec-Fetch-Site: same-site (another host of this site)"
	default:
		return true, "Sec-Fetch-Site: " + safeHeader(sfs)
	}
	if o := r.Header.Get("Origin"); o != "" {
		if sameHost(o, r.Host) {
			return false, ""
		}
		return true, "Origin of another host"
	}
	if ref := r.Header.Get("Referer"); ref != "" && !sameHost(ref, r.Host) {
		return true, "Referer of another host"
	}
	return false, ""
}

// sameHost reports whether the absolute URL raw (an Origin or a Referer)
// names host (the request's Host, port included). The scheme is not
// compared: behind a proxy that ends TLS the request does not know its
// own. "null" and anything unparsable are another host.
func sameHost(raw, host string) bool {
	if raw == "" || raw == "null" {
		return false
	}
	u, err := url.Parse(raw)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}

// navigation reports whether the request is a person's browser loading a
// page (a link, a typed URL, a form): it gets pages, others JSON. Unlike
// wantsHTML it admits POST, the confirmation form's own method.
func navigation(r *http.Request) bool {
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// confirmLogout answers a sign-out another site started, leaving the
// session as it is. A GET navigation gets the confirmation page, whose
// POST form (same-origin, carrying rd) signs out; a foreign POST gets the
// same page with 403, since it may be a forged form; a program (an image,
// fetch, an API client) gets a JSON 403 it can read as "not done".
func confirmLogout(s *site, w http.ResponseWriter, r *http.Request, rd, why string) error {
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case get && navigation(r):
		s.gw.log.write(r, zap.InfoLevel, "logout confirmation asked", zap.String("reason", why))
	case get:
		s.gw.log.write(r, zap.InfoLevel, "logout refused", zap.String("reason", why+", not a navigation"))
	default:
		s.gw.log.write(r, zap.WarnLevel, "logout refused", zap.String("reason", why))
	}
	if !navigation(r) {
		return s.pages.json(w, r, http.StatusForbidden, "logout_cross_site",
			"Sign-out was asked for by another site and was not done; sign out from this site itself.")
	}
	if get {
		return s.pages.logoutConfirm(w, r, http.StatusOK, "logout_confirm", rd,
			"Another site sent you here to sign out. You are still signed in.")
	}
	if s.pages.mode == "caddy" {
		return s.pages.failAs(w, r, http.StatusForbidden, "logout_cross_site",
			"A sign-out sent from another site was refused. You are still signed in.", true)
	}
	return s.pages.logoutConfirm(w, r, http.StatusForbidden, "logout_cross_site", rd,
		"A sign-out sent from another site was refused. You are still signed in; sign out here if you meant to.")
}

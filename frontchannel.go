package authgate

import (
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// serveFrontchannelLogout is the OpenID Connect Front-Channel Logout 1.0
// receiver: the provider's logout page loads
// /oauth2/frontchannel-logout?iss=…&sid=… in an iframe. The request must
// name the issuer of one of the site's providers and the provider session
// (sid): with a session store every session of that provider session
// ends, on every instance; in any case the browser's own session ends when
// it is that one (its cookie, sent to this same-site frame). The answer is
// a small page that only the provider's origin may frame.
//
// Browsers do not send SameSite=Lax cookies (the default) to a frame on
// another site: without a session store, front-channel logout reaches only
// providers on the same site as the application (auth.example.com for
// app.example.com), or sessions with cookie same_site none.
func serveFrontchannelLogout(s *site, w http.ResponseWriter, r *http.Request) error {
	gw := s.gw
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return s.pages.fail(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "Front-channel logout takes GET.")
	}
	q := r.URL.Query()
	iss, sid := q.Get("iss"), q.Get("sid")
	if len(q["iss"]) != 1 || len(q["sid"]) != 1 || iss == "" || sid == "" || len(sid) > 1024 {
		gw.log.write(r, zap.WarnLevel, "frontchannel logout refused", zap.String("reason", "iss and sid must be given once each"))
		return s.pages.fail(w, r, http.StatusBadRequest, "invalid_request", "A front-channel logout request names the issuer (iss) and the session (sid), once each.")
	}
	type match struct {
		p  *provider
		st *providerState
	}
	var matched []match
	var origins []string
	for _, p := range s.providers {
		st, err := p.state(r.Context())
		if err != nil || st.verifier == nil || !st.verifier.fits(iss, st.issuer) {
			continue
		}
		matched = append(matched, match{p, st})
		for _, u := range []string{iss, st.endSession} {
			if o := originOf(u); o != "" && !slices.Contains(origins, o) {
				origins = append(origins, o)
			}
		}
	}
	if len(matched) == 0 {
		gw.log.write(r, zap.WarnLevel, "frontchannel logout refused", zap.String("reason", "iss is no issuer of this site's providers"), zap.String("iss", safeHeader(iss)))
		return s.pages.fail(w, r, http.StatusBadRequest, "invalid_request", "The front-channel logout request comes from an unknown issuer.")
	}
	ended := 0
	// This browser's session, when it is that provider session.
	sc, _ := gw.sessions.read(r)
	if sc.n > 0 {
		if e, err := gw.sessions.lookup(r, &sc); err == nil {
			for _, m := range matched {
				own, _ := e.sess.Claims["sid"].(string)
				if e.provider == m.p && own == sid && m.st.verifier.issuerMatches(iss, m.st.issuer, e.sess.Claims) {
					gw.refresher.forgetSession(e.sess) // as logout: no refresh race brings it back
					if err := gw.sessions.forget(r.Context(), &sc, e.sess); err != nil {
						return s.pages.storeFailure(w, r, err)
					}
					gw.sessions.clearCookies(w, r)
					ended = 1
				}
			}
		}
	}
	// With a session store: every session of it, wherever it was made.
	if gw.sessions.store != nil {
		ended = 0
		for _, m := range matched {
			n, err := gw.sessions.store.deleteLoggedOut(r.Context(), m.p.name, sid, "")
			if err != nil {
				return s.pages.storeFailure(w, r, err)
			}
			ended += n
		}
	}
	names := make([]string, len(matched))
	for i, m := range matched {
		names[i] = m.p.name
	}
	gw.log.write(r, zap.InfoLevel, "frontchannel logout", zap.String("provider", strings.Join(names, ",")), zap.Int("sessions", ended))
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// Framed by the provider's logout page, and by nothing else.
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors "+strings.Join(origins, " "))
	w.WriteHeader(http.StatusOK)
	return frontchannelPage.Execute(w, map[string]any{"Ended": ended > 0})
}

// originOf is the scheme://host[:port] of an absolute http(s) URL, or "".
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

var frontchannelPage = template.Must(template.New("frontchannel").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head>
<body><p id="message">{{if .Ended}}Signed out.{{else}}No session to end.{{end}}</p></body></html>
`))

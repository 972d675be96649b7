package authgate

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// userinfoJSON is the identity as /oauth2/userinfo shows it. Tokens are
// never part of it.
type userinfoJSON struct {
	User              string   `json:"user"`
	Email             string   `json:"email,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Name              string   `json:"name,omitempty"`
	Groups            []string `json:"groups,omitempty"`
	Provider          string   `json:"provider"`
}

func serveUserinfo(s *site, w http.ResponseWriter, r *http.Request) error {
	sc := scanSessionCookie(r, s.gw.sessions.cookie.Name)
	id, _, err := s.identify(w, r, &sc)
	if err != nil {
		return s.pages.unauthenticatedAPI(w, r, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(userinfoJSON{
		User: id.ID, Email: id.Email, PreferredUsername: id.PreferredUsername, Name: id.Name, Groups: id.Groups, Provider: id.Provider,
	})
}

// serveAuth is the forward-auth check, for Caddy's forward_auth, nginx
// auth_request and Traefik ForwardAuth: 200 with the identity headers to
// copy, 403 when the rules refuse, and without a session 401 — or, for a
// browser navigation described by X-Forwarded-Method/Proto/Host/Uri, a 302
// to sign in that returns to the original URL (validated like any return
// URL).
func serveAuth(s *site, w http.ResponseWriter, r *http.Request) error {
	s.fwd.stripSpoofed(r)
	sc := scanSessionCookie(r, s.gw.sessions.cookie.Name)
	id, sess, err := s.identify(w, r, &sc)
	if err != nil {
		if !isProviderFailure(err) && forwardedNavigation(r) {
			if rd, ok := s.gw.redirects.check(forwardedURL(r), r.Host); ok {
				s.counts.count(r.Host, decisionUnauthenticated)
				// forward_auth keeps the app's Host on the subrequest, so
				// the login goes to the auth host when there is one.
				scheme := "http"
				if isHTTPS(r) || r.Header.Get("X-Forwarded-Proto") == "https" {
					scheme = "https"
				}
				target := scheme + "://" + orDefault(s.gw.authHost, r.Host) + s.gw.prefix + "start?" + url.Values{"rd": {rd}}.Encode()
				w.Header().Set("Cache-Control", "no-store")
				http.Redirect(w, r, target, http.StatusFound)
				return nil
			}
		}
		return s.pages.unauthenticatedAPI(w, r, err)
	}
	if !allowed(s.rules, id) {
		return s.forbidden(w, r, id, sess)
	}
	s.fwd.forward(r, id, sess, sc.others)
	s.fwd.copyIdentity(w, r)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// forwardedNavigation reports whether a forward-auth subrequest stands for
// a browser navigation of the original request.
func forwardedNavigation(r *http.Request) bool {
	m := r.Header.Get("X-Forwarded-Method")
	if m != "" && m != http.MethodGet && m != http.MethodHead {
		return false
	}
	return r.Header.Get("X-Forwarded-Host") != "" && wantsHTML(r)
}

// forwardedURL rebuilds the original URL of a forward-auth subrequest.
func forwardedURL(r *http.Request) string {
	proto := r.Header.Get("X-Forwarded-Proto")
	if proto != "https" {
		proto = "http"
	}
	uri := r.Header.Get("X-Forwarded-Uri")
	if !strings.HasPrefix(uri, "/") {
		uri = "/"
	}
	return proto + "://" + r.Header.Get("X-Forwarded-Host") + uri
}

package authgate

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"
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
	sc := s.gw.sessions.scan(r)
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
//
// When checking the session rewrote its cookie (a refresh, a retired key),
// the new cookie must reach the browser, or it goes on sending the old one
// and, once the refresh grace is over, replays a spent refresh token and is
// signed out. Caddy's forward_auth drops every header of a 2xx answer but
// those it copies into the request to the backend (copy_headers), so for a
// proxy that says what the original request was (X-Forwarded-Method and
// X-Forwarded-Uri) the answer is a 307 to the same URL carrying the
// Set-Cookie: the browser stores it and repeats the request, method and
// body included. Other callers (nginx auth_request, which accepts only 2xx,
// 401 and 403) get the Set-Cookie on the 200, to pass on themselves.
func serveAuth(s *site, w http.ResponseWriter, r *http.Request) error {
	s.fwd.stripSpoofed(r)
	sc := s.gw.sessions.scan(r)
	cookieKey := sha256.Sum256([]byte(strings.Join(r.Header.Values("Cookie"), "\x00")))
	id, sess, err := s.identify(w, r, &sc)
	if err != nil {
		if !isProviderFailure(err) && !errors.Is(err, errBearerBusy) && !errors.Is(err, errBadBearer) && forwardedNavigation(r) {
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
	w.Header().Set("Cache-Control", "no-store")
	if len(w.Header()["Set-Cookie"]) > 0 {
		if uri, ok := repeatableForwardedRequest(s, r); ok && firstAuthRedirect(cookieKey) {
			s.log.write(r, zap.InfoLevel, "forward auth: session cookie renewed, repeating the request to deliver it",
				zap.String("provider", id.Provider), zap.String("user_id", id.ID))
			w.Header().Set("Location", uri)
			w.WriteHeader(http.StatusTemporaryRedirect)
			return nil
		}
	}
	s.fwd.forward(r, id, sess, &sc)
	if s.assert != nil {
		if err := s.assert.attach(r, id, sess, sc.checkedAt); err != nil {
			return s.pages.fail(w, r, http.StatusInternalServerError, "assertion_failed", "The request could not be signed for the application.")
		}
		w.Header()[s.assert.header] = r.Header[s.assert.header]
	}
	s.fwd.copyIdentity(w, r)
	w.WriteHeader(http.StatusOK)
	return nil
}

// repeatableForwardedRequest returns where a browser repeats the request
// a forward-auth subrequest stands for: the original path and query
// (X-Forwarded-Uri), relative, so that it stays on the original origin
// whatever X-Forwarded-Host says. ok is false when the proxy does not say
// what the request was.
func repeatableForwardedRequest(s *site, r *http.Request) (string, bool) {
	if r.Header.Get("X-Forwarded-Method") == "" {
		return "", false
	}
	return s.gw.redirects.check(r.Header.Get("X-Forwarded-Uri"), r.Host)
}

// authRedirects remembers the Cookie headers that got a 307 with a renewed
// cookie from /oauth2/auth within refreshGrace. A client that comes back
// with the same old cookie did not store the new one (a script that sets
// its Cookie header by hand); it gets its answer rather than a redirect
// loop, and the refresh grace serves it meanwhile.
var authRedirects, _ = lru.New[[32]byte, time.Time](maxAuthRedirects)

// maxAuthRedirects bounds authRedirects; the oldest entry goes first.
const maxAuthRedirects = 10000

// firstAuthRedirect reports whether a request with this Cookie header has
// not been redirected within refreshGrace, and records that it now is.
func firstAuthRedirect(key [32]byte) bool {
	now := timeNow()
	if at, ok := authRedirects.Get(key); ok && now.Sub(at) < refreshGrace {
		return false
	}
	authRedirects.Add(key, now)
	return true
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

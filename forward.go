package authgate

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// HeaderNames are the names of the identity headers. Each is removed from
// the client's request before authgate sets it, so a client cannot forge
// it; the default names are removed too when others are configured. The
// name "off" sends no such header.
type HeaderNames struct {
	// User carries the user id. Default: X-Forwarded-User.
	User string `json:"user,omitempty"`
	// Email. Default: X-Forwarded-Email.
	Email string `json:"email,omitempty"`
	// PreferredUsername. Default: X-Forwarded-Preferred-Username.
	PreferredUsername string `json:"preferred_username,omitempty"`
	// Groups, comma-separated. Default: X-Forwarded-Groups.
	Groups string `json:"groups,omitempty"`
	// AccessToken, sent only with pass_access_token. Default:
	// X-Forwarded-Access-Token.
	AccessToken string `json:"access_token,omitempty"`
}

var defaultHeaders = HeaderNames{
	User:              "X-Forwarded-User",
	Email:             "X-Forwarded-Email",
	PreferredUsername: "X-Forwarded-Preferred-Username",
	Groups:            "X-Forwarded-Groups",
	AccessToken:       "X-Forwarded-Access-Token",
}

type claimHeader struct {
	name string
	path claimPath
}

// forward hands the identity to the backend: headers, placeholders, and
// the request without the session cookies. otherCookies tells whether the
// request carries cookies besides authgate's (see sessionCookie).
func (h *Handler) forward(r *http.Request, id *Identity, sess *Session, otherCookies bool) {
	hd := r.Header
	o := &id.out
	if o.id != "" && h.Headers.User != "" {
		hd[h.Headers.User] = []string{o.id}
	}
	if o.email != "" && h.Headers.Email != "" {
		hd[h.Headers.Email] = []string{o.email}
	}
	if o.username != "" && h.Headers.PreferredUsername != "" {
		hd[h.Headers.PreferredUsername] = []string{o.username}
	}
	if o.groups != "" && h.Headers.Groups != "" {
		hd[h.Headers.Groups] = []string{o.groups}
	}
	if h.PassAccessToken && sess != nil && sess.AccessToken != "" && h.Headers.AccessToken != "" {
		hd[h.Headers.AccessToken] = []string{sess.AccessToken}
	}
	for _, ch := range h.claimHeaders {
		if vals := ch.path.strings(id.Claims); len(vals) > 0 {
			hd[ch.name] = []string{sanitizeHeaderValue(strings.Join(vals, ","))}
		}
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(id.placeholder)
	}
	if !h.PassCookie {
		if otherCookies {
			stripCookies(r, h.gw.cookie.Name)
		} else {
			delete(hd, "Cookie")
		}
	}
	// A browser coming straight from the callback may name it, code
	// included, as its Referer; the backend has no use for that.
	if ref := hd.Get("Referer"); ref != "" && strings.Contains(ref, h.gw.prefix+"callback") {
		delete(hd, "Referer")
	}
}

// stripCookies removes authgate's cookies (session, chunks, pending
// logins) from the request's Cookie headers, in one pass.
func stripCookies(r *http.Request, base string) {
	lines := r.Header["Cookie"]
	found := false
	for _, l := range lines {
		if strings.Contains(l, base) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var b strings.Builder
	for _, l := range lines {
		for len(l) > 0 {
			var part string
			part, l, _ = strings.Cut(l, ";")
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			name, _, _ := strings.Cut(part, "=")
			if name == base || strings.HasPrefix(name, base+"_") {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
	}
	if b.Len() == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = []string{b.String()}
}

package testidp

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// PathPAR is the RFC 9126 pushed authorization request endpoint, relative
// to the issuer.
const PathPAR = "/par"

// RequestURIPrefix starts every request_uri the PAR endpoint returns.
const RequestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// PARLifetime is the lifetime (expires_in) of a pushed request.
const PARLifetime = 60 * time.Second

type pushedRequest struct {
	clientID string
	params   url.Values
	expires  time.Time
}

// clientAuthParams are the parameters of client authentication, not of
// the authorization request.
var clientAuthParams = []string{"client_secret", "client_assertion", "client_assertion_type"}

// par implements RFC 9126 §2: the pushed parameters are validated as an
// authorization request would be, errors are answered as JSON (§2.3).
func (s *Server) par(w http.ResponseWriter, r *http.Request) {
	client, _, ok := s.clientPost(w, r)
	if !ok {
		return
	}
	params := url.Values{}
	for k, v := range r.PostForm {
		if !slices.Contains(clientAuthParams, k) {
			params[k] = slices.Clone(v)
		}
	}
	if id := params.Get("client_id"); id != "" && id != client.ID {
		writeOAuthError(w, badRequest("invalid_request", "client_id does not match the authenticated client"))
		return
	}
	params.Set("client_id", client.ID)
	s.mu.Lock()
	s.lastPushed = params
	s.mu.Unlock()
	if params.Has("request_uri") {
		writeOAuthError(w, badRequest("invalid_request", "request_uri must not be pushed"))
		return
	}
	_, pageErr, redirErr := s.parseAuthRequest(params)
	if pageErr != "" {
		writeOAuthError(w, badRequest("invalid_request", pageErr))
		return
	}
	if redirErr != nil {
		writeOAuthError(w, redirErr)
		return
	}
	uri := RequestURIPrefix + randomString(24)
	now := s.now()
	s.mu.Lock()
	s.pushed[uri] = &pushedRequest{clientID: client.ID, params: params, expires: now.Add(PARLifetime)}
	s.maybePruneLocked(now)
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]any{"request_uri": uri, "expires_in": int64(PARLifetime / time.Second)})
}

// resolvePushed replaces the front-channel parameters of an authorization
// request that carries request_uri by the pushed ones (RFC 9126 §4, RFC
// 9101 §5: only the pushed parameters are used; the others are ignored).
// The request_uri is single use. It returns an error code and message for
// an error page when the request_uri cannot be used.
func (s *Server) resolvePushed(front url.Values) (url.Values, string, string) {
	for _, k := range []string{"client_id", "request_uri"} {
		if len(front[k]) > 1 {
			return nil, "invalid_request", k + " included more than once"
		}
	}
	uri, clientID := front.Get("request_uri"), front.Get("client_id")
	if clientID == "" {
		return nil, "invalid_request", "Missing client_id."
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pushed[uri]
	if p == nil || !strings.HasPrefix(uri, RequestURIPrefix) {
		return nil, "invalid_request_uri", "The request_uri is unknown or has already been used."
	}
	if p.clientID != clientID {
		return nil, "invalid_request_uri", "The request_uri was pushed by another client."
	}
	delete(s.pushed, uri)
	if !now.Before(p.expires) {
		return nil, "invalid_request_uri", "The request_uri has expired."
	}
	return p.params, "", ""
}

// LastPushedRequest returns a copy of the parameters of the most recent
// pushed authorization request (client credentials removed, client_id
// set to the authenticated client), whether or not it was accepted.
func (s *Server) LastPushedRequest() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := url.Values{}
	for k, v := range s.lastPushed {
		out[k] = slices.Clone(v)
	}
	return out
}

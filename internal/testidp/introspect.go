package testidp

import (
	"net/http"
	"strings"
)

// PathIntrospect is the RFC 7662 token introspection endpoint, relative to
// the issuer.
const PathIntrospect = "/introspect"

// introspect implements RFC 7662. Any authenticated confidential client
// may introspect any token of this server (the resource server use case);
// public clients (auth method none) are refused with invalid_client.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	_, method, ok := s.clientPost(w, r)
	if !ok {
		return
	}
	if method == AuthNone {
		writeOAuthError(w, &oauthError{status: http.StatusUnauthorized, code: "invalid_client",
			desc: "introspection requires client authentication"})
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		writeOAuthError(w, badRequest("invalid_request", "missing token"))
		return
	}
	// token_type_hint is only a hint (RFC 7662 §2.1): both kinds are
	// always searched.
	issuer := s.issuerFor(r)
	resp := s.introspectRefresh(token, issuer)
	if resp == nil {
		resp = map[string]any{"active": false}
		if info, _ := s.lookupAccessToken(token, issuer); info != nil {
			resp = map[string]any{
				"active":     true,
				"scope":      info.scope,
				"client_id":  info.clientID,
				"username":   info.username,
				"token_type": s.opts.TokenType,
				"exp":        info.exp,
				"iat":        info.iat,
				"sub":        info.sub,
				"aud":        info.aud,
				"iss":        info.iss,
			}
			if info.jti != "" {
				resp["jti"] = info.jti
			}
			if info.sid != "" {
				resp["sid"] = info.sid
			}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

// introspectRefresh answers for a refresh token of this server, nil when
// token is not one.
func (s *Server) introspectRefresh(token, issuer string) map[string]any {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.refresh[token]
	if rt == nil {
		return nil
	}
	g := s.grants[rt.grantID]
	if g == nil || rt.invalid || g.revoked || !now.Before(rt.expires) || s.disabled[g.username] ||
		(g.sid != "" && s.activeSessionLocked(g.sid, now) == nil) {
		return map[string]any{"active": false}
	}
	resp := map[string]any{
		"active":    true,
		"scope":     strings.Join(g.scopes, " "),
		"client_id": g.clientID,
		"username":  g.username,
		"exp":       rt.expires.Unix(),
		"iat":       rt.issued.Unix(),
		"sub":       s.subjectLocked(g.username),
		"aud":       g.clientID,
		"iss":       issuer,
	}
	if g.sid != "" {
		resp["sid"] = g.sid
	}
	return resp
}

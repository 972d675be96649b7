package testidp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Endpoint paths relative to the issuer.
const (
	PathDiscovery  = "/.well-known/openid-configuration"
	PathOAuthMeta  = "/.well-known/oauth-authorization-server"
	PathJWKS       = "/jwks"
	PathAuthorize  = "/authorize"
	PathToken      = "/token"
	PathUserinfo   = "/userinfo"
	PathRevoke     = "/revoke"
	PathEndSession = "/logout"
)

const sessionCookie = "testidp_sso"

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	p := r.URL.Path
	if !strings.HasPrefix(p, s.issuerPath) {
		http.NotFound(w, r)
		return
	}
	switch p[len(s.issuerPath):] {
	case PathDiscovery, PathOAuthMeta:
		s.count("discovery")
		s.runEndpoint(w, r, s.discovery, "discovery")
	case PathJWKS:
		s.count("jwks")
		s.runEndpoint(w, r, s.jwks, "jwks")
	case PathAuthorize:
		s.count("authorize")
		s.runEndpoint(w, r, s.authorize, "authorize")
	case PathToken:
		s.handleToken(w, r)
	case PathUserinfo:
		s.count("userinfo")
		s.runEndpoint(w, r, s.userinfo, "userinfo")
	case PathRevoke:
		s.count("revoke")
		s.runEndpoint(w, r, s.revoke, "revoke")
	case PathIntrospect:
		s.count("introspect")
		s.runEndpoint(w, r, s.introspect, "introspect")
	case PathPAR:
		s.count("par")
		s.runEndpoint(w, r, s.par, "par")
	case PathEndSession:
		s.count("end_session")
		s.runEndpoint(w, r, s.endSession, "end_session")
	default:
		http.NotFound(w, r)
	}
}

// oauthError is an RFC 6749 §5.2 style error.
type oauthError struct {
	status  int
	code    string
	desc    string
	wwwAuth string
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func badRequest(code, desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: code, desc: desc}
}

func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	if e.wwwAuth != "" {
		w.Header().Set("WWW-Authenticate", e.wwwAuth)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	body := map[string]any{"error": e.code}
	if e.desc != "" {
		body["error_description"] = e.desc
	}
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
	w.Write([]byte("\n"))
}

func methodNotAllowed(w http.ResponseWriter, allowed ...string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeOAuthError(w, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "method not allowed"})
}

// parsePostForm checks that r is a form-encoded POST and parses its body.
// Query parameters are ignored. Repeated parameters are rejected.
func parsePostForm(r *http.Request) *oauthError {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return badRequest("invalid_request", "Content-Type must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		return badRequest("invalid_request", "malformed form body")
	}
	return checkDuplicates(r.PostForm)
}

func checkDuplicates(v url.Values) *oauthError {
	for k, vals := range v {
		if len(vals) > 1 {
			return badRequest("invalid_request", fmt.Sprintf("parameter %q included more than once", k))
		}
	}
	return nil
}

// reservedClaims cannot be overridden by user claims.
var reservedClaims = map[string]bool{
	"iss": true, "aud": true, "exp": true, "iat": true, "nbf": true, "jti": true, "azp": true, "sid": true,
	"auth_time": true, "nonce": true, "at_hash": true, "c_hash": true, "scope": true, "client_id": true,
	"typ": true, "events": true, "sub": true,
}

func (s *Server) subjectLocked(username string) string {
	if u := s.users[username]; u != nil {
		if sub, ok := u.Claims["sub"].(string); ok && sub != "" {
			return sub
		}
	}
	return username
}

// userClaimsLocked returns the user's public claims including sub.
func (s *Server) userClaimsLocked(username string) map[string]any {
	out := map[string]any{}
	if u := s.users[username]; u != nil {
		for k, v := range u.Claims {
			if !reservedClaims[k] {
				out[k] = v
			}
		}
	}
	if _, ok := out["preferred_username"]; !ok {
		out["preferred_username"] = username
	}
	out["sub"] = s.subjectLocked(username)
	return out
}

func (s *Server) userBySubLocked(sub string) string {
	for _, name := range s.userOrder {
		if s.subjectLocked(name) == sub {
			return name
		}
	}
	return ""
}

func (s *Server) discovery(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, http.MethodGet, http.MethodHead)
		return
	}
	iss := s.issuerFor(r)
	s.mu.Lock()
	alg := s.current.alg
	scopes := slices.Clone(s.opts.Scopes)
	claimSet := map[string]bool{}
	for _, c := range []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "at_hash", "azp",
		"email", "email_verified", "name", "preferred_username", "groups"} {
		claimSet[c] = true
	}
	for _, u := range s.users {
		for k := range u.Claims {
			claimSet[k] = true
		}
	}
	s.mu.Unlock()
	claims := slices.Sorted(maps.Keys(claimSet))
	authMethods := []string{AuthClientSecretBasic, AuthClientSecretPost, AuthClientSecretJWT, AuthPrivateKeyJWT}
	if s.TLSURL() != "" {
		authMethods = append(authMethods, AuthTLSClientAuth)
	}
	authMethods = append(authMethods, AuthNone)
	confidential := authMethods[:len(authMethods)-1]
	assertionAlgs := []string{"HS256", "RS256", "ES256"}
	doc := map[string]any{
		"issuer":                                                   iss,
		"authorization_endpoint":                                   iss + PathAuthorize,
		"token_endpoint":                                           iss + PathToken,
		"userinfo_endpoint":                                        iss + PathUserinfo,
		"jwks_uri":                                                 iss + PathJWKS,
		"revocation_endpoint":                                      iss + PathRevoke,
		"end_session_endpoint":                                     iss + PathEndSession,
		"response_types_supported":                                 []string{"code"},
		"response_modes_supported":                                 []string{"query"},
		"grant_types_supported":                                    []string{"authorization_code", "refresh_token"},
		"subject_types_supported":                                  []string{"public"},
		"id_token_signing_alg_values_supported":                    []string{alg},
		"userinfo_signing_alg_values_supported":                    []string{"none"},
		"token_endpoint_auth_methods_supported":                    authMethods,
		"revocation_endpoint_auth_methods_supported":               authMethods,
		"introspection_endpoint":                                   iss + PathIntrospect,
		"pushed_authorization_request_endpoint":                    iss + PathPAR,
		"require_pushed_authorization_requests":                    s.opts.RequirePAR,
		"introspection_endpoint_auth_methods_supported":            confidential,
		"token_endpoint_auth_signing_alg_values_supported":         assertionAlgs,
		"revocation_endpoint_auth_signing_alg_values_supported":    assertionAlgs,
		"introspection_endpoint_auth_signing_alg_values_supported": assertionAlgs,
		"scopes_supported":                                         scopes,
		"claims_supported":                                         claims,
		"code_challenge_methods_supported":                         []string{"S256"},
		"prompt_values_supported":                                  []string{"none", "login", "consent", "select_account"},
		"backchannel_logout_supported":                             true,
		"backchannel_logout_session_supported":                     true,
		"frontchannel_logout_supported":                            false,
		"authorization_response_iss_parameter_supported":           !s.opts.OmitIssParameter,
		"claims_parameter_supported":                               false,
		"request_parameter_supported":                              false,
		"request_uri_parameter_supported":                          false,
	}
	if alias := s.mtlsIssuer(); alias != "" {
		doc["mtls_endpoint_aliases"] = map[string]any{
			"token_endpoint":                        alias + PathToken,
			"revocation_endpoint":                   alias + PathRevoke,
			"introspection_endpoint":                alias + PathIntrospect,
			"userinfo_endpoint":                     alias + PathUserinfo,
			"pushed_authorization_request_endpoint": alias + PathPAR,
		}
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, doc)
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, http.MethodGet, http.MethodHead)
		return
	}
	set := s.JWKS()
	keys := make([]json.RawMessage, 0, len(set.Keys)+len(s.opts.ExtraJWKs))
	for _, k := range set.Keys {
		b, err := json.Marshal(k)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		keys = append(keys, b)
	}
	keys = append(keys, s.opts.ExtraJWKs...)
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

// ---- userinfo ----

func bearerError(status int, code, desc string) *oauthError {
	e := &oauthError{status: status, code: code, desc: desc}
	if code == "" {
		e.wwwAuth = `Bearer realm="testidp"`
	} else {
		e.wwwAuth = fmt.Sprintf(`Bearer realm="testidp", error=%q, error_description=%q`, code, desc)
	}
	return e
}

func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodGet, http.MethodPost)
		return
	}
	token, oe := bearerToken(r)
	if oe != nil {
		if oe.code == "" {
			// No credentials: the challenge carries no error code
			// (RFC 6750 §3.1); the JSON body still says why.
			oe = &oauthError{status: oe.status, code: "invalid_token", desc: oe.desc, wwwAuth: oe.wwwAuth}
		}
		writeOAuthError(w, oe)
		return
	}
	claims, oe := s.validateAccessToken(token, r)
	if oe != nil {
		writeOAuthError(w, oe)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, claims)
}

func bearerToken(r *http.Request) (string, *oauthError) {
	var fromHeader, fromBody string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", bearerError(http.StatusBadRequest, "invalid_request", "malformed Authorization header")
		}
		fromHeader = strings.TrimSpace(tok)
	}
	if r.Method == http.MethodPost {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
			r.Body = http.MaxBytesReader(nil, r.Body, 1<<20)
			if err := r.ParseForm(); err != nil {
				return "", bearerError(http.StatusBadRequest, "invalid_request", "malformed form body")
			}
			if len(r.PostForm["access_token"]) > 1 {
				return "", bearerError(http.StatusBadRequest, "invalid_request", "access_token included more than once")
			}
			fromBody = r.PostForm.Get("access_token")
		}
	}
	switch {
	case fromHeader != "" && fromBody != "":
		return "", bearerError(http.StatusBadRequest, "invalid_request", "more than one method used to transmit the token")
	case fromHeader != "":
		return fromHeader, nil
	case fromBody != "":
		return fromBody, nil
	}
	return "", bearerError(http.StatusUnauthorized, "", "missing access token")
}

// accessInfo describes an active access token.
type accessInfo struct {
	username, sub, clientID, scope, sid, iss, jti string
	aud                                           any
	iat, exp                                      int64
}

// lookupAccessToken validates an access token (a JWT of this server or an
// opaque token) for issuer and returns its description, or why it is not
// active.
func (s *Server) lookupAccessToken(token, issuer string) (*accessInfo, string) {
	now := s.now()
	s.mu.Lock()
	if a := s.access[token]; a != nil && a.opaque {
		defer s.mu.Unlock()
		if a.issuer != issuer {
			return nil, "wrong issuer"
		}
		if !now.Before(a.expires) {
			return nil, "token expired"
		}
		if reason := s.accessRevokedLocked(a, now); reason != "" {
			return nil, reason
		}
		if s.disabled[a.username] {
			return nil, "user is disabled"
		}
		return &accessInfo{
			username: a.username, sub: a.sub, clientID: a.clientID, scope: a.scope, sid: a.sid,
			iss: a.issuer, aud: a.aud, iat: a.issued.Unix(), exp: a.expires.Unix(),
		}, ""
	}
	s.mu.Unlock()

	p, err := s.verifyOwnJWT(token, false)
	if err != nil {
		return nil, "token verification failed: " + err.Error()
	}
	if t := strings.ToLower(p.typ); t != "at+jwt" && t != "application/at+jwt" {
		return nil, "not an access token (typ must be at+jwt)"
	}
	if iss, _ := p.claims["iss"].(string); iss != issuer {
		return nil, "wrong issuer"
	}
	exp, ok := numClaim(p.claims, "exp")
	if !ok || now.Unix() >= exp {
		return nil, "token expired"
	}
	if nbf, ok := numClaim(p.claims, "nbf"); ok && now.Unix() < nbf {
		return nil, "token not yet valid"
	}
	info := &accessInfo{iss: issuer, exp: exp, aud: p.claims["aud"]}
	info.sub, _ = p.claims["sub"].(string)
	info.jti, _ = p.claims["jti"].(string)
	info.scope, _ = p.claims["scope"].(string)
	info.clientID, _ = p.claims["client_id"].(string)
	info.sid, _ = p.claims["sid"].(string)
	info.iat, _ = numClaim(p.claims, "iat")

	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.access[info.jti]; a != nil && !a.opaque {
		if reason := s.accessRevokedLocked(a, now); reason != "" {
			return nil, reason
		}
	}
	info.username = s.userBySubLocked(info.sub)
	if info.username == "" {
		return nil, "unknown subject"
	}
	if s.disabled[info.username] {
		return nil, "user is disabled"
	}
	return info, ""
}

// accessRevokedLocked says why an issued access token is no longer valid,
// or "" when it still is.
func (s *Server) accessRevokedLocked(a *accessRecord, now time.Time) string {
	g := s.grants[a.grantID]
	if a.revoked || (g != nil && g.revoked) {
		return "token revoked"
	}
	if g != nil && g.sid != "" && s.activeSessionLocked(g.sid, now) == nil {
		return "session not active"
	}
	return ""
}

// validateAccessToken checks an access token presented at userinfo and
// returns the userinfo claims.
func (s *Server) validateAccessToken(token string, r *http.Request) (map[string]any, *oauthError) {
	info, reason := s.lookupAccessToken(token, s.issuerFor(r))
	if info == nil {
		return nil, bearerError(http.StatusUnauthorized, "invalid_token", reason)
	}
	if !slices.Contains(strings.Fields(info.scope), "openid") {
		return nil, bearerError(http.StatusForbidden, "insufficient_scope", "the openid scope is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userClaimsLocked(info.username), nil
}

func numClaim(c map[string]any, name string) (int64, bool) {
	switch v := c[name].(type) {
	case float64:
		return int64(v), true
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	}
	return 0, false
}

func audiences(c map[string]any) []string {
	switch v := c["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, a := range v {
			if s, ok := a.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// ---- revocation ----

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	client, _, ok := s.clientPost(w, r)
	if !ok {
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		writeOAuthError(w, badRequest("invalid_request", "missing token"))
		return
	}
	wrongClient := badRequest("unauthorized_client", "token was issued to another client")
	s.mu.Lock()
	if rt := s.refresh[token]; rt != nil {
		g := s.grants[rt.grantID]
		if g != nil && g.clientID != client.ID {
			s.mu.Unlock()
			writeOAuthError(w, wrongClient)
			return
		}
		rt.invalid = true
		s.revokeGrantLocked(g)
		s.mu.Unlock()
	} else if a := s.access[token]; a != nil && a.opaque {
		if a.clientID != client.ID {
			s.mu.Unlock()
			writeOAuthError(w, wrongClient)
			return
		}
		a.revoked = true
		s.mu.Unlock()
	} else {
		s.mu.Unlock()
		if p, err := s.verifyOwnJWT(token, true); err == nil {
			jti, _ := p.claims["jti"].(string)
			s.mu.Lock()
			a := s.access[jti]
			if a != nil && a.opaque {
				a = nil
			}
			if a != nil && a.clientID != client.ID {
				s.mu.Unlock()
				writeOAuthError(w, wrongClient)
				return
			}
			if a != nil {
				a.revoked = true
			}
			s.mu.Unlock()
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// ---- RP-initiated logout ----

func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	var params url.Values
	switch r.Method {
	case http.MethodGet:
		params = r.URL.Query()
	case http.MethodPost:
		if oe := parsePostForm(r); oe != nil {
			s.errorPage(w, http.StatusBadRequest, oe.code, oe.desc)
			return
		}
		params = r.PostForm
	default:
		methodNotAllowed(w, http.MethodGet, http.MethodPost)
		return
	}
	if oe := checkDuplicates(params); oe != nil {
		s.errorPage(w, http.StatusBadRequest, oe.code, oe.desc)
		return
	}
	issuer := s.issuerFor(r)
	var hintClient, hintSID string
	if hint := params.Get("id_token_hint"); hint != "" {
		p, err := s.verifyOwnJWT(hint, true)
		if err != nil {
			s.errorPage(w, http.StatusBadRequest, "invalid_request", "Invalid id_token_hint: "+err.Error())
			return
		}
		if iss, _ := p.claims["iss"].(string); iss != issuer {
			s.errorPage(w, http.StatusBadRequest, "invalid_request", "id_token_hint was issued by another issuer")
			return
		}
		if auds := audiences(p.claims); len(auds) > 0 {
			hintClient = auds[0]
		}
		hintSID, _ = p.claims["sid"].(string)
	}
	clientID := params.Get("client_id")
	if clientID != "" && hintClient != "" && clientID != hintClient {
		s.errorPage(w, http.StatusBadRequest, "invalid_request", "client_id does not match the audience of id_token_hint")
		return
	}
	if clientID == "" {
		clientID = hintClient
	}
	s.mu.Lock()
	var client *Client
	if clientID != "" {
		if c := s.clients[clientID]; c != nil {
			cp := *c
			client = &cp
		}
	}
	s.mu.Unlock()
	if clientID != "" && client == nil {
		s.errorPage(w, http.StatusBadRequest, "invalid_request", "Unknown client")
		return
	}
	plr := params.Get("post_logout_redirect_uri")
	if plr != "" {
		if client == nil {
			s.errorPage(w, http.StatusBadRequest, "invalid_request", "post_logout_redirect_uri requires id_token_hint or client_id")
			return
		}
		if !postLogoutAllowed(client, plr) {
			s.errorPage(w, http.StatusBadRequest, "invalid_request", "Invalid post_logout_redirect_uri")
			return
		}
	}

	now := s.now()
	type bc struct{ client, sub, sid string }
	var sends []bc
	s.mu.Lock()
	var ending []*session
	if c, err := r.Cookie(sessionCookie); err == nil {
		if sess := s.activeSessionLocked(c.Value, now); sess != nil {
			ending = append(ending, sess)
		}
	}
	if hintSID != "" {
		if sess := s.activeSessionLocked(hintSID, now); sess != nil && !slices.Contains(ending, sess) {
			ending = append(ending, sess)
		}
	}
	for _, sess := range ending {
		sub := s.subjectLocked(sess.username)
		for _, c := range s.endSessionLocked(sess) {
			if cl := s.clients[c]; cl != nil && cl.BackchannelLogoutURI != "" {
				sends = append(sends, bc{c, sub, sess.id})
			}
		}
	}
	s.mu.Unlock()
	for _, b := range sends {
		s.SendBackchannelLogout(b.client, b.sub, b.sid) // best effort, like real IdPs
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	if plr != "" {
		u, _ := url.Parse(plr)
		q := u.Query()
		if params.Has("state") {
			q.Set("state", params.Get("state"))
		}
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
		return
	}
	s.renderPage(w, http.StatusOK, pageData{Title: "Signed out", Message: "You have been signed out."})
}

func postLogoutAllowed(c *Client, uri string) bool {
	if len(c.PostLogoutRedirectURIs) > 0 {
		return slices.Contains(c.PostLogoutRedirectURIs, uri)
	}
	u, err := url.Parse(uri)
	if err != nil || !u.IsAbs() || u.Fragment != "" || u.User != nil {
		return false
	}
	for _, ru := range c.RedirectURIs {
		if r, err := url.Parse(ru); err == nil && r.Scheme == u.Scheme && r.Host == u.Host {
			return true
		}
	}
	return false
}

// ---- back-channel logout ----

// LogoutTokenClaims returns the claims of a valid logout token for the
// client (OIDC Back-Channel Logout 1.0 §2.4): iss, aud, iat, exp, jti,
// events, and sub and/or sid (empty values omitted). Mutate and sign them
// with SignJWT(claims, SignHeader("typ", "logout+jwt")) to craft bad tokens.
func (s *Server) LogoutTokenClaims(clientID, sub, sid string) map[string]any {
	now := s.now()
	c := map[string]any{
		"iss":    s.Issuer(),
		"aud":    clientID,
		"iat":    now.Unix(),
		"exp":    now.Add(2 * time.Minute).Unix(),
		"jti":    randomString(16),
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
	if sub != "" {
		c["sub"] = sub
	}
	if sid != "" {
		c["sid"] = sid
	}
	return c
}

// SendBackchannelLogout signs a logout token (typ logout+jwt) for
// sub and/or sid and POSTs it to the client's BackchannelLogoutURI.
func (s *Server) SendBackchannelLogout(clientID, sub, sid string) error {
	if sub == "" && sid == "" {
		return errors.New("testidp: logout token needs sub or sid")
	}
	tok := s.signWith(s.LogoutTokenClaims(clientID, sub, sid), "logout+jwt", signConfig{})
	return s.PostLogoutToken(clientID, tok)
}

// PostLogoutToken POSTs logout_token=token to the client's
// BackchannelLogoutURI and expects 200 or 204.
func (s *Server) PostLogoutToken(clientID, token string) error {
	s.mu.Lock()
	c := s.clients[clientID]
	var uri string
	if c != nil {
		uri = c.BackchannelLogoutURI
	}
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("testidp: unknown client %q", clientID)
	}
	if uri == "" {
		return fmt.Errorf("testidp: client %q has no BackchannelLogoutURI", clientID)
	}
	s.count("backchannel_logout")
	resp, err := s.opts.BackchannelClient.PostForm(uri, url.Values{"logout_token": {token}})
	if err != nil {
		return fmt.Errorf("testidp: back-channel logout to %s: %w", uri, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("testidp: back-channel logout to %s: status %s", uri, resp.Status)
	}
	return nil
}

package emulators

import (
	"crypto/sha256"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Chaster emulates Chaster's Keycloak realm "app" (chaster.txt,
// https://sso.chaster.app/auth/realms/app). Issuer: URL()+"/auth/realms/app";
// every endpoint is under URL()+"/auth/realms/app/protocol/openid-connect":
//
//	GET  /auth/realms/app/.well-known/openid-configuration   discovery
//	GET  …/auth      client_id, redirect_uri (both required; redirect_uri
//	                 exact match), response_type=code, scope (space
//	                 separated, known scopes only), state (echoed), nonce
//	                 (echoed in the id_token), code_challenge +
//	                 code_challenge_method (plain|S256, default plain),
//	                 response_mode (only "query").
//	                 Unknown client / bad redirect_uri → HTML error page 400,
//	                 no redirect; other errors redirect with error=… .
//	                 Approve: redirect_uri?state=S&session_state=SID&iss=ISS&code=C
//	                 Deny:    redirect_uri?error=access_denied&state=S&iss=ISS
//	POST …/token     application/x-www-form-urlencoded; client auth by HTTP
//	                 Basic (client_secret_basic) or body (client_secret_post).
//	                 authorization_code: code, redirect_uri (must equal the
//	                 one of the auth request), code_verifier (iff PKCE).
//	                 refresh_token: refresh_token.
//	                 → access_token (RS256 JWT, ~1.5 KB, Keycloak claims),
//	                   expires_in 300, refresh_expires_in 1800, refresh_token
//	                   (HS512 JWT, typ Refresh), token_type "bearer",
//	                   id_token (RS256; ONLY when scope contains "openid", as
//	                   Keycloak does), "not-before-policy": 0, session_state,
//	                   scope.
//	                 Refresh rotates ("Revoke Refresh Token" on, max reuse 0):
//	                 a used refresh token → 400 invalid_grant. Earlier access
//	                 tokens stay valid until they expire (they are JWTs).
//	GET|POST …/userinfo   Authorization: Bearer → the user JSON (standard
//	                 OIDC claims); bad token → 401 invalid_token.
//	GET|POST …/logout     end_session: id_token_hint and/or client_id,
//	                 post_logout_redirect_uri, state. post_logout_redirect_uri
//	                 requires id_token_hint or client_id (Keycloak ≥ 18) and
//	                 must be a valid post-logout URI (Config.PostLogoutRedirectURIs,
//	                 default: same origin as RedirectURI). The legacy
//	                 redirect_uri parameter is refused (Keycloak ≥ 18). With
//	                 id_token_hint the session ends at once; without it a
//	                 confirmation page (button id="approve") is shown unless
//	                 AutoApprove. Then 302 to post_logout_redirect_uri[?state=S]
//	                 or a "You are logged out" page. Ending the session
//	                 revokes all its tokens.
//	GET  …/certs     JWKS (RS256 key).
//	POST …/revoke    RFC 7009: form body, client auth as at …/token, token
//	                 (required), token_type_hint (optional: access_token |
//	                 refresh_token). Revoking a refresh token ends its
//	                 session (all its tokens); an access token is revoked
//	                 alone. 200, empty body.
//
// Codes are single use and expire after 10 minutes (the doc; Keycloak's own
// default is 1 minute). Errors are Keycloak's: {"error","error_description"}.
// Scopes accepted: openid profile email roles web-origins offline_access
// address phone acr microprofile-jwt, plus Chaster's API scopes locks
// keyholder shared_locks messaging; any other scope is invalid_scope. No
// scope means "profile" (the doc's example and sample response).
func NewChaster(cfg Config) *Server { return newServer(chasterProvider, cfg) }

const (
	chasterRealm       = "/auth/realms/app"
	chasterOIDC        = chasterRealm + "/protocol/openid-connect"
	chasterRefreshLife = 1800 * time.Second
)

var chasterScopes = map[string]bool{
	"openid": true, "profile": true, "email": true, "roles": true, "web-origins": true,
	"offline_access": true, "address": true, "phone": true, "acr": true, "microprofile-jwt": true,
	"locks": true, "keyholder": true, "shared_locks": true, "messaging": true,
}

var chasterProvider = &provider{
	name:        "chaster",
	display:     "Chaster",
	codeTTL:     10 * time.Minute,
	accessTTL:   300 * time.Second,
	refreshTTL:  chasterRefreshLife,
	consentPath: chasterRealm + "/login-actions/consent",
	defaultUser: func() map[string]any {
		return map[string]any{
			"sub":                "3f0c2a4e-8d51-4b7a-9c3e-2b6f1d7a9e10",
			"email_verified":     true,
			"name":               "Alex Keyholder",
			"preferred_username": "alexkh",
			"given_name":         "Alex",
			"family_name":        "Keyholder",
			"email":              "alex.keyholder@example.org",
		}
	},
	routes: func(s *Server) {
		s.handle(http.MethodGet, chasterRealm+"/.well-known/openid-configuration", "discovery", s.chasterDiscovery)
		s.handle(http.MethodGet, chasterOIDC+"/auth", "authorize", s.chasterAuth)
		s.handle(http.MethodPost, chasterRealm+"/login-actions/consent", "consent", s.consent)
		s.handle(http.MethodPost, chasterOIDC+"/token", "token", s.chasterToken)
		s.handle(http.MethodGet, chasterOIDC+"/userinfo", "userinfo", s.chasterUserInfo)
		s.handle(http.MethodPost, chasterOIDC+"/userinfo", "userinfo", s.chasterUserInfo)
		s.handle(http.MethodGet, chasterOIDC+"/logout", "end_session", s.chasterLogout)
		s.handle(http.MethodPost, chasterOIDC+"/logout", "end_session", s.chasterLogout)
		s.handle(http.MethodPost, chasterOIDC+"/logout/logout-confirm", "end_session_confirm", s.chasterLogoutConfirm)
		s.handle(http.MethodGet, chasterOIDC+"/certs", "jwks", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, jwks())
		})
		s.handle(http.MethodPost, chasterOIDC+"/revoke", "revoke", s.chasterRevoke)
	},
	approve: func(s *Server, r *http.Request, req *authRequest) string {
		sess := s.newSession(req)
		code := newUUID() + "." + sess.id + "." + newUUID()
		s.storeCode(code, req, sess)
		kv := []string{}
		if req.stateGiven {
			kv = append(kv, "state", req.state)
		}
		kv = append(kv, "session_state", sess.id, "iss", s.chasterIssuer(r), "code", code)
		return addQuery(req.redirectURI, kv...)
	},
	deny: func(s *Server, r *http.Request, req *authRequest) string {
		kv := []string{"error", "access_denied"}
		if req.stateGiven {
			kv = append(kv, "state", req.state)
		}
		return addQuery(req.redirectURI, append(kv, "iss", s.chasterIssuer(r))...)
	},
}

// Issuer is the OIDC issuer: URL()+"/auth/realms/app" for Chaster, URL()
// for the other providers.
func (s *Server) Issuer() string {
	if s.p == chasterProvider {
		return s.URL() + chasterRealm
	}
	return s.URL()
}

func (s *Server) chasterIssuer(r *http.Request) string { return s.baseURL(r) + chasterRealm }

func (s *Server) chasterDiscovery(w http.ResponseWriter, r *http.Request) {
	iss := s.chasterIssuer(r)
	ep := iss + "/protocol/openid-connect"
	scopes := []string{"openid", "profile", "email", "roles", "web-origins", "offline_access", "address",
		"phone", "acr", "microprofile-jwt", "locks", "keyholder", "shared_locks", "messaging"}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                     iss,
		"authorization_endpoint":                     ep + "/auth",
		"token_endpoint":                             ep + "/token",
		"userinfo_endpoint":                          ep + "/userinfo",
		"end_session_endpoint":                       ep + "/logout",
		"jwks_uri":                                   ep + "/certs",
		"revocation_endpoint":                        ep + "/revoke",
		"grant_types_supported":                      []string{"authorization_code", "refresh_token"},
		"response_types_supported":                   []string{"code"},
		"response_modes_supported":                   []string{"query"},
		"subject_types_supported":                    []string{"public"},
		"id_token_signing_alg_values_supported":      []string{"RS256"},
		"userinfo_signing_alg_values_supported":      []string{"none"},
		"token_endpoint_auth_methods_supported":      []string{"client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":           []string{"plain", "S256"},
		"scopes_supported":                           scopes,
		"claims_supported": []string{"aud", "sub", "iss", "auth_time", "name", "given_name", "family_name",
			"preferred_username", "email", "email_verified", "acr", "sid", "nonce", "at_hash"},
		"claims_parameter_supported":            true,
		"request_parameter_supported":           false,
		"request_uri_parameter_supported":       false,
		"frontchannel_logout_supported":         true,
		"frontchannel_logout_session_supported": true,
		"backchannel_logout_supported":          false,
	})
}

func (s *Server) chasterAuth(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cfg := s.config()
	if d := duplicated(q); d != "" {
		s.rejectPage(w, r, http.StatusBadRequest, "duplicate parameter "+d, "Invalid Request: duplicated parameter "+d)
		return
	}
	id := q.Get("client_id")
	switch {
	case id == "":
		s.rejectPage(w, r, http.StatusBadRequest, "missing client_id", "Missing parameter: client_id")
		return
	case id != cfg.ClientID:
		s.rejectPage(w, r, http.StatusBadRequest, "unknown client_id "+strconvQuote(id), "Client not found.")
		return
	}
	// The doc lists redirect_uri among the parameters "you will need to
	// pass": required, and compared exactly with the registered URI.
	ru := q.Get("redirect_uri")
	switch {
	case ru == "":
		s.rejectPage(w, r, http.StatusBadRequest, "missing redirect_uri", "Invalid parameter: redirect_uri")
		return
	case cfg.RedirectURI == "" || ru != cfg.RedirectURI:
		s.rejectPage(w, r, http.StatusBadRequest, "redirect_uri "+strconvQuote(ru)+" is not a valid redirect URI", "Invalid parameter: redirect_uri")
		return
	}
	req := &authRequest{clientID: id, redirectURI: ru, redirectGiven: true, nonce: q.Get("nonce")}
	if _, ok := q["state"]; ok {
		req.state, req.stateGiven = q.Get("state"), true
	}
	back := func(code, desc string) string {
		kv := []string{"error", code, "error_description", desc}
		if req.stateGiven {
			kv = append(kv, "state", req.state)
		}
		return addQuery(ru, append(kv, "iss", s.chasterIssuer(r))...)
	}
	switch rt := q.Get("response_type"); {
	case rt == "":
		s.rejectRedirect(w, r, back("invalid_request", "Missing parameter: response_type"), "missing response_type")
		return
	case rt != "code":
		s.rejectRedirect(w, r, back("unsupported_response_type", "Client is not allowed to initiate browser login with given response_type."), "unsupported response_type "+strconvQuote(rt))
		return
	}
	if rm := q.Get("response_mode"); rm != "" && rm != "query" {
		s.rejectRedirect(w, r, back("invalid_request", "Invalid parameter: response_mode"), "unsupported response_mode "+strconvQuote(rm))
		return
	}
	scopes := strings.Fields(q.Get("scope"))
	for _, sc := range scopes {
		if !chasterScopes[sc] {
			s.rejectRedirect(w, r, back("invalid_scope", "Invalid scopes: "+q.Get("scope")), "unknown scope "+strconvQuote(sc))
			return
		}
	}
	if len(scopes) == 0 {
		scopes = []string{"profile"}
	}
	req.scope = strings.Join(dedupe(scopes), " ")
	ch, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case ch == "" && method != "":
		s.rejectRedirect(w, r, back("invalid_request", "Missing parameter: code_challenge"), "code_challenge_method without code_challenge")
		return
	case ch != "":
		if method == "" {
			method = "plain"
		}
		if method != "plain" && method != "S256" {
			s.rejectRedirect(w, r, back("invalid_request", "Invalid parameter: code_challenge_method"), "unsupported code_challenge_method "+strconvQuote(method))
			return
		}
		if !pkceValue.MatchString(ch) {
			s.rejectRedirect(w, r, back("invalid_request", "Invalid parameter: code_challenge"), "malformed code_challenge")
			return
		}
		req.challenge, req.challengeMethod = ch, method
	}
	s.decide(w, r, req)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := in[:0:0]
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func (s *Server) chasterError(w http.ResponseWriter, r *http.Request, status int, code, desc string) {
	s.rejectJSON(w, r, status, code+": "+desc, map[string]any{"error": code, "error_description": desc})
}

// chasterForm parses a form-encoded POST body and authenticates the client.
func (s *Server) chasterForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	form, ok := s.chasterParse(w, r)
	return form, ok && s.chasterClient(w, r, form)
}

// chasterParse reads the form-encoded body (the only encoding Keycloak
// reads at its token, revoke and logout endpoints).
func (s *Server) chasterParse(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if mt := mediaType(r); mt != "application/x-www-form-urlencoded" {
		s.chasterError(w, r, http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded, got "+strconvQuote(mt))
		return nil, false
	}
	if err := r.ParseForm(); err != nil {
		s.chasterError(w, r, http.StatusBadRequest, "invalid_request", "unreadable form body")
		return nil, false
	}
	if d := duplicated(r.PostForm); d != "" {
		s.chasterError(w, r, http.StatusBadRequest, "invalid_request", "duplicated parameter "+d)
		return nil, false
	}
	return r.PostForm, true
}

// chasterClient authenticates the client: HTTP Basic (client_secret_basic)
// wins; a different client_id in the body is refused.
func (s *Server) chasterClient(w http.ResponseWriter, r *http.Request, form url.Values) bool {
	cfg := s.config()
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if bid, bsec, ok := basicAuth(r); ok {
		if id != "" && id != bid {
			s.chasterError(w, r, http.StatusBadRequest, "invalid_request", "client_id in body does not match Basic authentication")
			return false
		}
		id, secret = bid, bsec
	}
	switch {
	case id == "":
		s.chasterError(w, r, http.StatusBadRequest, "invalid_client", "Missing client_id parameter")
		return false
	case id != cfg.ClientID:
		s.chasterError(w, r, http.StatusUnauthorized, "invalid_client", "Invalid client or Invalid client credentials")
		return false
	case secret == "":
		s.chasterError(w, r, http.StatusUnauthorized, "unauthorized_client", "Client secret not provided in request")
		return false
	case !secretEqual(secret, cfg.ClientSecret):
		s.chasterError(w, r, http.StatusUnauthorized, "unauthorized_client", "Invalid client or Invalid client credentials")
		return false
	}
	return true
}

func (s *Server) chasterToken(w http.ResponseWriter, r *http.Request) {
	form, ok := s.chasterParse(w, r)
	if !ok {
		return
	}
	gt := form.Get("grant_type")
	if gt == "authorization_code" || gt == "refresh_token" {
		s.count("token:" + gt)
	}
	if !s.chasterClient(w, r, form) {
		return
	}
	switch gt {
	case "":
		s.chasterError(w, r, http.StatusBadRequest, "invalid_request", "Missing form parameter: grant_type")
		return
	case "authorization_code", "refresh_token":
	default:
		s.chasterError(w, r, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
		return
	}
	cfg := s.config()
	var sess *session
	scope := ""
	if gt == "authorization_code" {
		code := form.Get("code")
		if code == "" {
			s.chasterError(w, r, http.StatusBadRequest, "invalid_request", "Missing parameter: code")
			return
		}
		// Keycloak consumes the code before checking the rest.
		ac, st := s.consumeCode(code)
		switch st {
		case codeUnknown, codeUsed:
			s.rejectJSON(w, r, http.StatusBadRequest, "invalid_grant: "+st.String(), map[string]any{"error": "invalid_grant", "error_description": "Code not valid"})
			return
		case codeExpired:
			s.rejectJSON(w, r, http.StatusBadRequest, "invalid_grant: "+st.String(), map[string]any{"error": "invalid_grant", "error_description": "Code is expired"})
			return
		}
		if ac.req.clientID != cfg.ClientID {
			s.chasterError(w, r, http.StatusBadRequest, "invalid_grant", "Auth error")
			return
		}
		if form.Get("redirect_uri") != ac.req.redirectURI {
			s.rejectJSON(w, r, http.StatusBadRequest,
				"invalid_grant: redirect_uri "+strconvQuote(form.Get("redirect_uri"))+" differs from the authorization request's "+strconvQuote(ac.req.redirectURI),
				map[string]any{"error": "invalid_grant", "error_description": "Incorrect redirect_uri"})
			return
		}
		v := form.Get("code_verifier")
		switch {
		case ac.req.challenge == "" && v != "":
			s.chasterError(w, r, http.StatusBadRequest, "invalid_grant", "PKCE code verifier specified but challenge not present in authorization")
			return
		case ac.req.challenge != "" && v == "":
			s.chasterError(w, r, http.StatusBadRequest, "invalid_grant", "PKCE code verifier not specified")
			return
		case ac.req.challenge != "" && !pkceValue.MatchString(v):
			s.chasterError(w, r, http.StatusBadRequest, "invalid_grant", "PKCE invalid code verifier")
			return
		case ac.req.challenge != "" && !pkceMatches(ac.req.challengeMethod, ac.req.challenge, v):
			s.chasterError(w, r, http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
			return
		}
		sess = s.sessionOf(ac.session)
		if sess == nil || sess.ended {
			s.chasterError(w, r, http.StatusBadRequest, "invalid_grant", "Session not active")
			return
		}
		scope = ac.req.scope
	} else {
		rt := form.Get("refresh_token")
		if rt == "" {
			s.chasterError(w, r, http.StatusBadRequest, "invalid_request", "Missing parameter: refresh_token")
			return
		}
		old, st, reason := s.checkRefresh(rt, cfg.ClientID)
		desc := map[refreshStatus]string{
			refreshUnknown:      "Invalid refresh token",
			refreshWrongClient:  "Invalid refresh token. Token client and authorized client don't match",
			refreshRevoked:      "Maximum allowed refresh token reuse exceeded",
			refreshExpired:      "Token is not active",
			refreshSessionEnded: "Session not active",
		}[st]
		if st == refreshRevoked && strings.Contains(reason, "revoked at") {
			desc = "Token is not active"
		}
		if st != refreshOK {
			s.rejectJSON(w, r, http.StatusBadRequest, "invalid_grant: "+reason, map[string]any{"error": "invalid_grant", "error_description": desc})
			return
		}
		s.revoke(rt, "rotated by refresh (refresh token reuse is not allowed)", false)
		sess = s.sessionOf(old.session)
		scope = old.scope
	}
	s.chasterIssue(w, r, sess, scope)
}

func (s *Server) chasterIssue(w http.ResponseWriter, r *http.Request, sess *session, scope string) {
	now := s.clock()
	ttl := s.accessTTL()
	iss := s.chasterIssuer(r)
	user := s.userCopy()
	cfg := s.config()
	origin := ""
	if u, err := url.Parse(cfg.RedirectURI); err == nil && u.Host != "" {
		origin = u.Scheme + "://" + u.Host
	}
	userClaims := func(m map[string]any) map[string]any {
		for _, k := range []string{"email_verified", "name", "preferred_username", "given_name", "family_name", "email"} {
			if v, ok := user[k]; ok {
				m[k] = v
			}
		}
		return m
	}
	sub, _ := user["sub"].(string)
	accessExp := now.Add(ttl)
	access := signRS256(userClaims(map[string]any{
		"exp": accessExp.Unix(), "iat": now.Unix(), "auth_time": sess.authTime.Unix(),
		"jti": newUUID(), "iss": iss, "aud": "account", "sub": sub, "typ": "Bearer",
		"azp": sess.clientID, "session_state": sess.id, "acr": "1",
		"allowed-origins": []string{origin},
		"realm_access":    map[string]any{"roles": []string{"default-roles-app", "offline_access", "uma_authorization"}},
		"resource_access": map[string]any{
			"account": map[string]any{"roles": []string{"manage-account", "manage-account-links", "view-profile"}},
		},
		"scope": scope, "sid": sess.id,
	}), "JWT")
	refreshExp := now.Add(s.p.refreshTTL)
	refresh := s.signHMAC("HS512", map[string]any{
		"exp": refreshExp.Unix(), "iat": now.Unix(), "jti": newUUID(), "iss": iss, "aud": iss,
		"sub": sub, "typ": "Refresh", "azp": sess.clientID, "session_state": sess.id,
		"scope": scope, "sid": sess.id,
	}, "JWT")
	s.storePair(sess, scope, access, accessExp, refresh, refreshExp)
	resp := map[string]any{
		"access_token":       access,
		"expires_in":         int64(ttl / time.Second),
		"refresh_expires_in": int64(s.p.refreshTTL / time.Second),
		"refresh_token":      refresh,
		"token_type":         "bearer",
		"not-before-policy":  0,
		"session_state":      sess.id,
		"scope":              scope,
	}
	if hasScope(scope, "openid") {
		sum := sha256.Sum256([]byte(access))
		claims := userClaims(map[string]any{
			"exp": accessExp.Unix(), "iat": now.Unix(), "auth_time": sess.authTime.Unix(),
			"jti": newUUID(), "iss": iss, "aud": sess.clientID, "sub": sub, "typ": "ID",
			"azp": sess.clientID, "session_state": sess.id, "at_hash": b64(sum[:16]),
			"acr": "1", "sid": sess.id,
		})
		if sess.nonce != "" {
			claims["nonce"] = sess.nonce
		}
		idt := signRS256(claims, "JWT")
		s.storeToken(&token{value: idt, kind: kindID, clientID: sess.clientID, scope: scope, session: sess.id,
			issued: now, expires: accessExp})
		resp["id_token"] = idt
	}
	writeJSON(w, http.StatusOK, resp)
}

func hasScope(scope, want string) bool {
	for _, s := range strings.Fields(scope) {
		if s == want {
			return true
		}
	}
	return false
}

func (s *Server) chasterUserInfo(w http.ResponseWriter, r *http.Request) {
	if _, reason := s.checkAccess(bearer(r)); reason != "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="app", error="invalid_token", error_description="Token verification failed"`)
		s.rejectJSON(w, r, http.StatusUnauthorized, "invalid_token: "+reason,
			map[string]any{"error": "invalid_token", "error_description": "Token verification failed"})
		return
	}
	writeJSON(w, http.StatusOK, s.userCopy())
}

func (s *Server) chasterRevoke(w http.ResponseWriter, r *http.Request) {
	form, ok := s.chasterForm(w, r)
	if !ok {
		return
	}
	tok := form.Get("token")
	if tok == "" {
		s.chasterError(w, r, http.StatusBadRequest, "invalid_request", "Token not provided")
		return
	}
	if h := form.Get("token_type_hint"); h != "" && h != "access_token" && h != "refresh_token" {
		s.chasterError(w, r, http.StatusBadRequest, "unsupported_token_type", "Unsupported token type: "+h)
		return
	}
	t := s.tokenInfo(tok)
	if t == nil {
		w.WriteHeader(http.StatusOK) // RFC 7009 §2.2: invalid tokens are not an error
		return
	}
	if t.clientID != s.config().ClientID {
		s.chasterError(w, r, http.StatusBadRequest, "invalid_request", "Unmatching clients")
		return
	}
	if t.kind == kindRefresh {
		s.endSession(t.session, "revoked at /revoke (refresh token: session ended)")
	} else {
		s.revoke(tok, "revoked at /revoke", false)
	}
	w.WriteHeader(http.StatusOK)
}

type logoutRequest struct {
	redirect, state string
	stateGiven      bool
	created         time.Time
	seq             uint64
}

func (s *Server) validPostLogout(u string) bool {
	cfg := s.config()
	if len(cfg.PostLogoutRedirectURIs) > 0 {
		for _, v := range cfg.PostLogoutRedirectURIs {
			if u == v {
				return true
			}
		}
		return false
	}
	pu, err1 := url.Parse(u)
	ru, err2 := url.Parse(cfg.RedirectURI)
	return err1 == nil && err2 == nil && pu.Host != "" && pu.Scheme == ru.Scheme && pu.Host == ru.Host && pu.Fragment == ""
}

func (s *Server) chasterLogout(w http.ResponseWriter, r *http.Request) {
	var p url.Values
	if r.Method == http.MethodPost {
		if mediaType(r) != "application/x-www-form-urlencoded" {
			s.rejectPage(w, r, http.StatusBadRequest, "logout POST must be form-encoded", "Invalid request")
			return
		}
		if err := r.ParseForm(); err != nil {
			s.rejectPage(w, r, http.StatusBadRequest, "unreadable logout form", "Invalid request")
			return
		}
		p = r.PostForm
	} else {
		p = r.URL.Query()
	}
	if d := duplicated(p); d != "" {
		s.rejectPage(w, r, http.StatusBadRequest, "duplicate parameter "+d, "Invalid request")
		return
	}
	if _, ok := p["redirect_uri"]; ok {
		s.rejectPage(w, r, http.StatusBadRequest, "legacy redirect_uri parameter at logout (Keycloak >= 18 wants post_logout_redirect_uri)", "Invalid parameter: redirect_uri")
		return
	}
	cfg := s.config()
	hint, cid, plr := p.Get("id_token_hint"), p.Get("client_id"), p.Get("post_logout_redirect_uri")
	sid := ""
	if hint != "" {
		claims, err := verifyRS256(hint)
		if err != nil || claims["iss"] != s.chasterIssuer(r) || claims["typ"] != "ID" {
			why := "not an ID token of this realm"
			if err != nil {
				why = err.Error()
			}
			s.rejectPage(w, r, http.StatusBadRequest, "invalid id_token_hint: "+why, "Invalid parameter: id_token_hint")
			return
		}
		azp, _ := claims["azp"].(string)
		if cid != "" && cid != azp {
			s.rejectPage(w, r, http.StatusBadRequest, "client_id does not match the id_token_hint", "Parameter client_id different than the client of the id_token_hint")
			return
		}
		cid = azp
		sid, _ = claims["sid"].(string)
	}
	if cid != "" && cid != cfg.ClientID {
		s.rejectPage(w, r, http.StatusBadRequest, "unknown client_id "+strconvQuote(cid), "Invalid parameter: client_id")
		return
	}
	if plr != "" {
		if cid == "" {
			s.rejectPage(w, r, http.StatusBadRequest, "post_logout_redirect_uri without id_token_hint or client_id",
				"Either the parameter client_id or the parameter id_token_hint is required when post_logout_redirect_uri is used.")
			return
		}
		if !s.validPostLogout(plr) {
			s.rejectPage(w, r, http.StatusBadRequest, "post_logout_redirect_uri "+strconvQuote(plr)+" is not allowed", "Invalid redirect uri")
			return
		}
	}
	lr := &logoutRequest{redirect: plr}
	if _, ok := p["state"]; ok {
		lr.state, lr.stateGiven = p.Get("state"), true
	}
	if hint == "" && !cfg.AutoApprove {
		now := s.clock()
		id := randHex(16)
		lr.created = now
		s.mu.Lock()
		s.seq++
		lr.seq = s.seq
		evict(s.logouts, maxPending, func(x *logoutRequest) bool { return now.Sub(x.created) > pendingTTL },
			func(x *logoutRequest) uint64 { return x.seq })
		s.logouts[id] = lr
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_ = logoutConfirmPage.Execute(w, map[string]string{"Action": chasterOIDC + "/logout/logout-confirm", "ID": id})
		return
	}
	s.chasterEndSessions(sid)
	s.chasterLoggedOut(w, lr)
}

var logoutConfirmPage = template.Must(template.New("logout").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Chaster – Logging out</title></head>
<body><h1>Chaster</h1><p>Do you want to log out?</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="session_code" value="{{.ID}}">
<button type="submit" id="approve" name="confirmLogout" value="Logout">Logout</button>
</form></body></html>
`))

func (s *Server) chasterLogoutConfirm(w http.ResponseWriter, r *http.Request) {
	if mediaType(r) != "application/x-www-form-urlencoded" || r.ParseForm() != nil {
		s.rejectPage(w, r, http.StatusBadRequest, "logout confirmation must be a form POST", "Invalid request")
		return
	}
	id := r.PostForm.Get("session_code")
	now := s.clock()
	s.mu.Lock()
	lr := s.logouts[id]
	delete(s.logouts, id)
	s.mu.Unlock()
	if lr == nil || now.Sub(lr.created) > pendingTTL {
		s.rejectPage(w, r, http.StatusBadRequest, "unknown or expired logout confirmation", "Logout request expired")
		return
	}
	s.chasterEndSessions("")
	s.chasterLoggedOut(w, lr)
}

// chasterEndSessions ends one session, or (no id_token_hint: the browser's
// SSO session) every session of the single emulated user.
func (s *Server) chasterEndSessions(sid string) {
	if sid != "" {
		s.endSession(sid, "session ended by logout")
		return
	}
	s.mu.Lock()
	ids := make([]string, 0, len(s.sessions))
	for id, sess := range s.sessions {
		if !sess.ended {
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.endSession(id, "session ended by logout")
	}
}

func (s *Server) chasterLoggedOut(w http.ResponseWriter, lr *logoutRequest) {
	if lr.redirect == "" {
		s.writeInfoPage(w, "You are logged out")
		return
	}
	if lr.stateGiven {
		redirect(w, addQuery(lr.redirect, "state", lr.state))
		return
	}
	redirect(w, lr.redirect)
}

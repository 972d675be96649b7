package emulators

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Citesphere emulates Citesphere's Spring Security OAuth2 server
// (citesphere.txt; ASU Digital Innovation Group).
//
//	GET  /api/oauth/authorize  client_id (required), scope (REQUIRED, space
//	                           separated; known scopes: read, write),
//	                           response_type=code (required), state
//	                           (echoed), redirect_uri (optional — not in the
//	                           doc's table; if given it must equal the
//	                           registered URL exactly).
//	                           Unknown client → HTML error page 401; bad
//	                           redirect_uri → HTML error page 400; no
//	                           redirect. Missing/invalid scope or
//	                           response_type → redirect with
//	                           error=invalid_scope / unsupported_response_type
//	                           (Spring redirects OAuth2Exceptions once the
//	                           redirect URI is known).
//	                           Approve: redirect?code=C&state=S (6-char code)
//	                           Deny:    redirect?error=access_denied&error_description=User+denied+access&state=S
//	POST /api/oauth/token      ALL parameters in the QUERY STRING (the doc's
//	                           tables say "Query Parameters", its refresh
//	                           example is "POST /api/oauth/token?client_id=…"):
//	                             client_id, client_secret, grant_type,
//	                             code, redirect_uri, state        (code)
//	                             client_id, client_secret, grant_type,
//	                             refresh_token                    (refresh)
//	                           Parameters sent only in the body are not read
//	                           (→ 401 "Full authentication is required…" /
//	                           400). Body is ignored when the query is
//	                           complete.
//	                           → {"access_token":"<uuid>","token_type":"bearer",
//	                              "refresh_token":"<uuid>","expires_in":406,
//	                              "scope":"read"}
//	                           Refresh returns a new access token and the SAME
//	                           refresh token (as in the doc sample; Spring's
//	                           reuseRefreshToken=true), expires_in 3600; the
//	                           previous access token is removed (revoked).
//	GET  /api/v1/user          Authorization: Bearer → user JSON (the doc
//	                           names no userinfo endpoint; this path is the
//	                           emulator's choice).
//
// Strict readings: redirect_uri at the token endpoint follows Spring's
// AuthorizationCodeTokenGranter (if the authorize request carried one, the
// token request must carry the same); state at the token endpoint is
// optional but, if sent, must equal the authorize request's state ("You
// will need to use the same state for the Get Access Token flow"). The doc
// gives no code lifetime (Spring's stores never expire codes); the emulator
// uses 10 minutes, single use. Refresh tokens live 30 days (Spring default).
// Errors are Spring's {"error","error_description"}.
func NewCitesphere(cfg Config) *Server { return newServer(citesphereProvider, cfg) }

// citesphereRefreshAccessTTL is the expires_in of the doc's refresh sample.
const citesphereRefreshAccessTTL = 3600 * time.Second

var citesphereScopes = map[string]bool{"read": true, "write": true}

var citesphereProvider = &provider{
	name:        "citesphere",
	display:     "Citesphere",
	codeTTL:     10 * time.Minute,
	accessTTL:   406 * time.Second,
	refreshTTL:  30 * 24 * time.Hour,
	consentPath: "/api/oauth/authorize",
	defaultUser: func() map[string]any {
		return map[string]any{
			"username":  "jdoe",
			"firstName": "Jane",
			"lastName":  "Doe",
			"email":     "jane.doe@asu.edu",
			"roles":     []any{"ROLE_USER"},
		}
	},
	routes: func(s *Server) {
		s.handle(http.MethodGet, "/api/oauth/authorize", "authorize", s.citesphereAuthorize)
		s.handle(http.MethodPost, "/api/oauth/authorize", "consent", s.consent)
		s.handle(http.MethodPost, "/api/oauth/token", "token", s.citesphereToken)
		s.handle(http.MethodGet, "/api/v1/user", "userinfo", s.citesphereUser)
	},
	approve: func(s *Server, r *http.Request, req *authRequest) string {
		code := randAlnum(6) // Spring's RandomValueStringGenerator default
		for s.codeExists(code) {
			code = randAlnum(6)
		}
		s.storeCode(code, req, s.newSession(req))
		if req.stateGiven {
			return addQuery(req.redirectURI, "code", code, "state", req.state)
		}
		return addQuery(req.redirectURI, "code", code)
	},
	deny: func(s *Server, r *http.Request, req *authRequest) string {
		kv := []string{"error", "access_denied", "error_description", "User denied access"}
		if req.stateGiven {
			kv = append(kv, "state", req.state)
		}
		return addQuery(req.redirectURI, kv...)
	},
}

func (s *Server) codeExists(code string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.codes[code] != nil
}

func (s *Server) citesphereAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cfg := s.config()
	page := func(status int, code, desc, reason string) {
		s.rejectPage(w, r, status, reason, "OAuth Error error=\""+code+"\", error_description=\""+desc+"\"")
	}
	if d := duplicated(q); d != "" {
		page(http.StatusBadRequest, "invalid_request", "Duplicate "+d, "duplicate parameter "+d)
		return
	}
	id := q.Get("client_id")
	if id == "" {
		page(http.StatusUnauthorized, "invalid_client", "A client id must be provided", "missing client_id")
		return
	}
	if id != cfg.ClientID {
		page(http.StatusUnauthorized, "invalid_client", "Bad client credentials", "unknown client_id "+strconvQuote(id))
		return
	}
	if cfg.RedirectURI == "" {
		page(http.StatusBadRequest, "invalid_request", "A redirect_uri must be supplied.", "emulator has no registered RedirectURI")
		return
	}
	req := &authRequest{clientID: id, redirectURI: cfg.RedirectURI}
	if ru, ok := q["redirect_uri"]; ok {
		req.redirectGiven = true
		if ru[0] != cfg.RedirectURI {
			page(http.StatusBadRequest, "invalid_grant", "Invalid redirect: "+ru[0]+" does not match one of the registered values.",
				"redirect_uri "+strconvQuote(ru[0])+" is not registered")
			return
		}
	}
	if _, ok := q["state"]; ok {
		req.state, req.stateGiven = q.Get("state"), true
	}
	back := func(code, desc string) string {
		kv := []string{"error", code, "error_description", desc}
		if req.stateGiven {
			kv = append(kv, "state", req.state)
		}
		return addQuery(req.redirectURI, kv...)
	}
	if rt := q.Get("response_type"); rt != "code" {
		s.rejectRedirect(w, r, back("unsupported_response_type", "Unsupported response types: ["+rt+"]"),
			"response_type must be code, got "+strconvQuote(rt))
		return
	}
	scopes := strings.Fields(q.Get("scope"))
	if len(scopes) == 0 {
		// The doc: scope "Required. A space-delimited list of scopes."
		s.rejectRedirect(w, r, back("invalid_scope", "Empty scope (either the client or the user is not allowed the requested scopes)"),
			"missing scope (required by the Citesphere doc)")
		return
	}
	for _, sc := range scopes {
		if !citesphereScopes[sc] {
			s.rejectRedirect(w, r, back("invalid_scope", "Invalid scope: "+sc), "unknown scope "+strconvQuote(sc))
			return
		}
	}
	req.scope = strings.Join(dedupe(scopes), " ")
	s.decide(w, r, req)
}

func (s *Server) citesphereError(w http.ResponseWriter, r *http.Request, status int, code, desc, reason string) {
	if reason == "" {
		reason = desc
	}
	s.rejectJSON(w, r, status, code+": "+reason, map[string]any{"error": code, "error_description": desc})
}

func (s *Server) citesphereToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// What a misconfigured client may have put in the body, for the
	// rejection message only: Citesphere reads the query string.
	var bodyKeys []string
	if mediaType(r) == "application/x-www-form-urlencoded" {
		if err := r.ParseForm(); err == nil {
			for k := range r.PostForm {
				bodyKeys = append(bodyKeys, k)
			}
		}
	}
	bodyHint := ""
	if len(bodyKeys) > 0 {
		bodyHint = " (parameters found in the request BODY: " + strings.Join(sortedCopy(bodyKeys), ",") + "; Citesphere reads them from the query string)"
	}
	if gt := q.Get("grant_type"); gt == "authorization_code" || gt == "refresh_token" {
		s.count("token:" + gt)
	}
	if d := duplicated(q); d != "" {
		s.citesphereError(w, r, http.StatusBadRequest, "invalid_request", "Duplicate parameter "+d, "")
		return
	}
	cfg := s.config()
	id, secret := q.Get("client_id"), q.Get("client_secret")
	if id == "" || secret == "" {
		s.citesphereError(w, r, http.StatusUnauthorized, "unauthorized", "Full authentication is required to access this resource",
			"client_id/client_secret missing from the query string"+bodyHint)
		return
	}
	if id != cfg.ClientID || !secretEqual(secret, cfg.ClientSecret) {
		s.citesphereError(w, r, http.StatusUnauthorized, "invalid_client", "Bad client credentials", "wrong client credentials")
		return
	}
	gt := q.Get("grant_type")
	switch gt {
	case "":
		s.citesphereError(w, r, http.StatusBadRequest, "invalid_request", "Missing grant type", "missing grant_type in the query string"+bodyHint)
		return
	case "authorization_code":
		s.citesphereCode(w, r, q, bodyHint)
	case "refresh_token":
		s.citesphereRefresh(w, r, q, bodyHint)
	default:
		s.citesphereError(w, r, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+gt, "")
	}
}

func (s *Server) citesphereCode(w http.ResponseWriter, r *http.Request, q url.Values, bodyHint string) {
	code := q.Get("code")
	if code == "" {
		s.citesphereError(w, r, http.StatusBadRequest, "invalid_request", "An authorization code must be supplied.", "missing code in the query string"+bodyHint)
		return
	}
	// Spring consumes the code first (consumeAuthorizationCode), then checks.
	ac, st := s.consumeCode(code)
	if st != codeOK {
		s.citesphereError(w, r, http.StatusBadRequest, "invalid_grant", "Invalid authorization code: "+code, st.String())
		return
	}
	cfg := s.config()
	if ac.req.clientID != cfg.ClientID {
		s.citesphereError(w, r, http.StatusUnauthorized, "invalid_client", "Client ID mismatch", "")
		return
	}
	ru, ruGiven := q["redirect_uri"]
	if (ruGiven || ac.req.redirectGiven) && (!ruGiven || ru[0] != ac.req.redirectURI) {
		got := "<absent>"
		if ruGiven {
			got = strconvQuote(ru[0])
		}
		s.citesphereError(w, r, http.StatusBadRequest, "invalid_grant", "Redirect URI mismatch.",
			"redirect_uri "+got+" does not match the authorization request's "+strconvQuote(ac.req.redirectURI))
		return
	}
	if st, ok := q["state"]; ok && (!ac.req.stateGiven || st[0] != ac.req.state) {
		s.citesphereError(w, r, http.StatusBadRequest, "invalid_request", "State mismatch.",
			"state "+strconvQuote(st[0])+" differs from the authorize request's state")
		return
	}
	sess := s.sessionOf(ac.session)
	s.citesphereIssue(w, sess, ac.req.scope, "", s.accessTTL())
}

func (s *Server) citesphereRefresh(w http.ResponseWriter, r *http.Request, q url.Values, bodyHint string) {
	rt := q.Get("refresh_token")
	cfg := s.config()
	old, st, reason := s.checkRefresh(rt, cfg.ClientID)
	switch st {
	case refreshOK:
	case refreshExpired:
		s.citesphereError(w, r, http.StatusUnauthorized, "invalid_token", "Invalid refresh token (expired): "+rt, reason)
		return
	case refreshWrongClient:
		s.citesphereError(w, r, http.StatusBadRequest, "invalid_grant", "Wrong client for this refresh token: "+rt, reason)
		return
	default:
		if rt == "" {
			reason = "missing refresh_token in the query string" + bodyHint
			rt = "null"
		}
		s.citesphereError(w, r, http.StatusBadRequest, "invalid_grant", "Invalid refresh token: "+rt, reason)
		return
	}
	// DefaultTokenServices.refreshAccessToken: the old access token is
	// removed, the refresh token is reused.
	s.revoke(old.pair, "replaced by a refresh", false)
	sess := s.sessionOf(old.session)
	ttl := citesphereRefreshAccessTTL
	if c := s.config(); c.AccessTTL > 0 {
		ttl = c.AccessTTL
	}
	s.citesphereIssue(w, sess, old.scope, rt, ttl)
}

// citesphereIssue mints an access token; with reuseRefresh the given
// refresh token is kept (and re-paired) instead of a new one.
func (s *Server) citesphereIssue(w http.ResponseWriter, sess *session, scope, reuseRefresh string, ttl time.Duration) {
	now := s.clock()
	access := newUUID()
	refresh := reuseRefresh
	if refresh == "" {
		refresh = newUUID()
		s.storePair(sess, scope, access, now.Add(ttl), refresh, now.Add(s.p.refreshTTL))
	} else {
		s.storeToken(&token{value: access, kind: kindAccess, clientID: sess.clientID, scope: scope, session: sess.id,
			issued: now, expires: now.Add(ttl), pair: refresh})
		s.mu.Lock()
		if t := s.tokens[refresh]; t != nil {
			t.pair = access
		}
		s.mu.Unlock()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  access,
		"token_type":    "bearer",
		"refresh_token": refresh,
		"expires_in":    int64(ttl / time.Second),
		"scope":         scope,
	})
}

func (s *Server) citesphereUser(w http.ResponseWriter, r *http.Request) {
	tok := bearer(r)
	if _, reason := s.checkAccess(tok); reason != "" {
		desc := "Invalid access token: " + tok
		if strings.HasPrefix(reason, "access token expired") {
			desc = "Access token expired: " + tok
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="oauth2-resource", error="invalid_token", error_description="`+desc+`"`)
		s.citesphereError(w, r, http.StatusUnauthorized, "invalid_token", desc, reason)
		return
	}
	writeJSON(w, http.StatusOK, s.userCopy())
}

func sortedCopy(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	return out
}

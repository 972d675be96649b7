package emulators

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Proto emulates the S.A. Proto site's OAuth 2.0 server (proto.txt). The
// doc gives no paths ("a POST request to the following endpoint: “”");
// the Proto site is a Laravel application using Laravel Passport
// (league/oauth2-server), so the emulator uses Passport's routes and
// league's error format:
//
//	GET  /oauth/authorize  response_type=code and client_id (both required,
//	                       league), redirect_uri (optional; if given it must
//	                       equal the registered callback exactly), state
//	                       (echoed), scope (optional, free), PKCE
//	                       code_challenge[_method] (plain default, S256).
//	                       Bad request → JSON error (400/401), no redirect.
//	                       Approve: callback?code=C[&state=S]
//	                       Deny:    callback?error=access_denied&state=S
//	                       (Passport always appends state, possibly empty).
//	POST /oauth/token      Content-Type: application/json (the doc's only
//	                       header) with a JSON object body:
//	                         {"grant_type":"authorization_code","code",
//	                          "redirect_uri","client_id","client_secret"}
//	                         {"grant_type":"refresh_token","refresh_token",
//	                          "client_id","client_secret"}
//	                       A form-encoded (or any non-JSON) request → 400.
//	                       client_id may be a JSON string or number; the
//	                       client may also authenticate with HTTP Basic
//	                       (league falls back to it).
//	                       → {"token_type":"Bearer","expires_in":3600,
//	                          "access_token":"<RS256 JWT>","refresh_token":"def50200…"}
//	                       Refresh rotates (league revokes the old refresh
//	                       and access tokens).
//	GET  /api/user         Authorization: Bearer → user JSON; bad token →
//	                       401 {"message":"Unauthenticated."} (Laravel).
//
// The doc lists redirect_uri in the token request body, so it is required
// there (strict), and must equal the registered callback. Codes live 10
// minutes (Passport default) and are single use; refresh tokens 30 days.
// The default user is {"id":1234,"name":"Jan de Vries","calling_name":"Jan",
// "email":"jan.devries@proto.utwente.nl","is_member":true} (the fields
// Proto's /api/user exposes; the doc names none).
func NewProto(cfg Config) *Server { return newServer(protoProvider, cfg) }

var protoProvider = &provider{
	name:        "proto",
	display:     "S.A. Proto",
	codeTTL:     10 * time.Minute,
	accessTTL:   3600 * time.Second,
	refreshTTL:  30 * 24 * time.Hour,
	consentPath: "/oauth/authorize",
	defaultUser: func() map[string]any {
		return map[string]any{
			"id":           1234,
			"name":         "Jan de Vries",
			"calling_name": "Jan",
			"email":        "jan.devries@proto.utwente.nl",
			"is_member":    true,
		}
	},
	routes: func(s *Server) {
		s.handle(http.MethodGet, "/oauth/authorize", "authorize", s.protoAuthorize)
		s.handle(http.MethodPost, "/oauth/authorize", "consent", s.consent)
		s.handle(http.MethodPost, "/oauth/token", "token", s.protoToken)
		s.handle(http.MethodGet, "/api/user", "userinfo", s.protoUser)
	},
	approve: func(s *Server, r *http.Request, req *authRequest) string {
		// league auth codes are long encrypted payloads ("def50200…").
		code := "def50200" + randHex(256)
		s.storeCode(code, req, s.newSession(req))
		if req.stateGiven {
			return addQuery(req.redirectURI, "code", code, "state", req.state)
		}
		return addQuery(req.redirectURI, "code", code)
	},
	deny: func(s *Server, r *http.Request, req *authRequest) string {
		return addQuery(req.redirectURI, "error", "access_denied", "state", req.state)
	},
}

// league/oauth2-server error messages.
const (
	protoMsgInvalidRequest = "The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed."
	protoMsgInvalidClient  = "Client authentication failed"
	protoMsgInvalidGrant   = "The provided authorization grant (e.g., authorization code, resource owner credentials) or refresh token is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."
	protoMsgUnsupported    = "The authorization grant type is not supported by the authorization server."
	protoMsgBadRefresh     = "The refresh token is invalid."
)

func (s *Server) protoError(w http.ResponseWriter, r *http.Request, status int, code, msg, hint string) {
	body := map[string]any{"error": code, "error_description": msg, "message": msg}
	if hint != "" {
		body["hint"] = hint
	}
	s.rejectJSON(w, r, status, code+": "+hint, body)
}

func (s *Server) protoAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cfg := s.config()
	if d := duplicated(q); d != "" {
		s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Parameter `"+d+"` given more than once")
		return
	}
	if q.Get("response_type") != "code" || q.Get("client_id") == "" {
		s.protoError(w, r, http.StatusBadRequest, "unsupported_grant_type", protoMsgUnsupported,
			"Check that all required parameters have been provided (response_type=code and client_id)")
		return
	}
	if q.Get("client_id") != cfg.ClientID {
		s.protoError(w, r, http.StatusUnauthorized, "invalid_client", protoMsgInvalidClient, "unknown client_id "+strconvQuote(q.Get("client_id")))
		return
	}
	if cfg.RedirectURI == "" {
		s.protoError(w, r, http.StatusUnauthorized, "invalid_client", protoMsgInvalidClient, "emulator has no registered RedirectURI")
		return
	}
	req := &authRequest{clientID: cfg.ClientID, redirectURI: cfg.RedirectURI}
	if _, ok := q["redirect_uri"]; ok {
		req.redirectGiven = true
		// league: a redirect_uri that is not registered is invalid_client.
		if q.Get("redirect_uri") != cfg.RedirectURI {
			s.protoError(w, r, http.StatusUnauthorized, "invalid_client", protoMsgInvalidClient,
				"redirect_uri "+strconvQuote(q.Get("redirect_uri"))+" does not match the registered callback")
			return
		}
	}
	if _, ok := q["state"]; ok {
		req.state, req.stateGiven = q.Get("state"), true
	}
	req.scope = strings.Join(strings.Fields(q.Get("scope")), " ")
	if ch, ok := q["code_challenge"]; ok {
		m := q.Get("code_challenge_method")
		if m == "" {
			m = "plain"
		}
		if m != "plain" && m != "S256" {
			s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Code challenge method must be one of `plain`, `S256`")
			return
		}
		if !pkceValue.MatchString(ch[0]) {
			s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Code challenge must follow the specifications of RFC-7636.")
			return
		}
		req.challenge, req.challengeMethod = ch[0], m
	}
	s.decide(w, r, req)
}

func (s *Server) protoToken(w http.ResponseWriter, r *http.Request) {
	if mt := mediaType(r); mt != "application/json" {
		s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest,
			"The token request must be JSON (Content-Type: application/json), got "+strconvQuote(mt))
		return
	}
	var raw map[string]any
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil || raw == nil || dec.More() {
		s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "The request body must be a JSON object")
		return
	}
	p := map[string]string{}
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			p[k] = x
		case json.Number:
			p[k] = x.String()
		default:
			s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Check the `"+k+"` parameter")
			return
		}
	}
	gt := p["grant_type"]
	if gt == "authorization_code" || gt == "refresh_token" {
		s.count("token:" + gt)
	} else {
		s.protoError(w, r, http.StatusBadRequest, "unsupported_grant_type", protoMsgUnsupported, "Check that all required parameters have been provided (grant_type "+strconvQuote(gt)+")")
		return
	}
	cfg := s.config()
	id, secret := p["client_id"], p["client_secret"]
	if bid, bsec, ok := basicAuth(r); ok {
		if id == "" {
			id = bid
		}
		if secret == "" {
			secret = bsec
		}
	}
	if id == "" {
		s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Check the `client_id` parameter")
		return
	}
	if id != cfg.ClientID || secret == "" || !secretEqual(secret, cfg.ClientSecret) {
		s.protoError(w, r, http.StatusUnauthorized, "invalid_client", protoMsgInvalidClient, "wrong or missing client credentials")
		return
	}
	var sess *session
	var scope string
	if gt == "authorization_code" {
		code := p["code"]
		if code == "" {
			s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Check the `code` parameter")
			return
		}
		ac, st := s.lookupCode(code)
		switch st {
		case codeUnknown:
			s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Cannot decrypt the authorization code")
			return
		case codeExpired:
			s.protoError(w, r, http.StatusBadRequest, "invalid_grant", protoMsgInvalidGrant, "Authorization code has expired")
			return
		case codeUsed:
			s.protoError(w, r, http.StatusBadRequest, "invalid_grant", protoMsgInvalidGrant, "Authorization code has been revoked")
			return
		}
		if ac.req.clientID != id {
			s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Authorization code was not issued to this client")
			return
		}
		// The doc lists redirect_uri in the token body: required.
		ru, ok := p["redirect_uri"]
		if !ok || ru == "" {
			s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Check the `redirect_uri` parameter")
			return
		}
		if ru != ac.req.redirectURI {
			s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Invalid redirect URI "+strconvQuote(ru))
			return
		}
		if ac.req.challenge != "" {
			v := p["code_verifier"]
			if v == "" {
				s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Check the `code_verifier` parameter")
				return
			}
			if !pkceValue.MatchString(v) {
				s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Code Verifier must follow the specifications of RFC-7636.")
				return
			}
			if !pkceMatches(ac.req.challengeMethod, ac.req.challenge, v) {
				s.protoError(w, r, http.StatusBadRequest, "invalid_grant", protoMsgInvalidGrant, "Failed to verify `code_verifier`.")
				return
			}
		}
		if _, st := s.consumeCode(code); st != codeOK {
			s.protoError(w, r, http.StatusBadRequest, "invalid_grant", protoMsgInvalidGrant, "Authorization code has been revoked")
			return
		}
		sess, scope = s.sessionOf(ac.session), ac.req.scope
	} else {
		rt := p["refresh_token"]
		if rt == "" {
			s.protoError(w, r, http.StatusBadRequest, "invalid_request", protoMsgInvalidRequest, "Check the `refresh_token` parameter")
			return
		}
		old, st, reason := s.checkRefresh(rt, id)
		hint := map[refreshStatus]string{
			refreshUnknown:      "Cannot decrypt the refresh token",
			refreshWrongClient:  "Token is not linked to client",
			refreshRevoked:      "Token has been revoked",
			refreshExpired:      "Token has expired",
			refreshSessionEnded: "Token has been revoked",
		}[st]
		if st != refreshOK {
			s.protoError(w, r, http.StatusBadRequest, "invalid_grant", protoMsgBadRefresh, hint+" ("+reason+")")
			return
		}
		s.revoke(rt, "rotated by refresh", true)
		sess, scope = s.sessionOf(old.session), old.scope
	}
	now := s.clock()
	ttl := s.accessTTL()
	user := s.userCopy()
	sub := ""
	if v, ok := user["id"]; ok {
		b, _ := json.Marshal(v)
		sub = strings.Trim(string(b), `"`)
	}
	scopes := strings.Fields(scope)
	if scopes == nil {
		scopes = []string{}
	}
	access := signRS256(map[string]any{
		"aud": id, "jti": randHex(40), "iat": now.Unix(), "nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(), "sub": sub, "scopes": scopes,
	}, "JWT")
	refresh := "def50200" + randHex(352)
	s.storePair(sess, scope, access, now.Add(ttl), refresh, now.Add(s.p.refreshTTL))
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":    "Bearer",
		"expires_in":    int64(ttl / time.Second),
		"access_token":  access,
		"refresh_token": refresh,
	})
}

func (s *Server) protoUser(w http.ResponseWriter, r *http.Request) {
	if _, reason := s.checkAccess(bearer(r)); reason != "" {
		s.rejectJSON(w, r, http.StatusUnauthorized, reason, map[string]any{"message": "Unauthenticated."})
		return
	}
	writeJSON(w, http.StatusOK, s.userCopy())
}

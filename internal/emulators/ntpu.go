package emulators

import (
	"encoding/json"
	"net/http"
	"time"
)

// NTPU emulates Open NTPU OAuth (ntpu.txt, https://oauth.ntpu.cc).
//
//	GET  /?clientId=ID     login/consent view (the root path). The doc
//	                       defines no redirect_uri, state or scope: the
//	                       redirect goes to the registered RedirectURI.
//	                       Unknown extra parameters are ignored; a missing
//	                       or unknown clientId is an HTML error page (400).
//	                       Approve: RedirectURI?authorizationCode=ey...
//	                       Deny:    RedirectURI?error=access_denied
//	                       (no state is ever echoed).
//	POST /api/exchange     Content-Type: application/json, body
//	                       {"authorizationCode", "clientId"|"client_id",
//	                        "clientSecret"|"client_secret"} → 200
//	                       {"access_token":"<JWT>","refresh_token":"<JWT>"}
//	                       (no expires_in, no token_type; the access token's
//	                       exp claim is its only lifetime).
//	GET  /api/user/info    Authorization: Bearer → user JSON.
//
// Choices where the doc is vague (strict but reasonable):
//   - The doc's table says clientId/clientSecret while its sample says
//     client_id/client_secret: either spelling is accepted; if both are
//     sent they must agree.
//   - The sample body is form-like text under "Content-Type:
//     application/json"; the emulator requires the declared JSON (a form
//     body is a 400 whatever the header says).
//   - No refresh grant is documented, so a body carrying grant_type other
//     than "authorization_code" or a refresh_token field is refused
//     (400 unsupported_grant_type). The refresh token is issued but useless.
//   - "within 15 minutes": codes live 15 minutes and are single use. The
//     code is itself a JWT ("ey..." in the doc).
//   - Tokens are HS256 JWTs signed with a per-emulator secret; the access
//     token's exp is AccessTTL (default 15 minutes), the refresh token's
//     30 days. The error format is undocumented: the emulator answers
//     {"error": "...", "error_description": "..."} with 400 (bad request or
//     bad code) or 401 (bad client credentials or bad bearer token).
//   - The userinfo shape is undocumented; the default user is
//     {"id":"410123456","name":"王小明","email":"s410123456@gm.ntpu.edu.tw",
//     "department":"資訊工程學系"} (NTPU student ids are 9 digits, students'
//     Google Workspace mail is on gm.ntpu.edu.tw).
func NewNTPU(cfg Config) *Server { return newServer(ntpuProvider, cfg) }

var ntpuProvider = &provider{
	name:        "ntpu",
	display:     "Open NTPU",
	codeTTL:     15 * time.Minute,
	accessTTL:   15 * time.Minute,
	refreshTTL:  30 * 24 * time.Hour,
	consentPath: "/",
	defaultUser: func() map[string]any {
		return map[string]any{
			"id":         "410123456",
			"name":       "王小明",
			"email":      "s410123456@gm.ntpu.edu.tw",
			"department": "資訊工程學系",
		}
	},
	routes: func(s *Server) {
		s.handle(http.MethodGet, "/", "authorize", s.ntpuAuthorize)
		s.handle(http.MethodPost, "/", "consent", s.consent)
		s.handle(http.MethodPost, "/api/exchange", "token", s.ntpuExchange)
		s.handle(http.MethodGet, "/api/user/info", "userinfo", s.ntpuUserInfo)
	},
	approve: func(s *Server, r *http.Request, req *authRequest) string {
		now := s.clock()
		code := s.signHMAC("HS256", map[string]any{
			"typ":      "authorization_code",
			"clientId": req.clientID,
			"iat":      now.Unix(),
			"exp":      now.Add(15 * time.Minute).Unix(),
			"jti":      newUUID(),
		}, "JWT")
		s.storeCode(code, req, s.newSession(req))
		return addQuery(req.redirectURI, "authorizationCode", code)
	},
	deny: func(s *Server, r *http.Request, req *authRequest) string {
		return addQuery(req.redirectURI, "error", "access_denied")
	},
}

func (s *Server) ntpuAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cfg := s.config()
	if len(q["clientId"]) > 1 {
		s.rejectPage(w, r, http.StatusBadRequest, "clientId given more than once", "Invalid client.")
		return
	}
	id := q.Get("clientId")
	switch {
	case id == "":
		s.rejectPage(w, r, http.StatusBadRequest, "missing clientId query parameter (NTPU uses clientId, not client_id)", "Missing clientId.")
		return
	case id != cfg.ClientID:
		s.rejectPage(w, r, http.StatusBadRequest, "unknown clientId "+strconvQuote(id), "Unknown application.")
		return
	case cfg.RedirectURI == "":
		s.rejectPage(w, r, http.StatusInternalServerError, "emulator has no registered RedirectURI", "Application has no redirect URI.")
		return
	}
	s.decide(w, r, &authRequest{clientID: id, redirectURI: cfg.RedirectURI})
}

func (s *Server) ntpuError(w http.ResponseWriter, r *http.Request, status int, code, desc string) {
	s.rejectJSON(w, r, status, code+": "+desc, map[string]any{"error": code, "error_description": desc})
}

func (s *Server) ntpuExchange(w http.ResponseWriter, r *http.Request) {
	if mt := mediaType(r); mt != "application/json" {
		s.ntpuError(w, r, http.StatusBadRequest, "invalid_request", "Content-Type must be application/json, got "+strconvQuote(mt))
		return
	}
	var body map[string]any
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil || body == nil || dec.More() {
		s.ntpuError(w, r, http.StatusBadRequest, "invalid_request", "request body must be a single JSON object")
		return
	}
	_, hasRefresh := body["refresh_token"]
	gt, hasGrant := body["grant_type"]
	if hasRefresh || gt == "refresh_token" {
		s.count("token:refresh_token")
		s.ntpuError(w, r, http.StatusBadRequest, "unsupported_grant_type", "NTPU documents no refresh grant at /api/exchange")
		return
	}
	s.count("token:authorization_code")
	if hasGrant && gt != "authorization_code" {
		s.ntpuError(w, r, http.StatusBadRequest, "unsupported_grant_type", "only the authorization code exchange is supported")
		return
	}
	str := func(k string) (string, bool) {
		v, ok := body[k]
		if !ok {
			return "", false
		}
		sv, isStr := v.(string)
		if !isStr {
			return "\x00not-a-string", true
		}
		return sv, true
	}
	either := func(camel, snake string) (string, string) {
		a, okA := str(camel)
		b, okB := str(snake)
		switch {
		case okA && okB && a != b:
			return "", camel + " and " + snake + " disagree"
		case okA:
			return a, ""
		case okB:
			return b, ""
		}
		return "", ""
	}
	cfg := s.config()
	id, bad := either("clientId", "client_id")
	if bad != "" {
		s.ntpuError(w, r, http.StatusBadRequest, "invalid_request", bad)
		return
	}
	secret, bad := either("clientSecret", "client_secret")
	if bad != "" {
		s.ntpuError(w, r, http.StatusBadRequest, "invalid_request", bad)
		return
	}
	if id == "" || secret == "" {
		s.ntpuError(w, r, http.StatusUnauthorized, "invalid_client", "clientId and clientSecret are required")
		return
	}
	if id != cfg.ClientID || !secretEqual(secret, cfg.ClientSecret) {
		s.ntpuError(w, r, http.StatusUnauthorized, "invalid_client", "wrong client credentials")
		return
	}
	code, ok := str("authorizationCode")
	if !ok || code == "" {
		s.ntpuError(w, r, http.StatusBadRequest, "invalid_request", "authorizationCode is required")
		return
	}
	ac, st := s.lookupCode(code)
	if st != codeOK {
		s.ntpuError(w, r, http.StatusBadRequest, "invalid_grant", st.String())
		return
	}
	if ac.req.clientID != id {
		s.ntpuError(w, r, http.StatusBadRequest, "invalid_grant", "authorization code was issued to another client")
		return
	}
	if _, st := s.consumeCode(code); st != codeOK {
		s.ntpuError(w, r, http.StatusBadRequest, "invalid_grant", st.String())
		return
	}
	sess := s.sessionOf(ac.session)
	now := s.clock()
	user := s.userCopy()
	accessExp := now.Add(s.accessTTL())
	refreshExp := now.Add(s.p.refreshTTL)
	base := s.baseURL(r)
	access := s.signHMAC("HS256", map[string]any{
		"iss": base, "sub": user["id"], "aud": id, "clientId": id,
		"iat": now.Unix(), "exp": accessExp.Unix(), "jti": newUUID(),
	}, "JWT")
	refresh := s.signHMAC("HS256", map[string]any{
		"iss": base, "sub": user["id"], "aud": id, "typ": "refresh",
		"iat": now.Unix(), "exp": refreshExp.Unix(), "jti": newUUID(),
	}, "JWT")
	s.storePair(sess, "", access, accessExp, refresh, refreshExp)
	writeJSON(w, http.StatusOK, map[string]any{"access_token": access, "refresh_token": refresh})
}

func (s *Server) ntpuUserInfo(w http.ResponseWriter, r *http.Request) {
	if _, reason := s.checkAccess(bearer(r)); reason != "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		s.ntpuError(w, r, http.StatusUnauthorized, "invalid_token", reason)
		return
	}
	writeJSON(w, http.StatusOK, s.userCopy())
}

package emulators

import (
	"net/http"
	"strings"
	"time"
)

// Omniport emulates Omniport OAuth2 (omniport.txt; IIT Roorkee, built on
// Django OAuth Toolkit (DOT) / oauthlib).
//
//	GET  /oauth/authorise/          client_id (required), redirect_uri
//	                                (optional; if given it must equal the
//	                                registered URI exactly), state
//	                                (optional, echoed), response_type
//	                                (optional, must be "code" if given),
//	                                scope (optional, default "read write"),
//	                                code_challenge[_method] (PKCE, plain or
//	                                S256; default plain as in oauthlib).
//	                                Unknown client or bad redirect_uri: HTML
//	                                error page (400), NO redirect.
//	                                Approve: REDIRECT_URI?code=C[&state=S]
//	                                Deny:    302 to the Omniport home page
//	                                         URL()+"/" (never back to the app).
//	GET  /oauth/authorise           301 to the slashed path (Django APPEND_SLASH).
//	GET  /                          Omniport home page (HTML).
//	POST /open_auth/token/          application/x-www-form-urlencoded body:
//	                                grant_type, client_id, client_secret
//	                                (or HTTP Basic), and
//	                                  authorization_code: code, redirect_uri
//	                                  (required by the doc), code_verifier
//	                                  (required iff a challenge was sent)
//	                                  refresh_token: refresh_token
//	                                → {"access_token","expires_in":36000,
//	                                   "token_type":"Bearer","scope",
//	                                   "refresh_token"}
//	                                Refresh rotates: the old refresh token
//	                                and its access token are revoked.
//	GET  /open_auth/get_user_data/  Authorization: Bearer → user JSON; bad
//	                                token → 401 {"detail": "Authentication
//	                                credentials were not provided."}
//	POST /open_auth/revoke_token/   form body: client_id, client_secret,
//	                                token, token_type_hint — all four
//	                                required by the doc → 200, empty body.
//	                                Revoking a refresh token also revokes its
//	                                access token (DOT RefreshToken.revoke).
//
// Errors follow oauthlib: {"error": "..."} (+ "error_description" when
// oauthlib has one), 401 for invalid_client, else 400. Codes are 30
// alphanumerics with a 1 minute TTL, single use; tokens are 30
// alphanumerics like the doc's samples. Refresh tokens do not expire (DOT's
// default REFRESH_TOKEN_EXPIRE_SECONDS=None).
func NewOmniport(cfg Config) *Server { return newServer(omniportProvider, cfg) }

const omniportDefaultScope = "read write"

var omniportProvider = &provider{
	name:        "omniport",
	display:     "Omniport",
	codeTTL:     time.Minute,
	accessTTL:   36000 * time.Second,
	refreshTTL:  0,
	consentPath: "/oauth/authorise/",
	defaultUser: func() map[string]any {
		// The doc's sample, verbatim (minus its "..." elisions).
		return map[string]any{
			"userId":   1234,
			"username": "15xxx009",
			"person": map[string]any{
				"shortName": "dhruvkb",
				"fullName":  "Dhruv Kanti Bhanushali",
				"roles": []any{
					map[string]any{"role": "Student", "activeStatus": "ActiveStatus.IS_ACTIVE"},
					map[string]any{"role": "Maintainer", "activeStatus": "ActiveStatus.IS_ACTIVE"},
				},
			},
			"student":            map[string]any{"enrolmentNumber": "15xxx009"},
			"contactInformation": map[string]any{"instituteWebmailAddress": "xyz@iitr.ac.in"},
		}
	},
	routes: func(s *Server) {
		s.handle(http.MethodGet, "/oauth/authorise/", "authorize", s.omniportAuthorize)
		s.handle(http.MethodPost, "/oauth/authorise/", "consent", s.consent)
		s.handle(http.MethodGet, "/oauth/authorise", "append_slash", func(w http.ResponseWriter, r *http.Request) {
			u := "/oauth/authorise/"
			if r.URL.RawQuery != "" {
				u += "?" + r.URL.RawQuery
			}
			w.Header().Set("Location", u)
			w.WriteHeader(http.StatusMovedPermanently)
		})
		s.handle(http.MethodGet, "/", "home", func(w http.ResponseWriter, r *http.Request) {
			s.writeInfoPage(w, "Omniport home")
		})
		s.handle(http.MethodPost, "/open_auth/token/", "token", s.omniportToken)
		s.handle(http.MethodGet, "/open_auth/get_user_data/", "userinfo", s.omniportUserData)
		s.handle(http.MethodPost, "/open_auth/revoke_token/", "revoke", s.omniportRevoke)
	},
	approve: func(s *Server, r *http.Request, req *authRequest) string {
		code := randAlnum(30)
		s.storeCode(code, req, s.newSession(req))
		if req.stateGiven {
			return addQuery(req.redirectURI, "code", code, "state", req.state)
		}
		return addQuery(req.redirectURI, "code", code)
	},
	// "Based on whether the user approves the app or denies it, the user
	// will be redirected to REDIRECT_URI or back to Omniport home."
	deny: func(s *Server, r *http.Request, req *authRequest) string {
		return s.baseURL(r) + "/"
	},
}

func (s *Server) omniportAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cfg := s.config()
	if d := duplicated(q); d != "" {
		s.rejectPage(w, r, http.StatusBadRequest, "duplicate parameter "+d, "Duplicate "+d+" parameter.")
		return
	}
	id := q.Get("client_id")
	if id == "" {
		s.rejectPage(w, r, http.StatusBadRequest, "missing client_id", "Missing client_id parameter.")
		return
	}
	if id != cfg.ClientID {
		s.rejectPage(w, r, http.StatusBadRequest, "unknown client_id "+strconvQuote(id), "Invalid client_id parameter value.")
		return
	}
	if cfg.RedirectURI == "" {
		s.rejectPage(w, r, http.StatusInternalServerError, "emulator has no registered RedirectURI", "Missing redirect URI.")
		return
	}
	// The doc marks redirect_uri optional (its sample shows it in <...>);
	// oauthlib then uses the registered (default) URI. If given it must be
	// one of the registered URIs, compared exactly.
	req := &authRequest{clientID: id, redirectURI: cfg.RedirectURI, scope: omniportDefaultScope}
	if _, ok := q["redirect_uri"]; ok {
		req.redirectGiven = true
		if q.Get("redirect_uri") != cfg.RedirectURI {
			s.rejectPage(w, r, http.StatusBadRequest, "redirect_uri "+strconvQuote(q.Get("redirect_uri"))+" is not registered", "Mismatching redirect URI.")
			return
		}
	}
	if _, ok := q["state"]; ok {
		req.state, req.stateGiven = q.Get("state"), true
	}
	back := func(kv ...string) string {
		if req.stateGiven {
			kv = append(kv, "state", req.state)
		}
		return addQuery(req.redirectURI, kv...)
	}
	if rt, ok := q["response_type"]; ok && rt[0] != "code" {
		s.rejectRedirect(w, r, back("error", "unsupported_response_type"), "unsupported response_type "+strconvQuote(rt[0]))
		return
	}
	if sc := strings.Join(strings.Fields(q.Get("scope")), " "); sc != "" {
		req.scope = sc
	}
	if ch := q.Get("code_challenge"); ch != "" {
		m := q.Get("code_challenge_method")
		if m == "" {
			m = "plain"
		}
		if m != "plain" && m != "S256" {
			s.rejectRedirect(w, r, back("error", "invalid_request", "error_description", "Transform algorithm not supported."), "unsupported code_challenge_method "+strconvQuote(m))
			return
		}
		if !pkceValue.MatchString(ch) {
			s.rejectRedirect(w, r, back("error", "invalid_request", "error_description", "Code challenge is invalid."), "malformed code_challenge")
			return
		}
		req.challenge, req.challengeMethod = ch, m
	}
	s.decide(w, r, req)
}

func (s *Server) omniportError(w http.ResponseWriter, r *http.Request, status int, code, desc, reason string) {
	body := map[string]any{"error": code}
	if desc != "" {
		body["error_description"] = desc
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`"`)
	}
	s.rejectJSON(w, r, status, code+": "+reason, body)
}

// omniportForm reads the form-encoded body (DOT reads request.POST only)
// and authenticates the client from the body or HTTP Basic.
func (s *Server) omniportForm(w http.ResponseWriter, r *http.Request) (form map[string]string, ok bool) {
	if mt := mediaType(r); mt != "application/x-www-form-urlencoded" {
		// DOT only reads request.POST, which Django fills only for form
		// bodies: anything else arrives without grant_type.
		s.omniportError(w, r, http.StatusBadRequest, "unsupported_grant_type", "",
			"Content-Type must be application/x-www-form-urlencoded, got "+strconvQuote(mt))
		return nil, false
	}
	if err := r.ParseForm(); err != nil {
		s.omniportError(w, r, http.StatusBadRequest, "invalid_request", "", "unreadable form body: "+err.Error())
		return nil, false
	}
	if d := duplicated(r.PostForm); d != "" {
		s.omniportError(w, r, http.StatusBadRequest, "invalid_request", "Duplicate "+d+" parameter.", "duplicate parameter "+d)
		return nil, false
	}
	form = map[string]string{}
	for k, v := range r.PostForm {
		form[k] = v[0]
	}
	return form, true
}

func (s *Server) omniportClient(w http.ResponseWriter, r *http.Request, form map[string]string) bool {
	cfg := s.config()
	id, secret := form["client_id"], form["client_secret"]
	if bid, bsec, ok := basicAuth(r); ok {
		if id != "" && id != bid {
			s.omniportError(w, r, http.StatusUnauthorized, "invalid_client", "", "client_id in body and Basic auth disagree")
			return false
		}
		id, secret = bid, bsec
	}
	switch {
	case id == "" || secret == "":
		s.omniportError(w, r, http.StatusUnauthorized, "invalid_client", "", "client_id and client_secret are required (body or Basic)")
		return false
	case id != cfg.ClientID || !secretEqual(secret, cfg.ClientSecret):
		s.omniportError(w, r, http.StatusUnauthorized, "invalid_client", "", "wrong client credentials")
		return false
	}
	return true
}

func (s *Server) omniportToken(w http.ResponseWriter, r *http.Request) {
	form, ok := s.omniportForm(w, r)
	if !ok {
		return
	}
	gt := form["grant_type"]
	if gt == "authorization_code" || gt == "refresh_token" {
		s.count("token:" + gt)
	}
	if gt != "authorization_code" && gt != "refresh_token" {
		s.omniportError(w, r, http.StatusBadRequest, "unsupported_grant_type", "", "unsupported grant_type "+strconvQuote(gt))
		return
	}
	if !s.omniportClient(w, r, form) {
		return
	}
	cfg := s.config()
	var sess *session
	scope := omniportDefaultScope
	if gt == "authorization_code" {
		code := form["code"]
		if code == "" {
			s.omniportError(w, r, http.StatusBadRequest, "invalid_request", "Missing code parameter.", "missing code")
			return
		}
		if form["redirect_uri"] == "" {
			s.omniportError(w, r, http.StatusBadRequest, "invalid_request", "Missing redirect URI.", "missing redirect_uri (required by the Omniport doc)")
			return
		}
		ac, st := s.lookupCode(code)
		if st != codeOK {
			s.omniportError(w, r, http.StatusBadRequest, "invalid_grant", "", st.String())
			return
		}
		if ac.req.clientID != cfg.ClientID {
			s.omniportError(w, r, http.StatusBadRequest, "invalid_grant", "", "code issued to another client")
			return
		}
		if form["redirect_uri"] != ac.req.redirectURI {
			s.omniportError(w, r, http.StatusBadRequest, "invalid_request", "Mismatching redirect URI.",
				"redirect_uri "+strconvQuote(form["redirect_uri"])+" does not match "+strconvQuote(ac.req.redirectURI))
			return
		}
		if ac.req.challenge != "" {
			v := form["code_verifier"]
			if v == "" {
				s.omniportError(w, r, http.StatusBadRequest, "invalid_request", "Code verifier required.", "PKCE challenge was sent but code_verifier is missing")
				return
			}
			if !pkceMatches(ac.req.challengeMethod, ac.req.challenge, v) {
				s.omniportError(w, r, http.StatusBadRequest, "invalid_grant", "", "code_verifier does not match the code_challenge")
				return
			}
		}
		if _, st := s.consumeCode(code); st != codeOK {
			s.omniportError(w, r, http.StatusBadRequest, "invalid_grant", "", st.String())
			return
		}
		sess = s.sessionOf(ac.session)
		scope = ac.req.scope
	} else {
		rt := form["refresh_token"]
		if rt == "" {
			s.omniportError(w, r, http.StatusBadRequest, "invalid_request", "Missing refresh token parameter.", "missing refresh_token")
			return
		}
		old, st, reason := s.checkRefresh(rt, cfg.ClientID)
		if st != refreshOK {
			s.omniportError(w, r, http.StatusBadRequest, "invalid_grant", "", reason)
			return
		}
		// DOT ROTATE_REFRESH_TOKEN (default True): the old refresh token is
		// revoked together with its access token.
		s.revoke(rt, "rotated by refresh", true)
		sess = s.sessionOf(old.session)
		scope = old.scope
	}
	now := s.clock()
	ttl := s.accessTTL()
	access, refresh := randAlnum(30), randAlnum(30)
	s.storePair(sess, scope, access, now.Add(ttl), refresh, time.Time{})
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  access,
		"expires_in":    int64(ttl / time.Second),
		"token_type":    "Bearer",
		"scope":         scope,
		"refresh_token": refresh,
	})
}

func (s *Server) omniportUserData(w http.ResponseWriter, r *http.Request) {
	if _, reason := s.checkAccess(bearer(r)); reason != "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
		s.rejectJSON(w, r, http.StatusUnauthorized, reason,
			map[string]any{"detail": "Authentication credentials were not provided."})
		return
	}
	writeJSON(w, http.StatusOK, s.userCopy())
}

func (s *Server) omniportRevoke(w http.ResponseWriter, r *http.Request) {
	form, ok := s.omniportForm(w, r)
	if !ok {
		return
	}
	if !s.omniportClient(w, r, form) {
		return
	}
	tok, hint := form["token"], form["token_type_hint"]
	if tok == "" {
		s.omniportError(w, r, http.StatusBadRequest, "invalid_request", "Missing token parameter.", "missing token")
		return
	}
	// The doc marks token_type_hint "(required)" (RFC 7009 makes it
	// optional): strict reading, it must be present.
	if hint == "" {
		s.omniportError(w, r, http.StatusBadRequest, "invalid_request", "Missing token_type_hint parameter.", "missing token_type_hint (required by the Omniport doc)")
		return
	}
	if hint != "access_token" && hint != "refresh_token" {
		s.omniportError(w, r, http.StatusBadRequest, "unsupported_token_type", "", "token_type_hint must be access_token or refresh_token, got "+strconvQuote(hint))
		return
	}
	if t := s.tokenInfo(tok); t != nil && t.clientID == s.config().ClientID {
		// DOT: revoking a refresh token revokes its access token as well;
		// revoking an access token leaves the refresh token usable.
		s.revoke(tok, "revoked at /open_auth/revoke_token/", t.kind == kindRefresh)
	}
	w.WriteHeader(http.StatusOK)
}

package testidp

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	var params url.Values
	switch r.Method {
	case http.MethodGet:
		params = r.URL.Query()
	case http.MethodPost:
		if oe := parsePostForm(r); oe != nil && r.PostForm == nil {
			s.errorPage(w, http.StatusBadRequest, oe.code, oe.desc)
			return
		}
		if r.PostForm.Has("tx") {
			s.count("login")
			s.login(w, r)
			return
		}
		params = r.PostForm
	default:
		w.Header().Set("Allow", "GET, POST")
		s.errorPage(w, http.StatusMethodNotAllowed, "invalid_request", "Method not allowed")
		return
	}
	pushed := params.Has("request_uri")
	if pushed {
		eff, code, msg := s.resolvePushed(params)
		if code != "" {
			s.recordQuery(params)
			s.errorPage(w, http.StatusBadRequest, code, msg)
			return
		}
		// The recorded query is the effective one: the pushed parameters
		// plus the front channel's request_uri.
		rec := url.Values{"request_uri": {params.Get("request_uri")}}
		params = url.Values{}
		for k, v := range eff {
			params[k] = slices.Clone(v)
			rec[k] = v
		}
		s.recordQuery(rec)
	} else {
		s.recordQuery(params)
	}

	req, pageErr, redirErr := s.parseAuthRequest(params)
	if pageErr != "" {
		s.errorPage(w, http.StatusBadRequest, "invalid_request", pageErr)
		return
	}
	if !pushed && s.opts.RequirePAR {
		// RFC 9126 §4: refused with invalid_request.
		s.redirectError(w, r, req, "invalid_request", "pushed authorization requests are required")
		return
	}
	if redirErr != nil {
		s.redirectError(w, r, req, redirErr.code, redirErr.desc)
		return
	}
	now := s.now()

	if s.opts.AutoLogin != "" {
		s.mu.Lock()
		disabled := s.disabled[s.opts.AutoLogin]
		var sess *session
		if !disabled {
			sess = s.newSessionLocked(s.opts.AutoLogin, now)
		}
		s.mu.Unlock()
		if disabled {
			s.redirectError(w, r, req, "access_denied", "the user account is disabled")
			return
		}
		s.approve(w, r, req, sess)
		return
	}
	if !req.prompt["login"] {
		if sess := s.cookieSession(r, now); sess != nil &&
			(req.maxAge < 0 || now.Sub(sess.authTime) <= time.Duration(req.maxAge)*time.Second) {
			if s.isDisabled(sess.username) {
				s.redirectError(w, r, req, "access_denied", "the user account is disabled")
				return
			}
			s.approve(w, r, req, sess)
			return
		}
	}
	if req.prompt["none"] {
		s.redirectError(w, r, req, "login_required", "user is not signed in")
		return
	}
	tx := randomString(18)
	req.created = now
	req.expires = now.Add(pendingTTL)
	s.mu.Lock()
	s.pending[tx] = req
	s.maybePruneLocked(now)
	s.mu.Unlock()
	s.renderLogin(w, http.StatusOK, req, tx, req.loginHint, "")
}

// parseAuthRequest validates an authorization request. Errors that must not
// be redirected (bad client or redirect URI) are returned as pageErr; the
// others as redirErr together with the request (redirect URI and state).
func (s *Server) parseAuthRequest(p url.Values) (req *authRequest, pageErr string, redirErr *oauthError) {
	for _, k := range []string{"client_id", "redirect_uri"} {
		if len(p[k]) > 1 {
			return nil, k + " included more than once", nil
		}
	}
	clientID := p.Get("client_id")
	if clientID == "" {
		return nil, "Missing client_id.", nil
	}
	s.mu.Lock()
	c := s.clients[clientID]
	var client Client
	if c != nil {
		client = *c
	}
	scopesSupported := s.opts.Scopes
	s.mu.Unlock()
	if c == nil {
		return nil, "Unknown client_id.", nil
	}
	redirectURI := p.Get("redirect_uri")
	if redirectURI == "" {
		return nil, "Missing redirect_uri.", nil
	}
	if !slices.Contains(client.RedirectURIs, redirectURI) {
		return nil, "Invalid redirect_uri: it does not exactly match a URI registered for this client.", nil
	}
	req = &authRequest{clientID: clientID, redirectURI: redirectURI, maxAge: -1, prompt: map[string]bool{}}
	if len(p["state"]) == 1 {
		req.state, req.hasState = p.Get("state"), true
	}
	fail := func(code, desc string) (*authRequest, string, *oauthError) {
		return req, "", badRequest(code, desc)
	}
	if oe := checkDuplicates(p); oe != nil {
		return fail(oe.code, oe.desc)
	}
	if p.Has("request") {
		return fail("request_not_supported", "request objects are not supported")
	}
	if p.Has("request_uri") {
		// Only PAR request URIs are supported; they are resolved before.
		return fail("request_uri_not_supported", "request_uri is only supported with pushed authorization requests")
	}
	switch rt := p.Get("response_type"); rt {
	case "code":
	case "":
		return fail("invalid_request", "missing response_type")
	default:
		return fail("unsupported_response_type", "only response_type=code is supported")
	}
	if rm := p.Get("response_mode"); rm != "" && rm != "query" {
		return fail("invalid_request", "only response_mode=query is supported")
	}
	scopes := strings.Fields(p.Get("scope"))
	for _, sc := range scopes {
		if !slices.Contains(scopesSupported, sc) {
			return fail("invalid_scope", "unsupported scope "+sc)
		}
	}
	req.scopes = slices.Compact(scopes)
	challenge, method := p.Get("code_challenge"), p.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		return fail("invalid_request", "code_challenge_method without code_challenge")
	case challenge != "" && method != "S256":
		return fail("invalid_request", "code_challenge_method must be S256 (plain is not supported)")
	case challenge != "" && (len(challenge) != 43 || !pkceRe.MatchString(challenge)):
		return fail("invalid_request", "malformed code_challenge")
	case challenge == "" && client.public():
		return fail("invalid_request", "PKCE (S256) is required for public clients")
	}
	req.challenge = challenge
	if p.Has("nonce") {
		req.nonce, req.hasNonce = p.Get("nonce"), true
	}
	for _, pr := range strings.Fields(p.Get("prompt")) {
		switch pr {
		case "none", "login", "consent", "select_account":
			req.prompt[pr] = true
		default:
			return fail("invalid_request", "unsupported prompt value "+pr)
		}
	}
	if req.prompt["none"] && len(req.prompt) > 1 {
		return fail("invalid_request", "prompt=none cannot be combined with other values")
	}
	if ma := p.Get("max_age"); ma != "" {
		n, err := strconv.Atoi(ma)
		if err != nil || n < 0 {
			return fail("invalid_request", "invalid max_age")
		}
		req.maxAge = n
	}
	req.loginHint = p.Get("login_hint")
	return req, "", nil
}

func (s *Server) recordQuery(params url.Values) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastQuery = url.Values{}
	for k, v := range params {
		s.lastQuery[k] = slices.Clone(v)
	}
}

func (s *Server) isDisabled(username string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disabled[username]
}

func (s *Server) cookieSession(r *http.Request, now time.Time) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activeSessionLocked(c.Value, now)
}

// login handles a login form submission.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	form := r.PostForm
	tx := form.Get("tx")
	now := s.now()
	s.mu.Lock()
	req := s.pending[tx]
	if req != nil && now.After(req.expires) {
		delete(s.pending, tx)
		req = nil
	}
	s.mu.Unlock()
	if req == nil {
		s.errorPage(w, http.StatusBadRequest, "invalid_request",
			"This sign-in attempt has expired or is unknown. Go back to the application and start again.")
		return
	}
	if form.Get("action") == "deny" {
		s.mu.Lock()
		delete(s.pending, tx)
		s.mu.Unlock()
		s.redirectError(w, r, req, "access_denied", "the user denied the request")
		return
	}
	username := form.Get("username")
	password := form.Get("password")
	s.mu.Lock()
	u := s.users[username]
	ok := u != nil && u.Password != "" && subtle.ConstantTimeCompare([]byte(password), []byte(u.Password)) == 1
	if !ok {
		req.loginAttempts++
		s.mu.Unlock()
		s.renderLogin(w, http.StatusOK, req, tx, username, "Invalid username or password.")
		return
	}
	if s.disabled[username] {
		req.loginAttempts++
		s.mu.Unlock()
		s.renderLogin(w, http.StatusOK, req, tx, username, "Account is disabled, contact your administrator.")
		return
	}
	delete(s.pending, tx)
	sess := s.newSessionLocked(username, now)
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: sess.id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.TLS != nil,
	})
	s.approve(w, r, req, sess)
}

// approve issues an authorization code for req in session sess and
// redirects back to the client.
func (s *Server) approve(w http.ResponseWriter, r *http.Request, req *authRequest, sess *session) {
	now := s.now()
	code := randomString(32)
	s.mu.Lock()
	s.codes[code] = &authCode{
		req:      req,
		username: sess.username,
		sid:      sess.id,
		authTime: sess.authTime,
		expires:  now.Add(s.opts.CodeTTL),
	}
	sess.clients[req.clientID] = true
	s.maybePruneLocked(now)
	s.mu.Unlock()
	s.redirectBack(w, r, req, url.Values{"code": {code}})
}

func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, req *authRequest, code, desc string) {
	v := url.Values{"error": {code}}
	if desc != "" {
		v.Set("error_description", desc)
	}
	s.redirectBack(w, r, req, v)
}

// redirectBack sends the authorization response to the client's redirect
// URI, adding state and (RFC 9207) iss, then applying authorize faults.
func (s *Server) redirectBack(w http.ResponseWriter, r *http.Request, req *authRequest, v url.Values) {
	if req.hasState {
		v.Set("state", req.state)
	}
	issuer := s.issuerFor(r)
	if !s.opts.OmitIssParameter {
		v.Set("iss", issuer)
	}
	if f := s.takeFault(phaseAuthorizeRedirect, "authorize"); f != nil {
		switch f.Kind {
		case FaultAuthorizeIss:
			v.Set("iss", orDefault(f.Value, issuer))
		case FaultAuthorizeNoIss:
			v.Del("iss")
		case FaultAuthorizeNoState:
			v.Del("state")
		case FaultAuthorizeWrongState:
			v.Set("state", orDefault(f.Value, "tampered-state"))
		case FaultAuthorizeError:
			v.Del("code")
			v.Set("error", orDefault(f.Value, "server_error"))
			v.Set("error_description", "injected fault")
		}
	}
	u, err := url.Parse(req.redirectURI)
	if err != nil {
		s.errorPage(w, http.StatusInternalServerError, "server_error", "bad redirect URI")
		return
	}
	q := u.Query()
	for k, vals := range v {
		q[k] = vals
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusFound)
}

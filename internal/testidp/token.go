package testidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

var pkceRe = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	grantType := ""
	if r.Method == http.MethodPost {
		parsePostForm(r) // errors are reported by s.token
		grantType = r.PostForm.Get("grant_type")
	}
	key := "token:unsupported"
	switch grantType {
	case "authorization_code", "refresh_token":
		key = "token:" + grantType
	}
	if grantType == "" {
		s.count("token")
	} else {
		s.count("token", key)
	}
	s.runEndpoint(w, r, s.token, key, "token")
}

// clientPost is the start of every client endpoint: POST only, a valid
// form body, an authenticated client. It writes the error and reports
// false when any fails.
func (s *Server) clientPost(w http.ResponseWriter, r *http.Request) (*Client, string, bool) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, http.MethodPost)
		return nil, "", false
	}
	if oe := parsePostForm(r); oe != nil {
		writeOAuthError(w, oe)
		return nil, "", false
	}
	client, method, oe := s.authenticateClient(r)
	if oe != nil {
		writeOAuthError(w, oe)
		return nil, "", false
	}
	return client, method, true
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	client, _, ok := s.clientPost(w, r)
	if !ok {
		return
	}
	var is *issuance
	var oe *oauthError
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "":
		oe = badRequest("invalid_request", "missing grant_type")
	case "authorization_code":
		is, oe = s.exchangeCode(r, client)
	case "refresh_token":
		is, oe = s.refreshGrant(r, client)
	default:
		oe = badRequest("unsupported_grant_type", "unsupported grant_type "+gt)
	}
	if oe != nil {
		writeOAuthError(w, oe)
		return
	}
	// Signing happens here, without s.mu, so that concurrent token
	// requests only serialise on the bookkeeping.
	resp := is.finish()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return b64.EncodeToString(sum[:])
}

func (s *Server) exchangeCode(r *http.Request, client *Client) (*issuance, *oauthError) {
	form := r.PostForm
	code := form.Get("code")
	if code == "" {
		return nil, badRequest("invalid_request", "missing code")
	}
	now := s.now()
	issuer := s.issuerFor(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.codes[code]
	if c == nil {
		return nil, badRequest("invalid_grant", "invalid authorization code")
	}
	if c.used {
		// RFC 6749 §4.1.2: revoke everything issued from this code.
		s.revokeGrantLocked(s.grants[c.grantID])
		return nil, badRequest("invalid_grant", "authorization code already used")
	}
	c.used = true
	if c.req.clientID != client.ID {
		return nil, badRequest("invalid_grant", "authorization code was issued to another client")
	}
	if !now.Before(c.expires) {
		return nil, badRequest("invalid_grant", "authorization code expired")
	}
	if form.Get("redirect_uri") != c.req.redirectURI {
		return nil, badRequest("invalid_grant", "redirect_uri does not match the authorization request")
	}
	verifier := form.Get("code_verifier")
	if c.req.challenge != "" {
		if verifier == "" {
			return nil, badRequest("invalid_grant", "missing code_verifier")
		}
		if !pkceRe.MatchString(verifier) {
			return nil, badRequest("invalid_grant", "malformed code_verifier")
		}
		if subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(c.req.challenge)) != 1 {
			return nil, badRequest("invalid_grant", "PKCE verification failed")
		}
	} else if verifier != "" {
		return nil, badRequest("invalid_grant", "code_verifier sent but no code_challenge was used")
	}
	if c.sid != "" && s.activeSessionLocked(c.sid, now) == nil {
		return nil, badRequest("invalid_grant", "session not active")
	}
	if s.disabled[c.username] {
		return nil, badRequest("invalid_grant", "user is disabled")
	}
	g := &grant{
		id:       randomString(12),
		clientID: client.ID,
		username: c.username,
		sid:      c.sid,
		scopes:   c.req.scopes,
		nonce:    c.req.nonce,
		hasNonce: c.req.hasNonce,
		authTime: c.authTime,
	}
	s.grants[g.id] = g
	c.grantID = g.id
	rt := randomString(32)
	s.refresh[rt] = &refreshToken{grantID: g.id, issued: now, expires: now.Add(s.opts.RefreshTokenTTL)}
	g.refresh = append(g.refresh, rt)
	is := s.issueLocked(g, g.scopes, rt, issuer, now, true, "token:authorization_code")
	s.maybePruneLocked(now)
	return is, nil
}

func (s *Server) refreshGrant(r *http.Request, client *Client) (*issuance, *oauthError) {
	form := r.PostForm
	token := form.Get("refresh_token")
	if token == "" {
		return nil, badRequest("invalid_request", "missing refresh_token")
	}
	now := s.now()
	issuer := s.issuerFor(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.refresh[token]
	if rt == nil {
		return nil, badRequest("invalid_grant", "invalid refresh token")
	}
	g := s.grants[rt.grantID]
	if g == nil {
		return nil, badRequest("invalid_grant", "invalid refresh token")
	}
	if g.clientID != client.ID {
		return nil, badRequest("invalid_grant", "refresh token was issued to another client")
	}
	if rt.invalid || g.revoked {
		if rt.rotated && s.opts.RevokeFamilyOnReuse {
			s.revokeGrantLocked(g)
		}
		return nil, badRequest("invalid_grant", "refresh token is no longer valid")
	}
	if !now.Before(rt.expires) {
		return nil, badRequest("invalid_grant", "refresh token expired")
	}
	if g.sid != "" && s.activeSessionLocked(g.sid, now) == nil {
		return nil, badRequest("invalid_grant", "session not active")
	}
	if s.disabled[g.username] {
		return nil, badRequest("invalid_grant", "user is disabled")
	}
	scopes := g.scopes
	if form.Has("scope") {
		req := strings.Fields(form.Get("scope"))
		for _, sc := range req {
			if !slices.Contains(g.scopes, sc) {
				return nil, badRequest("invalid_scope", "scope exceeds the original grant")
			}
		}
		scopes = req
	}
	newRT := token
	if s.opts.RotateRefreshTokens {
		rt.invalid = true
		rt.rotated = true
		newRT = randomString(32)
		s.refresh[newRT] = &refreshToken{grantID: g.id, issued: now, expires: now.Add(s.opts.RefreshTokenTTL)}
		g.refresh = append(g.refresh, newRT)
	}
	is := s.issueLocked(g, scopes, newRT, issuer, now, false, "token:refresh_token")
	s.maybePruneLocked(now)
	return is, nil
}

// issuance is a token response whose bookkeeping is done (under s.mu)
// but whose tokens are not signed yet; finish signs them without the lock.
type issuance struct {
	s       *Server
	key     *signingKey
	at      map[string]any // access token claims (JWT access tokens)
	opaque  string         // the access token (Options.OpaqueAccessTokens)
	id      map[string]any // ID token claims, nil without openid
	idFault *Fault
	issuer  string
	now     time.Time
	resp    map[string]any
}

// accessExpiryLocked returns the expiry of an access token issued at now
// and the matching expires_in (whole seconds, rounded down, at least 1).
func (s *Server) accessExpiryLocked(now time.Time) (time.Time, int64) {
	if s.atExpiry.IsZero() {
		return now.Add(s.opts.AccessTokenTTL), int64(s.opts.AccessTokenTTL / time.Second)
	}
	exp := s.atExpiry
	if exp.Sub(now) < time.Second {
		exp = now.Add(time.Second)
	}
	return exp, int64(exp.Sub(now) / time.Second)
}

// SetAccessTokenExpiry makes every access token issued from now on expire
// at t: its exp claim is t and the expires_in of the token response is the
// time left until t in whole seconds (rounded down). An access token is
// never issued with less than one second to live: when t is less than a
// second away (or past), tokens expire one second after issue. ID tokens
// keep their usual lifetime (Options.AccessTokenTTL). The zero time
// restores the normal lifetime. Use it to make many sessions' tokens
// expire at one instant.
func (s *Server) SetAccessTokenExpiry(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.atExpiry = t
}

// issueLocked records the access token (and prepares the ID token when
// openid was granted) for a grant; the caller signs them with finish after
// releasing s.mu.
func (s *Server) issueLocked(g *grant, scopes []string, refreshTok, issuer string, now time.Time, withNonce bool, faultKey string) *issuance {
	exp, expiresIn := s.accessExpiryLocked(now)
	user := s.userClaimsLocked(g.username)
	jti := randomString(16)
	scope := strings.Join(scopes, " ")

	aud := orDefault(s.opts.AccessTokenAudience, g.clientID)
	rec := &accessRecord{
		grantID: g.id, clientID: g.clientID, expires: exp,
		username: g.username, sub: s.subjectLocked(g.username), scope: scope, sid: g.sid,
		issuer: issuer, aud: aud, issued: now,
	}
	is := &issuance{s: s, key: s.current, issuer: issuer, now: now}
	if s.opts.OpaqueAccessTokens {
		is.opaque = randomString(32)
		rec.opaque = true
		s.access[is.opaque] = rec
		g.jtis = append(g.jtis, is.opaque)
	} else {
		at := map[string]any{}
		for k, v := range user {
			at[k] = v
		}
		at["iss"] = issuer
		at["aud"] = aud
		at["azp"] = g.clientID
		at["client_id"] = g.clientID
		at["iat"] = now.Unix()
		at["exp"] = exp.Unix()
		at["jti"] = jti
		at["scope"] = scope
		if g.sid != "" {
			at["sid"] = g.sid
		}
		is.at = at
		s.access[jti] = rec
		g.jtis = append(g.jtis, jti)
	}
	if rtExp := now.Add(s.opts.RefreshTokenTTL); rtExp.After(g.expires) {
		g.expires = rtExp
	}
	if exp.After(g.expires) {
		g.expires = exp
	}

	is.resp = map[string]any{
		"token_type":    s.opts.TokenType,
		"expires_in":    expiresIn,
		"refresh_token": refreshTok,
		"scope":         scope,
	}
	if slices.Contains(scopes, "openid") {
		id := map[string]any{}
		for k, v := range user {
			id[k] = v
		}
		id["iss"] = issuer
		id["aud"] = g.clientID
		id["azp"] = g.clientID
		id["iat"] = now.Unix()
		id["exp"] = now.Add(s.opts.AccessTokenTTL).Unix()
		id["auth_time"] = g.authTime.Unix()
		id["jti"] = randomString(16)
		if g.sid != "" {
			id["sid"] = g.sid
		}
		if withNonce && g.hasNonce {
			id["nonce"] = g.nonce
		}
		is.id = id
		is.idFault = s.takeFaultLocked(phaseIDToken, faultKey, "token")
	}
	return is
}

// finish signs the tokens and returns the token response. It must be
// called without s.mu.
func (is *issuance) finish() map[string]any {
	accessToken := is.opaque
	if accessToken == "" {
		// RFC 9068 §2.1: typ "at+jwt".
		k := is.key
		accessToken = encodeJWS(map[string]any{"alg": k.alg, "kid": k.kid, "typ": "at+jwt"}, is.at, k.signRaw)
	}
	resp := is.resp
	resp["access_token"] = accessToken
	if is.id != nil {
		// OIDC Core 3.1.3.6: left half of SHA-256 of the access token.
		sum := sha256.Sum256([]byte(accessToken))
		is.id["at_hash"] = b64.EncodeToString(sum[:16])
		var cfg signConfig
		if is.idFault != nil {
			cfg = is.s.mutateIDToken(is.id, is.idFault, is.issuer, is.now)
		}
		resp["id_token"] = is.s.signWith(is.id, "JWT", cfg)
	}
	return resp
}

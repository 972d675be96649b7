package authgate

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

const (
	// maxPendingLogins is how many logins a browser may have in progress
	// at once: each lives in one of that many pending-login cookies
	// (slots), and a new login takes a free slot or the oldest login's.
	// However many tabs start a login, the Cookie header grows by at most
	// this many cookies (about 400 bytes each), and the newest login
	// always completes.
	maxPendingLogins = 3
	// maxLegacyPending bounds how many pending-login cookies of earlier
	// versions (random names, Path the endpoint prefix) a callback reads.
	maxLegacyPending = 4
	// pendingLifetime is how long a started login may take.
	pendingLifetime = 10 * time.Minute
)

// pendingLogin is the short-lived state of one login in progress. It lives
// in its own cookie so any instance holding the keys can finish the login.
type pendingLogin struct {
	State     string `json:"s"`
	Verifier  string `json:"pv,omitempty"`
	Nonce     string `json:"n,omitempty"`
	ReturnURL string `json:"rd"`
	Provider  string `json:"p"`
	Issued    int64  `json:"t"`
	// Started orders logins begun within one second (unix nanoseconds),
	// to tell which pending login is the oldest.
	Started int64 `json:"ns,omitempty"`
	// RedirectURI is the callback URL sent to the provider; the token
	// request must repeat it exactly.
	RedirectURI string `json:"ru"`
	// Require is a step-up's requirement, which the new session must
	// meet (authctx.go).
	Require *authRequirement `json:"rq,omitempty"`
	// Silent: the login asked for prompt=none.
	Silent bool `json:"sl,omitempty"`
}

// serveStart begins a login: /oauth2/start?rd=URL[&provider=NAME], with
// login hints, prompt and step-up parameters passed on (authctx.go).
func serveStart(s *site, w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	rd := s.gw.redirects.safeReturnURL(q.Get("rd"), r.Host)
	opts, err := parseLoginOptions(q)
	if err != nil {
		s.log.write(r, zap.InfoLevel, "login refused", zap.String("reason", "bad_login_parameter"), zap.Error(err))
		return s.pages.fail(w, r, http.StatusBadRequest, "bad_login_parameter", "The sign-in link carries an invalid parameter ("+strings.TrimPrefix(err.Error(), errLoginParam.Error()+": ")+").")
	}
	name := q.Get("provider")
	if name == "" {
		if len(s.providers) > 1 {
			return s.pages.chooser(w, r, rd, s.providers, opts.startQuery(url.Values{}))
		}
		name = s.providers[0].name
	}
	for _, p := range s.providers {
		if p.name == name {
			return beginLogin(s, w, r, p, rd, opts)
		}
	}
	return s.pages.fail(w, r, http.StatusBadRequest, "unknown_provider", "This site does not sign in with that provider.")
}

// beginLogin sends the browser to the provider (or to the auth host),
// after storing the pending login in its own cookie. opts, when given
// (at most one), adds login hints or a step-up to the request.
func beginLogin(s *site, w http.ResponseWriter, r *http.Request, p *provider, rd string, opts ...loginOptions) error {
	gw := s.gw
	var o loginOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	scheme := "http"
	if isHTTPS(r) {
		scheme = "https"
	}
	if gw.authHost != "" && !strings.EqualFold(r.Host, gw.authHost) {
		if strings.HasPrefix(rd, "/") {
			rd = scheme + "://" + r.Host + rd
		}
		target := scheme + "://" + gw.authHost + gw.prefix + "start?" + o.startQuery(url.Values{"rd": {rd}, "provider": {p.name}}).Encode()
		http.Redirect(w, r, target, http.StatusFound)
		return nil
	}
	st, err := p.state(r.Context())
	if err != nil {
		return s.pages.providerFailure(w, r, p.name, "login", err)
	}
	now := timeNow()
	login := pendingLogin{
		ReturnURL:   rd,
		Provider:    p.name,
		Issued:      now.Unix(),
		Started:     now.UnixNano(),
		RedirectURI: orDefault(p.cfg.RedirectURL, scheme+"://"+r.Host+gw.prefix+"callback"),
		Require:     o.require,
		Silent:      o.silent(),
	}
	sendState := ""
	if !p.cfg.Dialect.NoState {
		login.State = randomString(24)
		sendState = login.State
	}
	if !p.cfg.Dialect.NoPKCE {
		login.Verifier = oauth2.GenerateVerifier()
	}
	if st.verifier != nil {
		login.Nonce = randomString(24)
	}
	// The extra parameters go into the pushed request too.
	target := st.client.authCodeURL(login.RedirectURI, sendState, login.Verifier, login.Nonce, o.params)
	if st.parURL != "" {
		// RFC 9126: the parameters go to the provider, the browser gets a
		// reference to them. Before any cookie: a refusal starts nothing.
		ctx, cancel := context.WithTimeout(r.Context(), p.timeout())
		target, err = pushAuthorization(ctx, st.client, st.parURL, target)
		cancel()
		if code := parErrorCode(err); code != "" {
			gw.log.write(r, zap.WarnLevel, "login failed", zap.String("provider", p.name), zap.String("reason", "par_rejected"), zap.String("provider_error", code), zap.Error(err))
			metricLogin(p.name, "failed", "par_rejected")
			return s.pages.fail(w, r, http.StatusBadGateway, "par_rejected", "The identity provider refused the sign-in request ("+code+"). Please tell the site's administrators.")
		}
		if err != nil {
			return s.pages.providerFailure(w, r, p.name, "login", err)
		}
	}
	slot, stale := pendingSlot(gw, r)
	value, err := gw.sessions.codec.encode(slot, &login)
	if err != nil {
		return s.pages.fail(w, r, http.StatusInternalServerError, "internal", "Could not start the sign-in.")
	}
	for _, n := range stale {
		expirePending(gw, w, r, n)
	}
	// Path and Domain of the session cookie: every request that may
	// start a login carries the pending ones, so that they can be
	// counted and the oldest replaced (scoped to the endpoints, they
	// piled up unseen from logins started on protected pages).
	pc := gw.sessions.cookie.cookie(slot, value, int(pendingLifetime/time.Second), isHTTPS(r))
	pc.SameSite = http.SameSiteLaxMode
	http.SetCookie(w, pc)
	gw.log.write(r, zap.InfoLevel, "login started", zap.String("provider", p.name))
	metricLogin(p.name, "started", "")
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// pendingCookie is one decoded pending-login cookie.
type pendingCookie struct {
	name  string
	login *pendingLogin
}

// pendingLogins returns the request's pending logins that decode (the
// slots, and at most maxLegacyPending of earlier versions' cookies) and
// the names of all its pending-login cookies.
func pendingLogins(gw *gateway, r *http.Request) (found []pendingCookie, names []string) {
	prefix := gw.sessions.cookie.forRequest(r).pendingPrefix()
	legacy := 0
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, prefix) || slices.Contains(names, c.Name) {
			continue
		}
		names = append(names, c.Name)
		if pendingSlotIndex(gw, c.Name) < 0 {
			if legacy++; legacy > maxLegacyPending {
				continue
			}
		}
		var l pendingLogin
		if _, err := gw.sessions.codec.decode(c.Name, c.Value, &l); err != nil {
			continue
		}
		found = append(found, pendingCookie{name: c.Name, login: &l})
	}
	return found, names
}

// pendingSlotIndex returns which slot a pending-login cookie name is, or
// -1 for another name (an earlier version's).
func pendingSlotIndex(gw *gateway, name string) int {
	rest := gw.sessions.cookie.pendingRest(name)
	if len(rest) == 1 && rest[0] >= '0' && int(rest[0]-'0') < maxPendingLogins {
		return int(rest[0] - '0')
	}
	return -1
}

// pendingSlot chooses the cookie for a new pending login: a free slot,
// else the one holding the oldest login. stale names the request's other
// pending-login cookies that are no slot (earlier versions'), to expire.
// Concurrent starts that see the same cookies choose the same slot; the
// login the browser stored last is the one that completes.
func pendingSlot(gw *gateway, r *http.Request) (slot string, stale []string) {
	found, names := pendingLogins(gw, r)
	var started [maxPendingLogins]int64 // 0: free
	for _, pc := range found {
		if i := pendingSlotIndex(gw, pc.name); i >= 0 {
			started[i] = max(pc.login.Started, pc.login.Issued*int64(time.Second), 1)
		}
	}
	for _, n := range names {
		if pendingSlotIndex(gw, n) < 0 {
			stale = append(stale, n)
		}
	}
	best := 0
	for i := range started {
		if started[i] < started[best] {
			best = i
		}
	}
	return gw.sessions.cookie.forRequest(r).pendingPrefix() + strconv.Itoa(best), stale
}

// expirePending deletes a pending-login cookie, with the path it was set
// with: a slot's is the session cookie's, an earlier version's was the
// endpoint prefix.
func expirePending(gw *gateway, w http.ResponseWriter, r *http.Request, name string) {
	c := gw.sessions.cookie.cookie(name, "", -1, isHTTPS(r))
	if pendingSlotIndex(gw, name) < 0 {
		c.Path = gw.prefix
	}
	c.SameSite = http.SameSiteLaxMode
	http.SetCookie(w, c)
}

// duplicatedCallbackParam names a callback parameter that comes more than
// once, under the names any provider of gw uses for code, state, error
// and RFC 9207's iss: which copy the provider sent cannot be known (one
// may be an attacker's), so such a callback is refused before anything is
// done with it.
func duplicatedCallbackParam(gw *gateway, q url.Values) string {
	check := func(name string) bool { return len(q[name]) > 1 }
	if check("iss") {
		return "iss"
	}
	for _, n := range gw.names {
		cp := gw.providers[n].cfg.Dialect.Callback
		for _, name := range []string{cp.code(), cp.state(), cp.errorParam()} {
			if check(name) {
				return name
			}
		}
	}
	return ""
}

// serveCallback finishes a login. It reads as a checklist: find the pending
// login by state → provider error → RFC 9207 issuer → redeem the code with
// the PKCE verifier → derive the identity (the ID token verified in full,
// userinfo, the claims mapped: deriveIdentity) → re-check the return URL →
// write the session.
func serveCallback(s *site, w http.ResponseWriter, r *http.Request) error {
	gw := s.gw
	q := r.URL.Query()
	// The callback URL carries the code: keep it out of the Referer of
	// whatever the browser loads next.
	w.Header().Set("Referrer-Policy", "no-referrer")
	if name := duplicatedCallbackParam(gw, q); name != "" {
		metricLogin("", "failed", "duplicate_parameter")
		gw.log.write(r, zap.WarnLevel, "login failed", zap.String("reason", "duplicate_parameter"), zap.String("parameter", name))
		return s.pages.fail(w, r, http.StatusBadRequest, "duplicate_parameter",
			"The sign-in response carries its "+name+" parameter more than once, so it cannot be trusted. Please start again.")
	}
	pendings, names := pendingLogins(gw, r)
	var match *pendingCookie
	var newestStateless *pendingCookie
	for i := range pendings {
		pc := &pendings[i]
		p := gw.providers[pc.login.Provider]
		if p == nil {
			continue
		}
		if p.cfg.Dialect.NoState {
			if newestStateless == nil || pc.login.Issued > newestStateless.login.Issued {
				newestStateless = pc
			}
			continue
		}
		got := q.Get(p.cfg.Dialect.Callback.state())
		if got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(pc.login.State)) == 1 {
			match = pc
			break
		}
	}
	if match == nil {
		match = newestStateless
	}
	if match == nil {
		reason := "login_expired"
		if len(names) > 0 && len(pendings) > 0 {
			reason = "state_mismatch"
		}
		metricLogin("", "failed", reason)
		gw.log.write(r, zap.WarnLevel, "login failed", zap.String("reason", reason), zap.Int("pending_logins", len(pendings)))
		if reason == "login_expired" {
			return s.pages.fail(w, r, http.StatusBadRequest, "login_expired",
				"This sign-in is not in progress in this browser any more (it took too long, or was already finished). Please start again.")
		}
		return s.pages.fail(w, r, http.StatusBadRequest, "state_mismatch",
			"This sign-in response does not belong to the sign-in this browser started. Please start again.")
	}
	// Whatever happens next, this pending login is spent.
	expirePending(gw, w, r, match.name)
	login := match.login
	p := gw.providers[login.Provider]
	fail := func(status int, reason, msg string, err error) error {
		gw.log.write(r, zap.WarnLevel, "login failed", zap.String("provider", p.name), zap.String("reason", reason), zap.Error(err))
		metricLogin(p.name, "failed", reason)
		return s.pages.fail(w, r, status, reason, msg)
	}
	if timeNow().After(time.Unix(login.Issued, 0).Add(pendingLifetime)) {
		return fail(http.StatusBadRequest, "login_expired", "This sign-in took too long. Please start again.", nil)
	}
	if e := q.Get(p.cfg.Dialect.Callback.errorParam()); e != "" {
		if login.Silent && silentLoginRefusals[e] {
			return silentLoginFailed(s, w, r, p, login, e)
		}
		if e == "access_denied" {
			return fail(http.StatusForbidden, "sign_in_denied", "The sign-in was cancelled or refused at the identity provider.", nil)
		}
		return fail(http.StatusBadGateway, "provider_error", "The identity provider reported an error ("+safeToken(e)+").", nil)
	}
	st, err := p.state(r.Context())
	if err != nil {
		return s.pages.providerFailure(w, r, p.name, "login", err)
	}
	// RFC 9207: an issuer in the response must be ours exactly, and a
	// provider that promises it must send it (mix-up defence).
	if iss, ok := q["iss"]; ok || st.issParam {
		if !ok || st.issuer == "" || len(iss) != 1 || subtle.ConstantTimeCompare([]byte(iss[0]), []byte(st.issuer)) != 1 {
			return fail(http.StatusBadRequest, "issuer_mismatch", "The sign-in response came from an unexpected issuer.", nil)
		}
	}
	code := q.Get(p.cfg.Dialect.Callback.code())
	if code == "" || len(code) > 4096 {
		return fail(http.StatusBadRequest, "no_code", "The sign-in response carries no authorization code.", nil)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*p.timeout())
	defer cancel()
	ts, err := st.client.exchange(ctx, code, login.Verifier, login.RedirectURI)
	if err != nil {
		if errors.Is(err, errInvalidGrant) || errors.Is(err, errProviderRejected) {
			return fail(http.StatusBadRequest, "code_rejected", "The identity provider did not accept this sign-in (it may have expired or been used already). Please start again.", err)
		}
		return s.pages.providerFailure(w, r, p.name, "login", err)
	}
	d, err := deriveIdentity(ctx, p, st, providerAnswer{
		idToken: ts.IDToken, accessToken: ts.AccessToken,
		login: true, nonce: login.Nonce, code: code, readUserinfo: true,
	})
	if err != nil {
		if status, reason, msg, ok := refusal(err); ok {
			return fail(status, reason, msg, err)
		}
		if reason := reasonOf(err); reason != "" && !errors.Is(err, errProviderTimeout) && !errors.Is(err, errProviderDown) {
			return fail(http.StatusBadGateway, reason, failureMessages[reason], err)
		}
		return s.pages.providerFailure(w, r, p.name, "login", err)
	}
	if !d.fresh {
		return fail(http.StatusBadGateway, "userinfo_failed", "The identity provider's answer says nothing about the user.",
			errors.New("the provider has neither an ID token nor userinfo to sign in with"))
	}
	if d.omitted != "" {
		gw.log.write(r, zap.WarnLevel, "groups left out by the provider", zap.String("provider", p.name), zap.String("claim", d.omitted),
			zap.String("why", "the provider left the "+d.omitted+" claim out of the token (OpenID Connect distributed claims, Entra ID's groups overage for users in more than 200 groups): rules on groups will not see them; have the provider send only the groups assigned to the application, or read them with userinfo_extra from its API"))
	}
	rd, ok := gw.redirects.check(login.ReturnURL, r.Host)
	if !ok {
		return fail(http.StatusBadRequest, "bad_return_url", "The address to return to is not allowed.", nil)
	}
	sess := &Session{
		Version:      sessionVersion,
		ID:           randomString(16),
		Provider:     p.name,
		Created:      timeNow().Unix(),
		RefreshToken: ts.RefreshToken,
		Claims:       d.claims,
		KeptGroups:   d.keptGroups,
	}
	sess.bind(d.binding.recorded())
	if p.cfg.Dialect.NoRefresh {
		sess.RefreshToken = ""
	}
	sess.AccessToken = gw.sessions.accessTokenToKeep(p, ts.AccessToken, sess.RefreshToken, st)
	sess.IDToken = gw.sessions.idTokenToKeep(p, st, ts.IDToken)
	if !ts.Expiry.IsZero() {
		sess.Expiry = ts.Expiry.Unix()
	}
	if !ts.Issued.IsZero() {
		sess.TokenIssued = ts.Issued.Unix()
	}
	recordLoginAuth(sess, d.idClaims)
	if err := gw.sessions.writeSession(w, r, sess); err != nil {
		if errors.Is(err, errStoreDown) {
			return fail(http.StatusServiceUnavailable, "store_unavailable", "The session store is not available. Please try again in a moment.", err)
		}
		return fail(http.StatusBadGateway, "session_too_large", "The session is too large for cookies.", err)
	}
	gw.log.write(r, zap.InfoLevel, "login", zap.String("provider", p.name), zap.String("user_id", d.identity.ID))
	metricLogin(p.name, "completed", "")
	w.Header().Set("Cache-Control", "no-store")
	if login.Require != nil {
		// A step-up: going back to a route the session still does not
		// satisfy would send the browser to the provider again, for ever.
		// The session is kept (it is a valid sign-in); the route is not.
		if why := login.Require.unmet(sessionAuthContext(sess), timeNow()); why != "" {
			gw.log.write(r, zap.WarnLevel, "step-up failed", zap.String("provider", p.name), zap.String("user_id", d.identity.ID), zap.String("reason", why))
			return s.pages.fail(w, r, http.StatusForbidden, "step_up_failed",
				"This page needs a stronger or more recent sign-in than the identity provider confirmed: "+why+".")
		}
	}
	http.Redirect(w, r, rd, http.StatusFound)
	return nil
}

// silentLoginRefusals are the errors a provider answers a prompt=none
// request with when it would have to show the user something (OpenID
// Connect Core §3.1.2.6).
var silentLoginRefusals = map[string]bool{
	"login_required": true, "interaction_required": true, "consent_required": true, "account_selection_required": true,
}

// silentLoginFailed answers a prompt=none login the provider could not
// complete silently: a plain 401, never a page that starts another login,
// with a Link to sign in interactively.
func silentLoginFailed(s *site, w http.ResponseWriter, r *http.Request, p *provider, login *pendingLogin, code string) error {
	s.log.write(r, zap.InfoLevel, "silent login failed", zap.String("provider", p.name), zap.String("reason", code))
	metricLogin(p.name, "failed", "login_required")
	rd := login.ReturnURL
	if _, ok := s.gw.redirects.check(rd, r.Host); !ok {
		rd = "/"
	}
	start := s.gw.prefix + "start?" + url.Values{"rd": {rd}, "provider": {p.name}}.Encode()
	w.Header().Set("Link", "<"+start+`>; rel="authgate-login"`)
	return s.pages.fail(w, r, http.StatusUnauthorized, "login_required",
		"The identity provider needs the user to sign in ("+safeToken(code)+"); a silent sign-in is not possible.")
}

// safeToken keeps a provider's error code printable and short.
func safeToken(s string) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= 64 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

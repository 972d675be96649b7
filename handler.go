package authgate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Handler protects a site: requests without a valid session are sent to
// log in (browsers) or refused with 401 (APIs); requests with one reach
// the next handler with the user's identity in headers and placeholders.
//
// Placeholders set for the rest of the route (and the access log, whose
// `user_id` is {http.auth.user.id}):
//
//	{http.auth.user.id}                  user id (mapped, default sub)
//	{http.auth.user.email}               email
//	{http.auth.user.preferred_username}  login name
//	{http.auth.user.name}                display name
//	{http.auth.user.groups}              groups, comma-separated
//	{http.auth.user.provider}            provider name
//	{http.auth.user.<claim>}             any top-level claim of the session
//	{http.auth.authgate.reason}          on error responses, the reason code
type Handler struct {
	// ProviderNames are the providers this site signs in with. Several
	// make a sign-in page to choose from. Default: the only provider
	// configured (an error when there are several).
	ProviderNames []string `json:"provider_names,omitempty"`

	// Rules decide who may use the site, in order; the first that matches
	// wins. With no rule, any signed-in user may. When none matches: denied
	// if there is any allow rule, else allowed.
	Rules []Rule `json:"rules,omitempty"`

	// Headers names the identity headers sent to the backend.
	Headers HeaderNames `json:"headers,omitzero"`

	// ClaimHeaders adds headers from claims: header name → claim path.
	ClaimHeaders map[string]string `json:"claim_headers,omitempty"`

	// PassAccessToken sends the access token to the backend in the
	// access-token header. Default: false (tokens stay out of backends).
	PassAccessToken bool `json:"pass_access_token,omitempty"`

	// BearerTokens, when set, accepts `Authorization: Bearer <token>`
	// from API clients that have no session cookie. Default: off.
	BearerTokens *BearerConfig `json:"bearer_tokens,omitempty"`

	// PassCookie keeps the session cookies in the request to the backend.
	// Default: false (they are removed).
	PassCookie bool `json:"pass_cookie,omitempty"`

	// ErrorPages chooses who writes error responses: "builtin" (small
	// HTML pages for browsers, JSON for APIs) or "caddy" (authgate returns
	// the error to Caddy, so the site's handle_errors routes write it,
	// with {http.auth.authgate.reason} and {http.auth.authgate.message}
	// set). Default: builtin.
	ErrorPages string `json:"error_pages,omitempty"`

	// Settings for a single-site configuration, merged over the global
	// authgate block.
	Settings

	gw           *gateway
	ownGateway   bool
	providers    []*provider
	rules        []compiledRule
	claimHeaders []claimHeader
	stripNames   []string
	bearers      *bearerCache
	sites        *siteLabels
	plainHTTP    *sync.Once
	logger       *zap.Logger
}

// HeaderNames are the names of the identity headers. Each is removed from
// the client's request before authgate sets it, so a client cannot forge
// it; the default names are removed too when others are configured. The
// name "off" sends no such header.
type HeaderNames struct {
	// User carries the user id. Default: X-Forwarded-User.
	User string `json:"user,omitempty"`
	// Email. Default: X-Forwarded-Email.
	Email string `json:"email,omitempty"`
	// PreferredUsername. Default: X-Forwarded-Preferred-Username.
	PreferredUsername string `json:"preferred_username,omitempty"`
	// Groups, comma-separated. Default: X-Forwarded-Groups.
	Groups string `json:"groups,omitempty"`
	// AccessToken, sent only with pass_access_token. Default:
	// X-Forwarded-Access-Token.
	AccessToken string `json:"access_token,omitempty"`
}

var defaultHeaders = HeaderNames{
	User:              "X-Forwarded-User",
	Email:             "X-Forwarded-Email",
	PreferredUsername: "X-Forwarded-Preferred-Username",
	Groups:            "X-Forwarded-Groups",
	AccessToken:       "X-Forwarded-Access-Token",
}

type claimHeader struct {
	name string
	path claimPath
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.authgate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision connects the handler to the shared gateway, or builds its own
// when it has settings of its own.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.sites, h.plainHTTP = new(siteLabels), new(sync.Once)
	appIface, err := ctx.App("authgate")
	if err != nil {
		return fmt.Errorf("loading authgate app: %w", err)
	}
	app := appIface.(*App)
	switch {
	case !h.Settings.empty():
		gw, err := newGateway(ctx, app.Settings.merge(h.Settings), h.logger)
		if err != nil {
			return err
		}
		h.gw, h.ownGateway = gw, true
	case app.gw != nil:
		h.gw = app.gw
	default:
		return errors.New("no authgate settings: configure session_keys and a provider in the global authgate block or in this handler")
	}
	names := h.ProviderNames
	if len(names) == 0 {
		if len(h.gw.names) != 1 {
			return fmt.Errorf("several providers are configured (%s): name the ones this site uses", strings.Join(h.gw.names, ", "))
		}
		names = h.gw.names
	}
	for _, n := range names {
		p, ok := h.gw.providers[n]
		if !ok {
			return fmt.Errorf("provider %q is not configured (have: %s)", n, strings.Join(h.gw.names, ", "))
		}
		h.providers = append(h.providers, p)
	}
	if h.BearerTokens != nil {
		h.bearers = newBearerCache()
	}
	if h.PassAccessToken {
		h.gw.keepAccessToken.Store(true)
	}
	switch h.ErrorPages {
	case "", "builtin", "caddy":
	default:
		return fmt.Errorf("error_pages must be builtin or caddy, not %q", h.ErrorPages)
	}
	if h.rules, err = compileRules(h.Rules); err != nil {
		return err
	}
	if err := checkRulesAgainstKeptGroups(h.Rules, h.providers); err != nil {
		return err
	}
	h.Headers.User = orDefault(h.Headers.User, defaultHeaders.User)
	h.Headers.Email = orDefault(h.Headers.Email, defaultHeaders.Email)
	h.Headers.PreferredUsername = orDefault(h.Headers.PreferredUsername, defaultHeaders.PreferredUsername)
	h.Headers.Groups = orDefault(h.Headers.Groups, defaultHeaders.Groups)
	h.Headers.AccessToken = orDefault(h.Headers.AccessToken, defaultHeaders.AccessToken)
	for name, path := range h.ClaimHeaders {
		p, err := parseClaimPath(path)
		if err != nil {
			return fmt.Errorf("claim header %s: %w", name, err)
		}
		h.claimHeaders = append(h.claimHeaders, claimHeader{name: http.CanonicalHeaderKey(name), path: p})
	}
	slices.SortFunc(h.claimHeaders, func(a, b claimHeader) int { return strings.Compare(a.name, b.name) })
	for _, n := range []string{
		defaultHeaders.User, defaultHeaders.Email, defaultHeaders.PreferredUsername, defaultHeaders.Groups, defaultHeaders.AccessToken,
		h.Headers.User, h.Headers.Email, h.Headers.PreferredUsername, h.Headers.Groups, h.Headers.AccessToken,
	} {
		n = http.CanonicalHeaderKey(n)
		if !slices.Contains(h.stripNames, n) {
			h.stripNames = append(h.stripNames, n)
		}
	}
	for _, ch := range h.claimHeaders {
		if !slices.Contains(h.stripNames, ch.name) {
			h.stripNames = append(h.stripNames, ch.name)
		}
	}
	// "off" sends no such header (the client's copy is still removed).
	for _, name := range []*string{&h.Headers.User, &h.Headers.Email, &h.Headers.PreferredUsername, &h.Headers.Groups, &h.Headers.AccessToken} {
		if strings.EqualFold(*name, "off") {
			*name = ""
		}
	}
	h.stripNames = slices.DeleteFunc(h.stripNames, func(n string) bool { return n == "Off" })
	return nil
}

// Cleanup closes a gateway the handler built for itself.
func (h *Handler) Cleanup() error {
	if h.ownGateway && h.gw != nil {
		h.gw.close()
	}
	return nil
}

// ServeHTTP dispatches: authgate's endpoints, then authenticated
// pass-through, then the unauthenticated answer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if rest, ok := strings.CutPrefix(r.URL.Path, h.gw.prefix); ok {
		switch rest {
		case "start":
			return h.serveStart(w, r)
		case "callback":
			return h.serveCallback(w, r)
		case "logout":
			return h.serveLogout(w, r)
		case "userinfo":
			return h.serveUserinfo(w, r)
		case "auth":
			return h.serveAuth(w, r)
		case "backchannel-logout":
			return h.serveBackchannelLogout(w, r)
		}
	}
	for _, n := range h.stripNames {
		delete(r.Header, n)
	}
	if r.TLS == nil {
		h.plainHTTP.Do(func() {
			h.logger.Warn("serving plain http: session cookies are sent without Secure and can be read on the network; use https", zap.String("host", r.Host))
		})
	}
	sc := scanSessionCookie(r, h.gw.cookie.Name)
	id, sess, err := h.identify(w, r, &sc)
	if err != nil {
		h.sites.count(r.Host, decisionUnauthenticated)
		return h.unauthenticated(w, r, err)
	}
	if !allowed(h.rules, id) {
		return h.forbidden(w, r, id)
	}
	h.sites.count(r.Host, decisionAllowed)
	h.forward(r, id, sess, sc.others)
	return next.ServeHTTP(w, r)
}

// identify finds who is asking: the session cookie first, then, when
// enabled, a bearer token. A bearer request never gets a session.
func (h *Handler) identify(w http.ResponseWriter, r *http.Request, sc *sessionCookie) (*Identity, *Session, error) {
	id, sess, err := h.authenticate(w, r, sc)
	if err == nil || h.BearerTokens == nil || isProviderFailure(err) || errors.Is(err, errStoreDown) {
		return id, sess, err
	}
	tok := bearerToken(r)
	if tok == "" {
		return nil, nil, err
	}
	id, err = h.authenticateBearer(r.Context(), tok)
	return id, nil, err
}

// Errors of authentication that mean "sign in (again)".
var (
	errSessionEnded = errors.New("session ended by the provider")
)

// authenticate finds the request's session, refreshing its tokens when
// they are about to expire. sc is the session cookie as scanned from r.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, sc *sessionCookie) (*Identity, *Session, error) {
	gw := h.gw
	if sc.n == 0 {
		if sc.seen {
			// Stray chunks without chunk 0 are no session: clear them.
			gw.clearCookies(w, r, gw.presentCookies(r))
		}
		return nil, nil, errNoSession
	}
	e, err := gw.lookup(r, sc)
	if err != nil {
		if !errors.Is(err, errStoreDown) {
			gw.clearCookies(w, r, gw.presentCookies(r))
		}
		return nil, nil, err
	}
	p := gw.providers[e.sess.Provider]
	if !slices.Contains(h.providers, p) {
		// A session from another provider of the same gateway does not
		// sign in here.
		return nil, nil, errNoSession
	}
	now := timeNow()
	if now.After(time.Unix(e.sess.Created, 0).Add(gw.lifetime)) {
		gw.clearCookies(w, r, gw.presentCookies(r))
		return nil, nil, errSessionExpired
	}
	if exp := e.sess.Expiry; exp != 0 && !now.Before(time.Unix(exp, 0).Add(-gw.skew)) {
		expired := !now.Before(time.Unix(exp, 0))
		if p.cfg.Dialect.NoRefresh || e.sess.RefreshToken == "" {
			if expired {
				gw.clearCookies(w, r, gw.presentCookies(r))
				return nil, nil, errSessionExpired
			}
		} else {
			var ns *Session
			if gw.store != nil {
				ns, err = gw.refreshStored(r.Context(), p, e.sess)
			} else {
				ns, err = gw.refresher.refresh(r.Context(), e.sess, p.timeout(), gw.refreshAt(p))
			}
			switch {
			case err == nil:
				ne, ierr := gw.entryFor(ns, false)
				if ierr != nil {
					gw.clearCookies(w, r, gw.presentCookies(r))
					return nil, nil, ierr
				}
				if gw.store == nil {
					if werr := gw.writeSession(w, r, ns, gw.presentCookies(r)); werr != nil {
						return nil, nil, werr
					}
				}
				gw.log(r, zap.InfoLevel, "refresh", zap.String("provider", p.name), zap.String("user_id", ne.identity.ID), zap.String("result", "ok"))
				metricRefresh(p.name, "ok")
				return ne.identity, ns, nil
			case errors.Is(err, errNoSession):
				// Logged out elsewhere while we were refreshing.
				gw.clearCookies(w, r, gw.presentCookies(r))
				return nil, nil, err
			case errors.Is(err, errStoreDown):
				return nil, nil, err
			case errors.Is(err, errInvalidGrant):
				gw.clearCookies(w, r, gw.presentCookies(r))
				gw.log(r, zap.InfoLevel, "refresh", zap.String("provider", p.name), zap.String("user_id", e.identity.ID), zap.String("result", "invalid_grant"))
				metricRefresh(p.name, "invalid_grant")
				return nil, nil, fmt.Errorf("%w: %w", errSessionEnded, err)
			case !expired:
				// The token still works for a moment; serve now and let a
				// later request retry the refresh.
				gw.log(r, zap.WarnLevel, "refresh", zap.String("provider", p.name), zap.String("user_id", e.identity.ID), zap.String("result", "failed, token still valid"), zap.Error(err))
				metricRefresh(p.name, "error")
			default:
				gw.log(r, zap.WarnLevel, "refresh", zap.String("provider", p.name), zap.String("user_id", e.identity.ID), zap.String("result", "failed"), zap.Error(err))
				metricRefresh(p.name, "error")
				return nil, nil, err
			}
		}
	}
	if e.oldKey {
		if err := gw.writeCookie(w, r, e.sess, gw.presentCookies(r)); err != nil {
			return nil, nil, err
		}
	}
	return e.identity, e.sess, nil
}

// needsRefresh reports whether a session's access token is within the
// skew of its expiry.
func (gw *gateway) needsRefresh(s *Session) bool {
	return s.Expiry != 0 && !timeNow().Before(time.Unix(s.Expiry, 0).Add(-gw.skew))
}

// lookup finds the session a cookie stands for: decoded from the cookie,
// or, with a session store, read from the store by the id in the cookie
// (trusting a local copy for storeCacheTTL). Known cookie values come from
// the cache; any other is read again as net/http would before decoding.
func (gw *gateway) lookup(r *http.Request, sc *sessionCookie) (*sessionEntry, error) {
	if gw.store == nil {
		if e := gw.sessions.get(kindCookie, sc.pieces()...); e != nil {
			return e, nil
		}
		return gw.decodeSession(gw.checked(r, sc))
	}
	refEntry := gw.sessions.get(kindCookie, sc.pieces()...)
	if refEntry == nil {
		checked := gw.checked(r, sc)
		var ref storeRef
		oldKey, err := gw.codec.decode(gw.cookie.Name, checked.value(), &ref)
		if err != nil || ref.Version != sessionVersion || ref.ID == "" {
			return nil, errBadSession
		}
		refEntry = &sessionEntry{ref: &ref, oldKey: oldKey}
		gw.sessions.put(kindCookie, refEntry, checked.pieces()...)
	}
	id := refEntry.ref.ID
	if e := gw.sessions.get(kindStored, id); e != nil && timeNow().Sub(e.fetched) < storeCacheTTL {
		return e.forCookie(refEntry.oldKey), nil
	}
	s, err := gw.store.load(r.Context(), id)
	if err != nil {
		return nil, err
	}
	e, err := gw.entryFor(s, false)
	if err != nil {
		return nil, err
	}
	e.fetched = timeNow()
	gw.sessions.put(kindStored, e, id)
	return e.forCookie(refEntry.oldKey), nil
}

// checked returns sc as net/http would read it: when a scanned value is
// not all cookie-octets, the cookie is read again, skipping such values.
func (gw *gateway) checked(r *http.Request, sc *sessionCookie) *sessionCookie {
	if sc.valid() {
		return sc
	}
	strict, _ := readSessionCookie(r, gw.cookie.Name, true)
	return &strict
}

// presentCookies names the session cookies r carries, for clearing or
// replacing them.
func (gw *gateway) presentCookies(r *http.Request) []string {
	_, present := readSessionCookie(r, gw.cookie.Name, true)
	return present
}

// forCookie returns e as seen through one cookie, which may have been
// made with a retired key.
func (e *sessionEntry) forCookie(oldKey bool) *sessionEntry {
	if !oldKey {
		return e
	}
	c := *e
	c.oldKey = true
	return &c
}

// refreshStored refreshes a stored session once across all instances: the
// instance that takes the Redis lock refreshes and saves; the others wait
// for the stored session to change and use it. No instance waits longer
// than the provider timeout.
func (gw *gateway) refreshStored(ctx context.Context, p *provider, old *Session) (*Session, error) {
	key := sha256.Sum256([]byte("id:" + old.ID))
	return gw.refresher.run(ctx, key, false, p.timeout(), func(ctx context.Context) (*Session, error) {
		deadline := timeNow().Add(p.timeout())
		for {
			cur, err := gw.store.load(ctx, old.ID)
			if err != nil {
				return nil, err
			}
			if cur.RefreshToken != old.RefreshToken || !gw.needsRefresh(cur) {
				gw.sessions.forget(kindStored, old.ID)
				return cur, nil
			}
			token, ok, err := gw.store.lock(ctx, old.ID, p.timeout()+time.Second)
			if err != nil {
				return nil, err
			}
			if ok {
				defer gw.store.unlock(ctx, old.ID, token)
				if again, err := gw.store.load(ctx, old.ID); err != nil {
					return nil, err
				} else if again.RefreshToken != cur.RefreshToken {
					return again, nil
				}
				ns, err := gw.refreshAt(p)(ctx, cur)
				if err != nil {
					if errors.Is(err, errInvalidGrant) {
						_ = gw.store.delete(ctx, old.ID)
					}
					return nil, err
				}
				if err := gw.store.save(ctx, ns, gw.remaining(ns)); err != nil {
					return nil, err
				}
				gw.sessions.forget(kindStored, old.ID)
				return ns, nil
			}
			if timeNow().After(deadline) {
				return nil, fmt.Errorf("waiting for another instance's refresh: %w", errProviderTimeout)
			}
			select {
			case <-time.After(25 * time.Millisecond):
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for another instance's refresh: %w", errProviderTimeout)
			}
		}
	})
}

// remaining is how long a session has left of its lifetime.
func (gw *gateway) remaining(s *Session) time.Duration {
	return max(time.Second, time.Unix(s.Created, 0).Add(gw.lifetime).Sub(timeNow()))
}

// decodeSession opens a session cookie and caches what it found.
func (gw *gateway) decodeSession(sc *sessionCookie) (*sessionEntry, error) {
	if sc.n == 0 {
		return nil, errNoSession
	}
	var s Session
	oldKey, err := gw.codec.decode(gw.cookie.Name, sc.value(), &s)
	if err != nil {
		return nil, err
	}
	e, err := gw.entryFor(&s, oldKey)
	if err != nil {
		return nil, err
	}
	gw.sessions.put(kindCookie, e, sc.pieces()...)
	return e, nil
}

// entryFor checks a decoded session and works out its identity.
func (gw *gateway) entryFor(s *Session, oldKey bool) (*sessionEntry, error) {
	p, ok := gw.providers[s.Provider]
	if s.Version != sessionVersion || !ok || s.ID == "" || s.Created == 0 {
		return nil, errBadSession
	}
	if s.KeptGroups != "" && s.KeptGroups != p.claims.keepPrint {
		// Narrowed under another keep_groups: groups (and deny rules on
		// them) would be missing. Sign in again.
		return nil, errBadSession
	}
	id, err := p.claims.identity(s.Provider, s.Claims, false)
	if err != nil || id.ID == "" {
		return nil, errBadSession
	}
	return &sessionEntry{sess: s, identity: id, oldKey: oldKey}, nil
}

// refreshAt returns the function that refreshes a session at p.
func (gw *gateway) refreshAt(p *provider) refreshFunc {
	return func(ctx context.Context, old *Session) (*Session, error) {
		st, err := p.state(ctx)
		if err != nil {
			return nil, err
		}
		ts, err := st.client.refresh(ctx, old.RefreshToken)
		if err != nil {
			return nil, err
		}
		ns := *old
		if ts.RefreshToken != "" {
			ns.RefreshToken = ts.RefreshToken
		}
		ns.AccessToken = gw.sessionAccessToken(ts.AccessToken, ns.RefreshToken, st)
		ns.Expiry = 0
		if !ts.Expiry.IsZero() {
			ns.Expiry = ts.Expiry.Unix()
		}
		if ts.IDToken != "" && st.verifier != nil {
			// A refreshed ID token must be about the same user; it has no
			// nonce (OIDC Core §12.2).
			tok, err := st.verifier.Verify(ctx, ts.IDToken)
			if err != nil {
				return nil, fmt.Errorf("verifying refreshed ID token: %w", errProviderBadResponse)
			}
			if sub, _ := old.Claims["sub"].(string); sub != "" && tok.Subject != sub {
				return nil, fmt.Errorf("refreshed ID token is for another subject: %w", errInvalidGrant)
			}
			if old.IDToken != "" {
				ns.IDToken = gw.sessionIDToken(p, st, ts.IDToken)
			}
		}
		return &ns, nil
	}
}

// writeSession stores s: in the session cookie(s) on w, or, with a
// session store, in the store and its id in the cookie. Nothing is written
// to w when the store fails.
func (gw *gateway) writeSession(w http.ResponseWriter, r *http.Request, s *Session, present []string) error {
	if gw.store != nil {
		if err := gw.store.save(r.Context(), s, gw.remaining(s)); err != nil {
			return err
		}
	}
	return gw.writeCookie(w, r, s, present)
}

// writeCookie writes the cookie for s: the session itself, or its id.
func (gw *gateway) writeCookie(w http.ResponseWriter, r *http.Request, s *Session, present []string) error {
	var v any = s
	if gw.store != nil {
		v = &storeRef{Version: sessionVersion, ID: s.ID, Provider: s.Provider}
	}
	value, err := gw.codec.encode(gw.cookie.Name, v)
	if err != nil {
		return fmt.Errorf("encoding session: %w", err)
	}
	if limit := cookieHeaderLimit(r); len(value) > limit {
		// The browser would send it back in a Cookie header the server
		// refuses (431) on every request: a login loop. Refuse it now.
		return fmt.Errorf("%w: the session cookies would be %d bytes, more than the %d this server accepts in request headers; raise the server's max_header_size or use session_store", errSessionTooLarge, len(value), limit)
	}
	maxAge := int(gw.remaining(s) / time.Second)
	return writeChunked(w, gw.cookie, value, maxAge, isHTTPS(r), present)
}

var errSessionTooLarge = errors.New("session too large")

// cookieHeaderLimit is how many bytes of session cookies the serving
// Caddy server accepts back: its max_header_size (16 KiB by default) less
// room for the request's other headers.
func cookieHeaderLimit(r *http.Request) int {
	limit := 16 << 10
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.MaxHeaderBytes > 0 {
		limit = srv.MaxHeaderBytes
	}
	return limit - 3<<10
}

// clearCookies deletes the named session cookies.
func (gw *gateway) clearCookies(w http.ResponseWriter, r *http.Request, names []string) {
	for _, n := range names {
		gw.cookie.expire(w, n, isHTTPS(r))
	}
}

func isHTTPS(r *http.Request) bool { return r.TLS != nil }

// forward hands the identity to the backend: headers, placeholders, and
// the request without the session cookies. otherCookies tells whether the
// request carries cookies besides authgate's (see sessionCookie).
func (h *Handler) forward(r *http.Request, id *Identity, sess *Session, otherCookies bool) {
	hd := r.Header
	o := &id.out
	if o.id != "" && h.Headers.User != "" {
		hd[h.Headers.User] = []string{o.id}
	}
	if o.email != "" && h.Headers.Email != "" {
		hd[h.Headers.Email] = []string{o.email}
	}
	if o.username != "" && h.Headers.PreferredUsername != "" {
		hd[h.Headers.PreferredUsername] = []string{o.username}
	}
	if o.groups != "" && h.Headers.Groups != "" {
		hd[h.Headers.Groups] = []string{o.groups}
	}
	if h.PassAccessToken && sess != nil && sess.AccessToken != "" && h.Headers.AccessToken != "" {
		hd[h.Headers.AccessToken] = []string{sess.AccessToken}
	}
	for _, ch := range h.claimHeaders {
		if vals := ch.path.strings(id.Claims); len(vals) > 0 {
			hd[ch.name] = []string{sanitizeHeaderValue(strings.Join(vals, ","))}
		}
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(id.placeholder)
	}
	if !h.PassCookie {
		if otherCookies {
			stripCookies(r, h.gw.cookie.Name)
		} else {
			delete(hd, "Cookie")
		}
	}
	// A browser coming straight from the callback may name it, code
	// included, as its Referer; the backend has no use for that.
	if ref := hd.Get("Referer"); ref != "" && strings.Contains(ref, h.gw.prefix+"callback") {
		delete(hd, "Referer")
	}
}

// stripCookies removes authgate's cookies (session, chunks, pending
// logins) from the request's Cookie headers, in one pass.
func stripCookies(r *http.Request, base string) {
	lines := r.Header["Cookie"]
	found := false
	for _, l := range lines {
		if strings.Contains(l, base) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var b strings.Builder
	for _, l := range lines {
		for len(l) > 0 {
			var part string
			part, l, _ = strings.Cut(l, ";")
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			name, _, _ := strings.Cut(part, "=")
			if name == base || strings.HasPrefix(name, base+"_") {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
	}
	if b.Len() == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = []string{b.String()}
}

// log writes one structured line with the request id. Values must never
// include tokens, codes, secrets or cookie values.
func (gw *gateway) log(r *http.Request, level zapcore.Level, msg string, fields ...zap.Field) {
	if ce := gw.logger.Check(level, msg); ce != nil {
		fields = append(fields, zap.String("request_id", requestID(r)))
		ce.Write(fields...)
	}
}

func requestID(r *http.Request) string {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if v, ok := repl.GetString("http.request.uuid"); ok {
			return v
		}
	}
	return ""
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

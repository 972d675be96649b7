package authgate

import (
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

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

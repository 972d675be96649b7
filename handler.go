package authgate

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

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
//	{http.auth.user.groups}              groups, a list (headerlist.go)
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

	// ForwardAuthAccessToken also puts the access token in the answers of
	// /oauth2/auth, for a proxy that copies it to its backend (Caddy's
	// forward_auth copy_headers). Those answers go to whoever asks with
	// the cookie, a script in the user's browser included, so the token is
	// left out of them unless this is set. Needs PassAccessToken.
	// Default: false.
	ForwardAuthAccessToken bool `json:"forward_auth_access_token,omitempty"`

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

	// AssertionHeader, when set, sends every authenticated request to the
	// backend with a signed identity assertion (a JWT: iss the site's
	// origin, aud, sub, email, name, preferred_username, groups,
	// provider, auth_time, acr, amr, iat, exp, jti) in this header. The
	// keys are published at /.well-known/authgate/jwks.json. The client's
	// copy of the header, and of X-Authgate-Assertion, is always removed.
	// Default: off (the Caddyfile's bare assertion_header sets
	// X-Authgate-Assertion).
	AssertionHeader string `json:"assertion_header,omitempty"`

	// AssertionAudience is the assertion's aud. authgate runs before
	// reverse_proxy picks an upstream, so it cannot name that; set the
	// name your backends check for. Default: the request's host.
	AssertionAudience string `json:"assertion_audience,omitempty"`

	// AssertionLifetime is how long an assertion is valid; it is signed
	// again a minute before it expires. Between 2m and 1h. Default: 5m.
	AssertionLifetime caddy.Duration `json:"assertion_lifetime,omitempty"`

	// SilentLogin adds to the 401 of an API request without a session a
	// `Link: <.../start?prompt=none&...>; rel="authgate-silent-login"`
	// header, for apps that renew sessions in a hidden frame. Default:
	// off.
	SilentLogin bool `json:"silent_login,omitempty"`

	// Settings for a single-site configuration, merged over the global
	// authgate block.
	Settings

	app        *App
	site       *site
	ownGateway bool
	plainHTTP  *sync.Once
	logger     *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.authgate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision connects the handler to the shared gateway, or builds its own
// when it has settings of its own, and compiles the site's rules, headers
// and pages.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.plainHTTP = new(sync.Once)
	appIface, err := ctx.App("authgate")
	if err != nil {
		return fmt.Errorf("loading authgate app: %w", err)
	}
	app := appIface.(*App)
	h.app = app
	var gw *gateway
	switch {
	case !h.Settings.empty():
		if gw, err = newGateway(ctx, ctx.Storage(), app.Settings.merge(h.Settings), h.logger); err != nil {
			return err
		}
		h.ownGateway = true
	case app.gw != nil:
		gw = app.gw
	default:
		return errors.New("no authgate settings: configure session_keys and a provider in the global authgate block or in this handler")
	}
	s := &site{gw: gw, counts: new(siteLabels), log: gw.log}
	h.site = s
	names := h.ProviderNames
	if len(names) == 0 {
		if len(gw.names) != 1 {
			return fmt.Errorf("several providers are configured (%s): name the ones this site uses", strings.Join(gw.names, ", "))
		}
		names = gw.names
	}
	for _, n := range names {
		p, ok := gw.providers[n]
		if !ok {
			return fmt.Errorf("provider %q is not configured (have: %s)", n, strings.Join(gw.names, ", "))
		}
		s.providers = append(s.providers, p)
	}
	if h.BearerTokens != nil {
		s.bearer = newBearerValidator(*h.BearerTokens, s.providers)
	}
	if h.ForwardAuthAccessToken && !h.PassAccessToken {
		return errors.New("forward_auth_access_token needs pass_access_token")
	}
	if h.PassAccessToken {
		gw.sessions.keepAccessToken.Store(true)
	}
	switch h.ErrorPages {
	case "", "builtin", "caddy":
	default:
		return fmt.Errorf("error_pages must be builtin or caddy, not %q", h.ErrorPages)
	}
	s.pages = &pages{mode: h.ErrorPages, prefix: gw.prefix, log: s.log}
	if s.rules, err = compileRules(h.Rules); err != nil {
		return err
	}
	for _, p := range s.providers {
		if err := checkRulesAgainstKeptGroups(h.Rules, p.name, p.claims); err != nil {
			return err
		}
	}
	s.fwd, err = newForwarder(h.Headers, h.ClaimHeaders, h.PassAccessToken, h.PassCookie, gw.sessions.cookie.Name, gw.prefix)
	if err != nil {
		return err
	}
	s.fwd.forwardAuthAccessToken = h.ForwardAuthAccessToken
	if h.AssertionHeader == "" {
		s.fwd.alsoStrip(defaultAssertionHeader)
	} else if !strings.EqualFold(h.AssertionHeader, defaultAssertionHeader) {
		// The site's own assertion header is not stripped on the way in:
		// every request that reaches the backend gets it overwritten, and
		// every other drops it (assertionSigner.drop).
		s.fwd.alsoStrip(defaultAssertionHeader)
	}
	if h.AssertionHeader != "" {
		kr, err := gw.keys.open(ctx, gw.logger)
		if err != nil {
			return err
		}
		if s.assert, err = newAssertionSigner(h.AssertionHeader, h.AssertionAudience, time.Duration(h.AssertionLifetime), kr); err != nil {
			return err
		}
		s.fwd.guardConnection(h.AssertionHeader)
	}
	return nil
}

// Cleanup closes a gateway the handler built for itself.
func (h *Handler) Cleanup() error {
	if h.ownGateway && h.site != nil {
		h.site.gw.close()
	}
	return nil
}

// ServeHTTP dispatches: authgate's endpoints, then authenticated
// pass-through, then the unauthenticated answer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	s := h.site
	if r.URL.Path == jwksPath {
		if kr := s.gw.keys.loaded(); kr != nil {
			return kr.serveJWKS(w, r)
		}
	}
	if r.URL.Path == clientJWKSPath && s.gw.clientJWKS != nil {
		return serveClientJWKS(w, r, s.gw.clientJWKS)
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, s.gw.prefix); ok {
		switch rest {
		case "health":
			return serveHealth(s, w, r)
		case "start":
			return serveStart(s, w, r)
		case "callback":
			return serveCallback(s, w, r)
		case "logout":
			return serveLogout(s, w, r)
		case "userinfo":
			return serveUserinfo(s, w, r)
		case "auth":
			return serveAuth(s, w, r)
		case "backchannel-logout":
			return serveBackchannelLogout(s, w, r)
		case "frontchannel-logout":
			return serveFrontchannelLogout(s, w, r)
		}
	}
	s.fwd.stripSpoofed(r)
	if r.TLS == nil {
		h.plainHTTP.Do(func() {
			h.logger.Warn("serving plain http: session cookies are sent without Secure and can be read on the network; use https", zap.String("host", r.Host))
		})
	}
	sc := s.gw.sessions.scan(r)
	id, sess, err := s.identify(w, r, &sc)
	if err != nil {
		s.assert.drop(r)
		s.counts.count(r.Host, decisionUnauthenticated)
		return h.unauthenticated(w, r, err)
	}
	if !allowed(s.rules, id) {
		s.assert.drop(r)
		return s.forbidden(w, r, id, sess)
	}
	s.counts.count(r.Host, decisionAllowed)
	s.fwd.forward(r, id, sess, &sc)
	if s.assert != nil {
		if err := s.assert.attach(r, id, sess, sc.checkedAt); err != nil {
			s.assert.drop(r)
			s.log.write(r, zap.ErrorLevel, "identity assertion failed", zap.String("provider", id.Provider), zap.String("user_id", id.ID), zap.Error(err))
			return s.pages.fail(w, r, http.StatusInternalServerError, "assertion_failed", "The request could not be signed for the application.")
		}
	}
	if h.app.stepUpRoutes.Load() {
		keepForStepUp(r, s, id, sess)
	}
	return next.ServeHTTP(w, r)
}

// unauthenticated answers a request that has no usable session: a browser
// navigation goes to sign in, anything else gets the 401 (or the 503/502
// when the store or the provider failed).
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request, err error) error {
	s := h.site
	if errors.Is(err, errStoreDown) || errors.Is(err, errBearerBusy) || errors.Is(err, errBadBearer) || isProviderFailure(err) || forbiddenRefusal(err) || !wantsHTML(r) {
		if h.SilentLogin && !errors.Is(err, errStoreDown) && !errors.Is(err, errBearerBusy) && !errors.Is(err, errBadBearer) && !isProviderFailure(err) && !forbiddenRefusal(err) {
			addSilentLoginLinks(s, w, r)
		}
		return s.pages.unauthenticatedAPI(w, r, err)
	}
	rd := r.URL.RequestURI()
	if len(s.providers) > 1 {
		http.Redirect(w, r, s.gw.prefix+"start?"+url.Values{"rd": {rd}}.Encode(), http.StatusFound)
		return nil
	}
	return beginLogin(s, w, r, s.providers[0], s.gw.redirects.safeReturnURL(rd, r.Host))
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

package authgate

// Step-up per route: the authgate_require handler asks more of the way the
// user signed in than the site's authgate does (a recent authentication,
// an acr, an amr such as mfa). It runs after authgate in the same route,
// which hands it the request's session.

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Require{})
}

// Require is the `authgate_require` handler: it lets a request through
// only when the user's authentication at the provider meets every
// requirement given. Otherwise a browser navigation is sent to sign in
// again (with max_age, acr_values or prompt=login) and comes back to the
// same URL, and an API request gets 401 with
// `WWW-Authenticate: Bearer error="insufficient_user_authentication"`
// (RFC 9470). A provider that ignores the request gets one retry, then a
// 403 page: never a loop. It must follow `authgate` in the route (the
// Caddyfile directive orders itself so).
type Require struct {
	// MaxAuthAge is the oldest the user's authentication at the provider
	// (the ID token's auth_time) may be. At least 1m. Default: any age.
	MaxAuthAge caddy.Duration `json:"max_auth_age,omitempty"`

	// ACR lists acceptable authentication context classes (the ID
	// token's acr); the session's must be one of them. They are not
	// ordered: list every level that will do. Default: any.
	ACR []string `json:"acr,omitempty"`

	// AMR lists authentication methods (the ID token's amr, such as mfa,
	// otp, hwk) that must all have been used. Default: any.
	AMR []string `json:"amr,omitempty"`

	req    authRequirement
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Require) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.authgate_require",
		New: func() caddy.Module { return new(Require) },
	}
}

// Provision checks the requirements and tells authgate to hand sessions
// on.
func (q *Require) Provision(ctx caddy.Context) error {
	q.logger = ctx.Logger()
	age := time.Duration(q.MaxAuthAge)
	if age == 0 && len(q.ACR) == 0 && len(q.AMR) == 0 {
		return errors.New("authgate_require needs max_auth_age, acr or amr")
	}
	if age != 0 && age < time.Minute {
		return fmt.Errorf("authgate_require: max_auth_age %s is too short (at least 1m)", age)
	}
	for _, list := range [][]string{q.ACR, q.AMR} {
		if len(list) > maxAuthValues {
			return fmt.Errorf("authgate_require: at most %d acr or amr values", maxAuthValues)
		}
		for _, v := range list {
			if err := checkAuthValue(v); err != nil {
				return fmt.Errorf("authgate_require: %w", err)
			}
		}
	}
	q.req = authRequirement{MaxAge: int64((age + time.Second - 1) / time.Second), ACR: q.ACR, AMR: q.AMR}
	app, err := ctx.App("authgate")
	if err != nil {
		return fmt.Errorf("loading authgate app: %w", err)
	}
	app.(*App).stepUpRoutes.Store(true)
	return nil
}

// stepUpVar names the request variable in which authgate hands the
// request's session to authgate_require.
const stepUpVar = "authgate.step_up"

// stepUpRequest is what authgate hands on: the site and who is asking.
type stepUpRequest struct {
	site *site
	id   *Identity
	sess *Session // nil for a bearer token
}

// String keeps the session out of anything that prints request
// variables.
func (*stepUpRequest) String() string { return "authgate" }

// keepForStepUp hands the request's session on to authgate_require.
func keepForStepUp(r *http.Request, s *site, id *Identity, sess *Session) {
	caddyhttp.SetVar(r.Context(), stepUpVar, &stepUpRequest{site: s, id: id, sess: sess})
}

// ServeHTTP lets the request through when its authentication meets the
// requirements, and otherwise asks for a step-up.
func (q *Require) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	st, _ := caddyhttp.GetVar(r.Context(), stepUpVar).(*stepUpRequest)
	if st == nil {
		// Fail closed: without authgate before it nothing is known about
		// the user.
		q.logger.Error("authgate_require found no authgate before it in this route; refusing the request", zap.String("path", r.URL.Path))
		return caddyhttp.Error(http.StatusInternalServerError, errors.New("authgate_require without authgate before it"))
	}
	ac := claimsAuthContext(st.id.tokenAuth)
	if st.sess != nil {
		ac = sessionAuthContext(st.sess)
	}
	why := q.req.unmet(ac, timeNow())
	if why == "" {
		return next.ServeHTTP(w, r)
	}
	s := st.site
	s.log.write(r, zap.InfoLevel, "step-up required", zap.String("provider", st.id.Provider), zap.String("user_id", st.id.ID), zap.String("reason", why))
	opts := loginOptions{params: q.req.params(), require: &q.req}
	if st.sess == nil || !wantsHTML(r) {
		w.Header().Set("WWW-Authenticate", q.req.wwwAuthenticate())
		if st.sess != nil {
			rd := "/"
			if r.Method == http.MethodGet {
				rd = r.URL.RequestURI()
			}
			start := s.gw.prefix + "start?" + opts.startQuery(url.Values{"rd": {rd}, "provider": {st.sess.Provider}}).Encode()
			w.Header().Set("Link", "<"+start+`>; rel="authgate-step-up"`)
		}
		return s.pages.failAs(w, r, http.StatusUnauthorized, "insufficient_user_authentication",
			"This resource needs a more recent or stronger sign-in: "+why+".", false)
	}
	p := s.gw.providers[st.sess.Provider]
	return beginLogin(s, w, r, p, s.gw.redirects.safeReturnURL(r.URL.RequestURI(), r.Host), opts)
}

// addSilentLoginLinks adds to an API's 401 a Link per provider to start a
// prompt=none login (silent_login), for apps that renew a session in a
// hidden frame before retrying.
func addSilentLoginLinks(s *site, w http.ResponseWriter, r *http.Request) {
	rd := "/"
	if r.Method == http.MethodGet {
		rd = r.URL.RequestURI()
	}
	for _, p := range s.providers {
		start := s.gw.prefix + "start?" + url.Values{"prompt": {"none"}, "provider": {p.name}, "rd": {rd}}.Encode()
		w.Header().Add("Link", "<"+start+`>; rel="authgate-silent-login"`)
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Require)(nil)
	_ caddyhttp.MiddlewareHandler = (*Require)(nil)
)

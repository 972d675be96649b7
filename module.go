// Package authgate is a Caddy v2 module that puts single sign-on in front
// of applications that have none. It runs the OAuth 2.0 authorization-code
// flow (OpenID Connect where the provider speaks it) against an upstream
// identity provider, keeps the tokens in encrypted, authenticated cookies,
// refreshes them before they expire and hands the user's identity to the
// backend as request headers and Caddy placeholders.
//
// Two modules: the `authgate` app holds settings shared by every site
// (session keys, cookie, providers), and the `http.handlers.authgate`
// handler protects one site with them.
//
// The files, in the order a request meets them; each uses only the files
// after it (layout_test.go checks it):
//
//	caddyfile.go, presets.go    the Caddyfile: global option and directives; provider presets
//	handler.go, stepup.go       the handler (routing, the decision); authgate_require (step-up per route)
//	module.go                   the app
//	logout.go, login.go         /oauth2/logout; /oauth2/start and /oauth2/callback
//	endpoints.go, health.go     /oauth2/userinfo and /oauth2/auth; /oauth2/health
//	backchannel.go              back-channel logout
//	frontchannel.go             front-channel logout
//	site.go                     a protected site: who is asking (session, refresh, bearer)
//	forward.go, pages.go        identity headers to the backend; error pages and JSON
//	bearer.go                   Authorization: Bearer tokens
//	gateway.go                  Settings and the gateway they build
//	assertion.go, assertkeys.go the signed identity assertion; its keys and JWKS
//	revalidate.go               userinfo read again for providers without refresh
//	refresh.go                  when and how a session is refreshed
//	authctx.go                  login hints, step-up requirements, auth_time/acr/amr
//	session.go                  reading and writing sessions, over
//	cache.go, store.go          the session cache, Redis
//	cookieread.go, cookie.go    reading session cookies (names, chunks, duplicates); the cookie format
//	sessiondata.go              the Session, its binding, its decoded entry
//	fastjson.go                 reading session payloads in one pass
//	identity.go                 who the user is, from what the provider said
//	provider.go, issuer.go, jwks.go  providers: discovery, multi-tenant issuers, keys
//	par.go, apiclaims.go        pushed authorization requests; identity from the provider's API
//	clientauth.go, tokens.go    client assertions and certificates; the OAuth wire
//	introspect.go, transport.go RFC 7662 answers; the HTTP transport under provider calls
//	answers.go                  what a provider's answers mean: errors and their classes
//	claimchecks.go              claim values a provider must vouch for (require_claim_value)
//	dialect.go, rules.go, claims.go, claimpath.go, headerlist.go, glob.go, redirect.go, metrics.go
//	expiring.go, common.go          bounded tables of expiring entries; clock, randomness, log
package authgate

import (
	"context"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `authgate` app: settings shared by every site that uses the
// authgate handler.
type App struct {
	Settings

	gw     *gateway
	logger *zap.Logger
	cancel context.CancelFunc
	// stepUpRoutes is set when an authgate_require handler is configured:
	// authgate then hands each request's session on to it.
	stepUpRoutes *atomic.Bool
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "authgate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision builds the shared gateway when the app is configured.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.stepUpRoutes = new(atomic.Bool)
	registerMetrics(ctx.GetMetricsRegistry())
	if len(a.Providers) == 0 {
		// Nothing to run alone; handlers merge these settings with their own.
		return nil
	}
	bg, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	gw, err := newGateway(bg, ctx.Storage(), a.Settings, a.logger)
	if err != nil {
		return err
	}
	a.gw = gw
	return nil
}

// Start is a no-op: the app has no listener of its own.
func (a *App) Start() error { return nil }

// Stop is a no-op; background work ends in Cleanup.
func (a *App) Stop() error { return nil }

// Cleanup ends background discovery and closes the session store.
func (a *App) Cleanup() error {
	if a.cancel != nil {
		a.cancel()
	}
	if a.gw != nil {
		a.gw.close()
	}
	return nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

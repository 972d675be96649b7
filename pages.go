package authgate

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// wantsHTML reports whether the request is a browser navigation, which
// gets redirects and pages, as opposed to an API or XHR call, which gets
// 401 and JSON.
func wantsHTML(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// pages writes authgate's answers to people and programs: small HTML pages
// for browsers, JSON for APIs, or, with error_pages caddy, the error handed
// to the site's handle_errors routes.
type pages struct {
	mode   string // "builtin" (or "") or "caddy"
	prefix string // where the endpoints live, for links
	log    eventLog
}

// unauthenticatedAPI is the 401 for APIs, with WWW-Authenticate (or the
// 503/502 when the store or the provider is what failed).
func (pg *pages) unauthenticatedAPI(w http.ResponseWriter, r *http.Request, err error) error {
	if errors.Is(err, errStoreDown) {
		return pg.storeFailure(w, r, err)
	}
	if errors.Is(err, errBearerBusy) {
		pg.log.write(r, zap.WarnLevel, "bearer token validation busy", zap.String("reason", err.Error()))
		w.Header().Set("Retry-After", "1")
		return pg.failAs(w, r, http.StatusServiceUnavailable, "token_validation_busy",
			"Too many new tokens to check right now. Please try again in a moment.", false)
	}
	if status, reason, msg, ok := refusal(err); ok {
		if status != http.StatusUnauthorized {
			return pg.fail(w, r, status, reason, msg)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="authgate"`)
		return pg.failAs(w, r, status, reason, msg, false)
	}
	if isProviderFailure(err) {
		return pg.providerFailure(w, r, failedProvider(err), "refresh", err)
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="authgate"`)
	reason, msg := "unauthenticated", "Sign-in required."
	switch {
	case errors.Is(err, errBadBearer):
		pg.log.write(r, zap.InfoLevel, "bearer token refused", zap.String("reason", err.Error()))
		w.Header().Set("WWW-Authenticate", `Bearer realm="authgate", error="invalid_token"`)
		reason, msg = "invalid_token", "The bearer token is not valid."
	case errors.Is(err, errSessionExpired):
		reason, msg = "session_expired", "The session has expired; sign in again."
	case errors.Is(err, errSessionEnded):
		reason, msg = "session_ended", "The identity provider ended the session; sign in again."
	}
	return pg.failAs(w, r, http.StatusUnauthorized, reason, msg, false)
}

// refusals are the answers to identity refusals (tokens.go): the provider
// said something about the user that cannot be accepted. 401 when it is
// about who the user is, 403 when the user is known but lacks what the site
// needs. Never a 5xx: trying again changes nothing.
var refusals = map[string]struct {
	status int
	msg    string
}{
	"id_token_invalid":    {http.StatusUnauthorized, "The identity provider's ID token could not be verified."},
	"userinfo_mismatch":   {http.StatusUnauthorized, "The identity provider's user details are for another user."},
	"identity_changed":    {http.StatusUnauthorized, "Your identity at the identity provider changed; sign in again."},
	"claims_missing":      {http.StatusForbidden, "The identity provider's user details lack a field this site needs."},
	"email_unverified":    {http.StatusForbidden, "Your email address is not verified at the identity provider, and this site needs it."},
	"account_not_allowed": {http.StatusForbidden, "This account may not sign in here."},
}

// refusal maps an identity refusal to its answer; ok is false for any
// other error.
func refusal(err error) (status int, reason, msg string, ok bool) {
	if !errors.Is(err, errIdentityRefused) {
		return 0, "", "", false
	}
	reason = reasonOf(err)
	a, known := refusals[reason]
	if !known {
		a = refusals["id_token_invalid"]
	}
	return a.status, reason, a.msg, true
}

// forbiddenRefusal reports a refusal that signing in again would not
// change (403): browsers get the page, not another login.
func forbiddenRefusal(err error) bool {
	status, _, _, ok := refusal(err)
	return ok && status == http.StatusForbidden
}

// failureMessages are the messages of provider failures that carry a
// reason of their own (502).
var failureMessages = map[string]string{
	"userinfo_failed":  "The identity provider did not return the user's details.",
	"id_token_missing": "The identity provider sent no ID token.",
	"claims_too_large": "The identity provider sent more user details than a session can carry.",
}

// providerFailure answers when the provider could not be used: 504 when it
// stalled, 502 otherwise. The session, if any, is left as it was.
func (pg *pages) providerFailure(w http.ResponseWriter, r *http.Request, provider, op string, err error) error {
	pg.log.write(r, zap.ErrorLevel, "provider failure", zap.String("provider", provider), zap.String("operation", op), zap.Error(err))
	if op == "login" {
		metricLogin(provider, "failed", "provider_unavailable")
	}
	if errors.Is(err, errProviderTimeout) {
		return pg.fail(w, r, http.StatusGatewayTimeout, "provider_timeout",
			"The identity provider did not answer in time. Please try again in a moment.")
	}
	return pg.fail(w, r, http.StatusBadGateway, "provider_unavailable",
		"The identity provider is not available or sent an answer that cannot be used. Please try again in a moment.")
}

// storeFailure is the 503 when the session store cannot be reached.
func (pg *pages) storeFailure(w http.ResponseWriter, r *http.Request, err error) error {
	pg.log.write(r, zap.ErrorLevel, "session store failure", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	return pg.fail(w, r, http.StatusServiceUnavailable, "store_unavailable",
		"Sessions are temporarily unavailable. Please try again in a moment.")
}

// fail writes an error page (HTML) or JSON, with the request id that the
// log line carries.
func (pg *pages) fail(w http.ResponseWriter, r *http.Request, status int, reason, msg string) error {
	return pg.failAs(w, r, status, reason, msg, wantsHTML(r))
}

func (pg *pages) failAs(w http.ResponseWriter, r *http.Request, status int, reason, msg string, html bool) error {
	if pg.mode == "caddy" {
		return pg.caddyError(r, status, reason, msg)
	}
	if !html {
		return pg.json(w, r, status, reason, msg)
	}
	return pg.render(w, r, status, reason, msg, "")
}

// json writes an error as JSON, whatever the error_pages mode: for callers
// that are programs.
func (pg *pages) json(w http.ResponseWriter, r *http.Request, status int, reason, msg string) error {
	setReason(r, reason)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(map[string]string{"error": reason, "message": msg, "request_id": requestID(r)})
}

func setReason(r *http.Request, reason string) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.authgate.reason", reason)
	}
}

type pageData struct {
	Title     string
	Status    int
	Reason    string
	Message   string
	RequestID string
	SignedIn  string
	LogoutURL string
	RetryURL  string
	Providers []providerLink
}

type providerLink struct {
	Name string
	URL  string
}

var pageTitles = map[string]string{
	"forbidden":            "Access denied",
	"claims_missing":       "Access denied",
	"email_unverified":     "Access denied",
	"identity_changed":     "Signed out",
	"sign_in_denied":       "Sign-in cancelled",
	"login_expired":        "Sign-in expired",
	"state_mismatch":       "Sign-in not recognised",
	"provider_unavailable": "Sign-in service unavailable",
	"provider_timeout":     "Sign-in service unavailable",
	"store_unavailable":    "Service temporarily unavailable",
	"account_not_allowed":  "Access denied",
	"par_rejected":         "Sign-in refused by the provider",
	"step_up_failed":       "Stronger sign-in needed",
	"login_required":       "Sign-in required",
	"choose":               "Sign in",
}

// caddyError hands the error to Caddy's handle_errors routes, with the
// reason and message in placeholders.
func (pg *pages) caddyError(r *http.Request, status int, reason, msg string) error {
	setReason(r, reason)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.authgate.message", msg)
		repl.Set("http.auth.authgate.request_id", requestID(r))
	}
	return caddyhttp.Error(status, errors.New(reason))
}

// render writes a page; signedIn names the user of a signed-in request,
// who gets a link to sign out instead of one to start again.
func (pg *pages) render(w http.ResponseWriter, r *http.Request, status int, reason, msg, signedIn string) error {
	if pg.mode == "caddy" {
		return pg.caddyError(r, status, reason, msg)
	}
	setReason(r, reason)
	d := pageData{
		Title: pageTitles[reason], Status: status, Reason: reason, Message: msg,
		RequestID: requestID(r), SignedIn: signedIn,
		RetryURL: pg.prefix + "start?" + url.Values{"rd": {"/"}}.Encode(),
	}
	if d.Title == "" {
		d.Title = "Sign-in problem"
	}
	if signedIn != "" {
		d.LogoutURL = pg.prefix + "logout"
	}
	return writePage(w, status, d)
}

// chooser is the sign-in page of a site with several providers.
// extra are more /oauth2/start parameters (login hints) for every link.
func (pg *pages) chooser(w http.ResponseWriter, r *http.Request, rd string, providers []*provider, extra ...url.Values) error {
	d := pageData{Title: "Sign in", Status: http.StatusOK, Reason: "choose", RequestID: requestID(r),
		Message: "Choose how to sign in."}
	for _, p := range providers {
		q := url.Values{"provider": {p.name}, "rd": {rd}}
		for _, ex := range extra {
			for k, v := range ex {
				q[k] = v
			}
		}
		d.Providers = append(d.Providers, providerLink{
			Name: p.name,
			URL:  pg.prefix + "start?" + q.Encode(),
		})
	}
	return writePage(w, http.StatusOK, d)
}

func writePage(w http.ResponseWriter, status int, d pageData) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	return pageTemplate.Execute(w, d)
}

// pageTemplate is every page a person sees: small, accessible, no external
// assets.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d1f23;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15);padding:2rem 2.5rem;max-width:32rem;width:100%}
h1{font-size:1.4rem;margin:0 0 1rem}
p{line-height:1.5}
a.button{display:block;text-align:center;background:#1f5fbf;color:#fff;text-decoration:none;padding:.7rem 1rem;border-radius:6px;margin:.6rem 0;font-weight:600}
a.button:focus,a.button:hover{background:#174a96;outline:3px solid #9bc1ff}
small{color:#5b616b}
</style>
</head>
<body>
<main>
<h1 id="title">{{.Title}}</h1>
<p id="message">{{.Message}}</p>
{{- if .Providers}}
<nav aria-label="Identity providers">
{{- range .Providers}}
<a class="button" id="provider-{{.Name}}" href="{{.URL}}">Sign in with {{.Name}}</a>
{{- end}}
</nav>
{{- end}}
{{- if .LogoutURL}}
<p><a class="button" id="logout" href="{{.LogoutURL}}">Sign out and use another account</a></p>
{{- else if ne .Reason "choose"}}
<p><a class="button" id="retry" href="{{.RetryURL}}">Start again</a></p>
{{- end}}
{{- if .RequestID}}
<p><small>Reference: <code id="request-id">{{.RequestID}}</code> ({{.Reason}})</small></p>
{{- end}}
</main>
</body>
</html>
`))

// logoutConfirm is the page that asks before signing out when another
// site sent the user to /oauth2/logout: a button that POSTs to it from
// this origin, with the return URL rd (already checked) and nothing else,
// no token. status is 200 (reason logout_confirm), or 403 for a refused
// cross-site POST (logout_cross_site).
func (pg *pages) logoutConfirm(w http.ResponseWriter, r *http.Request, status int, reason, rd, msg string) error {
	setReason(r, reason)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// Never framed: a hidden frame must not get the click.
	w.Header().Set("X-Frame-Options", "DENY")
	// No Referer with rd to other sites; and not no-referrer, under which
	// the form's POST would carry "Origin: null" and be refused where the
	// browser sends no Sec-Fetch-Site.
	w.Header().Set("Referrer-Policy", "same-origin")
	// form-action stays open: Chromium applies it to the redirects after
	// the POST too, to the provider's end-session endpoint or to rd.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'")
	w.WriteHeader(status)
	return logoutConfirmTemplate.Execute(w, map[string]any{
		"Message": msg, "Action": pg.prefix + "logout", "RD": rd,
		"RequestID": requestID(r), "Reason": reason,
	})
}

var logoutConfirmTemplate = template.Must(template.New("logout-confirm").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign out?</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d1f23;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15);padding:2rem 2.5rem;max-width:32rem;width:100%}
h1{font-size:1.4rem;margin:0 0 1rem}
p{line-height:1.5}
button,a.button{display:block;box-sizing:border-box;width:100%;text-align:center;background:#1f5fbf;color:#fff;border:0;text-decoration:none;padding:.7rem 1rem;border-radius:6px;margin:.6rem 0;font:inherit;font-weight:600;cursor:pointer}
a.button.secondary{background:#e6e8ec;color:#1d1f23}
button:focus,button:hover,a.button:focus,a.button:hover{background:#174a96;color:#fff;outline:3px solid #9bc1ff}
small{color:#5b616b}
</style>
</head>
<body>
<main>
<h1 id="title">Sign out?</h1>
<p id="message">{{.Message}}</p>
<form id="logout-form" method="post" action="{{.Action}}">
<input type="hidden" name="rd" value="{{.RD}}">
<button type="submit" id="confirm-logout">Sign out</button>
</form>
<a class="button secondary" id="stay-signed-in" href="/">Stay signed in</a>
{{- if .RequestID}}
<p><small>Reference: <code id="request-id">{{.RequestID}}</code> ({{.Reason}})</small></p>
{{- end}}
</main>
</body>
</html>
`))

// autoPostScript submits the page's form at once; the page allows exactly
// this script by its hash, nothing else.
const autoPostScript = `document.forms[0].submit();`

var autoPostCSP = func() string {
	sum := sha256.Sum256([]byte(autoPostScript))
	return "default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'; script-src 'sha256-" +
		base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// writeAutoPost sends the browser to action with a POST of values: a form
// submitted by a script, with a button for browsers without scripts.
func writeAutoPost(w http.ResponseWriter, action string, values url.Values) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Security-Policy", autoPostCSP)
	w.WriteHeader(http.StatusOK)
	type field struct{ Name, Value string }
	var fields []field
	for k, vs := range values {
		for _, v := range vs {
			fields = append(fields, field{k, v})
		}
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Name < fields[j].Name })
	return autoPostTemplate.Execute(w, map[string]any{"Action": action, "Fields": fields, "Script": template.JS(autoPostScript)})
}

var autoPostTemplate = template.Must(template.New("post").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signing out</title></head>
<body>
<form method="post" action="{{.Action}}">
{{- range .Fields}}
<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{- end}}
<p>Signing you out at the identity provider…</p>
<noscript><button type="submit" id="continue">Continue</button></noscript>
</form>
<script>{{.Script}}</script>
</body></html>
`))

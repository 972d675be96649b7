package emulators

import (
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"hash/fnv"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// GitHub emulates GitHub's user authorization (OAuth app and GitHub App
// web application flow) and the four REST endpoints a relying party reads
// a user's identity from. Written from these public pages of
// docs.github.com (titles as they appear there):
//
//   - "Authorizing OAuth apps" (/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps)
//   - "Generating a user access token for a GitHub App"
//     (/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-user-access-token-for-a-github-app)
//   - "Refreshing user access tokens" (…/authenticating-with-a-github-app/refreshing-user-access-tokens)
//   - "Troubleshooting authorization request errors" and "Troubleshooting
//     OAuth app access token request errors" (/apps/oauth-apps/maintaining-oauth-apps/…)
//   - "Scopes for OAuth apps" (/apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps)
//   - REST "Get the authenticated user" (/rest/users/users), "List email
//     addresses for the authenticated user" (/rest/users/emails), "List
//     organizations for the authenticated user" (/rest/orgs/orgs), "List
//     teams for the authenticated user" (/rest/teams/teams), "Delete an app
//     token" / "Delete an app authorization" (/rest/apps/oauth-applications)
//   - "Using pagination in the REST API", "Rate limits for the REST API",
//     "Troubleshooting the REST API" (/rest/using-the-rest-api/…)
//   - the GitHub changelog "PKCE support for OAuth and GitHub App
//     authentication" (2025-07-14).
//
// What the emulator does, and the documented behaviour behind it:
//
// Layout. GitHub.com has two hosts: the web host (github.com) with
// /login/oauth/authorize and /login/oauth/access_token, and the API host
// (api.github.com) with /user, /user/emails, … . NewGitHub serves them on
// two loopback listeners: URL() is the web host, APIURL() the API host.
// GitHub Enterprise Server (Config.GitHub.Enterprise) has one host,
// http(s)://HOSTNAME: the same /login/oauth/… paths, the REST API under
// http(s)://HOSTNAME/api/v3 (so GET /api/v3/user), and the "url" fields of
// API resources point under /api/v3. On one host the API paths without the
// /api/v3 prefix do not exist (404), nor do the login paths on GitHub.com's
// API host.
//
// Authorization request, GET /login/oauth/authorize:
//   - client_id is required; a missing or unknown one is an HTML page, 404
//     (GitHub shows no redirect for an app it does not know; the exact page
//     is undocumented). A repeated parameter is an HTML page, 400.
//   - redirect_uri is optional: without it the registered callback URL is
//     used. An OAuth app's redirect_uri must have the callback's host
//     (sub-domains of it are allowed) and port, and a path equal to or
//     under the callback's path; for a loopback callback (127.0.0.1, ::1)
//     the port may differ ("Redirect URLs", "Loopback redirect urls"). A
//     GitHub App's redirect_uri must equal a callback URL exactly. A
//     mismatch redirects to the registered callback with
//     error=redirect_uri_mismatch, error_description, error_uri and state,
//     as "Troubleshooting authorization request errors" shows.
//   - scope (OAuth apps) is a list of the scopes of "Scopes for OAuth apps",
//     separated by spaces (the doc's own normalization example uses
//     commas, which are accepted too). Names not in that table are not
//     granted. Scopes are normalized as documented: a scope implied by
//     another requested one is dropped (user,gist,user:email → user,gist).
//     Without scope, a user who has not authorized the app gets no scope;
//     a user who has gets every scope granted so far, without consent.
//     GitHub Apps use no scopes: the token's scope is always "".
//   - The consent page (Config.AutoApprove, Deny) is skipped when the user
//     has already authorized the app for every requested scope, as the doc
//     says, unless prompt=select_account (which forces the account picker;
//     the emulator shows its consent page in its place). login and
//     allow_signup are accepted and have no effect (one emulated user).
//   - state is echoed. Approve: redirect_uri?code=CODE&state=STATE (CODE
//     is 20 hex digits, single use, expires after 10 minutes). Deny:
//     redirect_uri?error=access_denied&error_description=The user has
//     denied your application access.&error_uri=…&state=STATE.
//   - PKCE: code_challenge with code_challenge_method=S256; "plain is not
//     supported" and the challenge "must be a 43 character SHA-256 hash".
//     A challenge without a method is taken as S256 (GitHub accepts no
//     other); a method without a challenge, another method or a malformed
//     challenge redirects with error=invalid_request (GitHub's answer is
//     undocumented). PKCE is optional, as GitHub does not require it.
//
// Token request, POST /login/oauth/access_token: parameters in the query
// string (GitHub App pages say "query parameters"), a form body or a JSON
// object body (GitHub's own Octokit sends JSON). client_id and
// client_secret as parameters (HTTP Basic is not documented and not
// read). The answer is application/x-www-form-urlencoded
// (access_token=…&scope=repo%2Cgist&token_type=bearer) unless Accept asks
// for application/json or application/xml ("The format of these
// responses is determined by the accept header you pass"). Errors come
// with HTTP 200 in the same format, with error, error_description and
// error_uri exactly as documented:
//   - incorrect_client_credentials: missing or wrong client_id/secret;
//   - redirect_uri_mismatch: a redirect_uri that differs from the one the
//     code was issued for (it may be left out);
//   - bad_verification_code: missing, unknown, used, expired code, a code
//     of another app, and (undocumented, the closest documented error) a
//     missing or wrong code_verifier for a code issued with a challenge;
//   - unverified_user_email: the user's primary email is not verified;
//   - unsupported_grant_type: a grant_type other than authorization_code
//     or refresh_token (the device flow is not emulated);
//   - bad_refresh_token ("The refresh token passed is incorrect or
//     expired."): not in the docs, but what GitHub answers.
//
// Tokens: an OAuth app gets gho_… tokens that never expire and no refresh
// token. A GitHub App gets ghu_… user access tokens, scope "". With
// expiring user tokens (Config.GitHub.ExpiringTokens, the default for new
// GitHub Apps) the answer adds expires_in 28800, refresh_token ghr_… and
// refresh_token_expires_in 15811200; grant_type=refresh_token (client_id,
// client_secret, refresh_token) returns a new pair, after which "that
// refresh token and the old user access token will no longer work".
// Config.AccessTTL / SetAccessTTL shorten expiring tokens only (a test
// knob: the doc says 28800 always).
//
// API (Authorization: Bearer TOKEN, or the older "token TOKEN"):
//   - GET /user: the private-user shape of "Get the authenticated user".
//     An OAuth token without the user scope gets the public profile only
//     (no private_gists, total_private_repos, owned_private_repos,
//     disk_usage, collaborators, two_factor_authentication, plan). name
//     and email are null when unset (email is the public profile email).
//   - GET /user/emails: [{email, primary, verified, visibility}]; OAuth
//     tokens need user:email (or user, which includes it). Without it:
//     404 Not Found (GitHub hides what the token may not see; the doc's
//     listed statuses include 404, and that is what GitHub answers).
//   - GET /user/orgs: organization-simple items; OAuth tokens need user or
//     read:org (write:org and admin:org include read:org), else 403 as the
//     endpoint's doc says. GitHub App user tokens are fine-grained tokens,
//     which "will receive a 200 Success response with an empty list".
//   - GET /user/teams: team-full items with their organization; OAuth
//     tokens need user, repo or read:org, else 404 (as for emails).
//   - DELETE /applications/CLIENT_ID/token and …/grant: HTTP Basic with
//     the app's client_id and client_secret, JSON body {"access_token"};
//     204. The token (or every token of the grant, and the grant) is
//     revoked.
//   - Lists are paginated: per_page (default 30, max 100) and page
//     (default 1); a Link header with prev/next/last/first URLs (per_page
//     repeated when given) unless everything fits on one page.
//   - Headers: X-OAuth-Scopes and X-Accepted-OAuth-Scopes for OAuth
//     tokens; x-ratelimit-limit/-remaining/-used/-reset/-resource on
//     GitHub.com (5000 requests an hour per user; GHES has rate limits
//     off by default and sends none unless SetRateLimited).
//   - A missing token: 401 "Requires authentication"; a bad, expired or
//     revoked one: 401 {"message":"Bad credentials","documentation_url":
//     "https://docs.github.com/rest"}. No User-Agent: 403 (requests
//     "without a valid User-Agent header will be rejected"). An
//     X-GitHub-Api-Version that does not exist: 400.
//
// Test hooks: SetGitHubUser (login, id, name, email, emails, orgs,
// teams), SetUser (the raw /user JSON), Revoke, RevokeAuthorization (the
// user revokes the app: tokens answer 401 Bad credentials, as the GitHub
// App page says), SetRateLimited (403 or 429 with x-ratelimit-remaining 0
// until x-ratelimit-reset), SetServerError (5xx at the token endpoint and
// the API), and counters "authorize", "consent", "approved", "denied",
// "token", "token:authorization_code", "token:refresh_token", "userinfo"
// (/user), "emails", "orgs", "teams", "revoke", "revoke_grant",
// "rate_limited", "server_error", "not_found", "rejected". Injected rate
// limits and server errors are not counted as rejected: they are not the
// client's fault.
func NewGitHub(cfg Config) *Server {
	if cfg.GitHub.ExpiringTokens {
		cfg.GitHub.App = true
	}
	return newServer(githubProvider, cfg)
}

// GitHubConfig selects the kind of GitHub app and deployment.
type GitHubConfig struct {
	// App emulates a GitHub App's user authorization (ghu_ user access
	// tokens, no scopes, exact redirect_uri match) instead of an OAuth
	// app's (gho_ tokens, scopes).
	App bool
	// ExpiringTokens (implies App) issues expiring user access tokens with
	// refresh tokens, as GitHub Apps do unless they opt out.
	ExpiringTokens bool
	// Enterprise serves GitHub Enterprise Server's layout: one host, the
	// REST API under /api/v3.
	Enterprise bool
	// User is the signed-in user (nil: DefaultGitHubUser).
	User *GitHubUser
}

// GitHubUser is the identity the GitHub emulator serves at /user,
// /user/emails, /user/orgs and /user/teams. Fields not listed here are
// rendered with the values of the docs' examples.
type GitHubUser struct {
	Login string
	ID    int64
	// NodeID defaults to the legacy global ID of the docs' examples,
	// base64("04:User" + ID).
	NodeID string
	Name   string // "" is served as null
	Email  string // the public profile email; "" is served as null
	Emails []GitHubEmail
	Orgs   []GitHubOrg
	Teams  []GitHubTeam
}

// GitHubEmail is one entry of GET /user/emails.
type GitHubEmail struct {
	Email    string
	Primary  bool
	Verified bool
	// Visibility is "public", "private" or "" (null).
	Visibility string
}

// GitHubOrg is one organization of the user.
type GitHubOrg struct {
	Login string
	ID    int64  // 0: derived from Login
	Name  string // "": Login
	// Description "" is served as null.
	Description string
}

// GitHubTeam is one team of the user. Org is the login of its
// organization (listed in GitHubUser.Orgs or not).
type GitHubTeam struct {
	ID          int64 // 0: derived from Org and Slug
	Slug        string
	Name        string // "": Slug
	Org         string
	Description string // "": null
	Privacy     string // "": "closed"
	Permission  string // "": "pull"
}

// DefaultGitHubUser is the docs' example user "octocat" with the example
// organization "github" and team "justice-league".
func DefaultGitHubUser() GitHubUser {
	return GitHubUser{
		Login: "octocat", ID: 1, Name: "monalisa octocat", Email: "octocat@github.com",
		Emails: []GitHubEmail{{Email: "octocat@github.com", Primary: true, Verified: true, Visibility: "public"}},
		Orgs:   []GitHubOrg{{Login: "github", ID: 1, Name: "github", Description: "A great organization"}},
		Teams: []GitHubTeam{{ID: 1, Slug: "justice-league", Name: "Justice League", Org: "github",
			Description: "A great team.", Privacy: "closed", Permission: "admin"}},
	}
}

const (
	githubCodeTTL       = 10 * time.Minute
	githubAccessTTL     = 28800 * time.Second
	githubRefreshTTL    = 15811200 * time.Second
	githubRateLimit     = 5000
	githubRateWindow    = time.Hour
	githubDocsREST      = "https://docs.github.com/rest"
	githubDocsRateLimit = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
)

type githubState struct {
	user       GitHubUser
	authorized bool            // the user has authorized the app
	granted    map[string]bool // scopes granted so far (OAuth apps)
	rateStatus int             // SetRateLimited: 403 or 429, 0 off
	rateReset  time.Time
	rateUsed   int       // requests in the current hour (one user)
	winReset   time.Time // end of the current hour
	serverErr  int
}

var githubProvider = &provider{
	name:        "github",
	display:     "GitHub",
	codeTTL:     githubCodeTTL,
	accessTTL:   githubAccessTTL,
	refreshTTL:  githubRefreshTTL,
	consentPath: "/login/oauth/authorize",
	defaultUser: func() map[string]any {
		return renderGitHubUser(DefaultGitHubUser(), "https://github.com", "https://api.github.com", false)
	},
	routes: func(s *Server) {
		u := DefaultGitHubUser()
		if s.cfg.GitHub.User != nil {
			u = copyGitHubUser(*s.cfg.GitHub.User)
		}
		s.gh = &githubState{user: u, granted: map[string]bool{}}
		s.handle(http.MethodGet, "/login/oauth/authorize", "authorize", s.githubAuthorize)
		s.handle(http.MethodPost, "/login/oauth/authorize", "consent", s.consent)
		s.handle(http.MethodPost, "/login/oauth/access_token", "token", s.githubToken)
		api := s.handleAPI
		prefix := ""
		if s.cfg.GitHub.Enterprise {
			api, prefix = s.handle, "/api/v3"
		}
		api(http.MethodGet, prefix+"/user", "userinfo", s.githubAPI("", nil, s.githubUser))
		api(http.MethodGet, prefix+"/user/emails", "emails",
			s.githubAPI("users/emails#list-email-addresses-for-the-authenticated-user", []string{"user", "user:email"}, s.githubEmails))
		api(http.MethodGet, prefix+"/user/orgs", "orgs",
			s.githubAPI("orgs/orgs#list-organizations-for-the-authenticated-user", []string{"admin:org", "read:org", "user", "write:org"}, s.githubOrgs))
		api(http.MethodGet, prefix+"/user/teams", "teams",
			s.githubAPI("teams/teams#list-teams-for-the-authenticated-user", []string{"admin:org", "read:org", "repo", "user", "write:org"}, s.githubTeams))
		app := prefix + "/applications/" + url.PathEscape(s.cfg.ClientID)
		api(http.MethodDelete, app+"/token", "revoke", s.githubDeleteToken(false))
		api(http.MethodDelete, app+"/grant", "revoke_grant", s.githubDeleteToken(true))
	},
	notFound: func(s *Server, w http.ResponseWriter, r *http.Request) {
		s.githubAPIError(w, r, http.StatusNotFound, "no such endpoint "+r.URL.Path, "Not Found", githubDocsREST)
	},
	approve: func(s *Server, r *http.Request, req *authRequest) string {
		s.mu.Lock()
		g := s.gh
		g.authorized = true
		for _, sc := range strings.Split(req.scope, ",") {
			if sc != "" {
				g.granted[sc] = true
			}
		}
		if req.inheritScope {
			req.scope = githubNormalize(sortedKeys(g.granted))
		}
		s.mu.Unlock()
		code := randHex(10)
		s.storeCode(code, req, s.newSession(req))
		kv := []string{"code", code}
		if req.stateGiven {
			kv = append(kv, "state", req.state)
		}
		return addQuery(req.redirectURI, kv...)
	},
	deny: func(s *Server, r *http.Request, req *authRequest) string {
		kv := []string{"error", "access_denied",
			"error_description", "The user has denied your application access.",
			"error_uri", "/apps/building-integrations/setting-up-and-registering-oauth-apps/troubleshooting-authorization-request-errors/#access-denied"}
		if req.stateGiven {
			kv = append(kv, "state", req.state)
		}
		return addQuery(req.redirectURI, kv...)
	},
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func copyGitHubUser(u GitHubUser) GitHubUser {
	u.Emails = append([]GitHubEmail(nil), u.Emails...)
	u.Orgs = append([]GitHubOrg(nil), u.Orgs...)
	u.Teams = append([]GitHubTeam(nil), u.Teams...)
	return u
}

// ---------------------------------------------------------------------------
// Exported hooks

// APIURL is the REST API's base URL: GitHub.com's API host, or
// URL()+"/api/v3" in Enterprise mode ("" for other providers or before
// Start).
func (s *Server) APIURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gh == nil || s.base == "" {
		return ""
	}
	if s.cfg.GitHub.Enterprise {
		return s.base + "/api/v3"
	}
	return s.apiBase
}

// SetGitHubUser replaces the GitHub user (login, id, name, email, emails,
// organizations, teams) and drops a raw /user JSON set by SetUser. The
// API answers with it from the next request on; issued tokens stay valid.
func (s *Server) SetGitHubUser(u GitHubUser) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gh == nil {
		return
	}
	s.gh.user = copyGitHubUser(u)
	s.userSet = false
}

// RevokeAuthorization is the user revoking the app in their settings:
// every token answers 401 Bad credentials, refresh tokens
// bad_refresh_token, and the next authorization shows the consent page
// again.
func (s *Server) RevokeAuthorization() {
	s.RevokeAll()
	s.mu.Lock()
	if s.gh != nil {
		s.gh.authorized = false
		s.gh.granted = map[string]bool{}
	}
	s.mu.Unlock()
}

// SetRateLimited makes the GitHub API answer as if the primary rate limit
// were exhausted until reset (zero: one hour from now): status 403 or 429
// (the two the docs name; 0 turns it off) with x-ratelimit-remaining 0 and
// x-ratelimit-reset = reset in UTC epoch seconds.
func (s *Server) SetRateLimited(status int, reset time.Time) {
	if status != 0 && status != http.StatusForbidden && status != http.StatusTooManyRequests {
		panic("emulators: SetRateLimited status must be 0, 403 or 429")
	}
	if status != 0 && reset.IsZero() {
		reset = s.clock().Add(githubRateWindow)
	}
	s.mu.Lock()
	if s.gh != nil {
		s.gh.rateStatus, s.gh.rateReset = status, reset
	}
	s.mu.Unlock()
}

// SetServerError makes the GitHub token endpoint and API answer with the
// given 5xx status (0 turns it off).
func (s *Server) SetServerError(status int) {
	if status != 0 && (status < 500 || status > 599) {
		panic("emulators: SetServerError status must be 0 or 5xx")
	}
	s.mu.Lock()
	if s.gh != nil {
		s.gh.serverErr = status
	}
	s.mu.Unlock()
}

// ---------------------------------------------------------------------------
// Scopes ("Scopes for OAuth apps")

// githubScopeParent maps a scope to the scope that includes it.
var githubScopeParent = map[string]string{
	"repo:status": "repo", "repo_deployment": "repo", "public_repo": "repo", "repo:invite": "repo", "security_events": "repo",
	"write:repo_hook": "admin:repo_hook", "read:repo_hook": "write:repo_hook",
	"write:org": "admin:org", "read:org": "write:org",
	"write:public_key": "admin:public_key", "read:public_key": "write:public_key",
	"read:user": "user", "user:email": "user", "user:follow": "user",
	"read:project":  "project",
	"write:gpg_key": "admin:gpg_key", "read:gpg_key": "write:gpg_key",
	"manage_runners:enterprise": "admin:enterprise", "manage_billing:enterprise": "admin:enterprise", "read:enterprise": "admin:enterprise",
}

var githubTopScopes = map[string]bool{
	"repo": true, "admin:repo_hook": true, "admin:org": true, "admin:public_key": true, "admin:org_hook": true,
	"gist": true, "notifications": true, "user": true, "project": true, "delete_repo": true,
	"write:packages": true, "read:packages": true, "delete:packages": true, "admin:gpg_key": true,
	"workflow": true, "read:audit_log": true,
}

func (s *Server) githubKnownScope(sc string) bool {
	ent := s.config().GitHub.Enterprise
	switch sc {
	case "codespace":
		return !ent
	case "site_admin", "admin:enterprise", "manage_runners:enterprise", "manage_billing:enterprise", "read:enterprise":
		return ent
	}
	_, child := githubScopeParent[sc]
	return githubTopScopes[sc] || child
}

// githubImplied reports whether scope sc is included in scope by.
func githubImplied(sc, by string) bool {
	for p := githubScopeParent[sc]; p != ""; p = githubScopeParent[p] {
		if p == by {
			return true
		}
	}
	return false
}

// githubNormalize drops duplicates and scopes included in another
// requested scope, keeping the request's order, comma-joined.
func githubNormalize(scopes []string) string {
	var out []string
	seen := map[string]bool{}
	for _, sc := range scopes {
		if sc == "" || seen[sc] {
			continue
		}
		seen[sc] = true
		implied := false
		for _, other := range scopes {
			if other != sc && githubImplied(sc, other) {
				implied = true
				break
			}
		}
		if !implied {
			out = append(out, sc)
		}
	}
	return strings.Join(out, ",")
}

// githubHasScope reports whether the comma-joined token scopes satisfy
// one of the accepted scopes.
func githubHasScope(tokenScopes string, accepted []string) bool {
	for _, have := range strings.Split(tokenScopes, ",") {
		for _, want := range accepted {
			if have != "" && (have == want || githubImplied(want, have)) {
				return true
			}
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// Authorization request

var githubChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// githubRedirectOK applies "Redirect URLs": an OAuth app's redirect_uri
// must have the callback's host (or a sub-domain) and port and a path at
// or below the callback's; loopback callbacks may use any port. A GitHub
// App's must be an exact match.
func githubRedirectOK(callback, given string, app bool) bool {
	if app {
		return given == callback
	}
	cb, err1 := url.Parse(callback)
	gv, err2 := url.Parse(given)
	if err1 != nil || err2 != nil || gv.Host == "" || gv.Scheme != cb.Scheme || gv.User != nil || gv.Fragment != "" {
		return false
	}
	ch, cp := cb.Hostname(), cb.Port()
	gh, gp := gv.Hostname(), gv.Port()
	hostOK := strings.EqualFold(gh, ch) || strings.HasSuffix(strings.ToLower(gh), "."+strings.ToLower(ch))
	if ip := net.ParseIP(ch); ip != nil {
		hostOK = gh == ch // no sub-domains of an address
	}
	portOK := gp == cp
	if ip := net.ParseIP(ch); ip != nil && ip.IsLoopback() && gh == ch {
		portOK = true
	}
	cpath := strings.TrimSuffix(cb.EscapedPath(), "/")
	gpath := gv.EscapedPath()
	pathOK := gpath == cb.EscapedPath() || gpath == cpath || strings.HasPrefix(gpath, cpath+"/")
	return hostOK && portOK && pathOK
}

func (s *Server) githubAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cfg := s.config()
	if d := duplicated(q); d != "" {
		s.rejectPage(w, r, http.StatusBadRequest, "duplicate parameter "+d, "Invalid request.")
		return
	}
	id := q.Get("client_id")
	switch {
	case id == "":
		s.rejectPage(w, r, http.StatusNotFound, "missing client_id", "Not Found")
		return
	case id != cfg.ClientID:
		s.rejectPage(w, r, http.StatusNotFound, "unknown client_id "+strconvQuote(id), "Not Found")
		return
	case cfg.RedirectURI == "":
		s.rejectPage(w, r, http.StatusInternalServerError, "emulator has no registered RedirectURI", "The application has no callback URL.")
		return
	}
	req := &authRequest{clientID: id, redirectURI: cfg.RedirectURI}
	if _, ok := q["state"]; ok {
		req.state, req.stateGiven = q.Get("state"), true
	}
	back := func(uri string, kv ...string) string {
		if req.stateGiven {
			kv = append(kv, "state", req.state)
		}
		return addQuery(uri, kv...)
	}
	if ru, ok := q["redirect_uri"]; ok {
		req.redirectGiven = true
		if !githubRedirectOK(cfg.RedirectURI, ru[0], cfg.GitHub.App) {
			s.rejectRedirect(w, r, back(cfg.RedirectURI, "error", "redirect_uri_mismatch",
				"error_description", "The redirect_uri MUST match the registered callback URL for this application.",
				"error_uri", "/apps/building-integrations/setting-up-and-registering-oauth-apps/troubleshooting-authorization-request-errors/#redirect-uri-mismatch"),
				"redirect_uri "+strconvQuote(ru[0])+" does not match the callback URL "+strconvQuote(cfg.RedirectURI))
			return
		}
		req.redirectURI = ru[0]
	}
	invalid := func(desc, reason string) {
		s.rejectRedirect(w, r, back(req.redirectURI, "error", "invalid_request", "error_description", desc), reason)
	}
	ch, hasCh := q["code_challenge"]
	m, hasM := q["code_challenge_method"]
	switch {
	case hasM && !hasCh:
		invalid("code_challenge is required when code_challenge_method is included.", "code_challenge_method without code_challenge")
		return
	case hasM && m[0] != "S256":
		invalid("The code_challenge_method must be S256.", "code_challenge_method "+strconvQuote(m[0])+" (GitHub accepts only S256)")
		return
	case hasCh && !githubChallenge.MatchString(ch[0]):
		invalid("The code_challenge must be a 43 character SHA-256 hash.", "malformed code_challenge "+strconvQuote(ch[0]))
		return
	case hasCh:
		req.challenge, req.challengeMethod = ch[0], "S256"
	}
	requested := []string{}
	if !cfg.GitHub.App {
		for _, sc := range strings.FieldsFunc(q.Get("scope"), func(c rune) bool { return c == ' ' || c == ',' }) {
			if s.githubKnownScope(sc) {
				requested = append(requested, sc)
			}
		}
	}
	req.scope = githubNormalize(requested)
	_, scopeGiven := q["scope"]
	s.mu.Lock()
	known := s.gh.authorized
	granted := strings.Join(sortedKeys(s.gh.granted), ",")
	s.mu.Unlock()
	covered := known
	for _, sc := range requested {
		if !githubHasScope(granted, []string{sc}) {
			covered = false
		}
	}
	// "If not provided, scope defaults to an empty list for users that have
	// not authorized any scopes for the application. For users who have
	// authorized scopes [...] this step of the flow will automatically
	// complete with the set of scopes the user has authorized."
	if !cfg.GitHub.App && (!scopeGiven || len(requested) == 0) && known {
		req.inheritScope = true
	}
	if covered && q.Get("prompt") != "select_account" {
		s.mu.Lock()
		deny := s.denyNext
		s.denyNext = false
		s.mu.Unlock()
		s.finish(w, r, req, !deny)
		return
	}
	s.decide(w, r, req)
}

// ---------------------------------------------------------------------------
// Token request

// githubFormat is the answer format the Accept header asks for.
func githubFormat(r *http.Request) string {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/json":
			return "json"
		case "application/xml":
			return "xml"
		}
	}
	return "form"
}

type githubKV struct{ k, v string }

// githubWrite answers the token endpoint in the requested format, always
// with 200 (GitHub's errors there are 200s too).
func githubWrite(w http.ResponseWriter, r *http.Request, kvs []githubKV, ints map[string]bool) {
	w.Header().Set("Cache-Control", "no-store")
	switch githubFormat(r) {
	case "json":
		var b strings.Builder
		b.WriteByte('{')
		for i, kv := range kvs {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(kv.k)
			b.Write(k)
			b.WriteByte(':')
			if ints[kv.k] {
				b.WriteString(kv.v)
			} else {
				v, _ := json.Marshal(kv.v)
				b.Write(v)
			}
		}
		b.WriteByte('}')
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(b.String()))
	case "xml":
		var b strings.Builder
		b.WriteString("<OAuth>")
		for _, kv := range kvs {
			b.WriteString("<" + kv.k + ">")
			_ = xml.EscapeText(&b, []byte(kv.v))
			b.WriteString("</" + kv.k + ">")
		}
		b.WriteString("</OAuth>")
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(b.String()))
	default:
		parts := make([]string, len(kvs))
		for i, kv := range kvs {
			parts[i] = url.QueryEscape(kv.k) + "=" + url.QueryEscape(kv.v)
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(strings.Join(parts, "&")))
	}
}

var githubTokenErrors = map[string][2]string{
	"incorrect_client_credentials": {"The client_id and/or client_secret passed are incorrect.",
		"/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#incorrect-client-credentials"},
	"redirect_uri_mismatch": {"The redirect_uri MUST match the registered callback URL for this application.",
		"/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#redirect-uri-mismatch2"},
	"bad_verification_code": {"The code passed is incorrect or expired.",
		"/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code"},
	"unverified_user_email": {"The user must have a verified primary email.",
		"/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#unverified_user_email"},
	"bad_refresh_token": {"The refresh token passed is incorrect or expired.",
		"/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"},
	"unsupported_grant_type": {"The grant type must be authorization_code or refresh_token.",
		"/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps"},
}

func (s *Server) githubTokenError(w http.ResponseWriter, r *http.Request, code, reason string) {
	e := githubTokenErrors[code]
	s.rejected(r, code+": "+reason)
	githubWrite(w, r, []githubKV{{"error", code}, {"error_description", e[0]}, {"error_uri", e[1]}}, nil)
}

// githubParams merges the query string with a form or JSON object body
// (body values win).
func githubParams(r *http.Request) (map[string]string, error) {
	p := map[string]string{}
	for k, v := range r.URL.Query() {
		p[k] = v[0]
	}
	switch mediaType(r) {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return nil, err
		}
		for k, v := range r.PostForm {
			p[k] = v[0]
		}
	case "application/json":
		var body map[string]any
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		if err := dec.Decode(&body); err != nil || dec.More() {
			return nil, fmt.Errorf("body is not one JSON object")
		}
		for k, v := range body {
			switch x := v.(type) {
			case string:
				p[k] = x
			case json.Number:
				p[k] = x.String()
			}
		}
	}
	return p, nil
}

// githubFault answers an injected server error; true if it did.
func (s *Server) githubFault(w http.ResponseWriter) bool {
	s.mu.Lock()
	st := s.gh.serverErr
	s.mu.Unlock()
	if st == 0 {
		return false
	}
	s.count("server_error")
	writeJSON(w, st, map[string]any{"message": "Server Error"})
	return true
}

func (s *Server) githubToken(w http.ResponseWriter, r *http.Request) {
	if s.githubFault(w) {
		return
	}
	p, err := githubParams(r)
	if err != nil {
		s.githubTokenError(w, r, "incorrect_client_credentials", "unreadable request body: "+err.Error())
		return
	}
	gt := p["grant_type"]
	switch gt {
	case "", "authorization_code":
		s.count("token:authorization_code")
	case "refresh_token":
		s.count("token:refresh_token")
	}
	cfg := s.config()
	if p["client_id"] != cfg.ClientID || p["client_secret"] == "" || !secretEqual(p["client_secret"], cfg.ClientSecret) {
		why := "wrong client_id or client_secret"
		if p["client_id"] == "" || p["client_secret"] == "" {
			why = "client_id and client_secret parameters are required (HTTP Basic is not read)"
		}
		s.githubTokenError(w, r, "incorrect_client_credentials", why)
		return
	}
	switch gt {
	case "", "authorization_code":
		s.githubCodeGrant(w, r, p)
	case "refresh_token":
		s.githubRefreshGrant(w, r, p)
	default:
		s.githubTokenError(w, r, "unsupported_grant_type", "grant_type "+strconvQuote(gt)+" (the emulator has no device flow)")
	}
}

func (s *Server) githubCodeGrant(w http.ResponseWriter, r *http.Request, p map[string]string) {
	code := p["code"]
	ac, st := s.lookupCode(code)
	if st != codeOK {
		if code == "" {
			s.githubTokenError(w, r, "bad_verification_code", "missing code")
			return
		}
		s.githubTokenError(w, r, "bad_verification_code", st.String())
		return
	}
	if ac.req.clientID != s.config().ClientID {
		s.githubTokenError(w, r, "bad_verification_code", "code issued to another app")
		return
	}
	if ru, ok := p["redirect_uri"]; ok && ru != ac.req.redirectURI {
		s.githubTokenError(w, r, "redirect_uri_mismatch",
			"redirect_uri "+strconvQuote(ru)+" differs from "+strconvQuote(ac.req.redirectURI)+", the one the code was issued for")
		return
	}
	if ac.req.challenge != "" {
		v := p["code_verifier"]
		if v == "" {
			s.githubTokenError(w, r, "bad_verification_code", "the code was issued with a code_challenge but no code_verifier was sent")
			return
		}
		if !pkceMatches("S256", ac.req.challenge, v) {
			s.githubTokenError(w, r, "bad_verification_code", "code_verifier does not match the code_challenge")
			return
		}
	}
	if s.githubUnverified() {
		s.githubTokenError(w, r, "unverified_user_email", "the user's primary email is not verified")
		return
	}
	if _, st := s.consumeCode(code); st != codeOK {
		s.githubTokenError(w, r, "bad_verification_code", st.String())
		return
	}
	s.githubIssue(w, r, s.sessionOf(ac.session), ac.req.scope)
}

func (s *Server) githubUnverified() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.gh.user.Emails {
		if e.Primary && !e.Verified {
			return true
		}
	}
	return false
}

func (s *Server) githubRefreshGrant(w http.ResponseWriter, r *http.Request, p map[string]string) {
	rt := p["refresh_token"]
	if rt == "" {
		s.githubTokenError(w, r, "bad_refresh_token", "missing refresh_token")
		return
	}
	old, st, reason := s.checkRefresh(rt, s.config().ClientID)
	if st != refreshOK {
		s.githubTokenError(w, r, "bad_refresh_token", reason)
		return
	}
	// "Once you use a refresh token, that refresh token and the old user
	// access token will no longer work."
	s.revoke(rt, "used for a refresh", true)
	s.githubIssue(w, r, s.sessionOf(old.session), old.scope)
}

func (s *Server) githubIssue(w http.ResponseWriter, r *http.Request, sess *session, scope string) {
	cfg := s.config()
	now := s.clock()
	if !cfg.GitHub.App {
		access := "gho_" + randAlnum(36)
		s.storePair(sess, scope, access, time.Time{}, "", time.Time{})
		githubWrite(w, r, []githubKV{{"access_token", access}, {"scope", scope}, {"token_type", "bearer"}}, nil)
		return
	}
	access := "ghu_" + randAlnum(36)
	if !cfg.GitHub.ExpiringTokens {
		s.storePair(sess, "", access, time.Time{}, "", time.Time{})
		githubWrite(w, r, []githubKV{{"access_token", access}, {"scope", ""}, {"token_type", "bearer"}}, nil)
		return
	}
	ttl := s.accessTTL()
	refresh := "ghr_" + randAlnum(76)
	s.storePair(sess, "", access, now.Add(ttl), refresh, now.Add(githubRefreshTTL))
	githubWrite(w, r, []githubKV{
		{"access_token", access},
		{"expires_in", strconv.FormatInt(int64(ttl/time.Second), 10)},
		{"refresh_token", refresh},
		{"refresh_token_expires_in", strconv.FormatInt(int64(githubRefreshTTL/time.Second), 10)},
		{"scope", ""},
		{"token_type", "bearer"},
	}, map[string]bool{"expires_in": true, "refresh_token_expires_in": true})
}

// ---------------------------------------------------------------------------
// REST API

var githubAPIVersions = map[string]bool{"2022-11-28": true, "2026-03-10": true}

func (s *Server) githubAPIError(w http.ResponseWriter, r *http.Request, status int, reason, message, docURL string) {
	s.rejected(r, reason)
	writeGitHubJSON(w, status, map[string]any{"message": message, "documentation_url": docURL})
}

func writeGitHubJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// githubAuth extracts the token of "Authorization: Bearer T" or
// "Authorization: token T".
func githubAuth(r *http.Request) string {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !(strings.EqualFold(scheme, "bearer") || strings.EqualFold(scheme, "token")) {
		return ""
	}
	return strings.TrimSpace(tok)
}

// githubAPI wraps an API handler with what every endpoint does: injected
// faults, User-Agent and version checks, authentication, rate limits, the
// scope check for OAuth tokens (accepted nil: no scope needed).
func (s *Server) githubAPI(doc string, accepted []string, h func(w http.ResponseWriter, r *http.Request, t *token)) http.HandlerFunc {
	docURL := githubDocsREST
	if doc != "" {
		docURL += "/" + doc
	} else {
		docURL += "/users/users#get-the-authenticated-user"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if s.githubFault(w) {
			return
		}
		if strings.TrimSpace(r.Header.Get("User-Agent")) == "" {
			s.rejected(r, "no User-Agent header")
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("Request forbidden by administrative rules.\nPlease make sure your request has a User-Agent header.\n"))
			return
		}
		if v := r.Header.Get("X-GitHub-Api-Version"); v != "" && !githubAPIVersions[v] {
			s.githubAPIError(w, r, http.StatusBadRequest, "unsupported X-GitHub-Api-Version "+strconvQuote(v),
				"API version "+strconvQuote(v)+" is not supported.", githubDocsREST+"/about-the-rest-api/api-versions")
			return
		}
		raw := githubAuth(r)
		if raw == "" {
			s.githubAPIError(w, r, http.StatusUnauthorized, "no token (Authorization: Bearer or token)", "Requires authentication", docURL)
			return
		}
		t, reason := s.checkAccess(raw)
		if reason != "" {
			s.githubAPIError(w, r, http.StatusUnauthorized, reason, "Bad credentials", githubDocsREST)
			return
		}
		cfg := s.config()
		if !s.githubRate(w) {
			return
		}
		if !cfg.GitHub.App {
			w.Header().Set("X-OAuth-Scopes", strings.ReplaceAll(t.scope, ",", ", "))
			w.Header().Set("X-Accepted-OAuth-Scopes", strings.Join(accepted, ", "))
			if accepted != nil && !githubHasScope(t.scope, accepted) {
				reason := "token scopes " + strconvQuote(t.scope) + " lack one of " + strings.Join(accepted, ", ")
				if strings.HasSuffix(r.URL.Path, "/user/orgs") {
					s.githubAPIError(w, r, http.StatusForbidden, reason,
						"You need at least read:org scope or user scope to list your organizations.", docURL)
					return
				}
				s.githubAPIError(w, r, http.StatusNotFound, reason, "Not Found", docURL)
				return
			}
		}
		h(w, r, t)
	}
}

// githubRate applies the rate limit and sets its headers; false: limited.
func (s *Server) githubRate(w http.ResponseWriter) bool {
	now := s.clock()
	s.mu.Lock()
	g := s.gh
	ent := s.cfg.GitHub.Enterprise
	if g.rateStatus != 0 && !now.Before(g.rateReset) {
		g.rateStatus = 0 // the window has reset
	}
	if !now.Before(g.winReset) {
		g.winReset = now.Add(githubRateWindow)
		g.rateUsed = 0
	}
	limited, status, reset := g.rateStatus != 0, g.rateStatus, g.rateReset
	used := g.rateUsed
	if !limited && !ent {
		if used >= githubRateLimit {
			limited, status, reset = true, http.StatusForbidden, g.winReset
		} else {
			used++
			g.rateUsed = used
			reset = g.winReset
		}
	}
	id := g.user.ID
	s.mu.Unlock()
	if ent && !limited {
		return true // GHES: rate limits are off by default
	}
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(githubRateLimit))
	h.Set("X-RateLimit-Resource", "core")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	if limited {
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Used", strconv.Itoa(githubRateLimit))
		s.count("rate_limited")
		writeGitHubJSON(w, status, map[string]any{
			"message":           fmt.Sprintf("API rate limit exceeded for user ID %d.", id),
			"documentation_url": githubDocsRateLimit,
		})
		return false
	}
	h.Set("X-RateLimit-Remaining", strconv.Itoa(githubRateLimit-used))
	h.Set("X-RateLimit-Used", strconv.Itoa(used))
	return true
}

// githubBases returns the web and API base URLs.
func (s *Server) githubBases(r *http.Request) (web, api string) {
	web = s.baseURL(r)
	s.mu.Lock()
	ent, apiBase := s.cfg.GitHub.Enterprise, s.apiBase
	s.mu.Unlock()
	if ent {
		return web, web + "/api/v3"
	}
	if apiBase == "" {
		apiBase = web
	}
	return web, apiBase
}

func (s *Server) githubSnapshot() (GitHubUser, map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyGitHubUser(s.gh.user), deepCopy(s.user), s.userSet
}

var githubPrivateFields = []string{"private_gists", "total_private_repos", "owned_private_repos",
	"disk_usage", "collaborators", "two_factor_authentication", "plan", "business_plus", "ldap_dn"}

func (s *Server) githubUser(w http.ResponseWriter, r *http.Request, t *token) {
	u, raw, rawSet := s.githubSnapshot()
	web, api := s.githubBases(r)
	body := renderGitHubUser(u, web, api, s.config().GitHub.Enterprise)
	if rawSet {
		body = raw
	}
	// "OAuth app tokens and personal access tokens (classic) need the user
	// scope in order for the response to include private profile
	// information."
	if !s.config().GitHub.App && !githubHasScope(t.scope, []string{"user"}) {
		for _, k := range githubPrivateFields {
			delete(body, k)
		}
	}
	writeGitHubJSON(w, http.StatusOK, body)
}

func nullable(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func githubNodeID(kind string, id int64) string {
	return base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("0%d:%s%d", len(kind), kind, id)))
}

// renderGitHubUser is the private-user JSON of "Get the authenticated
// user", identity fields from u, the rest as in the docs' example.
func renderGitHubUser(u GitHubUser, web, api string, ent bool) map[string]any {
	nodeID := u.NodeID
	if nodeID == "" {
		nodeID = githubNodeID("User", u.ID)
	}
	avatar := fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", u.ID)
	if ent {
		avatar = fmt.Sprintf("%s/avatars/u/%d?", web, u.ID)
	}
	users := api + "/users/" + u.Login
	return map[string]any{
		"login": u.Login, "id": u.ID, "node_id": nodeID, "avatar_url": avatar, "gravatar_id": "",
		"url": users, "html_url": web + "/" + u.Login,
		"followers_url": users + "/followers", "following_url": users + "/following{/other_user}",
		"gists_url": users + "/gists{/gist_id}", "starred_url": users + "/starred{/owner}{/repo}",
		"subscriptions_url": users + "/subscriptions", "organizations_url": users + "/orgs",
		"repos_url": users + "/repos", "events_url": users + "/events{/privacy}",
		"received_events_url": users + "/received_events",
		"type":                "User", "site_admin": false,
		"name": nullable(u.Name), "company": "GitHub", "blog": "https://github.com/blog",
		"location": "San Francisco", "email": nullable(u.Email), "hireable": false,
		"bio": "There once was...", "twitter_username": "monatheoctocat",
		"public_repos": 2, "public_gists": 1, "followers": 20, "following": 0,
		"created_at": "2008-01-14T04:33:35Z", "updated_at": "2008-01-14T04:33:35Z",
		"private_gists": 81, "total_private_repos": 100, "owned_private_repos": 100,
		"disk_usage": 10000, "collaborators": 8, "two_factor_authentication": true,
		"plan": map[string]any{"name": "Medium", "space": 400, "private_repos": 20, "collaborators": 0},
	}
}

func githubDerivedID(parts ...string) int64 {
	h := fnv.New32a()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	return int64(h.Sum32()%1_000_000_000) + 1_000_000
}

func (o GitHubOrg) id() int64 {
	if o.ID != 0 {
		return o.ID
	}
	return githubDerivedID("org", o.Login)
}

func renderGitHubOrg(o GitHubOrg, api string) map[string]any {
	base := api + "/orgs/" + o.Login
	return map[string]any{
		"login": o.Login, "id": o.id(), "node_id": githubNodeID("Organization", o.id()),
		"url": base, "repos_url": base + "/repos", "events_url": base + "/events",
		"hooks_url": base + "/hooks", "issues_url": base + "/issues",
		"members_url": base + "/members{/member}", "public_members_url": base + "/public_members{/member}",
		"avatar_url":  "https://github.com/images/error/octocat_happy.gif",
		"description": nullable(o.Description),
	}
}

func renderGitHubTeam(t GitHubTeam, org GitHubOrg, web, api string) map[string]any {
	id := t.ID
	if id == 0 {
		id = githubDerivedID("team", t.Org, t.Slug)
	}
	name, privacy, perm := t.Name, t.Privacy, t.Permission
	if name == "" {
		name = t.Slug
	}
	if privacy == "" {
		privacy = "closed"
	}
	if perm == "" {
		perm = "pull"
	}
	orgJSON := renderGitHubOrg(org, api)
	orgName := org.Name
	if orgName == "" {
		orgName = org.Login
	}
	for k, v := range map[string]any{
		"name": orgName, "company": nil, "blog": nil, "location": nil, "email": nil,
		"is_verified": false, "has_organization_projects": true, "has_repository_projects": true,
		"public_repos": 0, "public_gists": 0, "followers": 0, "following": 0,
		"html_url": web + "/" + org.Login, "created_at": "2008-01-14T04:33:35Z",
		"updated_at": "2017-08-17T12:37:15Z", "type": "Organization",
	} {
		orgJSON[k] = v
	}
	teamURL := fmt.Sprintf("%s/teams/%d", api, id)
	return map[string]any{
		"id": id, "node_id": githubNodeID("Team", id), "url": teamURL,
		"html_url": web + "/orgs/" + t.Org + "/teams/" + t.Slug,
		"name":     name, "slug": t.Slug, "description": nullable(t.Description),
		"privacy": privacy, "notification_setting": "notifications_enabled", "permission": perm,
		"members_url": teamURL + "/members{/member}", "repositories_url": teamURL + "/repos",
		"parent": nil, "members_count": 1, "repos_count": 0,
		"created_at": "2017-07-14T16:53:42Z", "updated_at": "2017-08-17T12:37:15Z",
		"organization": orgJSON,
	}
}

func (s *Server) githubEmails(w http.ResponseWriter, r *http.Request, _ *token) {
	u, _, _ := s.githubSnapshot()
	items := make([]any, len(u.Emails))
	for i, e := range u.Emails {
		items[i] = map[string]any{"email": e.Email, "primary": e.Primary, "verified": e.Verified, "visibility": nullable(e.Visibility)}
	}
	s.githubPage(w, r, items)
}

func (s *Server) githubOrgs(w http.ResponseWriter, r *http.Request, _ *token) {
	if s.config().GitHub.App {
		// "Requests using a fine-grained access token will receive a 200
		// Success response with an empty list."
		s.githubPage(w, r, nil)
		return
	}
	u, _, _ := s.githubSnapshot()
	_, api := s.githubBases(r)
	items := make([]any, len(u.Orgs))
	for i, o := range u.Orgs {
		items[i] = renderGitHubOrg(o, api)
	}
	s.githubPage(w, r, items)
}

func (s *Server) githubTeams(w http.ResponseWriter, r *http.Request, _ *token) {
	u, _, _ := s.githubSnapshot()
	web, api := s.githubBases(r)
	orgs := map[string]GitHubOrg{}
	for _, o := range u.Orgs {
		orgs[o.Login] = o
	}
	items := make([]any, len(u.Teams))
	for i, t := range u.Teams {
		o, ok := orgs[t.Org]
		if !ok {
			o = GitHubOrg{Login: t.Org}
		}
		items[i] = renderGitHubTeam(t, o, web, api)
	}
	s.githubPage(w, r, items)
}

// githubPage answers one page of items with its Link header.
func (s *Server) githubPage(w http.ResponseWriter, r *http.Request, items []any) {
	q := r.URL.Query()
	perPage, page := 30, 1
	perGiven := false
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v > 0 {
		perPage, perGiven = v, true
		if perPage > 100 {
			perPage = 100
		}
	}
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v > 0 {
		page = v
	}
	last := (len(items) + perPage - 1) / perPage
	if last < 1 {
		last = 1
	}
	from, to := (page-1)*perPage, page*perPage
	if from > len(items) {
		from = len(items)
	}
	if to > len(items) {
		to = len(items)
	}
	out := items[from:to]
	if out == nil {
		out = []any{}
	}
	if len(items) > perPage || page > 1 {
		_, api := s.githubBases(r)
		path := strings.TrimPrefix(r.URL.Path, "/api/v3")
		link := func(p int, rel string) string {
			u := api + path + "?"
			if perGiven {
				u += "per_page=" + strconv.Itoa(perPage) + "&"
			}
			return "<" + u + "page=" + strconv.Itoa(p) + ">; rel=\"" + rel + "\""
		}
		var links []string
		if page > 1 {
			prev := page - 1
			if prev > last {
				prev = last
			}
			links = append(links, link(prev, "prev"))
		}
		if page < last {
			links = append(links, link(page+1, "next"), link(last, "last"))
		}
		if page > 1 {
			links = append(links, link(1, "first"))
		}
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	writeGitHubJSON(w, http.StatusOK, out)
}

// githubDeleteToken is "Delete an app token" (grant=false) and "Delete an
// app authorization" (grant=true).
func (s *Server) githubDeleteToken(grant bool) http.HandlerFunc {
	doc := githubDocsREST + "/apps/oauth-applications#delete-an-app-token"
	if grant {
		doc = githubDocsREST + "/apps/oauth-applications#delete-an-app-authorization"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if s.githubFault(w) {
			return
		}
		cfg := s.config()
		id, secret, ok := r.BasicAuth()
		if !ok || id != cfg.ClientID || !secretEqual(secret, cfg.ClientSecret) {
			s.githubAPIError(w, r, http.StatusNotFound, "HTTP Basic with the app's client_id and client_secret is required", "Not Found", doc)
			return
		}
		var body map[string]any
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&body); err != nil || body == nil {
			s.githubAPIError(w, r, http.StatusBadRequest, "body is not a JSON object", "Problems parsing JSON", doc)
			return
		}
		tok, _ := body["access_token"].(string)
		if tok == "" {
			s.githubAPIError(w, r, http.StatusUnprocessableEntity, "access_token missing from the body", "Invalid request.\n\n\"access_token\" wasn't supplied.", doc)
			return
		}
		t := s.tokenInfo(tok)
		if t == nil || t.kind != kindAccess || t.clientID != cfg.ClientID {
			s.githubAPIError(w, r, http.StatusNotFound, "unknown access_token", "Not Found", doc)
			return
		}
		if grant {
			s.RevokeAuthorization()
		} else {
			s.revoke(tok, "deleted with DELETE /applications/{client_id}/token", false)
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

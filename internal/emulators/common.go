// Package emulators contains strict, in-process emulators of the
// non-standard OAuth 2.0 / OIDC providers authgate has to work with:
//
//   - NTPU       (Open NTPU OAuth, /work/shared/providers/ntpu.txt)
//   - Omniport   (IIT Roorkee, Django OAuth Toolkit, omniport.txt)
//   - Proto      (S.A. Proto, Laravel Passport, proto.txt)
//   - Chaster    (Keycloak OIDC realm "app", chaster.txt)
//   - Citesphere (Spring Security OAuth2, citesphere.txt)
//   - GitHub     (OAuth apps, GitHub Apps, GitHub Enterprise Server;
//     docs.github.com, see github.go for the pages followed)
//
// Each emulator is written from the provider's public documentation and is
// deliberately strict: it refuses what the real provider would refuse
// (wrong client secret, wrong redirect URI, reused or expired codes, wrong
// encoding of the token request, missing required parameters, ...). Where
// a document is vague the emulator picks the strict but reasonable reading
// and says so in a comment next to the code that implements it.
//
// All emulators share one [Server] type; the per-provider behaviour lives in
// a *provider value (paths, lifetimes, redirects) plus the provider's own
// handlers in ntpu.go, omniport.go, proto.go, chaster.go, citesphere.go
// and github.go.
//
// Every refused request increments Count("rejected") and is described by
// LastRejection(). Servers listen on 127.0.0.1 only, keep every store
// bounded and are safe for concurrent use.
package emulators

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math/big"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config configures one emulator instance. Zero values get provider
// defaults (see each New* constructor).
type Config struct {
	// ClientID and ClientSecret of the single registered client. Defaults:
	// "authgate-client" / "authgate-secret".
	ClientID, ClientSecret string
	// RedirectURI is the registered redirect (callback) URI. Providers that
	// check it require an exact string match. It can also be set after
	// construction with SetRedirectURI (useful when the relying party's
	// port is only known later).
	RedirectURI string
	// User is the signed-in user's data in the provider's own userinfo JSON
	// shape. Nil selects the provider default (DefaultUser).
	User map[string]any
	// AccessTTL overrides the provider's access-token lifetime.
	AccessTTL time.Duration
	// Now is the clock (default time.Now). Codes, tokens and sessions are
	// checked against it; see also SetNow.
	Now func() time.Time
	// AutoApprove makes the authorize endpoint approve at once (302 to the
	// redirect URI). When false it renders an HTML consent page with two
	// submit buttons, id="approve" and id="deny", that POST back.
	AutoApprove bool
	// GitHub (GitHub only) selects OAuth app or GitHub App, expiring user
	// tokens, GitHub Enterprise Server's layout, and the user.
	GitHub GitHubConfig
	// PostLogoutRedirectURIs (Chaster only) lists the valid
	// post_logout_redirect_uri values (exact match). When empty, any URI
	// with the same scheme://host:port as RedirectURI is accepted (the
	// Keycloak client then behaves as if "Valid post logout redirect URIs"
	// were "<origin>/*").
	PostLogoutRedirectURIs []string
}

const (
	defaultClientID     = "authgate-client"
	defaultClientSecret = "authgate-secret"

	maxEntries   = 10000 // per store (codes, tokens, sessions)
	maxPending   = 1000  // consent pages / logout confirmations awaiting a click
	maxBodyBytes = 1 << 20
	pendingTTL   = 10 * time.Minute
)

const (
	kindAccess  = "access"
	kindRefresh = "refresh"
	kindID      = "id"
)

// provider is the data that distinguishes one emulated provider.
type provider struct {
	name        string // "ntpu", "omniport", ...
	display     string // shown on HTML pages
	codeTTL     time.Duration
	accessTTL   time.Duration
	refreshTTL  time.Duration // 0: refresh tokens never expire
	consentPath string        // where the consent page POSTs back
	defaultUser func() map[string]any
	routes      func(s *Server)
	// notFound, if set, answers unknown paths in the provider's own format.
	notFound func(s *Server, w http.ResponseWriter, r *http.Request)
	// approve issues a code for an approved request and returns the
	// redirect location; deny returns the location used on denial.
	approve func(s *Server, r *http.Request, req *authRequest) string
	deny    func(s *Server, r *http.Request, req *authRequest) string
}

// authRequest is a validated authorization request.
type authRequest struct {
	id              string // consent page id
	clientID        string
	redirectURI     string // effective redirect URI
	redirectGiven   bool   // redirect_uri was present in the request
	state           string
	stateGiven      bool
	scope           string
	nonce           string
	challenge       string // PKCE
	challengeMethod string
	inheritScope    bool // GitHub: no scope asked; the token gets every scope granted so far
	created         time.Time
	seq             uint64
}

type authCode struct {
	req     *authRequest
	session string
	expires time.Time
	used    bool
	seq     uint64
}

type session struct {
	id       string
	clientID string
	scope    string
	nonce    string
	authTime time.Time
	ended    bool
	seq      uint64
}

type token struct {
	value    string
	kind     string
	clientID string
	scope    string
	session  string
	issued   time.Time
	expires  time.Time // zero: never
	revoked  string    // non-empty: why it is no longer valid
	pair     string    // the token issued together with this one
	seq      uint64
}

type route struct {
	name string
	h    http.HandlerFunc
}

// Server is one running emulator. Create it with NewNTPU, NewOmniport,
// NewProto, NewChaster, NewCitesphere, NewGitHub (or New), then Start it.
type Server struct {
	p *provider

	clockMu sync.RWMutex
	now     func() time.Time

	mu            sync.Mutex
	cfg           Config
	user          map[string]any
	userSet       bool // Config.User given or SetUser called
	counts        map[string]int
	lastRejection string
	denyNext      bool
	seq           uint64
	pending       map[string]*authRequest
	logouts       map[string]*logoutRequest
	codes         map[string]*authCode
	sessions      map[string]*session
	tokens        map[string]*token
	base          string

	routes  map[string]map[string]route // path -> method -> route
	hmacKey []byte
	hmacKID string

	ln net.Listener
	hs *http.Server

	// A second host, for a provider whose API lives on its own origin
	// (GitHub.com: github.com and api.github.com). nil apiRoutes: none.
	apiRoutes map[string]map[string]route
	apiLn     net.Listener
	apiHS     *http.Server
	apiBase   string

	gh *githubState // GitHub only
}

// Providers lists the provider names accepted by New.
var Providers = []string{"ntpu", "omniport", "proto", "chaster", "citesphere", "github"}

// New returns the emulator for the named provider (see Providers).
func New(name string, cfg Config) (*Server, error) {
	switch strings.ToLower(name) {
	case "ntpu":
		return NewNTPU(cfg), nil
	case "omniport":
		return NewOmniport(cfg), nil
	case "proto":
		return NewProto(cfg), nil
	case "chaster":
		return NewChaster(cfg), nil
	case "citesphere":
		return NewCitesphere(cfg), nil
	case "github":
		return NewGitHub(cfg), nil
	}
	return nil, fmt.Errorf("emulators: unknown provider %q", name)
}

func newServer(p *provider, cfg Config) *Server {
	if cfg.ClientID == "" {
		cfg.ClientID = defaultClientID
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = defaultClientSecret
	}
	if cfg.AccessTTL <= 0 {
		cfg.AccessTTL = 0 // provider default, resolved by accessTTL()
	}
	user := cfg.User
	if user == nil {
		user = p.defaultUser()
	}
	s := &Server{
		p:        p,
		cfg:      cfg,
		user:     deepCopy(user),
		userSet:  cfg.User != nil,
		counts:   map[string]int{},
		pending:  map[string]*authRequest{},
		logouts:  map[string]*logoutRequest{},
		codes:    map[string]*authCode{},
		sessions: map[string]*session{},
		tokens:   map[string]*token{},
		routes:   map[string]map[string]route{},
		hmacKey:  randBytes(32),
		hmacKID:  newUUID(),
	}
	s.now = cfg.Now
	if s.now == nil {
		s.now = time.Now
	}
	p.routes(s)
	return s
}

// DefaultUser returns a copy of the provider's default user JSON.
func DefaultUser(provider string) map[string]any {
	switch strings.ToLower(provider) {
	case "ntpu":
		return ntpuProvider.defaultUser()
	case "omniport":
		return omniportProvider.defaultUser()
	case "proto":
		return protoProvider.defaultUser()
	case "chaster":
		return chasterProvider.defaultUser()
	case "citesphere":
		return citesphereProvider.defaultUser()
	case "github":
		return githubProvider.defaultUser()
	}
	return nil
}

// ---------------------------------------------------------------------------
// Exported API

// Start listens on 127.0.0.1:0 and serves in the background.
func (s *Server) Start() error {
	s.mu.Lock()
	if s.ln != nil {
		s.mu.Unlock()
		return errors.New("emulators: server already started")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.mu.Unlock()
		return err
	}
	var apiLn net.Listener
	if s.apiRoutes != nil {
		if apiLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			_ = ln.Close()
			s.mu.Unlock()
			return err
		}
		s.apiLn = apiLn
		s.apiBase = "http://" + apiLn.Addr().String()
		s.apiHS = newHTTPServer(http.HandlerFunc(s.serveAPI))
	}
	s.ln = ln
	s.base = "http://" + ln.Addr().String()
	s.hs = newHTTPServer(s)
	hs, apiHS := s.hs, s.apiHS
	s.mu.Unlock()
	go func() { _ = hs.Serve(ln) }()
	if apiHS != nil {
		go func() { _ = apiHS.Serve(apiLn) }()
	}
	return nil
}

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// URL is the base URL, e.g. "http://127.0.0.1:40123" (empty before Start).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base
}

// Close stops the listener and closes open connections.
func (s *Server) Close() {
	s.mu.Lock()
	hs, apiHS := s.hs, s.apiHS
	s.mu.Unlock()
	if hs != nil {
		_ = hs.Close()
	}
	if apiHS != nil {
		_ = apiHS.Close()
	}
}

// Name is the provider name ("ntpu", "omniport", "proto", "chaster",
// "citesphere").
func (s *Server) Name() string { return s.p.name }

// Config returns the effective configuration (defaults filled in).
func (s *Server) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cfg
	c.User = deepCopy(s.user)
	return c
}

// SetRedirectURI changes the registered redirect URI.
func (s *Server) SetRedirectURI(u string) {
	s.mu.Lock()
	s.cfg.RedirectURI = u
	s.mu.Unlock()
}

// Count returns how many requests were seen under name. Names:
// "authorize", "consent" (consent-page POSTs), "approved", "denied",
// "token", "token:authorization_code", "token:refresh_token", "userinfo",
// "revoke", "end_session", "discovery", "jwks", "home", "not_found",
// and "rejected" (every refused request, whatever its endpoint).
func (s *Server) Count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[name]
}

// Counts returns a copy of all counters.
func (s *Server) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		m[k] = v
	}
	return m
}

// ResetCounts zeroes all counters and the last rejection.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	s.counts = map[string]int{}
	s.lastRejection = ""
	s.mu.Unlock()
}

// LastRejection describes the last refused request ("" if none), e.g.
// "chaster: POST /auth/realms/app/protocol/openid-connect/token: invalid_grant: code already used".
func (s *Server) LastRejection() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastRejection
}

// Deny(true) makes the next authorization request be denied by the user,
// without showing the consent page, exactly as the provider reacts to a
// click on "deny". It is one-shot: it disarms itself once used. Deny(false)
// disarms it.
func (s *Server) Deny(d bool) {
	s.mu.Lock()
	s.denyNext = d
	s.mu.Unlock()
}

// IsRevoked reports whether the token (access, refresh or ID token) was
// issued by this emulator and has since been revoked, rotated away,
// replaced on refresh, or invalidated by logout.
func (s *Server) IsRevoked(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[tok]
	return t != nil && t.revoked != ""
}

// SetUser replaces the signed-in user's data at runtime, in the provider's
// own userinfo JSON shape (nil restores DefaultUser). The userinfo endpoint
// answers with it from the next request on, and every token issued from
// now on (code exchange or refresh) carries it; tokens already issued keep
// the claims they were signed with, as a real provider's JWTs do. A user
// "who lacks optional claims" is simply a map without those keys.
func (s *Server) SetUser(user map[string]any) {
	if user == nil {
		user = s.p.defaultUser()
	}
	u := deepCopy(user)
	s.mu.Lock()
	s.user = u
	s.userSet = true
	s.mu.Unlock()
}

// SetAccessTTL changes the access-token lifetime for tokens issued from
// now on (0 restores the provider's default); Config.AccessTTL sets it at
// construction. Tokens already issued keep their expiry.
func (s *Server) SetAccessTTL(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s.mu.Lock()
	s.cfg.AccessTTL = d
	s.mu.Unlock()
}

// Revoke invalidates one issued token (access, refresh or ID token) as an
// administrator would, without touching the token issued with it. It
// reports whether the token was known. The provider then answers with its
// own invalid-token response, exactly as for a token revoked through its
// revocation endpoint.
func (s *Server) Revoke(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[tok]
	if t == nil {
		return false
	}
	if t.revoked == "" {
		t.revoked = "revoked by the test (Revoke)"
	}
	return true
}

// RevokeAll ends every session and invalidates every token issued so far
// (what an administrator revoking all of the user's grants does). Codes
// not yet exchanged are invalidated too. Later authorizations work again.
// None of the five providers' documents says how a disabled or deleted
// user is answered, so this is the closest documented behaviour: each
// emulator answers with its own invalid-token / invalid-grant response.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		sess.ended = true
	}
	for _, t := range s.tokens {
		if t.revoked == "" {
			t.revoked = "revoked by the test (RevokeAll)"
		}
	}
	for _, c := range s.codes {
		c.used = true
	}
}

// SetNow replaces the clock (nil restores time.Now).
func (s *Server) SetNow(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	s.clockMu.Lock()
	s.now = now
	s.clockMu.Unlock()
}

// ServeHTTP dispatches on exact path and method. Unknown paths (404) and
// methods (405) are refused and counted as rejected.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.dispatch(w, r, s.routes)
}

// serveAPI serves the provider's separate API host (see apiRoutes).
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.dispatch(w, r, s.apiRoutes)
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, routes map[string]map[string]route) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	methods := routes[r.URL.Path]
	if methods == nil {
		s.count("not_found")
		if s.p.notFound != nil {
			s.p.notFound(s, w, r)
			return
		}
		s.rejectText(w, r, http.StatusNotFound, "no such endpoint")
		return
	}
	rt, ok := methods[r.Method]
	if !ok {
		allowed := make([]string, 0, len(methods))
		for m := range methods {
			allowed = append(allowed, m)
		}
		sort.Strings(allowed)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		s.count(methods[allowed[0]].name)
		s.rejectJSON(w, r, http.StatusMethodNotAllowed,
			"method "+r.Method+" not allowed (allowed: "+strings.Join(allowed, ", ")+")",
			map[string]any{"error": "method_not_allowed", "error_description": "Request method '" + r.Method + "' not supported"})
		return
	}
	s.count(rt.name)
	rt.h(w, r)
}

// ---------------------------------------------------------------------------
// Internals: routing, counters, rejections

func (s *Server) handle(method, path, name string, h http.HandlerFunc) {
	addRoute(s.routes, method, path, name, h)
}

// handleAPI registers a route on the separate API host.
func (s *Server) handleAPI(method, path, name string, h http.HandlerFunc) {
	if s.apiRoutes == nil {
		s.apiRoutes = map[string]map[string]route{}
	}
	addRoute(s.apiRoutes, method, path, name, h)
}

func addRoute(routes map[string]map[string]route, method, path, name string, h http.HandlerFunc) {
	if routes[path] == nil {
		routes[path] = map[string]route{}
	}
	routes[path][method] = route{name: name, h: h}
}

func (s *Server) count(name string) {
	s.mu.Lock()
	s.counts[name]++
	s.mu.Unlock()
}

func (s *Server) clock() time.Time {
	s.clockMu.RLock()
	f := s.now
	s.clockMu.RUnlock()
	return f()
}

func (s *Server) config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *Server) userCopy() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return deepCopy(s.user)
}

func (s *Server) accessTTL() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.AccessTTL > 0 {
		return s.cfg.AccessTTL
	}
	return s.p.accessTTL
}

// baseURL is the server's URL, or derived from the request when the
// Server is used as a plain http.Handler.
func (s *Server) baseURL(r *http.Request) string {
	s.mu.Lock()
	b := s.base
	s.mu.Unlock()
	if b == "" && r != nil {
		b = "http://" + r.Host
	}
	return b
}

func (s *Server) rejected(r *http.Request, reason string) {
	s.mu.Lock()
	s.counts["rejected"]++
	s.lastRejection = s.p.name + ": " + r.Method + " " + r.URL.Path + ": " + reason
	s.mu.Unlock()
}

func (s *Server) rejectJSON(w http.ResponseWriter, r *http.Request, status int, reason string, body any) {
	s.rejected(r, reason)
	writeJSON(w, status, body)
}

func (s *Server) rejectText(w http.ResponseWriter, r *http.Request, status int, reason string) {
	s.rejected(r, reason)
	http.Error(w, reason, status)
}

// rejectPage renders the provider's HTML error page: the user stays at the
// provider, nothing is sent back to the client application.
func (s *Server) rejectPage(w http.ResponseWriter, r *http.Request, status int, reason, message string) {
	s.rejected(r, reason)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = errorPage.Execute(w, map[string]string{"Provider": s.p.display, "Message": message})
}

// rejectRedirect sends the error back to the client's redirect URI.
func (s *Server) rejectRedirect(w http.ResponseWriter, r *http.Request, location, reason string) {
	s.rejected(r, reason)
	redirect(w, location)
}

func redirect(w http.ResponseWriter, location string) {
	w.Header().Set("Location", location)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	if v == nil {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// ---------------------------------------------------------------------------
// Consent

var consentPage = template.Must(template.New("consent").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Provider}} – Authorize {{.Client}}</title></head>
<body>
<h1>{{.Provider}}</h1>
<p>The application <strong id="client">{{.Client}}</strong> wants to access your account{{if .Scope}} (scope: <code id="scope">{{.Scope}}</code>){{end}}.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="request_id" value="{{.ID}}">
<button type="submit" id="approve" name="decision" value="approve">Approve</button>
<button type="submit" id="deny" name="decision" value="deny">Deny</button>
</form>
</body></html>
`))

var errorPage = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Provider}} – Error</title></head>
<body><h1>{{.Provider}}</h1><p id="error">{{.Message}}</p></body></html>
`))

var infoPage = template.Must(template.New("info").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Provider}}</title></head>
<body><h1>{{.Provider}}</h1><p id="message">{{.Message}}</p></body></html>
`))

func (s *Server) writeInfoPage(w http.ResponseWriter, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_ = infoPage.Execute(w, map[string]string{"Provider": s.p.display, "Message": message})
}

// decide finishes a validated authorization request: the one-shot Deny
// flag wins, then AutoApprove, else the consent page is shown.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, req *authRequest) {
	now := s.clock()
	s.mu.Lock()
	deny := s.denyNext
	s.denyNext = false
	auto := s.cfg.AutoApprove
	s.mu.Unlock()
	if deny {
		s.finish(w, r, req, false)
		return
	}
	if auto {
		s.finish(w, r, req, true)
		return
	}
	req.id = randHex(16)
	req.created = now
	s.mu.Lock()
	s.seq++
	req.seq = s.seq
	evict(s.pending, maxPending, func(p *authRequest) bool { return now.Sub(p.created) > pendingTTL },
		func(p *authRequest) uint64 { return p.seq })
	s.pending[req.id] = req
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = consentPage.Execute(w, map[string]string{
		"Provider": s.p.display, "Client": req.clientID, "Scope": req.scope,
		"Action": s.p.consentPath, "ID": req.id,
	})
}

// consent handles the POST from the consent page.
func (s *Server) consent(w http.ResponseWriter, r *http.Request) {
	if mediaType(r) != "application/x-www-form-urlencoded" {
		s.rejectPage(w, r, http.StatusBadRequest, "consent form must be form-encoded", "Invalid request.")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.rejectPage(w, r, http.StatusBadRequest, "consent form: "+err.Error(), "Invalid request.")
		return
	}
	id := r.PostForm.Get("request_id")
	now := s.clock()
	s.mu.Lock()
	req := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if req == nil || now.Sub(req.created) > pendingTTL {
		s.rejectPage(w, r, http.StatusBadRequest, "unknown or expired consent request "+strconvQuote(id), "Your authorization request has expired. Please start again.")
		return
	}
	switch r.PostForm.Get("decision") {
	case "approve":
		s.finish(w, r, req, true)
	case "deny":
		s.finish(w, r, req, false)
	default:
		s.rejectPage(w, r, http.StatusBadRequest, "consent decision must be approve or deny", "Invalid request.")
	}
}

func (s *Server) finish(w http.ResponseWriter, r *http.Request, req *authRequest, approved bool) {
	if approved {
		s.count("approved")
		redirect(w, s.p.approve(s, r, req))
		return
	}
	s.count("denied")
	redirect(w, s.p.deny(s, r, req))
}

// ---------------------------------------------------------------------------
// Stores

// newSession records the signed-in user's session with the client; codes
// and tokens hang off it (logout ends it).
func (s *Server) newSession(req *authRequest) *session {
	now := s.clock()
	sess := &session{id: newUUID(), clientID: req.clientID, scope: req.scope, nonce: req.nonce, authTime: now}
	s.mu.Lock()
	s.seq++
	sess.seq = s.seq
	evict(s.sessions, maxEntries, func(x *session) bool { return x.ended }, func(x *session) uint64 { return x.seq })
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	return sess
}

func (s *Server) storeCode(value string, req *authRequest, sess *session) {
	now := s.clock()
	c := &authCode{req: req, session: sess.id, expires: now.Add(s.p.codeTTL)}
	s.mu.Lock()
	s.seq++
	c.seq = s.seq
	evict(s.codes, maxEntries, func(x *authCode) bool { return x.used || now.After(x.expires) },
		func(x *authCode) uint64 { return x.seq })
	s.codes[value] = c
	s.mu.Unlock()
}

type codeStatus int

const (
	codeOK codeStatus = iota
	codeUnknown
	codeUsed
	codeExpired
)

func (c codeStatus) String() string {
	return [...]string{"ok", "unknown authorization code", "authorization code already used", "authorization code expired"}[c]
}

// lookupCode inspects a code without consuming it.
func (s *Server) lookupCode(value string) (*authCode, codeStatus) {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.codeStatusLocked(value, now)
}

func (s *Server) codeStatusLocked(value string, now time.Time) (*authCode, codeStatus) {
	c := s.codes[value]
	switch {
	case c == nil || value == "":
		return nil, codeUnknown
	case c.used:
		return c, codeUsed
	case now.After(c.expires):
		return c, codeExpired
	}
	return c, codeOK
}

// consumeCode checks and marks a code used, atomically.
func (s *Server) consumeCode(value string) (*authCode, codeStatus) {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, st := s.codeStatusLocked(value, now)
	if c != nil {
		c.used = true
	}
	return c, st
}

func (s *Server) sessionOf(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if x := s.sessions[id]; x != nil {
		cp := *x
		return &cp
	}
	return nil
}

// storeToken records an issued token.
func (s *Server) storeToken(t *token) {
	now := s.clock()
	s.mu.Lock()
	s.seq++
	t.seq = s.seq
	evict(s.tokens, maxEntries, func(x *token) bool { return !x.expires.IsZero() && now.After(x.expires) },
		func(x *token) uint64 { return x.seq })
	s.tokens[t.value] = t
	s.mu.Unlock()
}

// storePair records an access token and (optionally) its refresh token.
func (s *Server) storePair(sess *session, scope, access string, accessExp time.Time, refresh string, refreshExp time.Time) {
	now := s.clock()
	s.storeToken(&token{value: access, kind: kindAccess, clientID: sess.clientID, scope: scope, session: sess.id,
		issued: now, expires: accessExp, pair: refresh})
	if refresh != "" {
		s.storeToken(&token{value: refresh, kind: kindRefresh, clientID: sess.clientID, scope: scope, session: sess.id,
			issued: now, expires: refreshExp, pair: access})
	}
}

// checkAccess validates a bearer access token; reason is "" when valid.
func (s *Server) checkAccess(value string) (t *token, reason string) {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	t = s.tokens[value]
	switch {
	case value == "":
		return nil, "no bearer token"
	case t == nil:
		return nil, "unknown access token"
	case t.kind != kindAccess:
		return nil, "token is a " + t.kind + " token, not an access token"
	case t.revoked != "":
		return nil, "access token is no longer valid: " + t.revoked
	case !t.expires.IsZero() && !now.Before(t.expires):
		return nil, fmt.Sprintf("access token expired at %s (now %s)", t.expires.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if sess := s.sessions[t.session]; sess != nil && sess.ended {
		return nil, "session ended"
	}
	cp := *t
	return &cp, ""
}

type refreshStatus int

const (
	refreshOK refreshStatus = iota
	refreshUnknown
	refreshWrongClient
	refreshRevoked
	refreshExpired
	refreshSessionEnded
)

// checkRefresh validates a refresh token presented by clientID.
func (s *Server) checkRefresh(value, clientID string) (*token, refreshStatus, string) {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[value]
	switch {
	case t == nil || value == "" || t.kind != kindRefresh:
		return nil, refreshUnknown, "unknown refresh token"
	case t.clientID != clientID:
		return nil, refreshWrongClient, "refresh token was issued to another client"
	case t.revoked != "":
		return nil, refreshRevoked, "refresh token is no longer valid: " + t.revoked
	case !t.expires.IsZero() && !now.Before(t.expires):
		return nil, refreshExpired, "refresh token expired at " + t.expires.Format(time.RFC3339)
	}
	if sess := s.sessions[t.session]; sess == nil || sess.ended {
		return nil, refreshSessionEnded, "session ended"
	}
	cp := *t
	return &cp, refreshOK, ""
}

// revoke marks a token revoked; with cascade, its pair too.
func (s *Server) revoke(value, why string, cascade bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[value]
	if t == nil {
		return
	}
	if t.revoked == "" {
		t.revoked = why
	}
	if cascade && t.pair != "" {
		if p := s.tokens[t.pair]; p != nil && p.revoked == "" {
			p.revoked = why
		}
	}
}

// endSession ends a session and revokes every token issued in it.
func (s *Server) endSession(id, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[id]; sess != nil {
		sess.ended = true
	}
	for _, t := range s.tokens {
		if t.session == id && t.revoked == "" {
			t.revoked = why
		}
	}
}

// tokenInfo returns a copy of a stored token (nil if unknown).
func (s *Server) tokenInfo(value string) *token {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tokens[value]; t != nil {
		cp := *t
		return &cp
	}
	return nil
}

// evict keeps a map below max entries: first drop dead entries, then the
// oldest tenth.
func evict[V any](m map[string]V, max int, dead func(V) bool, seq func(V) uint64) {
	if len(m) < max {
		return
	}
	for k, v := range m {
		if dead(v) {
			delete(m, k)
		}
	}
	if len(m) < max {
		return
	}
	type kv struct {
		k string
		s uint64
	}
	all := make([]kv, 0, len(m))
	for k, v := range m {
		all = append(all, kv{k, seq(v)})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].s < all[j].s })
	for _, e := range all[:len(all)/10+1] {
		delete(m, e.k)
	}
}

// ---------------------------------------------------------------------------
// Request helpers

// mediaType is the request's Content-Type without parameters, lowercased.
func mediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	return mt
}

// duplicated returns the first parameter that appears more than once
// (RFC 6749 §3.1/§3.2: parameters MUST NOT be included more than once).
func duplicated(v url.Values) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(v[k]) > 1 {
			return k
		}
	}
	return ""
}

// bearer extracts the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

// basicAuth returns HTTP Basic client credentials, form-decoded as
// RFC 6749 §2.3.1 requires.
func basicAuth(r *http.Request) (id, secret string, ok bool) {
	id, secret, ok = r.BasicAuth()
	if !ok {
		return "", "", false
	}
	if v, err := url.QueryUnescape(id); err == nil {
		id = v
	}
	if v, err := url.QueryUnescape(secret); err == nil {
		secret = v
	}
	return id, secret, true
}

func secretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// addQuery appends parameters (in the given order) to a URI's query.
func addQuery(uri string, kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[i+1]))
	}
	if b.Len() == 0 {
		return uri
	}
	frag := ""
	if i := strings.IndexByte(uri, '#'); i >= 0 {
		uri, frag = uri[:i], uri[i:]
	}
	sep := "?"
	if strings.Contains(uri, "?") {
		sep = "&"
		if strings.HasSuffix(uri, "?") || strings.HasSuffix(uri, "&") {
			sep = ""
		}
	}
	return uri + sep + b.String() + frag
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ---------------------------------------------------------------------------
// PKCE (RFC 7636)

var pkceValue = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// pkceMatches checks a code_verifier against the stored challenge.
func pkceMatches(method, challenge, verifier string) bool {
	switch method {
	case "S256":
		sum := sha256.Sum256([]byte(verifier))
		return secretEqual(b64(sum[:]), challenge)
	case "plain", "":
		return secretEqual(verifier, challenge)
	}
	return false
}

// ---------------------------------------------------------------------------
// Random values

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func randHex(n int) string { return hex.EncodeToString(randBytes(n)) }

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randAlnum(n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(alnum)))
	for i := range b {
		x, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err)
		}
		b[i] = alnum[x.Int64()]
	}
	return string(b)
}

func newUUID() string {
	b := randBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func deepCopy(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic("emulators: user data is not JSON: " + err.Error())
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// ---------------------------------------------------------------------------
// JWT (compact JWS) with the standard library

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaKID  string
)

// signingKey is one RSA-2048 key per test process (generating one per
// emulator would slow tests down); its kid is a thumbprint of the modulus.
func signingKey() (*rsa.PrivateKey, string) {
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(k.N.Bytes())
		rsaKey, rsaKID = k, b64(sum[:16])
	})
	return rsaKey, rsaKID
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwtEncode(header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return b64(h) + "." + b64(c)
}

func signRS256(claims map[string]any, typ string) string {
	k, kid := signingKey()
	hdr := map[string]any{"alg": "RS256", "kid": kid}
	if typ != "" {
		hdr["typ"] = typ
	}
	in := jwtEncode(hdr, claims)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return in + "." + b64(sig)
}

func (s *Server) signHMAC(alg string, claims map[string]any, typ string) string {
	hdr := map[string]any{"alg": alg, "kid": s.hmacKID}
	if typ != "" {
		hdr["typ"] = typ
	}
	in := jwtEncode(hdr, claims)
	h := hmac.New(sha256.New, s.hmacKey)
	if alg == "HS512" {
		h = hmac.New(sha512.New, s.hmacKey)
	}
	h.Write([]byte(in))
	return in + "." + b64(h.Sum(nil))
}

// verifyRS256 checks an RS256 JWT signed by signingKey and returns its
// claims. Expiry is not checked.
func verifyRS256(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, errors.New("bad header encoding")
	}
	var hdr map[string]any
	if json.Unmarshal(hb, &hdr) != nil || hdr["alg"] != "RS256" {
		return nil, errors.New("header is not RS256")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("bad signature encoding")
	}
	k, _ := signingKey()
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, sum[:], sig) != nil {
		return nil, errors.New("bad signature")
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("bad payload encoding")
	}
	var claims map[string]any
	if err := json.Unmarshal(cb, &claims); err != nil {
		return nil, errors.New("payload is not a JSON object")
	}
	return claims, nil
}

// jwks is the JSON Web Key Set of signingKey.
func jwks() map[string]any {
	k, kid := signingKey()
	e := big.NewInt(int64(k.E)).Bytes()
	return map[string]any{"keys": []any{map[string]any{
		"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(e),
	}}}
}

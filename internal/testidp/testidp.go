package testidp

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// User is an account of the identity provider.
//
// Claims are returned in ID tokens, access tokens and userinfo. "sub"
// defaults to the username and "preferred_username" to the username.
// Registered JWT claims (iss, aud, exp, iat, nbf, jti, azp, sid, auth_time,
// nonce, at_hash, scope, client_id) in Claims are ignored.
type User struct {
	Username string
	Password string
	Claims   map[string]any
}

// Client is a registered OAuth client (relying party).
//
// A client without credentials (no Secret, JWKS or
// TLSClientAuthSubjectDN) is public: it authenticates with client_id only
// (token endpoint auth method "none") and must use PKCE.
type Client struct {
	ID           string
	Secret       string
	RedirectURIs []string
	// AuthMethod, when set, is the only client authentication method the
	// client may use at the token, revocation, introspection and PAR
	// endpoints: one of the Auth* constants (client_secret_basic,
	// client_secret_post, client_secret_jwt, private_key_jwt,
	// tls_client_auth, none). When empty, every method its credentials
	// allow is accepted: Secret → client_secret_basic, client_secret_post
	// and client_secret_jwt; JWKS → private_key_jwt;
	// TLSClientAuthSubjectDN → tls_client_auth; none of them → none.
	AuthMethod string
	// JWKS holds the client's public keys (RSA or EC) for private_key_jwt
	// assertions (RS256 or ES256); the assertion's kid selects the key,
	// and a key with an alg only verifies that alg. See GenerateClientKey.
	JWKS *jose.JSONWebKeySet
	// TLSClientAuthSubjectDN is the subject distinguished name, as
	// printed by pkix.Name.String (for example "CN=app,O=Example"), that
	// the client certificate must carry for tls_client_auth (RFC 8705
	// §2.1, PKI method: the certificate must also chain to a trusted CA;
	// see StartTLS).
	TLSClientAuthSubjectDN string
	// BackchannelLogoutURI receives logout tokens (OIDC Back-Channel Logout).
	BackchannelLogoutURI string
	// PostLogoutRedirectURIs are the exact URIs accepted as
	// post_logout_redirect_uri. When empty, any URI with the same origin
	// (scheme, host, port) as one of RedirectURIs is accepted.
	PostLogoutRedirectURIs []string
}

// Options configures a Server. The zero value of every field is usable.
type Options struct {
	Users   []User
	Clients []Client

	AccessTokenTTL  time.Duration // default 5m (also the ID token lifetime)
	RefreshTokenTTL time.Duration // default 30m
	CodeTTL         time.Duration // default 1m
	SessionTTL      time.Duration // provider login session lifetime, default 10h

	// RotateRefreshTokens makes every refresh return a new refresh token and
	// invalidates the presented one (reuse → invalid_grant), like Keycloak's
	// "Revoke Refresh Token". Without it the same refresh token is returned
	// and stays valid until it expires.
	RotateRefreshTokens bool
	// RevokeFamilyOnReuse: with RotateRefreshTokens, presenting an already
	// rotated refresh token also revokes every token of that grant
	// (RFC 9700 §4.14.2 reuse detection).
	RevokeFamilyOnReuse bool

	// AutoLogin, when set, approves every authorization request as this
	// username without showing the login form.
	AutoLogin string
	// ShowHints lists usernames and passwords on the login form (demo).
	ShowHints bool

	// Now is the clock used for every token and session computation.
	Now func() time.Time
	// IssuerPath is appended to the base URL to form the issuer, e.g.
	// "/realms/app". All endpoints live under it.
	IssuerPath string
	// TokenType is the token_type of token responses, default "Bearer"
	// (Keycloak answers "Bearer"; some servers answer "bearer").
	TokenType string
	// SigningAlg is the algorithm of the primary key: "RS256" (default,
	// RSA 2048) or "ES256".
	SigningAlg string
	// RotateDropsOldKey makes RotateKey remove the previous key from the JWKS.
	RotateDropsOldKey bool
	// OmitIssParameter disables RFC 9207: no iss in authorization responses
	// and authorization_response_iss_parameter_supported is false.
	OmitIssParameter bool
	// Scopes lists the supported scopes; requests with other scopes fail
	// with invalid_scope. Default: openid profile email groups
	// offline_access roles address phone.
	Scopes []string
	// BackchannelClient is used to POST logout tokens, default a client with
	// a 5 s timeout that does not follow redirects.
	BackchannelClient *http.Client
	// ExtraJWKs are raw JSON objects appended, verbatim, to the "keys" of
	// the JWKS document after the server's own keys, for example a key
	// with an unknown kty or alg, or one without a kid: a relying party
	// must skip what it cannot use and still verify with the good keys.
	// They are not part of [Server.JWKS]. New rejects values that are not
	// JSON objects.
	ExtraJWKs []json.RawMessage
	// OpaqueAccessTokens makes access tokens random strings instead of
	// JWTs (RFC 9068); userinfo, introspection and revocation still accept
	// them, and ID tokens still carry their at_hash.
	OpaqueAccessTokens bool
	// AssertionAudience restricts the aud accepted in client assertions
	// (client_secret_jwt, private_key_jwt): "token_endpoint" requires the
	// token endpoint URL, "issuer" the issuer. Default "": the issuer, the
	// token endpoint URL or the URL of the endpoint the assertion is sent
	// to.
	AssertionAudience string
	// TLSClientCAs are extra CAs trusted for client certificates by the
	// StartTLS listener, besides the server's own test CA.
	TLSClientCAs []*x509.Certificate
	// RequirePAR makes pushed authorization requests (RFC 9126) mandatory:
	// discovery says require_pushed_authorization_requests and /authorize
	// refuses requests without request_uri (error=invalid_request).
	RequirePAR bool
	// AccessTokenAudience is the aud of access tokens (the JWT claim and
	// the introspection answer). Default: the client_id of the client the
	// token was issued to.
	AccessTokenAudience string
}

var defaultScopes = []string{"openid", "profile", "email", "groups", "offline_access", "roles", "address", "phone"}

// Server is the in-process identity provider. All methods are safe for
// concurrent use.
type Server struct {
	opts       Options
	issuerPath string

	mu          sync.Mutex
	baseURL     string
	users       map[string]*User
	userOrder   []string
	clients     map[string]*Client
	keys        []*signingKey // primary key history, last is newest
	current     *signingKey
	ecKey       *signingKey // published auxiliary ES256 key (nil if primary is ES256)
	wrongKeys   map[string]*signingKey
	unpublished *signingKey

	disabled  map[string]bool // DisableUser
	counts    map[string]int
	faults    map[string]*Fault
	lastQuery url.Values

	pending   map[string]*authRequest // login form transactions
	codes     map[string]*authCode
	grants    map[string]*grant
	refresh   map[string]*refreshToken
	access    map[string]*accessRecord // by jti
	sessions  map[string]*session
	ops       int
	lastPrune int
	atExpiry  time.Time // SetAccessTokenExpiry

	assertionJTIs map[string]time.Time // client_id NUL jti → assertion exp
	pushed        map[string]*pushedRequest
	lastPushed    url.Values

	ca     *testCA
	tlsSrv *http.Server
	tlsURL string

	httpSrv   *http.Server
	closed    chan struct{}
	closeOnce sync.Once
}

// New validates opts, creates the signing keys and returns a server that is
// not yet listening.
func New(opts Options) (*Server, error) {
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = 5 * time.Minute
	}
	if opts.RefreshTokenTTL <= 0 {
		opts.RefreshTokenTTL = 30 * time.Minute
	}
	if opts.CodeTTL <= 0 {
		opts.CodeTTL = time.Minute
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 10 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TokenType == "" {
		opts.TokenType = "Bearer"
	}
	if opts.SigningAlg == "" {
		opts.SigningAlg = "RS256"
	}
	if len(opts.Scopes) == 0 {
		opts.Scopes = defaultScopes
	}
	if opts.BackchannelClient == nil {
		opts.BackchannelClient = &http.Client{
			Timeout:       5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	switch opts.AssertionAudience {
	case "", "token_endpoint", "issuer":
	default:
		return nil, fmt.Errorf("testidp: AssertionAudience %q is not \"token_endpoint\" or \"issuer\"", opts.AssertionAudience)
	}
	p := strings.TrimRight(opts.IssuerPath, "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	s := &Server{
		opts:          opts,
		issuerPath:    p,
		users:         map[string]*User{},
		clients:       map[string]*Client{},
		wrongKeys:     map[string]*signingKey{},
		disabled:      map[string]bool{},
		assertionJTIs: map[string]time.Time{},
		pushed:        map[string]*pushedRequest{},
		counts:        map[string]int{},
		faults:        map[string]*Fault{},
		pending:       map[string]*authRequest{},
		codes:         map[string]*authCode{},
		grants:        map[string]*grant{},
		refresh:       map[string]*refreshToken{},
		access:        map[string]*accessRecord{},
		sessions:      map[string]*session{},
		closed:        make(chan struct{}),
	}
	for _, u := range opts.Users {
		if u.Username == "" {
			return nil, errors.New("testidp: user with empty username")
		}
		if _, dup := s.users[u.Username]; dup {
			return nil, fmt.Errorf("testidp: duplicate user %q", u.Username)
		}
		s.addUserLocked(u)
	}
	for _, c := range opts.Clients {
		if err := s.addClientLocked(c); err != nil {
			return nil, err
		}
	}
	for i, raw := range opts.ExtraJWKs {
		var obj map[string]any
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("testidp: ExtraJWKs[%d] is not a JSON object", i)
		}
	}
	if opts.AutoLogin != "" && s.users[opts.AutoLogin] == nil {
		return nil, fmt.Errorf("testidp: AutoLogin user %q is not in Users", opts.AutoLogin)
	}
	k, err := newSigningKey(opts.SigningAlg)
	if err != nil {
		return nil, err
	}
	s.keys = []*signingKey{k}
	s.current = k
	if opts.SigningAlg != "ES256" {
		ec, err := newSigningKey("ES256")
		if err != nil {
			return nil, err
		}
		s.ecKey = ec
	}
	return s, nil
}

func (s *Server) addUserLocked(u User) {
	cp := User{Username: u.Username, Password: u.Password, Claims: map[string]any{}}
	maps.Copy(cp.Claims, u.Claims)
	if _, ok := s.users[u.Username]; !ok {
		s.userOrder = append(s.userOrder, u.Username)
	}
	s.users[u.Username] = &cp
}

func (s *Server) addClientLocked(c Client) error {
	if c.ID == "" {
		return errors.New("testidp: client with empty ID")
	}
	for _, ru := range c.RedirectURIs {
		u, err := url.Parse(ru)
		if err != nil || !u.IsAbs() || u.Fragment != "" {
			return fmt.Errorf("testidp: client %q: redirect URI %q must be absolute without fragment", c.ID, ru)
		}
	}
	if err := validateClientAuth(&c); err != nil {
		return err
	}
	cp := c
	cp.RedirectURIs = slices.Clone(c.RedirectURIs)
	cp.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	s.clients[c.ID] = &cp
	return nil
}

// AddUser adds or replaces a user at runtime.
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addUserLocked(u)
}

// AddClient adds or replaces a client at runtime.
func (s *Server) AddClient(c Client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addClientLocked(c)
}

// SetUserClaims merges claims into the user's claims: given keys override,
// a nil value removes the claim. Unknown users are created without a
// password (usable through AutoLogin only). New tokens, refreshed tokens and
// userinfo reflect the change.
func (s *Server) SetUserClaims(username string, claims map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[username]
	if u == nil {
		s.addUserLocked(User{Username: username})
		u = s.users[username]
	}
	for k, v := range claims {
		if v == nil {
			delete(u.Claims, k)
		} else {
			u.Claims[k] = v
		}
	}
}

// DisableUser disables an account, like an administrator would: the user
// can no longer sign in (the login form refuses the password, AutoLogin and
// existing provider sessions answer the authorization request with
// error=access_denied), the user's access tokens are rejected at userinfo
// with 401 and error="invalid_token" and are inactive at introspection,
// and refresh and code exchange fail with invalid_grant. Sessions are not
// ended (no back-channel logout is sent); [Server.EnableUser] undoes it.
// The username need not exist yet.
func (s *Server) DisableUser(username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disabled[username] = true
}

// EnableUser re-enables an account disabled by DisableUser; its unexpired
// tokens work again.
func (s *Server) EnableUser(username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.disabled, username)
}

// Start listens on 127.0.0.1 on a random port and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.httpSrv != nil {
		s.mu.Unlock()
		ln.Close()
		return errors.New("testidp: already started")
	}
	s.baseURL = "http://" + ln.Addr().String()
	s.httpSrv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	srv := s.httpSrv
	s.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// Handler returns the server's HTTP handler, to mount on a listener of your
// own (call SetIssuer with the URL it is reachable at).
func (s *Server) Handler() http.Handler { return s }

// SetIssuer tells a server mounted with Handler its externally visible base
// URL (scheme://host:port, plus any mount prefix). The issuer is that URL
// plus Options.IssuerPath; if the URL already ends with IssuerPath it is
// used as the issuer as is.
func (s *Server) SetIssuer(baseURL string) {
	b := strings.TrimRight(baseURL, "/")
	if s.issuerPath != "" && strings.HasSuffix(b, s.issuerPath) {
		b = strings.TrimSuffix(b, s.issuerPath)
	}
	s.mu.Lock()
	s.baseURL = b
	s.mu.Unlock()
}

// URL returns the base URL (without IssuerPath).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// Issuer returns the issuer identifier (base URL + IssuerPath).
func (s *Server) Issuer() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL + s.issuerPath
}

func (s *Server) issuerFor(r *http.Request) string {
	s.mu.Lock()
	b := s.baseURL
	s.mu.Unlock()
	if b == "" && r != nil {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		b = scheme + "://" + r.Host
	}
	return b + s.issuerPath
}

// Close stops the listener started by Start, closes open connections and
// releases stalled requests.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
	s.mu.Lock()
	srv, tlsSrv := s.httpSrv, s.tlsSrv
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	if tlsSrv != nil {
		tlsSrv.Close()
	}
}

// Count returns how many requests an endpoint has seen (see package doc
// for the keys).
func (s *Server) Count(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[endpoint]
}

// ResetCounts zeroes every counter.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
}

func (s *Server) count(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.counts[k]++
	}
}

// LastAuthorizeQuery returns a copy of the parameters of the most recent
// authorization request (GET query or POST form; login form submissions
// are not recorded).
func (s *Server) LastAuthorizeQuery() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := url.Values{}
	for k, v := range s.lastQuery {
		out[k] = slices.Clone(v)
	}
	return out
}

func (s *Server) now() time.Time { return s.opts.Now() }

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b64.EncodeToString(b)
}

// DemoUsers returns two ready-made accounts:
// alice / wonderland (groups admins, users) and bob / builder (groups users).
func DemoUsers() []User {
	return []User{
		{Username: "alice", Password: "wonderland", Claims: map[string]any{
			"sub": "11111111-1111-4111-8111-111111111111", "email": "alice@example.com", "email_verified": true,
			"name": "Alice Liddell", "given_name": "Alice", "family_name": "Liddell",
			"preferred_username": "alice", "groups": []string{"admins", "users"},
		}},
		{Username: "bob", Password: "builder", Claims: map[string]any{
			"sub": "22222222-2222-4222-8222-222222222222", "email": "bob@example.com", "email_verified": true,
			"name": "Bob Builder", "given_name": "Bob", "family_name": "Builder",
			"preferred_username": "bob", "groups": []string{"users"},
		}},
	}
}

// Clock is a manually advanced clock for Options.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

package emulators

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Test harness

const (
	tID       = "app-123"
	tSecret   = "s3cr3t-value"
	tRedirect = "http://127.0.0.1:9999/oauth/callback"
	tState    = "st-8f2a"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t   *testing.T
	s   *Server
	clk *fakeClock
	hc  *http.Client
}

func newEnv(t *testing.T, ctor func(Config) *Server, mods ...func(*Config)) *env {
	t.Helper()
	clk := &fakeClock{t: time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)}
	cfg := Config{ClientID: tID, ClientSecret: tSecret, RedirectURI: tRedirect, Now: clk.Now, AutoApprove: true}
	for _, m := range mods {
		m(&cfg)
	}
	s := ctor(cfg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	hc := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &env{t: t, s: s, clk: clk, hc: hc}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r *resp) String() string {
	return http.StatusText(r.status) + " " + string(r.body)
}

func (r *resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

func (r *resp) loc(t *testing.T) *url.URL {
	t.Helper()
	l := r.header.Get("Location")
	if l == "" {
		t.Fatalf("no Location header (status %d, body %s)", r.status, r.body)
	}
	u, err := url.Parse(l)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

type mod func(*http.Request)

func basic(id, secret string) mod { return func(r *http.Request) { r.SetBasicAuth(id, secret) } }
func bearerTok(tok string) mod {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func (e *env) do(method, path string, query url.Values, ctype, body string, mods ...mod) *resp {
	e.t.Helper()
	u := e.s.URL() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for _, m := range mods {
		m(req)
	}
	res, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return &resp{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) get(path string, q url.Values, mods ...mod) *resp {
	e.t.Helper()
	return e.do(http.MethodGet, path, q, "", "", mods...)
}

func (e *env) postForm(path string, form url.Values, mods ...mod) *resp {
	e.t.Helper()
	return e.do(http.MethodPost, path, nil, "application/x-www-form-urlencoded", form.Encode(), mods...)
}

func (e *env) postJSON(path string, v any, mods ...mod) *resp {
	e.t.Helper()
	b, _ := json.Marshal(v)
	return e.do(http.MethodPost, path, nil, "application/json", string(b), mods...)
}

// authorize runs the authorize request and returns the callback URL.
func (e *env) authorize(path string, q url.Values) *url.URL {
	e.t.Helper()
	r := e.get(path, q)
	if r.status != http.StatusFound {
		e.t.Fatalf("authorize: want 302, got %s (last rejection %q)", r, e.s.LastRejection())
	}
	return r.loc(e.t)
}

// expectRejected asserts a refusal with the given status that was counted.
func expectRejected(t *testing.T, e *env, before int, r *resp, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("want status %d, got %s (last rejection %q)", status, r, e.s.LastRejection())
	}
	if got := e.s.Count("rejected"); got != before+1 {
		t.Fatalf("rejected count: want %d, got %d", before+1, got)
	}
	if e.s.LastRejection() == "" {
		t.Fatal("LastRejection is empty")
	}
}

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123"

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// ---------------------------------------------------------------------------
// Per-provider flow descriptions (used by the shared tests)

type spec struct {
	name      string
	ctor      func(Config) *Server
	authPath  string
	authQuery func() url.Values
	codeParam string
	echoState bool
	exchange  func(e *env, code string) *resp
	userPath  string
	// checkToken checks provider-specific fields of the code exchange.
	checkToken func(t *testing.T, m map[string]any)
	refresh    func(e *env, rt string) *resp // nil: no refresh grant
	sameRT     bool                          // refresh returns the same refresh token
	revoke     func(e *env, tok string) *resp
	// denied checks where a denial sends the browser.
	denied func(t *testing.T, e *env, loc *url.URL)
}

func ntpuSpec() spec {
	return spec{
		name: "ntpu", ctor: NewNTPU, authPath: "/",
		authQuery: func() url.Values { return url.Values{"clientId": {tID}} },
		codeParam: "authorizationCode",
		exchange: func(e *env, code string) *resp {
			return e.postJSON("/api/exchange", map[string]any{"authorizationCode": code, "clientId": tID, "clientSecret": tSecret})
		},
		userPath: "/api/user/info",
		checkToken: func(t *testing.T, m map[string]any) {
			if len(m) != 2 {
				t.Errorf("NTPU response must hold only access_token and refresh_token, got %v", m)
			}
			c := jwtClaims(t, str(m, "access_token"))
			if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 900 {
				t.Errorf("access JWT lifetime: want 900s, got %v", exp-iat)
			}
		},
		denied: func(t *testing.T, e *env, loc *url.URL) {
			if got := loc.String(); got != tRedirect+"?error=access_denied" {
				t.Errorf("denial location %q", got)
			}
		},
	}
}

func omniportSpec() spec {
	return spec{
		name: "omniport", ctor: NewOmniport, authPath: "/oauth/authorise/",
		authQuery: func() url.Values {
			return url.Values{"client_id": {tID}, "redirect_uri": {tRedirect}, "state": {tState}}
		},
		codeParam: "code", echoState: true,
		exchange: func(e *env, code string) *resp {
			return e.postForm("/open_auth/token/", url.Values{"client_id": {tID}, "client_secret": {tSecret},
				"grant_type": {"authorization_code"}, "redirect_uri": {tRedirect}, "code": {code}})
		},
		userPath: "/open_auth/get_user_data/",
		checkToken: func(t *testing.T, m map[string]any) {
			if m["expires_in"] != 36000.0 || m["token_type"] != "Bearer" || m["scope"] != "read write" {
				t.Errorf("unexpected token response %v", m)
			}
		},
		refresh: func(e *env, rt string) *resp {
			return e.postForm("/open_auth/token/", url.Values{"client_id": {tID}, "client_secret": {tSecret},
				"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		},
		revoke: func(e *env, tok string) *resp {
			return e.postForm("/open_auth/revoke_token/", url.Values{"client_id": {tID}, "client_secret": {tSecret},
				"token": {tok}, "token_type_hint": {"access_token"}})
		},
		denied: func(t *testing.T, e *env, loc *url.URL) {
			if got := loc.String(); got != e.s.URL()+"/" {
				t.Errorf("denial must go to the Omniport home page, got %q", got)
			}
		},
	}
}

func protoSpec() spec {
	return spec{
		name: "proto", ctor: NewProto, authPath: "/oauth/authorize",
		authQuery: func() url.Values {
			return url.Values{"client_id": {tID}, "redirect_uri": {tRedirect}, "response_type": {"code"}, "state": {tState}}
		},
		codeParam: "code", echoState: true,
		exchange: func(e *env, code string) *resp {
			return e.postJSON("/oauth/token", map[string]any{"grant_type": "authorization_code", "code": code,
				"redirect_uri": tRedirect, "client_id": tID, "client_secret": tSecret})
		},
		userPath: "/api/user",
		checkToken: func(t *testing.T, m map[string]any) {
			if m["expires_in"] != 3600.0 || m["token_type"] != "Bearer" {
				t.Errorf("unexpected token response %v", m)
			}
		},
		refresh: func(e *env, rt string) *resp {
			return e.postJSON("/oauth/token", map[string]any{"grant_type": "refresh_token", "refresh_token": rt,
				"client_id": tID, "client_secret": tSecret})
		},
		denied: func(t *testing.T, e *env, loc *url.URL) {
			if got := loc.String(); got != tRedirect+"?error=access_denied&state="+tState {
				t.Errorf("denial location %q", got)
			}
		},
	}
}

func chasterSpec() spec {
	const p = "/auth/realms/app/protocol/openid-connect"
	return spec{
		name: "chaster", ctor: NewChaster, authPath: p + "/auth",
		authQuery: func() url.Values {
			return url.Values{"client_id": {tID}, "redirect_uri": {tRedirect}, "response_type": {"code"},
				"scope": {"openid profile"}, "state": {tState}, "nonce": {"n-0S6_WzA2Mj"},
				"code_challenge": {s256(verifier)}, "code_challenge_method": {"S256"}}
		},
		codeParam: "code", echoState: true,
		exchange: func(e *env, code string) *resp {
			return e.postForm(p+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {tRedirect}, "code_verifier": {verifier}}, basic(tID, tSecret))
		},
		userPath: p + "/userinfo",
		checkToken: func(t *testing.T, m map[string]any) {
			if m["expires_in"] != 300.0 || m["refresh_expires_in"] != 1800.0 || m["token_type"] != "bearer" ||
				m["not-before-policy"] != 0.0 || m["scope"] != "openid profile" || str(m, "session_state") == "" {
				t.Errorf("unexpected token response %v", m)
			}
			if n := len(str(m, "access_token")); n < 1000 || n > 2500 {
				t.Errorf("Keycloak-like access token should be 1-2 KB, got %d bytes", n)
			}
			idc := jwtClaims(t, str(m, "id_token"))
			if idc["nonce"] != "n-0S6_WzA2Mj" || idc["aud"] != tID || idc["typ"] != "ID" {
				t.Errorf("id_token claims %v", idc)
			}
			if _, err := verifyRS256(str(m, "id_token")); err != nil {
				t.Errorf("id_token signature: %v", err)
			}
		},
		refresh: func(e *env, rt string) *resp {
			return e.postForm(p+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt},
				"client_id": {tID}, "client_secret": {tSecret}})
		},
		revoke: func(e *env, tok string) *resp {
			return e.postForm(p+"/revoke", url.Values{"token": {tok}, "token_type_hint": {"access_token"}}, basic(tID, tSecret))
		},
		denied: func(t *testing.T, e *env, loc *url.URL) {
			q := loc.Query()
			if !strings.HasPrefix(loc.String(), tRedirect+"?") || q.Get("error") != "access_denied" ||
				q.Get("state") != tState || q.Get("iss") != e.s.Issuer() {
				t.Errorf("denial location %q", loc)
			}
		},
	}
}

func citesphereSpec() spec {
	return spec{
		name: "citesphere", ctor: NewCitesphere, authPath: "/api/oauth/authorize",
		authQuery: func() url.Values {
			return url.Values{"client_id": {tID}, "scope": {"read"}, "response_type": {"code"}, "state": {tState}}
		},
		codeParam: "code", echoState: true,
		exchange: func(e *env, code string) *resp {
			q := url.Values{"client_id": {tID}, "client_secret": {tSecret}, "code": {code},
				"redirect_uri": {tRedirect}, "state": {tState}, "grant_type": {"authorization_code"}}
			return e.do(http.MethodPost, "/api/oauth/token", q, "", "")
		},
		userPath: "/api/v1/user",
		checkToken: func(t *testing.T, m map[string]any) {
			if m["expires_in"] != 406.0 || m["token_type"] != "bearer" || m["scope"] != "read" {
				t.Errorf("unexpected token response %v", m)
			}
		},
		refresh: func(e *env, rt string) *resp {
			q := url.Values{"client_id": {tID}, "client_secret": {tSecret}, "refresh_token": {rt}, "grant_type": {"refresh_token"}}
			return e.do(http.MethodPost, "/api/oauth/token", q, "", "")
		},
		sameRT: true,
		denied: func(t *testing.T, e *env, loc *url.URL) {
			q := loc.Query()
			if !strings.HasPrefix(loc.String(), tRedirect+"?") || q.Get("error") != "access_denied" || q.Get("state") != tState {
				t.Errorf("denial location %q", loc)
			}
		},
	}
}

func allSpecs() []spec {
	return []spec{ntpuSpec(), omniportSpec(), protoSpec(), chasterSpec(), citesphereSpec()}
}

// code runs the spec's authorize request and returns the code.
func (e *env) code(sp spec) string {
	e.t.Helper()
	loc := e.authorize(sp.authPath, sp.authQuery())
	c := loc.Query().Get(sp.codeParam)
	if c == "" {
		e.t.Fatalf("no %s in %q", sp.codeParam, loc)
	}
	return c
}

// tokens runs authorize + exchange and returns the token response.
func (e *env) tokens(sp spec) map[string]any {
	e.t.Helper()
	r := sp.exchange(e, e.code(sp))
	if r.status != http.StatusOK {
		e.t.Fatalf("exchange: %s (last rejection %q)", r, e.s.LastRejection())
	}
	return r.json(e.t)
}

// ---------------------------------------------------------------------------
// Shared tests

func TestHappyPath(t *testing.T) {
	for _, sp := range allSpecs() {
		t.Run(sp.name, func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			loc := e.authorize(sp.authPath, sp.authQuery())
			if !strings.HasPrefix(loc.String(), tRedirect+"?") {
				t.Fatalf("redirect went to %q", loc)
			}
			q := loc.Query()
			if sp.echoState && q.Get("state") != tState {
				t.Errorf("state not echoed: %q", loc)
			}
			if !sp.echoState && q.Has("state") {
				t.Errorf("state must not be sent: %q", loc)
			}
			r := sp.exchange(e, q.Get(sp.codeParam))
			if r.status != http.StatusOK {
				t.Fatalf("exchange: %s (%s)", r, e.s.LastRejection())
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("token response content type %q", ct)
			}
			tok := r.json(t)
			at, rt := str(tok, "access_token"), str(tok, "refresh_token")
			if at == "" || rt == "" {
				t.Fatalf("missing tokens in %v", tok)
			}
			sp.checkToken(t, tok)

			u := e.get(sp.userPath, nil, bearerTok(at))
			if u.status != http.StatusOK {
				t.Fatalf("userinfo: %s (%s)", u, e.s.LastRejection())
			}
			want, _ := json.Marshal(DefaultUser(sp.name))
			var got any
			_ = json.Unmarshal(u.body, &got)
			gotB, _ := json.Marshal(got)
			if string(gotB) != string(want) {
				t.Errorf("userinfo:\n got %s\nwant %s", gotB, want)
			}

			if sp.refresh != nil {
				r2 := sp.refresh(e, rt)
				if r2.status != http.StatusOK {
					t.Fatalf("refresh: %s (%s)", r2, e.s.LastRejection())
				}
				tok2 := r2.json(t)
				at2, rt2 := str(tok2, "access_token"), str(tok2, "refresh_token")
				if at2 == "" || at2 == at {
					t.Fatalf("refresh must return a new access token: %v", tok2)
				}
				if sp.sameRT != (rt2 == rt) {
					t.Errorf("refresh token reuse: want same=%v, got %q -> %q", sp.sameRT, rt, rt2)
				}
				if u := e.get(sp.userPath, nil, bearerTok(at2)); u.status != http.StatusOK {
					t.Fatalf("userinfo with refreshed token: %s", u)
				}
				if !sp.sameRT {
					before := e.s.Count("rejected")
					if r3 := sp.refresh(e, rt); r3.status != http.StatusBadRequest {
						t.Errorf("old refresh token must be refused after rotation, got %s", r3)
					} else if e.s.Count("rejected") != before+1 || !e.s.IsRevoked(rt) {
						t.Errorf("rotation bookkeeping wrong")
					}
				}
				if e.s.Count("token:refresh_token") < 1 {
					t.Errorf("token:refresh_token not counted")
				}
				at = at2
			}
			if sp.revoke != nil {
				if r := sp.revoke(e, at); r.status != http.StatusOK {
					t.Fatalf("revoke: %s (%s)", r, e.s.LastRejection())
				}
				if !e.s.IsRevoked(at) {
					t.Errorf("IsRevoked false after revocation")
				}
				before := e.s.Count("rejected")
				if u := e.get(sp.userPath, nil, bearerTok(at)); u.status != http.StatusUnauthorized {
					t.Errorf("revoked token accepted at userinfo: %s", u)
				} else if e.s.Count("rejected") != before+1 {
					t.Errorf("revoked userinfo not counted as rejected")
				}
				if e.s.Count("revoke") != 1 {
					t.Errorf("revoke count %d", e.s.Count("revoke"))
				}
			}
			for _, k := range []string{"authorize", "token:authorization_code"} {
				if e.s.Count(k) != 1 {
					t.Errorf("Count(%q) = %d, want 1", k, e.s.Count(k))
				}
			}
			if e.s.Count("token") < 1 || e.s.Count("userinfo") < 1 {
				t.Errorf("counts %v", e.s.Counts())
			}
		})
	}
}

func TestConsentPage(t *testing.T) {
	idRE := regexp.MustCompile(`name="request_id" value="([0-9a-f]+)"`)
	actionRE := regexp.MustCompile(`action="([^"]+)"`)
	for _, sp := range allSpecs() {
		for _, decision := range []string{"approve", "deny"} {
			t.Run(sp.name+"/"+decision, func(t *testing.T) {
				e := newEnv(t, sp.ctor, func(c *Config) { c.AutoApprove = false })
				r := e.get(sp.authPath, sp.authQuery())
				body := string(r.body)
				if r.status != http.StatusOK || !strings.Contains(body, `id="approve"`) || !strings.Contains(body, `id="deny"`) {
					t.Fatalf("want consent page, got %s", r)
				}
				id, action := idRE.FindStringSubmatch(body), actionRE.FindStringSubmatch(body)
				if id == nil || action == nil {
					t.Fatalf("consent form incomplete: %s", body)
				}
				r = e.postForm(action[1], url.Values{"request_id": {id[1]}, "decision": {decision}})
				if r.status != http.StatusFound {
					t.Fatalf("consent POST: %s (%s)", r, e.s.LastRejection())
				}
				loc := r.loc(t)
				if decision == "approve" {
					if loc.Query().Get(sp.codeParam) == "" {
						t.Fatalf("no code in %q", loc)
					}
				} else {
					sp.denied(t, e, loc)
					if e.s.Count("denied") != 1 {
						t.Errorf("denied count %d", e.s.Count("denied"))
					}
				}
				// The consent request is single use.
				before := e.s.Count("rejected")
				r = e.postForm(action[1], url.Values{"request_id": {id[1]}, "decision": {"approve"}})
				expectRejected(t, e, before, r, http.StatusBadRequest)
			})
		}
	}
}

func TestDenyIsOneShot(t *testing.T) {
	for _, sp := range allSpecs() {
		t.Run(sp.name, func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			e.s.Deny(true)
			loc := e.authorize(sp.authPath, sp.authQuery())
			sp.denied(t, e, loc)
			if loc.Query().Has(sp.codeParam) {
				t.Errorf("denial carries a code: %q", loc)
			}
			if e.s.Count("denied") != 1 || e.s.Count("rejected") != 0 {
				t.Errorf("counts %v", e.s.Counts())
			}
			// next one is approved again
			if c := e.code(sp); c == "" {
				t.Fatal("no code after denial")
			}
		})
	}
}

// TestCodeRules: reused and expired codes, wrong secret, per provider.
func TestCodeRules(t *testing.T) {
	ttl := map[string]time.Duration{
		"ntpu": 15 * time.Minute, "omniport": time.Minute, "proto": 10 * time.Minute,
		"chaster": 10 * time.Minute, "citesphere": 10 * time.Minute,
	}
	for _, sp := range allSpecs() {
		t.Run(sp.name+"/reused", func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			c := e.code(sp)
			if r := sp.exchange(e, c); r.status != http.StatusOK {
				t.Fatalf("first exchange: %s", r)
			}
			before := e.s.Count("rejected")
			expectRejected(t, e, before, sp.exchange(e, c), http.StatusBadRequest)
		})
		t.Run(sp.name+"/just-before-expiry", func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			c := e.code(sp)
			e.clk.Advance(ttl[sp.name] - time.Second)
			if r := sp.exchange(e, c); r.status != http.StatusOK {
				t.Fatalf("exchange before expiry: %s (%s)", r, e.s.LastRejection())
			}
		})
		t.Run(sp.name+"/expired", func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			c := e.code(sp)
			e.clk.Advance(ttl[sp.name] + time.Second)
			before := e.s.Count("rejected")
			expectRejected(t, e, before, sp.exchange(e, c), http.StatusBadRequest)
			if !strings.Contains(e.s.LastRejection(), "expired") {
				t.Errorf("LastRejection %q", e.s.LastRejection())
			}
		})
		t.Run(sp.name+"/wrong-secret", func(t *testing.T) {
			e := newEnv(t, sp.ctor, func(c *Config) { c.ClientSecret = "other-secret" })
			c := e.code(sp)
			before := e.s.Count("rejected")
			expectRejected(t, e, before, sp.exchange(e, c), http.StatusUnauthorized)
		})
		t.Run(sp.name+"/access-expiry", func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			at := str(e.tokens(sp), "access_token")
			e.s.SetNow(func() time.Time { return e.clk.Now().Add(24 * time.Hour * 400) })
			before := e.s.Count("rejected")
			expectRejected(t, e, before, e.get(sp.userPath, nil, bearerTok(at)), http.StatusUnauthorized)
			if !strings.Contains(e.s.LastRejection(), "expired") {
				t.Errorf("LastRejection %q", e.s.LastRejection())
			}
		})
		t.Run(sp.name+"/bad-bearer", func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			before := e.s.Count("rejected")
			expectRejected(t, e, before, e.get(sp.userPath, nil, bearerTok("nope")), http.StatusUnauthorized)
			expectRejected(t, e, before+1, e.get(sp.userPath, nil), http.StatusUnauthorized)
		})
	}
}

func TestAccessTTLOverride(t *testing.T) {
	for _, sp := range allSpecs() {
		t.Run(sp.name, func(t *testing.T) {
			e := newEnv(t, sp.ctor, func(c *Config) { c.AccessTTL = 2 * time.Minute })
			at := str(e.tokens(sp), "access_token")
			e.clk.Advance(119 * time.Second)
			if r := e.get(sp.userPath, nil, bearerTok(at)); r.status != http.StatusOK {
				t.Fatalf("before expiry: %s", r)
			}
			e.clk.Advance(time.Second)
			if r := e.get(sp.userPath, nil, bearerTok(at)); r.status != http.StatusUnauthorized {
				t.Fatalf("after expiry: %s", r)
			}
		})
	}
}

func TestUnknownPathAndMethod(t *testing.T) {
	e := newEnv(t, NewProto)
	expectRejected(t, e, 0, e.get("/nope", nil), http.StatusNotFound)
	expectRejected(t, e, 1, e.get("/oauth/token", nil), http.StatusMethodNotAllowed)
}

// ---------------------------------------------------------------------------
// Per-provider strictness tables

type strictCase struct {
	name     string
	run      func(e *env) *resp
	status   int
	accepted bool // the request must be accepted (a leniency the provider has)
	check    func(t *testing.T, e *env, r *resp)
}

func runStrict(t *testing.T, ctor func(Config) *Server, cases []strictCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, ctor)
			before := e.s.Count("rejected")
			r := tc.run(e)
			after := e.s.Count("rejected")
			if r.status != tc.status {
				t.Fatalf("want %d, got %s (last rejection %q)", tc.status, r, e.s.LastRejection())
			}
			if tc.accepted {
				if after != before {
					t.Fatalf("accepted request counted as rejected: %q", e.s.LastRejection())
				}
				if tc.check != nil {
					tc.check(t, e, r)
				}
				return
			}
			// setup steps may refuse on purpose (e.g. a rotated refresh
			// token), so at least one more rejection is required.
			if after <= before {
				t.Fatalf("refusal was not counted as rejected")
			}
			if e.s.LastRejection() == "" {
				t.Fatal("empty LastRejection")
			}
			t.Logf("refused: %s", e.s.LastRejection())
			if tc.check != nil {
				tc.check(t, e, r)
			}
		})
	}
}

func noLocation(t *testing.T, _ *env, r *resp) {
	if l := r.header.Get("Location"); l != "" {
		t.Errorf("must not redirect, got Location %q", l)
	}
}

func jsonError(code string) func(t *testing.T, e *env, r *resp) {
	return func(t *testing.T, _ *env, r *resp) {
		if got := r.json(t)["error"]; got != code {
			t.Errorf("error: want %q, got %v", code, got)
		}
	}
}

func redirectError(code string) func(t *testing.T, e *env, r *resp) {
	return func(t *testing.T, _ *env, r *resp) {
		loc := r.loc(t)
		if !strings.HasPrefix(loc.String(), tRedirect+"?") || loc.Query().Get("error") != code {
			t.Errorf("want redirect with error=%s, got %q", code, loc)
		}
	}
}

func TestNTPUStrict(t *testing.T) {
	sp := ntpuSpec()
	ex := func(e *env, body map[string]any) *resp { return e.postJSON("/api/exchange", body) }
	runStrict(t, NewNTPU, []strictCase{
		{name: "authorize missing clientId", status: 400, check: noLocation,
			run: func(e *env) *resp { return e.get("/", nil) }},
		{name: "authorize snake_case client_id", status: 400, check: noLocation,
			run: func(e *env) *resp { return e.get("/", url.Values{"client_id": {tID}}) }},
		{name: "authorize unknown clientId", status: 400, check: noLocation,
			run: func(e *env) *resp { return e.get("/", url.Values{"clientId": {"someone-else"}}) }},
		{name: "exchange form-encoded", status: 400, check: jsonError("invalid_request"),
			run: func(e *env) *resp {
				return e.postForm("/api/exchange", url.Values{"authorizationCode": {e.code(sp)}, "clientId": {tID}, "clientSecret": {tSecret}})
			}},
		{name: "exchange doc sample body under JSON content type", status: 400,
			run: func(e *env) *resp {
				body := "authorizationCode=" + e.code(sp) + "&client_id=" + tID + "&client_secret=" + tSecret
				return e.do(http.MethodPost, "/api/exchange", nil, "application/json", body)
			}},
		{name: "exchange missing secret", status: 401, check: jsonError("invalid_client"),
			run: func(e *env) *resp { return ex(e, map[string]any{"authorizationCode": e.code(sp), "clientId": tID}) }},
		{name: "exchange conflicting spellings", status: 400,
			run: func(e *env) *resp {
				return ex(e, map[string]any{"authorizationCode": e.code(sp), "clientId": tID, "client_id": "x", "clientSecret": tSecret})
			}},
		{name: "exchange missing authorizationCode", status: 400,
			run: func(e *env) *resp {
				e.code(sp)
				return ex(e, map[string]any{"code": "x", "clientId": tID, "clientSecret": tSecret})
			}},
		{name: "refresh grant is not offered", status: 400, check: jsonError("unsupported_grant_type"),
			run: func(e *env) *resp {
				rt := str(e.tokens(sp), "refresh_token")
				return ex(e, map[string]any{"grant_type": "refresh_token", "refresh_token": rt, "clientId": tID, "clientSecret": tSecret})
			}},
		{name: "snake_case credentials are accepted", status: 200, accepted: true,
			run: func(e *env) *resp {
				return ex(e, map[string]any{"authorizationCode": e.code(sp), "client_id": tID, "client_secret": tSecret})
			}},
		{name: "unknown extra authorize params are ignored", status: 302, accepted: true,
			run: func(e *env) *resp {
				return e.get("/", url.Values{"clientId": {tID}, "redirect_uri": {"http://evil.example/"}, "state": {"x"}})
			},
			check: func(t *testing.T, e *env, r *resp) {
				if l := r.loc(t); !strings.HasPrefix(l.String(), tRedirect+"?authorizationCode=ey") || l.Query().Has("state") {
					t.Errorf("location %q", l)
				}
			}},
		{name: "access token JWT exp enforced", status: 401,
			run: func(e *env) *resp {
				at := str(e.tokens(sp), "access_token")
				e.clk.Advance(15 * time.Minute)
				return e.get("/api/user/info", nil, bearerTok(at))
			}},
	})
}

func TestOmniportStrict(t *testing.T) {
	sp := omniportSpec()
	tokenForm := func(code string) url.Values {
		return url.Values{"client_id": {tID}, "client_secret": {tSecret}, "grant_type": {"authorization_code"},
			"redirect_uri": {tRedirect}, "code": {code}}
	}
	withPKCE := func(e *env, method, challenge string) string {
		q := sp.authQuery()
		q.Set("code_challenge", challenge)
		q.Set("code_challenge_method", method)
		return e.authorize(sp.authPath, q).Query().Get("code")
	}
	runStrict(t, NewOmniport, []strictCase{
		{name: "authorize unregistered redirect_uri shows error page", status: 400, check: noLocation,
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("redirect_uri", tRedirect+"/evil")
				return e.get(sp.authPath, q)
			}},
		{name: "authorize unknown client", status: 400, check: noLocation,
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("client_id", "nope")
				return e.get(sp.authPath, q)
			}},
		{name: "authorize missing client_id", status: 400, check: noLocation,
			run: func(e *env) *resp { return e.get(sp.authPath, url.Values{"redirect_uri": {tRedirect}}) }},
		{name: "authorize bad response_type", status: 302, check: redirectError("unsupported_response_type"),
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("response_type", "token")
				return e.get(sp.authPath, q)
			}},
		{name: "token JSON body", status: 400,
			run: func(e *env) *resp {
				return e.postJSON("/open_auth/token/", map[string]string{"client_id": tID, "client_secret": tSecret,
					"grant_type": "authorization_code", "redirect_uri": tRedirect, "code": e.code(sp)})
			}},
		{name: "token missing redirect_uri", status: 400, check: jsonError("invalid_request"),
			run: func(e *env) *resp {
				f := tokenForm(e.code(sp))
				f.Del("redirect_uri")
				return e.postForm("/open_auth/token/", f)
			}},
		{name: "token wrong redirect_uri", status: 400, check: jsonError("invalid_request"),
			run: func(e *env) *resp {
				f := tokenForm(e.code(sp))
				f.Set("redirect_uri", tRedirect+"x")
				return e.postForm("/open_auth/token/", f)
			}},
		{name: "token missing client_secret", status: 401, check: jsonError("invalid_client"),
			run: func(e *env) *resp {
				f := tokenForm(e.code(sp))
				f.Del("client_secret")
				return e.postForm("/open_auth/token/", f)
			}},
		{name: "token missing grant_type", status: 400, check: jsonError("unsupported_grant_type"),
			run: func(e *env) *resp {
				f := tokenForm(e.code(sp))
				f.Del("grant_type")
				return e.postForm("/open_auth/token/", f)
			}},
		{name: "token Basic client auth is accepted", status: 200, accepted: true,
			run: func(e *env) *resp {
				f := tokenForm(e.code(sp))
				f.Del("client_id")
				f.Del("client_secret")
				return e.postForm("/open_auth/token/", f, basic(tID, tSecret))
			}},
		{name: "authorize without redirect_uri uses the registered one", status: 302, accepted: true,
			run: func(e *env) *resp { return e.get(sp.authPath, url.Values{"client_id": {tID}}) },
			check: func(t *testing.T, e *env, r *resp) {
				if l := r.loc(t); !strings.HasPrefix(l.String(), tRedirect+"?code=") {
					t.Errorf("location %q", l)
				}
			}},
		{name: "PKCE verifier required", status: 400, check: jsonError("invalid_request"),
			run: func(e *env) *resp {
				return e.postForm("/open_auth/token/", tokenForm(withPKCE(e, "S256", s256(verifier))))
			}},
		{name: "PKCE wrong verifier", status: 400, check: jsonError("invalid_grant"),
			run: func(e *env) *resp {
				f := tokenForm(withPKCE(e, "S256", s256(verifier)))
				f.Set("code_verifier", verifier+"x")
				return e.postForm("/open_auth/token/", f)
			}},
		{name: "PKCE right verifier", status: 200, accepted: true,
			run: func(e *env) *resp {
				f := tokenForm(withPKCE(e, "S256", s256(verifier)))
				f.Set("code_verifier", verifier)
				return e.postForm("/open_auth/token/", f)
			}},
		{name: "PKCE plain", status: 200, accepted: true,
			run: func(e *env) *resp {
				f := tokenForm(withPKCE(e, "plain", verifier))
				f.Set("code_verifier", verifier)
				return e.postForm("/open_auth/token/", f)
			}},
		{name: "refresh rotates: old access token dies", status: 401,
			check: func(t *testing.T, e *env, r *resp) {
				if r.json(t)["detail"] != "Authentication credentials were not provided." {
					t.Errorf("body %s", r.body)
				}
			},
			run: func(e *env) *resp {
				tok := e.tokens(sp)
				if r := sp.refresh(e, str(tok, "refresh_token")); r.status != 200 {
					return r
				}
				return e.get(sp.userPath, nil, bearerTok(str(tok, "access_token")))
			}},
		{name: "revoke requires token_type_hint", status: 400,
			run: func(e *env) *resp {
				return e.postForm("/open_auth/revoke_token/", url.Values{"client_id": {tID}, "client_secret": {tSecret},
					"token": {str(e.tokens(sp), "access_token")}})
			}},
		{name: "revoke wrong secret", status: 401,
			run: func(e *env) *resp {
				return e.postForm("/open_auth/revoke_token/", url.Values{"client_id": {tID}, "client_secret": {"x"},
					"token": {str(e.tokens(sp), "access_token")}, "token_type_hint": {"access_token"}})
			}},
		{name: "revoked refresh token cannot refresh", status: 400, check: jsonError("invalid_grant"),
			run: func(e *env) *resp {
				tok := e.tokens(sp)
				rt := str(tok, "refresh_token")
				r := e.postForm("/open_auth/revoke_token/", url.Values{"client_id": {tID}, "client_secret": {tSecret},
					"token": {rt}, "token_type_hint": {"refresh_token"}})
				if r.status != 200 || !e.s.IsRevoked(rt) || !e.s.IsRevoked(str(tok, "access_token")) {
					e.t.Fatalf("revoke refresh: %s", r)
				}
				return sp.refresh(e, rt)
			}},
		{name: "authorise without slash redirects", status: 301, accepted: true,
			run: func(e *env) *resp { return e.get("/oauth/authorise", sp.authQuery()) },
			check: func(t *testing.T, e *env, r *resp) {
				if !strings.HasPrefix(r.header.Get("Location"), "/oauth/authorise/?") {
					t.Errorf("location %q", r.header.Get("Location"))
				}
			}},
		{name: "token path without slash", status: 404,
			run: func(e *env) *resp {
				return e.postForm("/open_auth/token", tokenForm(e.code(sp)))
			}},
	})
}

func TestProtoStrict(t *testing.T) {
	sp := protoSpec()
	body := func(code string) map[string]any {
		return map[string]any{"grant_type": "authorization_code", "code": code, "redirect_uri": tRedirect,
			"client_id": tID, "client_secret": tSecret}
	}
	runStrict(t, NewProto, []strictCase{
		{name: "token form-encoded", status: 400, check: jsonError("invalid_request"),
			run: func(e *env) *resp {
				return e.postForm("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {e.code(sp)},
					"redirect_uri": {tRedirect}, "client_id": {tID}, "client_secret": {tSecret}})
			}},
		{name: "refresh form-encoded", status: 400, check: jsonError("invalid_request"),
			run: func(e *env) *resp {
				rt := str(e.tokens(sp), "refresh_token")
				return e.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt},
					"client_id": {tID}, "client_secret": {tSecret}})
			}},
		{name: "token missing redirect_uri", status: 400, check: jsonError("invalid_request"),
			run: func(e *env) *resp {
				b := body(e.code(sp))
				delete(b, "redirect_uri")
				return e.postJSON("/oauth/token", b)
			}},
		{name: "token wrong redirect_uri", status: 400,
			run: func(e *env) *resp {
				b := body(e.code(sp))
				b["redirect_uri"] = "http://evil.example/cb"
				return e.postJSON("/oauth/token", b)
			}},
		{name: "token missing grant_type", status: 400, check: jsonError("unsupported_grant_type"),
			run: func(e *env) *resp {
				b := body(e.code(sp))
				delete(b, "grant_type")
				return e.postJSON("/oauth/token", b)
			}},
		{name: "token missing client_secret", status: 401, check: jsonError("invalid_client"),
			run: func(e *env) *resp {
				b := body(e.code(sp))
				delete(b, "client_secret")
				return e.postJSON("/oauth/token", b)
			}},
		{name: "authorize unregistered redirect_uri", status: 401, check: noLocation,
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("redirect_uri", "http://evil.example/cb")
				return e.get(sp.authPath, q)
			}},
		{name: "authorize missing response_type", status: 400, check: noLocation,
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Del("response_type")
				return e.get(sp.authPath, q)
			}},
		{name: "rotated refresh token refused", status: 400, check: jsonError("invalid_grant"),
			run: func(e *env) *resp {
				tok := e.tokens(sp)
				if r := sp.refresh(e, str(tok, "refresh_token")); r.status != 200 {
					return r
				}
				if u := e.get(sp.userPath, nil, bearerTok(str(tok, "access_token"))); u.status != 401 ||
					string(u.body) != "{\"message\":\"Unauthenticated.\"}\n" {
					e.t.Fatalf("old access token after refresh: %s", u)
				}
				return sp.refresh(e, str(tok, "refresh_token"))
			}},
		{name: "PKCE verifier required", status: 400,
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("code_challenge", s256(verifier))
				q.Set("code_challenge_method", "S256")
				return e.postJSON("/oauth/token", body(e.authorize(sp.authPath, q).Query().Get("code")))
			}},
	})
}

func TestChasterStrict(t *testing.T) {
	sp := chasterSpec()
	const p = "/auth/realms/app/protocol/openid-connect"
	tokenForm := func(code string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {tRedirect},
			"code_verifier": {verifier}, "client_id": {tID}, "client_secret": {tSecret}}
	}
	logout := func(e *env, q url.Values) *resp { return e.get(p+"/logout", q) }
	runStrict(t, NewChaster, []strictCase{
		{name: "authorize unregistered redirect_uri", status: 400, check: noLocation,
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("redirect_uri", tRedirect+"?x=1")
				return e.get(sp.authPath, q)
			}},
		{name: "authorize missing redirect_uri", status: 400, check: noLocation,
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Del("redirect_uri")
				return e.get(sp.authPath, q)
			}},
		{name: "authorize unknown scope", status: 302, check: redirectError("invalid_scope"),
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("scope", "openid admin")
				return e.get(sp.authPath, q)
			}},
		{name: "authorize bad PKCE method", status: 302, check: redirectError("invalid_request"),
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("code_challenge_method", "S512")
				return e.get(sp.authPath, q)
			}},
		{name: "token JSON body", status: 400, check: jsonError("invalid_request"),
			run: func(e *env) *resp {
				f := tokenForm(e.code(sp))
				m := map[string]string{}
				for k := range f {
					m[k] = f.Get(k)
				}
				return e.postJSON(p+"/token", m)
			}},
		{name: "token wrong redirect_uri", status: 400, check: jsonError("invalid_grant"),
			run: func(e *env) *resp {
				f := tokenForm(e.code(sp))
				f.Set("redirect_uri", tRedirect+"/x")
				return e.postForm(p+"/token", f)
			}},
		{name: "token missing code_verifier", status: 400, check: jsonError("invalid_grant"),
			run: func(e *env) *resp {
				f := tokenForm(e.code(sp))
				f.Del("code_verifier")
				return e.postForm(p+"/token", f)
			}},
		{name: "token wrong Basic secret", status: 401,
			run: func(e *env) *resp {
				f := tokenForm(e.code(sp))
				f.Del("client_id")
				f.Del("client_secret")
				return e.postForm(p+"/token", f, basic(tID, "wrong"))
			}},
		{name: "token duplicated parameter", status: 400,
			run: func(e *env) *resp {
				f := tokenForm(e.code(sp))
				f.Add("code", "again")
				return e.postForm(p+"/token", f)
			}},
		{name: "refresh token reuse refused", status: 400,
			check: func(t *testing.T, e *env, r *resp) {
				if r.json(t)["error"] != "invalid_grant" {
					t.Errorf("body %s", r.body)
				}
			},
			run: func(e *env) *resp {
				rt := str(e.tokens(sp), "refresh_token")
				if r := sp.refresh(e, rt); r.status != 200 {
					return r
				}
				return sp.refresh(e, rt)
			}},
		{name: "refresh token expires after 1800s", status: 400,
			run: func(e *env) *resp {
				rt := str(e.tokens(sp), "refresh_token")
				e.clk.Advance(1800 * time.Second)
				return sp.refresh(e, rt)
			}},
		{name: "no id_token without openid scope", status: 200, accepted: true,
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("scope", "profile")
				code := e.authorize(sp.authPath, q).Query().Get("code")
				return e.postForm(p+"/token", tokenForm(code))
			},
			check: func(t *testing.T, e *env, r *resp) {
				if m := r.json(t); m["id_token"] != nil || m["scope"] != "profile" {
					t.Errorf("want token without id_token, got %s", r)
				}
			}},
		{name: "body client auth (client_secret_post)", status: 200, accepted: true,
			run: func(e *env) *resp { return e.postForm(p+"/token", tokenForm(e.code(sp))) }},
		{name: "logout with id_token_hint ends the session", status: 400,
			run: func(e *env) *resp {
				tok := e.tokens(sp)
				r := logout(e, url.Values{"id_token_hint": {str(tok, "id_token")},
					"post_logout_redirect_uri": {"http://127.0.0.1:9999/bye"}, "state": {"lo"}})
				if r.status != 302 || r.header.Get("Location") != "http://127.0.0.1:9999/bye?state=lo" {
					e.t.Fatalf("logout: %s %v", r, r.header)
				}
				if e.s.Count("end_session") != 1 || !e.s.IsRevoked(str(tok, "access_token")) {
					e.t.Fatalf("logout did not revoke")
				}
				if u := e.get(sp.userPath, nil, bearerTok(str(tok, "access_token"))); u.status != 401 {
					e.t.Fatalf("userinfo after logout: %s", u)
				}
				return sp.refresh(e, str(tok, "refresh_token"))
			}},
		{name: "logout post_logout_redirect_uri needs hint or client_id", status: 400, check: noLocation,
			run: func(e *env) *resp {
				return logout(e, url.Values{"post_logout_redirect_uri": {"http://127.0.0.1:9999/bye"}})
			}},
		{name: "logout foreign post_logout_redirect_uri", status: 400, check: noLocation,
			run: func(e *env) *resp {
				return logout(e, url.Values{"client_id": {tID}, "post_logout_redirect_uri": {"http://evil.example/"}})
			}},
		{name: "logout legacy redirect_uri", status: 400, check: noLocation,
			run: func(e *env) *resp {
				return logout(e, url.Values{"client_id": {tID}, "redirect_uri": {"http://127.0.0.1:9999/bye"}})
			}},
		{name: "logout forged id_token_hint", status: 400,
			run: func(e *env) *resp {
				idt := str(e.tokens(sp), "id_token")
				return logout(e, url.Values{"id_token_hint": {idt[:len(idt)-4] + "AAAA"}})
			}},
		{name: "revoke refresh token ends session", status: 400,
			run: func(e *env) *resp {
				tok := e.tokens(sp)
				r := e.postForm(p+"/revoke", url.Values{"token": {str(tok, "refresh_token")}, "client_id": {tID}, "client_secret": {tSecret}})
				if r.status != 200 || !e.s.IsRevoked(str(tok, "access_token")) {
					e.t.Fatalf("revoke: %s", r)
				}
				return sp.refresh(e, str(tok, "refresh_token"))
			}},
		{name: "revoke without token", status: 400,
			run: func(e *env) *resp {
				return e.postForm(p+"/revoke", url.Values{"client_id": {tID}, "client_secret": {tSecret}})
			}},
	})
}

func TestChasterDiscoveryAndLogoutConfirm(t *testing.T) {
	e := newEnv(t, NewChaster, func(c *Config) { c.AutoApprove = false })
	d := e.get("/auth/realms/app/.well-known/openid-configuration", nil).json(t)
	iss := e.s.URL() + "/auth/realms/app"
	if d["issuer"] != iss || e.s.Issuer() != iss ||
		d["authorization_endpoint"] != iss+"/protocol/openid-connect/auth" ||
		d["end_session_endpoint"] != iss+"/protocol/openid-connect/logout" {
		t.Fatalf("discovery %v", d)
	}
	keys := e.get("/auth/realms/app/protocol/openid-connect/certs", nil).json(t)["keys"].([]any)
	if len(keys) != 1 || keys[0].(map[string]any)["kty"] != "RSA" {
		t.Fatalf("jwks %v", keys)
	}
	// Without id_token_hint Keycloak asks for confirmation.
	r := e.get("/auth/realms/app/protocol/openid-connect/logout",
		url.Values{"client_id": {tID}, "post_logout_redirect_uri": {"http://127.0.0.1:9999/"}})
	m := regexp.MustCompile(`name="session_code" value="([0-9a-f]+)"`).FindStringSubmatch(string(r.body))
	if r.status != 200 || m == nil || !strings.Contains(string(r.body), `id="approve"`) {
		t.Fatalf("want confirmation page, got %s", r)
	}
	r = e.postForm("/auth/realms/app/protocol/openid-connect/logout/logout-confirm", url.Values{"session_code": {m[1]}})
	if r.status != 302 || r.header.Get("Location") != "http://127.0.0.1:9999/" {
		t.Fatalf("confirm: %s %v", r, r.header)
	}
}

func TestCitesphereStrict(t *testing.T) {
	sp := citesphereSpec()
	query := func(code string) url.Values {
		return url.Values{"client_id": {tID}, "client_secret": {tSecret}, "code": {code},
			"redirect_uri": {tRedirect}, "state": {tState}, "grant_type": {"authorization_code"}}
	}
	token := func(e *env, q url.Values) *resp { return e.do(http.MethodPost, "/api/oauth/token", q, "", "") }
	runStrict(t, NewCitesphere, []strictCase{
		{name: "authorize missing scope", status: 302, check: redirectError("invalid_scope"),
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Del("scope")
				return e.get(sp.authPath, q)
			}},
		{name: "authorize unknown scope", status: 302, check: redirectError("invalid_scope"),
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("scope", "admin")
				return e.get(sp.authPath, q)
			}},
		{name: "authorize missing response_type", status: 302, check: redirectError("unsupported_response_type"),
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Del("response_type")
				return e.get(sp.authPath, q)
			}},
		{name: "authorize unknown client", status: 401, check: noLocation,
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("client_id", "nope")
				return e.get(sp.authPath, q)
			}},
		{name: "authorize unregistered redirect_uri", status: 400, check: noLocation,
			run: func(e *env) *resp {
				q := sp.authQuery()
				q.Set("redirect_uri", "http://evil.example/cb")
				return e.get(sp.authPath, q)
			}},
		{name: "token params in the body", status: 401,
			check: func(t *testing.T, e *env, r *resp) {
				if !strings.Contains(e.s.LastRejection(), "BODY") {
					t.Errorf("LastRejection should point at the body: %q", e.s.LastRejection())
				}
			},
			run: func(e *env) *resp {
				return e.postForm("/api/oauth/token", query(e.code(sp)))
			}},
		{name: "token credentials in Basic only", status: 401,
			run: func(e *env) *resp {
				q := query(e.code(sp))
				q.Del("client_id")
				q.Del("client_secret")
				return e.do(http.MethodPost, "/api/oauth/token", q, "", "", basic(tID, tSecret))
			}},
		{name: "token missing grant_type", status: 400, check: jsonError("invalid_request"),
			run: func(e *env) *resp {
				q := query(e.code(sp))
				q.Del("grant_type")
				return token(e, q)
			}},
		{name: "token state mismatch", status: 400,
			run: func(e *env) *resp {
				q := query(e.code(sp))
				q.Set("state", "other")
				return token(e, q)
			}},
		{name: "token redirect_uri mismatch", status: 400, check: jsonError("invalid_grant"),
			run: func(e *env) *resp {
				q := query(e.code(sp))
				q.Set("redirect_uri", tRedirect+"/x")
				return token(e, q)
			}},
		{name: "token redirect_uri omitted although sent at authorize", status: 400, check: jsonError("invalid_grant"),
			run: func(e *env) *resp {
				aq := sp.authQuery()
				aq.Set("redirect_uri", tRedirect)
				q := query(e.authorize(sp.authPath, aq).Query().Get("code"))
				q.Del("redirect_uri")
				return token(e, q)
			}},
		{name: "token via GET", status: 405,
			run: func(e *env) *resp { return e.get("/api/oauth/token", query(e.code(sp))) }},
		{name: "refresh keeps refresh token, kills old access token", status: 401, check: jsonError("invalid_token"),
			run: func(e *env) *resp {
				tok := e.tokens(sp)
				r := sp.refresh(e, str(tok, "refresh_token"))
				m := r.json(e.t)
				if r.status != 200 || m["refresh_token"] != tok["refresh_token"] || m["expires_in"] != 3600.0 {
					e.t.Fatalf("refresh: %s", r)
				}
				if !e.s.IsRevoked(str(tok, "access_token")) {
					e.t.Fatal("old access token not revoked")
				}
				if r := sp.refresh(e, str(tok, "refresh_token")); r.status != 200 {
					e.t.Fatalf("second refresh with the same token: %s", r)
				}
				return e.get(sp.userPath, nil, bearerTok(str(tok, "access_token")))
			}},
		{name: "refresh params in the body", status: 401,
			run: func(e *env) *resp {
				rt := str(e.tokens(sp), "refresh_token")
				return e.postForm("/api/oauth/token", url.Values{"client_id": {tID}, "client_secret": {tSecret},
					"refresh_token": {rt}, "grant_type": {"refresh_token"}})
			}},
	})
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, NewOmniport)
	sp := omniportSpec()
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loc, _ := url.Parse(tRedirect)
			r := e.get(sp.authPath, sp.authQuery())
			if l, err := url.Parse(r.header.Get("Location")); err == nil {
				loc = l
			}
			if x := sp.exchange(e, loc.Query().Get("code")); x.status != 200 {
				errs <- x.String()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Error(s)
	}
	// The same code exchanged concurrently succeeds exactly once.
	c := e.code(sp)
	var ok, bad int
	var mu sync.Mutex
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := sp.exchange(e, c).status
			mu.Lock()
			defer mu.Unlock()
			if st == 200 {
				ok++
			} else {
				bad++
			}
		}()
	}
	wg.Wait()
	if ok != 1 || bad != 7 {
		t.Fatalf("concurrent reuse: %d ok, %d refused", ok, bad)
	}
}

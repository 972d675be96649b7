package emulators

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Harness

func ghEnv(t *testing.T, mods ...func(*Config)) *env {
	t.Helper()
	return newEnv(t, NewGitHub, mods...)
}

func ghApp(expiring bool) func(*Config) {
	return func(c *Config) { c.GitHub.App, c.GitHub.ExpiringTokens = true, expiring }
}

func ghQuery(scope string) url.Values {
	q := url.Values{"client_id": {tID}, "redirect_uri": {tRedirect}, "state": {tState}}
	if scope != "" {
		q.Set("scope", scope)
	}
	return q
}

// ghCode runs the authorize request and returns the code.
func (e *env) ghCode(q url.Values) string {
	e.t.Helper()
	loc := e.authorize("/login/oauth/authorize", q)
	if loc.Query().Get("state") != q.Get("state") {
		e.t.Fatalf("state not echoed: %s", loc)
	}
	c := loc.Query().Get("code")
	if !regexp.MustCompile(`^[0-9a-f]{20}$`).MatchString(c) {
		e.t.Fatalf("code %q in %s", c, loc)
	}
	return c
}

// ghExchange posts a form to the token endpoint.
func (e *env) ghExchange(form url.Values, accept string) *resp {
	e.t.Helper()
	var mods []mod
	if accept != "" {
		mods = append(mods, func(r *http.Request) { r.Header.Set("Accept", accept) })
	}
	return e.postForm("/login/oauth/access_token", form, mods...)
}

func ghCodeForm(code string) url.Values {
	return url.Values{"client_id": {tID}, "client_secret": {tSecret}, "code": {code}, "redirect_uri": {tRedirect}}
}

// ghTokens runs authorize + exchange (JSON answer) and returns it.
func (e *env) ghTokens(scope string) map[string]any {
	e.t.Helper()
	r := e.ghExchange(ghCodeForm(e.ghCode(ghQuery(scope))), "application/json")
	m := r.json(e.t)
	if r.status != http.StatusOK || m["access_token"] == nil {
		e.t.Fatalf("exchange: %s (%s)", r, e.s.LastRejection())
	}
	return m
}

// api calls the REST API at APIURL().
func (e *env) api(method, path string, q url.Values, mods ...mod) *resp {
	e.t.Helper()
	u := e.s.APIURL() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		e.t.Fatal(err)
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

func (r *resp) list(t *testing.T) []map[string]any {
	t.Helper()
	var l []map[string]any
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("not a JSON array: %v: %s", err, r.body)
	}
	return l
}

func tokenAuth(tok string) mod {
	return func(r *http.Request) { r.Header.Set("Authorization", "token "+tok) }
}

// expectGitHubError checks a token-endpoint error: HTTP 200, counted.
func expectGitHubError(t *testing.T, e *env, before int, r *resp, code string) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("GitHub answers token errors with 200, got %s", r)
	}
	var m map[string]any
	if strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		m = r.json(t)
	} else {
		v, err := url.ParseQuery(string(r.body))
		if err != nil {
			t.Fatal(err)
		}
		m = map[string]any{}
		for k := range v {
			m[k] = v.Get(k)
		}
	}
	if m["error"] != code || m["error_description"] == "" || m["error_uri"] == "" || m["access_token"] != nil {
		t.Fatalf("want error %s, got %s", code, r.body)
	}
	if e.s.Count("rejected") != before+1 || e.s.LastRejection() == "" {
		t.Fatalf("rejected %d (want %d), last %q", e.s.Count("rejected"), before+1, e.s.LastRejection())
	}
}

// ---------------------------------------------------------------------------
// Flows

func TestGitHubOAuthAppFlow(t *testing.T) {
	e := ghEnv(t)
	code := e.ghCode(ghQuery("user:email read:org"))

	// Default answer: form-encoded.
	r := e.ghExchange(ghCodeForm(code), "")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		t.Fatalf("content type %q: %s", ct, r)
	}
	v, err := url.ParseQuery(string(r.body))
	if err != nil {
		t.Fatal(err)
	}
	at := v.Get("access_token")
	if !regexp.MustCompile(`^gho_[A-Za-z0-9]{36}$`).MatchString(at) || v.Get("scope") != "user:email,read:org" ||
		v.Get("token_type") != "bearer" || len(v) != 3 {
		t.Fatalf("token answer %s", r.body)
	}
	if !strings.HasPrefix(string(r.body), "access_token=") {
		t.Errorf("field order as documented: %s", r.body)
	}

	for _, auth := range []mod{bearerTok(at), tokenAuth(at)} {
		u := e.api(http.MethodGet, "/user", nil, auth)
		if u.status != http.StatusOK {
			t.Fatalf("/user: %s (%s)", u, e.s.LastRejection())
		}
		m := u.json(t)
		if m["login"] != "octocat" || m["id"] != 1.0 || m["node_id"] != "MDQ6VXNlcjE=" || m["email"] != "octocat@github.com" ||
			m["url"] != e.s.APIURL()+"/users/octocat" || m["html_url"] != e.s.URL()+"/octocat" || m["type"] != "User" {
			t.Errorf("/user %s", u.body)
		}
		if _, ok := m["plan"]; ok {
			t.Errorf("without the user scope /user must hold the public profile only: %s", u.body)
		}
		if u.header.Get("X-OAuth-Scopes") != "user:email, read:org" {
			t.Errorf("X-OAuth-Scopes %q", u.header.Get("X-OAuth-Scopes"))
		}
	}
	em := e.api(http.MethodGet, "/user/emails", nil, bearerTok(at))
	if em.status != http.StatusOK || !jsonEqual(t, em.body, []any{map[string]any{
		"email": "octocat@github.com", "primary": true, "verified": true, "visibility": "public"}}) {
		t.Errorf("/user/emails %s", em)
	}
	orgs := e.api(http.MethodGet, "/user/orgs", nil, bearerTok(at)).list(t)
	if len(orgs) != 1 || orgs[0]["login"] != "github" || orgs[0]["node_id"] != "MDEyOk9yZ2FuaXphdGlvbjE=" ||
		orgs[0]["description"] != "A great organization" || orgs[0]["members_url"] != e.s.APIURL()+"/orgs/github/members{/member}" {
		t.Errorf("/user/orgs %v", orgs)
	}
	teams := e.api(http.MethodGet, "/user/teams", nil, bearerTok(at)).list(t)
	if len(teams) != 1 || teams[0]["slug"] != "justice-league" || teams[0]["name"] != "Justice League" ||
		teams[0]["node_id"] != "MDQ6VGVhbTE=" || teams[0]["permission"] != "admin" {
		t.Fatalf("/user/teams %v", teams)
	}
	if org := teams[0]["organization"].(map[string]any); org["login"] != "github" || org["type"] != "Organization" {
		t.Errorf("team organization %v", org)
	}

	// JSON and XML answers.
	j := e.ghExchange(ghCodeForm(e.ghCode(ghQuery("user"))), "application/json")
	if m := j.json(t); m["scope"] != "user" || m["token_type"] != "bearer" || len(m) != 3 {
		t.Errorf("JSON answer %s", j.body)
	}
	x := e.ghExchange(ghCodeForm(e.ghCode(ghQuery("user"))), "application/xml")
	if !regexp.MustCompile(`^<OAuth><access_token>gho_[A-Za-z0-9]{36}</access_token><scope>user</scope><token_type>bearer</token_type></OAuth>$`).Match(x.body) ||
		!strings.HasPrefix(x.header.Get("Content-Type"), "application/xml") {
		t.Errorf("XML answer %s", x.body)
	}

	if e.s.Count("rejected") != 0 {
		t.Errorf("rejected: %s", e.s.LastRejection())
	}
	for k, want := range map[string]int{"authorize": 3, "approved": 3, "token": 3, "token:authorization_code": 3,
		"userinfo": 2, "emails": 1, "orgs": 1, "teams": 1} {
		if got := e.s.Count(k); got != want {
			t.Errorf("Count(%q) = %d, want %d", k, got, want)
		}
	}
}

func TestGitHubAppExpiringTokens(t *testing.T) {
	e := ghEnv(t, ghApp(true))
	tok := e.ghTokens("user repo") // GitHub Apps use no scopes
	at, rt := str(tok, "access_token"), str(tok, "refresh_token")
	if !regexp.MustCompile(`^ghu_[A-Za-z0-9]{36}$`).MatchString(at) || !regexp.MustCompile(`^ghr_[A-Za-z0-9]{76}$`).MatchString(rt) ||
		tok["expires_in"] != 28800.0 || tok["refresh_token_expires_in"] != 15811200.0 || tok["scope"] != "" || tok["token_type"] != "bearer" {
		t.Fatalf("token answer %v", tok)
	}
	if u := e.api(http.MethodGet, "/user", nil, bearerTok(at)); u.status != http.StatusOK || u.header.Get("X-OAuth-Scopes") != "" {
		t.Fatalf("/user: %s %v", u, u.header)
	}
	if em := e.api(http.MethodGet, "/user/emails", nil, bearerTok(at)); em.status != http.StatusOK {
		t.Errorf("/user/emails with a user access token: %s", em)
	}
	// Fine-grained tokens get an empty organization list.
	if o := e.api(http.MethodGet, "/user/orgs", nil, bearerTok(at)); o.status != http.StatusOK || string(o.body) != "[]\n" {
		t.Errorf("/user/orgs with a GitHub App user token: %s", o)
	}
	if tm := e.api(http.MethodGet, "/user/teams", nil, bearerTok(at)).list(t); len(tm) != 1 {
		t.Errorf("/user/teams %v", tm)
	}

	// Refresh: a new pair; the old refresh and access tokens stop working.
	ref := url.Values{"client_id": {tID}, "client_secret": {tSecret}, "grant_type": {"refresh_token"}, "refresh_token": {rt}}
	r := e.ghExchange(ref, "application/json")
	tok2 := r.json(t)
	at2, rt2 := str(tok2, "access_token"), str(tok2, "refresh_token")
	if at2 == "" || at2 == at || rt2 == "" || rt2 == rt || tok2["expires_in"] != 28800.0 {
		t.Fatalf("refresh answer %s (%s)", r.body, e.s.LastRejection())
	}
	before := e.s.Count("rejected")
	expectGitHubError(t, e, before, e.ghExchange(ref, "application/json"), "bad_refresh_token")
	before = e.s.Count("rejected")
	expectRejected(t, e, before, e.api(http.MethodGet, "/user", nil, bearerTok(at)), http.StatusUnauthorized)
	if u := e.api(http.MethodGet, "/user", nil, bearerTok(at2)); u.status != http.StatusOK {
		t.Errorf("refreshed token: %s", u)
	}
	if e.s.Count("token:refresh_token") != 2 {
		t.Errorf("token:refresh_token %d", e.s.Count("token:refresh_token"))
	}

	// Eight hours later the access token is gone, the refresh token works.
	e.clk.Advance(28800 * time.Second)
	before = e.s.Count("rejected")
	expectRejected(t, e, before, e.api(http.MethodGet, "/user", nil, bearerTok(at2)), http.StatusUnauthorized)
	if !strings.Contains(e.s.LastRejection(), "expired") {
		t.Errorf("LastRejection %q", e.s.LastRejection())
	}
	ref.Set("refresh_token", rt2)
	if m := e.ghExchange(ref, "application/json").json(t); m["access_token"] == nil {
		t.Errorf("refresh after access expiry: %v", m)
	}
	// Six months later the refresh token is gone too.
	rt3 := str(e.ghTokens(""), "refresh_token")
	e.clk.Advance(15811200 * time.Second)
	ref.Set("refresh_token", rt3)
	before = e.s.Count("rejected")
	expectGitHubError(t, e, before, e.ghExchange(ref, ""), "bad_refresh_token")
}

func TestGitHubAppShortAccessTTL(t *testing.T) {
	e := ghEnv(t, ghApp(true))
	e.s.SetAccessTTL(time.Minute)
	tok := e.ghTokens("")
	if tok["expires_in"] != 60.0 {
		t.Fatalf("expires_in %v", tok["expires_in"])
	}
	e.clk.Advance(time.Minute)
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(str(tok, "access_token"))); r.status != http.StatusUnauthorized {
		t.Errorf("after a minute: %s", r)
	}
}

func TestGitHubNonExpiringTokens(t *testing.T) {
	for name, m := range map[string]func(*Config){"oauth-app": func(*Config) {}, "github-app": ghApp(false)} {
		t.Run(name, func(t *testing.T) {
			e := ghEnv(t, m)
			tok := e.ghTokens("user")
			if _, ok := tok["expires_in"]; ok {
				t.Errorf("non-expiring token with expires_in: %v", tok)
			}
			if _, ok := tok["refresh_token"]; ok {
				t.Errorf("non-expiring token with a refresh token: %v", tok)
			}
			if name == "github-app" && (!strings.HasPrefix(str(tok, "access_token"), "ghu_") || tok["scope"] != "") {
				t.Errorf("GitHub App token %v", tok)
			}
			e.clk.Advance(365 * 24 * time.Hour)
			if r := e.api(http.MethodGet, "/user", nil, bearerTok(str(tok, "access_token"))); r.status != http.StatusOK {
				t.Errorf("a year later: %s", r)
			}
			before := e.s.Count("rejected")
			expectGitHubError(t, e, before, e.ghExchange(url.Values{"client_id": {tID}, "client_secret": {tSecret},
				"grant_type": {"refresh_token"}, "refresh_token": {"ghr_whatever"}}, ""), "bad_refresh_token")
		})
	}
}

// ---------------------------------------------------------------------------
// Token endpoint strictness

func TestGitHubTokenErrors(t *testing.T) {
	pkceQuery := func() url.Values {
		q := ghQuery("user")
		q.Set("code_challenge", s256(verifier))
		q.Set("code_challenge_method", "S256")
		return q
	}
	cases := []struct {
		name string
		run  func(e *env) *resp
		code string // "" : accepted
	}{
		{"wrong secret", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(ghQuery("")))
			f.Set("client_secret", "nope")
			return e.ghExchange(f, "application/json")
		}, "incorrect_client_credentials"},
		{"wrong client_id", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(ghQuery("")))
			f.Set("client_id", "other")
			return e.ghExchange(f, "")
		}, "incorrect_client_credentials"},
		{"secret only in HTTP Basic", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(ghQuery("")))
			f.Del("client_secret")
			return e.postForm("/login/oauth/access_token", f, basic(tID, tSecret))
		}, "incorrect_client_credentials"},
		{"reused code", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(ghQuery("")))
			if r := e.ghExchange(f, ""); r.status != 200 || !strings.Contains(string(r.body), "access_token=") {
				e.t.Fatalf("first exchange %s", r)
			}
			return e.ghExchange(f, "")
		}, "bad_verification_code"},
		{"expired code", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(ghQuery("")))
			e.clk.Advance(10*time.Minute + time.Second)
			return e.ghExchange(f, "application/json")
		}, "bad_verification_code"},
		{"code just before expiry", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(ghQuery("")))
			e.clk.Advance(10*time.Minute - time.Second)
			return e.ghExchange(f, "application/json")
		}, ""},
		{"unknown code", func(e *env) *resp { return e.ghExchange(ghCodeForm("0123456789abcdef0123"), "") }, "bad_verification_code"},
		{"missing code", func(e *env) *resp { return e.ghExchange(ghCodeForm(""), "") }, "bad_verification_code"},
		{"redirect_uri differs", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(ghQuery("")))
			f.Set("redirect_uri", tRedirect+"/sub")
			return e.ghExchange(f, "application/json")
		}, "redirect_uri_mismatch"},
		{"redirect_uri left out", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(ghQuery("")))
			f.Del("redirect_uri")
			return e.ghExchange(f, "application/json")
		}, ""},
		{"redirect_uri of a sub-path kept", func(e *env) *resp {
			q := ghQuery("")
			q.Set("redirect_uri", tRedirect+"/deeper")
			f := ghCodeForm(e.ghCode(q))
			f.Set("redirect_uri", tRedirect+"/deeper")
			return e.ghExchange(f, "application/json")
		}, ""},
		{"PKCE verifier missing", func(e *env) *resp {
			return e.ghExchange(ghCodeForm(e.ghCode(pkceQuery())), "application/json")
		}, "bad_verification_code"},
		{"PKCE verifier wrong", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(pkceQuery()))
			f.Set("code_verifier", strings.Repeat("x", 43))
			return e.ghExchange(f, "application/json")
		}, "bad_verification_code"},
		{"PKCE verifier right", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(pkceQuery()))
			f.Set("code_verifier", verifier)
			return e.ghExchange(f, "application/json")
		}, ""},
		{"PKCE challenge without method is S256", func(e *env) *resp {
			q := pkceQuery()
			q.Del("code_challenge_method")
			f := ghCodeForm(e.ghCode(q))
			f.Set("code_verifier", verifier)
			return e.ghExchange(f, "application/json")
		}, ""},
		{"grant_type=authorization_code", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(ghQuery("")))
			f.Set("grant_type", "authorization_code")
			return e.ghExchange(f, "application/json")
		}, ""},
		{"device grant", func(e *env) *resp {
			return e.ghExchange(url.Values{"client_id": {tID}, "client_secret": {tSecret},
				"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {"x"}}, "")
		}, "unsupported_grant_type"},
		{"parameters in the query string", func(e *env) *resp {
			return e.do(http.MethodPost, "/login/oauth/access_token", ghCodeForm(e.ghCode(ghQuery(""))), "", "",
				func(r *http.Request) { r.Header.Set("Accept", "application/json") })
		}, ""},
		{"JSON body", func(e *env) *resp {
			f := ghCodeForm(e.ghCode(ghQuery("")))
			return e.postJSON("/login/oauth/access_token", map[string]string{"client_id": tID, "client_secret": tSecret,
				"code": f.Get("code")}, func(r *http.Request) { r.Header.Set("Accept", "application/json") })
		}, ""},
		{"unverified primary email", func(e *env) *resp {
			u := DefaultGitHubUser()
			u.Emails[0].Verified = false
			e.s.SetGitHubUser(u)
			return e.ghExchange(ghCodeForm(e.ghCode(ghQuery(""))), "application/json")
		}, "unverified_user_email"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := ghEnv(t)
			before := e.s.Count("rejected")
			r := tc.run(e)
			if tc.code == "" {
				if r.status != 200 || e.s.Count("rejected") != before || !strings.Contains(string(r.body), "access_token") {
					t.Fatalf("want accepted, got %s (%s)", r, e.s.LastRejection())
				}
				return
			}
			expectGitHubError(t, e, before, r, tc.code)
			t.Logf("refused: %s", e.s.LastRejection())
		})
	}
}

func TestGitHubTokenEndpointMethod(t *testing.T) {
	e := ghEnv(t)
	expectRejected(t, e, 0, e.get("/login/oauth/access_token", nil), http.StatusMethodNotAllowed)
}

// ---------------------------------------------------------------------------
// Authorization request

func TestGitHubRedirectRules(t *testing.T) {
	// The "Redirect URLs" table of "Authorizing OAuth apps".
	const cb = "http://example.com/path"
	for _, c := range []struct {
		uri string
		ok  bool
	}{
		{"http://example.com/path", true},
		{"http://example.com/path/subdir/other", true},
		{"http://oauth.example.com/path", true},
		{"http://oauth.example.com/path/subdir/other", true},
		{"http://example.com/bar", false},
		{"http://example.com/", false},
		{"http://example.com:8080/path", false},
		{"http://oauth.example.com:8080/path", false},
		{"http://example.org", false},
		{"http://example.com/pathology", false},
		{"https://example.com/path", false},
		{"http://evilexample.com/path", false},
	} {
		if got := githubRedirectOK(cb, c.uri, false); got != c.ok {
			t.Errorf("OAuth app, callback %s, redirect_uri %s: got %v, want %v", cb, c.uri, got, c.ok)
		}
	}
	// "Loopback redirect urls": the port may differ.
	if !githubRedirectOK("http://127.0.0.1/path", "http://127.0.0.1:1234/path", false) {
		t.Error("loopback redirect_uri with another port must be accepted")
	}
	if githubRedirectOK("http://127.0.0.1/path", "http://localhost:1234/path", false) {
		t.Error("localhost is not the loopback literal")
	}
	// GitHub Apps: exact match.
	if githubRedirectOK(cb, cb+"/subdir", true) || !githubRedirectOK(cb, cb, true) {
		t.Error("GitHub App redirect_uri must match a callback URL exactly")
	}
}

func TestGitHubAuthorizeStrict(t *testing.T) {
	mismatch := func(t *testing.T, e *env, r *resp) {
		loc := r.loc(t)
		q := loc.Query()
		if !strings.HasPrefix(loc.String(), tRedirect+"?") || q.Get("error") != "redirect_uri_mismatch" ||
			q.Get("error_description") != "The redirect_uri MUST match the registered callback URL for this application." ||
			q.Get("error_uri") == "" || q.Get("state") != tState {
			t.Errorf("mismatch redirect %s", loc)
		}
	}
	invalid := func(t *testing.T, e *env, r *resp) {
		if q := r.loc(t).Query(); q.Get("error") != "invalid_request" || q.Get("state") != tState {
			t.Errorf("location %s", r.loc(t))
		}
	}
	q := func(mod func(url.Values)) func(e *env) *resp {
		return func(e *env) *resp {
			v := ghQuery("user")
			mod(v)
			return e.get("/login/oauth/authorize", v)
		}
	}
	runStrict(t, NewGitHub, []strictCase{
		{name: "missing client_id", status: 404, check: noLocation, run: q(func(v url.Values) { v.Del("client_id") })},
		{name: "unknown client_id", status: 404, check: noLocation, run: q(func(v url.Values) { v.Set("client_id", "other") })},
		{name: "duplicate state", status: 400, check: noLocation, run: q(func(v url.Values) { v["state"] = []string{"a", "b"} })},
		{name: "redirect_uri elsewhere", status: 302, check: mismatch,
			run: q(func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:9999/other") })},
		{name: "redirect_uri on another host", status: 302, check: mismatch,
			run: q(func(v url.Values) { v.Set("redirect_uri", "http://evil.example/oauth/callback") })},
		{name: "redirect_uri on another loopback port (allowed)", status: 302, accepted: true,
			run: q(func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:1234/oauth/callback") }),
			check: func(t *testing.T, e *env, r *resp) {
				if !strings.HasPrefix(r.loc(t).String(), "http://127.0.0.1:1234/oauth/callback?code=") {
					t.Errorf("location %s", r.loc(t))
				}
			}},
		{name: "no redirect_uri: the callback URL", status: 302, accepted: true,
			run: q(func(v url.Values) { v.Del("redirect_uri") }),
			check: func(t *testing.T, e *env, r *resp) {
				if !strings.HasPrefix(r.loc(t).String(), tRedirect+"?code=") {
					t.Errorf("location %s", r.loc(t))
				}
			}},
		{name: "PKCE plain", status: 302, check: invalid, run: q(func(v url.Values) {
			v.Set("code_challenge", strings.Repeat("a", 43))
			v.Set("code_challenge_method", "plain")
		})},
		{name: "PKCE method without challenge", status: 302, check: invalid,
			run: q(func(v url.Values) { v.Set("code_challenge_method", "S256") })},
		{name: "PKCE malformed challenge", status: 302, check: invalid,
			run: q(func(v url.Values) { v.Set("code_challenge", "short") })},
		{name: "login, allow_signup, prompt accepted", status: 302, accepted: true, run: q(func(v url.Values) {
			v.Set("login", "octocat")
			v.Set("allow_signup", "false")
			v.Set("prompt", "select_account")
		})},
	})
	// GitHub Apps: exact match only.
	e := ghEnv(t, ghApp(true))
	v := ghQuery("")
	v.Set("redirect_uri", tRedirect+"/sub")
	r := e.get("/login/oauth/authorize", v)
	expectRejected(t, e, 0, r, http.StatusFound)
	mismatch(t, e, r)
}

func TestGitHubDenyAndConsent(t *testing.T) {
	e := ghEnv(t)
	e.s.Deny(true)
	loc := e.authorize("/login/oauth/authorize", ghQuery("user"))
	q := loc.Query()
	if q.Get("error") != "access_denied" || q.Get("error_description") != "The user has denied your application access." ||
		q.Get("error_uri") == "" || q.Get("state") != tState || q.Has("code") {
		t.Errorf("denial %s", loc)
	}
	if e.s.Count("denied") != 1 || e.s.Count("rejected") != 0 {
		t.Errorf("counts %v", e.s.Counts())
	}

	e = ghEnv(t, func(c *Config) { c.AutoApprove = false })
	idRE := regexp.MustCompile(`name="request_id" value="([0-9a-f]+)"`)
	consent := func(q url.Values) string {
		t.Helper()
		r := e.get("/login/oauth/authorize", q)
		m := idRE.FindStringSubmatch(string(r.body))
		if r.status != http.StatusOK || m == nil || !strings.Contains(string(r.body), `action="/login/oauth/authorize"`) {
			t.Fatalf("want the consent page, got %s", r)
		}
		r = e.postForm("/login/oauth/authorize", url.Values{"request_id": {m[1]}, "decision": {"approve"}})
		if r.status != http.StatusFound {
			t.Fatalf("consent POST %s", r)
		}
		return r.loc(t).Query().Get("code")
	}
	exchange := func(code string) map[string]any {
		t.Helper()
		return e.ghExchange(ghCodeForm(code), "application/json").json(t)
	}
	if m := exchange(consent(ghQuery("user"))); m["scope"] != "user" {
		t.Fatalf("first authorization %v", m)
	}
	// Already authorized for these scopes: no consent page.
	if m := exchange(e.ghCode(ghQuery("user:email"))); m["scope"] != "user:email" {
		t.Errorf("covered scope %v", m)
	}
	// A new scope asks again.
	if m := exchange(consent(ghQuery("read:org"))); m["scope"] != "read:org" {
		t.Errorf("new scope %v", m)
	}
	// Without scope: every scope granted so far, no consent.
	if m := exchange(e.ghCode(ghQuery(""))); m["scope"] != "read:org,user" {
		t.Errorf("no scope after two grants %v", m)
	}
	// prompt=select_account forces the page.
	sel := ghQuery("user")
	sel.Set("prompt", "select_account")
	if consent(sel) == "" {
		t.Error("no code after select_account")
	}
	// The user revokes the app: consent again.
	e.s.RevokeAuthorization()
	if consent(ghQuery("user")) == "" {
		t.Error("no code after RevokeAuthorization")
	}
	// A first-time user without scope gets no scope.
	f := ghEnv(t)
	if m := f.ghExchange(ghCodeForm(f.ghCode(ghQuery(""))), "application/json").json(t); m["scope"] != "" {
		t.Errorf("first authorization without scope %v", m)
	}
}

func TestGitHubScopeNormalization(t *testing.T) {
	for req, want := range map[string]string{
		"user,gist,user:email":      "user,gist",
		"read:org admin:org":        "admin:org",
		"repo public_repo workflow": "repo,workflow",
		"user no-such-scope":        "user",
		"codespace":                 "codespace",
	} {
		e := ghEnv(t)
		if got := str(e.ghTokens(req), "scope"); got != want {
			t.Errorf("scope %q: got %q, want %q", req, got, want)
		}
	}
	ent := ghEnv(t, func(c *Config) { c.GitHub.Enterprise = true })
	if got := str(ent.ghTokens("codespace site_admin"), "scope"); got != "site_admin" {
		t.Errorf("GHES scopes: %q", got)
	}
}

// ---------------------------------------------------------------------------
// API

func TestGitHubAPIScopes(t *testing.T) {
	e := ghEnv(t)
	cases := []struct {
		scope, path string
		status      int
	}{
		{"", "/user", 200},
		{"", "/user/emails", 404},
		{"read:user", "/user/emails", 404},
		{"user:email", "/user/emails", 200},
		{"user", "/user/emails", 200},
		{"", "/user/orgs", 403},
		{"gist", "/user/orgs", 403},
		{"read:org", "/user/orgs", 200},
		{"admin:org", "/user/orgs", 200},
		{"user", "/user/orgs", 200},
		{"", "/user/teams", 404},
		{"repo", "/user/teams", 200},
		{"write:org", "/user/teams", 200},
		{"user", "/user/teams", 200},
		{"public_repo", "/user/teams", 404},
	}
	for _, c := range cases {
		f := ghEnv(t)
		at := str(f.ghTokens(c.scope), "access_token")
		before := f.s.Count("rejected")
		r := f.api(http.MethodGet, c.path, nil, bearerTok(at))
		if r.status != c.status {
			t.Errorf("scope %q %s: got %s, want %d", c.scope, c.path, r, c.status)
			continue
		}
		if c.status != 200 {
			expectRejected(t, f, before, r, c.status)
			m := r.json(t)
			if m["message"] == "" || !strings.HasPrefix(str(m, "documentation_url"), "https://docs.github.com/rest/") {
				t.Errorf("error body %s", r.body)
			}
		}
	}
	at := str(e.ghTokens("user:email"), "access_token")
	r := e.api(http.MethodGet, "/user/orgs", nil, bearerTok(at))
	if r.header.Get("X-Accepted-OAuth-Scopes") != "admin:org, read:org, user, write:org" || r.header.Get("X-OAuth-Scopes") != "user:email" {
		t.Errorf("scope headers %v", r.header)
	}
	// Private profile information needs the user scope.
	full := e.api(http.MethodGet, "/user", nil, bearerTok(str(e.ghTokens("user"), "access_token"))).json(t)
	for _, k := range []string{"plan", "private_gists", "two_factor_authentication", "disk_usage"} {
		if _, ok := full[k]; !ok {
			t.Errorf("/user with the user scope lacks %s", k)
		}
	}
}

func TestGitHubAPIAuthErrors(t *testing.T) {
	e := ghEnv(t)
	at := str(e.ghTokens("user"), "access_token")
	check := func(call func() *resp, status int, message string) {
		t.Helper()
		before := e.s.Count("rejected")
		r := call()
		expectRejected(t, e, before, r, status)
		if message != "" {
			if m := r.json(t); m["message"] != message || m["documentation_url"] == nil {
				t.Errorf("body %s", r.body)
			}
		}
	}
	check(func() *resp { return e.api(http.MethodGet, "/user", nil) }, 401, "Requires authentication")
	check(func() *resp { return e.api(http.MethodGet, "/user", nil, bearerTok("gho_nope")) }, 401, "Bad credentials")
	if m := e.api(http.MethodGet, "/user", nil, bearerTok("gho_nope")).json(t); m["documentation_url"] != "https://docs.github.com/rest" {
		t.Errorf("Bad credentials body %v", m)
	}
	check(func() *resp {
		return e.api(http.MethodGet, "/user", nil, func(r *http.Request) { r.Header.Set("Authorization", "Basic "+at) })
	}, 401, "Requires authentication")
	check(func() *resp {
		return e.api(http.MethodGet, "/user", nil, bearerTok(at), func(r *http.Request) { r.Header.Set("User-Agent", "") })
	}, 403, "")
	check(func() *resp {
		return e.api(http.MethodGet, "/user", nil, bearerTok(at), func(r *http.Request) { r.Header.Set("X-GitHub-Api-Version", "2021-01-01") })
	}, 400, "")
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(at), func(r *http.Request) { r.Header.Set("X-GitHub-Api-Version", "2022-11-28") }); r.status != 200 {
		t.Errorf("supported version: %s", r)
	}
	check(func() *resp { return e.api(http.MethodGet, "/user/", nil, bearerTok(at)) }, 404, "Not Found")
	check(func() *resp { return e.api(http.MethodPost, "/user/emails", nil, bearerTok(at)) }, 405, "")

	// Revoking one token.
	if !e.s.Revoke(at) {
		t.Fatal("Revoke")
	}
	check(func() *resp { return e.api(http.MethodGet, "/user", nil, bearerTok(at)) }, 401, "Bad credentials")

	// The user revokes the app.
	at2 := str(e.ghTokens("user"), "access_token")
	e.s.RevokeAuthorization()
	check(func() *resp { return e.api(http.MethodGet, "/user/emails", nil, bearerTok(at2)) }, 401, "Bad credentials")
}

func TestGitHubHosts(t *testing.T) {
	e := ghEnv(t)
	if e.s.APIURL() == "" || e.s.APIURL() == e.s.URL() {
		t.Fatalf("GitHub.com needs its own API host: %q vs %q", e.s.APIURL(), e.s.URL())
	}
	at := str(e.ghTokens("user"), "access_token")
	// No API on the web host, no login on the API host.
	before := e.s.Count("rejected")
	expectRejected(t, e, before, e.get("/user", nil, bearerTok(at)), http.StatusNotFound)
	expectRejected(t, e, before+1, e.api(http.MethodGet, "/login/oauth/authorize", ghQuery("")), http.StatusNotFound)
	if e.s.Count("not_found") != 2 {
		t.Errorf("not_found %d", e.s.Count("not_found"))
	}
}

func TestGitHubEnterprise(t *testing.T) {
	e := ghEnv(t, func(c *Config) { c.GitHub.Enterprise = true })
	if e.s.APIURL() != e.s.URL()+"/api/v3" {
		t.Fatalf("APIURL %q", e.s.APIURL())
	}
	at := str(e.ghTokens("user read:org"), "access_token")
	r := e.api(http.MethodGet, "/user", nil, bearerTok(at))
	if r.status != 200 {
		t.Fatalf("/api/v3/user: %s", r)
	}
	m := r.json(t)
	if m["url"] != e.s.URL()+"/api/v3/users/octocat" || m["html_url"] != e.s.URL()+"/octocat" ||
		!strings.HasPrefix(str(m, "avatar_url"), e.s.URL()+"/avatars/u/1") {
		t.Errorf("GHES URLs %v", m)
	}
	if r.header.Get("X-RateLimit-Limit") != "" {
		t.Errorf("GHES has rate limits off by default, got headers %v", r.header)
	}
	orgs := e.api(http.MethodGet, "/user/orgs", nil, bearerTok(at)).list(t)
	if len(orgs) != 1 || orgs[0]["url"] != e.s.URL()+"/api/v3/orgs/github" {
		t.Errorf("orgs %v", orgs)
	}
	before := e.s.Count("rejected")
	expectRejected(t, e, before, e.get("/user", nil, bearerTok(at)), http.StatusNotFound)
	// Pagination links stay under /api/v3.
	u := DefaultGitHubUser()
	for i := 0; i < 31; i++ {
		u.Orgs = append(u.Orgs, GitHubOrg{Login: fmt.Sprintf("org-%02d", i)})
	}
	e.s.SetGitHubUser(u)
	l := e.api(http.MethodGet, "/user/orgs", nil, bearerTok(at)).header.Get("Link")
	if l != "<"+e.s.URL()+"/api/v3/user/orgs?page=2>; rel=\"next\", <"+e.s.URL()+"/api/v3/user/orgs?page=2>; rel=\"last\"" {
		t.Errorf("GHES Link %q", l)
	}
	// A rate limit switched on by the site administrator.
	e.s.SetRateLimited(http.StatusTooManyRequests, time.Time{})
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(at)); r.status != 429 || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("GHES rate limited: %s %v", r, r.header)
	}
}

func TestGitHubPagination(t *testing.T) {
	e := ghEnv(t)
	u := DefaultGitHubUser()
	u.Orgs, u.Teams = nil, nil
	for i := 0; i < 75; i++ {
		u.Orgs = append(u.Orgs, GitHubOrg{Login: fmt.Sprintf("org-%03d", i)})
	}
	for i := 0; i < 250; i++ {
		u.Teams = append(u.Teams, GitHubTeam{Slug: fmt.Sprintf("team-%03d", i), Org: fmt.Sprintf("org-%03d", i%75)})
	}
	e.s.SetGitHubUser(u)
	at := str(e.ghTokens("read:org"), "access_token")
	api := e.s.APIURL()
	page := func(path string, q url.Values) ([]map[string]any, string) {
		t.Helper()
		r := e.api(http.MethodGet, path, q, bearerTok(at))
		if r.status != 200 {
			t.Fatalf("%s %v: %s", path, q, r)
		}
		return r.list(t), r.header.Get("Link")
	}
	l, link := page("/user/orgs", nil)
	if len(l) != 30 || l[0]["login"] != "org-000" || l[29]["login"] != "org-029" {
		t.Fatalf("first page: %d items", len(l))
	}
	if link != `<`+api+`/user/orgs?page=2>; rel="next", <`+api+`/user/orgs?page=3>; rel="last"` {
		t.Errorf("first page Link %q", link)
	}
	l, link = page("/user/orgs", url.Values{"per_page": {"50"}, "page": {"2"}})
	if len(l) != 25 || l[0]["login"] != "org-050" {
		t.Errorf("per_page=50 page=2: %d items", len(l))
	}
	if link != `<`+api+`/user/orgs?per_page=50&page=1>; rel="prev", <`+api+`/user/orgs?per_page=50&page=1>; rel="first"` {
		t.Errorf("last page Link %q", link)
	}
	l, link = page("/user/orgs", url.Values{"per_page": {"500"}})
	if len(l) != 75 || link != "" {
		t.Errorf("per_page is capped at 100 and one page needs no Link: %d items, Link %q", len(l), link)
	}
	l, link = page("/user/orgs", url.Values{"page": {"9"}})
	if len(l) != 0 || !strings.Contains(link, `rel="prev"`) || strings.Contains(link, `rel="next"`) {
		t.Errorf("past the end: %d items, Link %q", len(l), link)
	}
	// Walking the teams with the Link header returns each team once.
	seen := map[string]bool{}
	next := api + "/user/teams?per_page=100"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("Link walk does not end")
		}
		r := e.api(http.MethodGet, strings.TrimPrefix(next, api), nil, bearerTok(at))
		for _, tm := range r.list(t) {
			key := tm["organization"].(map[string]any)["login"].(string) + "/" + tm["slug"].(string)
			if seen[key] {
				t.Fatalf("team %s twice", key)
			}
			seen[key] = true
		}
		next = ""
		if m := regexp.MustCompile(`<([^>]+)>; rel="next"`).FindStringSubmatch(r.header.Get("Link")); m != nil {
			next = m[1]
		}
	}
	if len(seen) != 250 {
		t.Errorf("walked %d teams, want 250", len(seen))
	}
	// Emails are paginated too.
	u.Emails = nil
	for i := 0; i < 3; i++ {
		u.Emails = append(u.Emails, GitHubEmail{Email: fmt.Sprintf("u%d@example.org", i), Primary: i == 0, Verified: true})
	}
	e.s.SetGitHubUser(u)
	at = str(e.ghTokens("user"), "access_token")
	if l, link := page("/user/emails", url.Values{"per_page": {"2"}}); len(l) != 2 || !strings.Contains(link, "per_page=2&page=2") ||
		l[1]["visibility"] != nil {
		t.Errorf("emails page: %v, Link %q", l, link)
	}
}

func TestGitHubUserHooks(t *testing.T) {
	e := ghEnv(t)
	at := str(e.ghTokens("user read:org"), "access_token")
	e.s.SetGitHubUser(GitHubUser{Login: "new-login", ID: 4242,
		Emails: []GitHubEmail{{Email: "n@example.org", Primary: true, Verified: true, Visibility: "private"},
			{Email: "other@example.org", Verified: false}},
		Orgs:  []GitHubOrg{{Login: "acme", ID: 77, Description: ""}},
		Teams: []GitHubTeam{{Slug: "ops", Org: "acme"}, {Slug: "ghost", Org: "not-listed"}},
	})
	m := e.api(http.MethodGet, "/user", nil, bearerTok(at)).json(t)
	if m["login"] != "new-login" || m["id"] != 4242.0 || m["name"] != nil || m["email"] != nil ||
		m["node_id"] != "MDQ6VXNlcjQyNDI=" {
		t.Errorf("the same token sees the new user at once: %v", m)
	}
	if k, ok := m["name"]; !ok || k != nil {
		t.Errorf("name must be present and null")
	}
	em := e.api(http.MethodGet, "/user/emails", nil, bearerTok(at)).list(t)
	if len(em) != 2 || em[0]["visibility"] != "private" || em[1]["visibility"] != nil || em[1]["verified"] != false {
		t.Errorf("emails %v", em)
	}
	orgs := e.api(http.MethodGet, "/user/orgs", nil, bearerTok(at)).list(t)
	if len(orgs) != 1 || orgs[0]["id"] != 77.0 || orgs[0]["description"] != nil {
		t.Errorf("orgs %v", orgs)
	}
	teams := e.api(http.MethodGet, "/user/teams", nil, bearerTok(at)).list(t)
	if len(teams) != 2 || teams[0]["name"] != "ops" || teams[0]["privacy"] != "closed" || teams[0]["permission"] != "pull" ||
		teams[1]["organization"].(map[string]any)["login"] != "not-listed" || teams[0]["id"] == teams[1]["id"] {
		t.Errorf("teams %v", teams)
	}
	// A raw /user JSON, then back to the structured user.
	e.s.SetUser(map[string]any{"login": "raw", "id": 9, "email": nil})
	if m := e.api(http.MethodGet, "/user", nil, bearerTok(at)); !jsonEqual(t, m.body, map[string]any{"login": "raw", "id": 9, "email": nil}) {
		t.Errorf("raw /user %s", m.body)
	}
	e.s.SetGitHubUser(DefaultGitHubUser())
	if m := e.api(http.MethodGet, "/user", nil, bearerTok(at)).json(t); m["login"] != "octocat" {
		t.Errorf("SetGitHubUser must drop the raw JSON: %v", m)
	}
	// Config.GitHub.User.
	f := ghEnv(t, func(c *Config) { c.GitHub.User = &GitHubUser{Login: "cfg", ID: 5} })
	if m := f.api(http.MethodGet, "/user", nil, bearerTok(str(f.ghTokens(""), "access_token"))).json(t); m["login"] != "cfg" {
		t.Errorf("Config.GitHub.User: %v", m)
	}
	if d := DefaultUser("github"); d["login"] != "octocat" || d["url"] != "https://api.github.com/users/octocat" {
		t.Errorf("DefaultUser(github) %v", d)
	}
	if s, err := New("GitHub", Config{}); err != nil || s.Name() != "github" {
		t.Errorf("New(github): %v", err)
	}
}

func TestGitHubRateLimitAndFaults(t *testing.T) {
	e := ghEnv(t)
	at := str(e.ghTokens("user"), "access_token")
	r := e.api(http.MethodGet, "/user", nil, bearerTok(at))
	h := r.header
	reset, _ := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
	if h.Get("X-RateLimit-Limit") != "5000" || h.Get("X-RateLimit-Remaining") != "4999" || h.Get("X-RateLimit-Used") != "1" ||
		h.Get("X-RateLimit-Resource") != "core" || reset != e.clk.Now().Add(time.Hour).Unix() {
		t.Errorf("rate headers %v", h)
	}
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(at)); r.header.Get("X-RateLimit-Remaining") != "4998" {
		t.Errorf("remaining %q", r.header.Get("X-RateLimit-Remaining"))
	}

	for _, status := range []int{403, 429} {
		resetAt := e.clk.Now().Add(10 * time.Minute).Truncate(time.Second)
		e.s.SetRateLimited(status, resetAt)
		before := e.s.Count("rejected")
		r := e.api(http.MethodGet, "/user/emails", nil, bearerTok(at))
		if r.status != status || r.header.Get("X-RateLimit-Remaining") != "0" ||
			r.header.Get("X-RateLimit-Reset") != strconv.FormatInt(resetAt.Unix(), 10) {
			t.Fatalf("rate limited: %s %v", r, r.header)
		}
		if m := r.json(t); m["message"] != "API rate limit exceeded for user ID 1." || m["documentation_url"] == nil {
			t.Errorf("body %s", r.body)
		}
		if e.s.Count("rejected") != before {
			t.Error("an injected rate limit is not a rejection")
		}
		e.clk.Advance(10 * time.Minute)
		if r := e.api(http.MethodGet, "/user", nil, bearerTok(at)); r.status != 200 {
			t.Errorf("after x-ratelimit-reset: %s", r)
		}
	}
	e.s.SetRateLimited(403, time.Time{})
	e.s.SetRateLimited(0, time.Time{})
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(at)); r.status != 200 {
		t.Errorf("after SetRateLimited(0): %s", r)
	}
	if e.s.Count("rate_limited") != 2 {
		t.Errorf("rate_limited %d", e.s.Count("rate_limited"))
	}

	e.s.SetServerError(http.StatusBadGateway)
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(at)); r.status != 502 {
		t.Errorf("API with SetServerError: %s", r)
	}
	if r := e.ghExchange(ghCodeForm("0123456789abcdef0123"), "application/json"); r.status != 502 {
		t.Errorf("token endpoint with SetServerError: %s", r)
	}
	e.s.SetServerError(0)
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(at)); r.status != 200 {
		t.Errorf("after SetServerError(0): %s", r)
	}
	if e.s.Count("server_error") != 2 || e.s.Count("rejected") != 0 {
		t.Errorf("counts %v", e.s.Counts())
	}
}

func TestGitHubRateLimitExhausted(t *testing.T) {
	e := ghEnv(t)
	at := str(e.ghTokens("user"), "access_token")
	e.s.mu.Lock()
	e.s.gh.rateUsed = githubRateLimit - 1
	e.s.gh.winReset = e.clk.Now().Add(time.Hour)
	e.s.mu.Unlock()
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(at)); r.status != 200 || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("the 5000th request: %s %v", r, r.header)
	}
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(at)); r.status != 403 || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("the 5001st request: %s", r)
	}
	e.clk.Advance(time.Hour)
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(at)); r.status != 200 || r.header.Get("X-RateLimit-Remaining") != "4999" {
		t.Errorf("a new hour: %s %v", r, r.header)
	}
}

func TestGitHubDeleteAppToken(t *testing.T) {
	e := ghEnv(t)
	del := func(path string, body string, mods ...mod) *resp {
		t.Helper()
		req, _ := http.NewRequest(http.MethodDelete, e.s.APIURL()+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for _, m := range mods {
			m(req)
		}
		res, err := e.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return &resp{status: res.StatusCode, header: res.Header, body: b}
	}
	at := str(e.ghTokens("user"), "access_token")
	path := "/applications/" + tID + "/token"
	before := e.s.Count("rejected")
	expectRejected(t, e, before, del(path, `{"access_token":"`+at+`"}`), http.StatusNotFound)
	expectRejected(t, e, before+1, del(path, `{"access_token":"`+at+`"}`, basic(tID, "wrong")), http.StatusNotFound)
	expectRejected(t, e, before+2, del(path, `{}`, basic(tID, tSecret)), http.StatusUnprocessableEntity)
	expectRejected(t, e, before+3, del(path, `{"access_token":"gho_unknown"}`, basic(tID, tSecret)), http.StatusNotFound)
	expectRejected(t, e, before+4, del("/applications/other/token", `{"access_token":"`+at+`"}`, basic(tID, tSecret)), http.StatusNotFound)
	if r := del(path, `{"access_token":"`+at+`"}`, basic(tID, tSecret)); r.status != http.StatusNoContent {
		t.Fatalf("delete: %s (%s)", r, e.s.LastRejection())
	}
	if r := e.api(http.MethodGet, "/user", nil, bearerTok(at)); r.status != 401 {
		t.Errorf("deleted token: %s", r)
	}
	// Deleting the grant revokes every token.
	a, b := str(e.ghTokens("user"), "access_token"), str(e.ghTokens("user"), "access_token")
	if r := del("/applications/"+tID+"/grant", `{"access_token":"`+a+`"}`, basic(tID, tSecret)); r.status != http.StatusNoContent {
		t.Fatalf("delete grant: %s", r)
	}
	if !e.s.IsRevoked(a) || !e.s.IsRevoked(b) {
		t.Error("grant deletion must revoke every token")
	}
	if e.s.Count("revoke") != 5 || e.s.Count("revoke_grant") != 1 || e.s.Count("not_found") != 1 {
		t.Errorf("counts %v", e.s.Counts())
	}
}

func TestGitHubConcurrentUse(t *testing.T) {
	e := ghEnv(t, ghApp(true))
	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.get("/login/oauth/authorize", ghQuery(""))
			code := r.loc(t).Query().Get("code")
			x := e.ghExchange(ghCodeForm(code), "application/json")
			var m map[string]any
			_ = json.Unmarshal(x.body, &m)
			at, _ := m["access_token"].(string)
			for _, p := range []string{"/user", "/user/emails", "/user/orgs", "/user/teams"} {
				if r := e.api(http.MethodGet, p, nil, bearerTok(at)); r.status != 200 {
					errs <- p + ": " + r.String()
				}
			}
			if i := len(at); i == 0 {
				errs <- "no token: " + string(x.body)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			u := DefaultGitHubUser()
			u.Name = fmt.Sprint("n", i)
			e.s.SetGitHubUser(u)
		}
	}()
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Error(s)
	}
}

package testidp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const (
	testClientID  = "app"
	testSecret    = "app-secret"
	testRedirect  = "http://app.example/callback"
	testRedirect2 = "http://app.example/other-callback"
)

type fixture struct {
	t        *testing.T
	idp      *Server
	provider *oidc.Provider
	cfg      oauth2.Config
	ctx      context.Context
	http     *http.Client // does not follow redirects, keeps cookies
}

func setup(t *testing.T, opts Options) *fixture {
	t.Helper()
	if opts.Users == nil {
		opts.Users = DemoUsers()
	}
	if opts.Clients == nil {
		opts.Clients = []Client{{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect, testRedirect2}}}
	}
	idp, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	provider, err := oidc.NewProvider(ctx, idp.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	ep := provider.Endpoint()
	// Explicit style: auto-detection would retry a failed request with the
	// other style and hide single-shot faults.
	ep.AuthStyle = oauth2.AuthStyleInHeader
	return &fixture{
		t: t, idp: idp, provider: provider, ctx: ctx,
		cfg: oauth2.Config{
			ClientID: testClientID, ClientSecret: testSecret, RedirectURL: testRedirect,
			Endpoint: ep, Scopes: []string{oidc.ScopeOpenID, "profile", "email", "groups"},
		},
		http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// get performs a GET without following redirects.
func (f *fixture) get(u string) *http.Response {
	f.t.Helper()
	resp, err := f.http.Get(u)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// callback follows an authorization redirect and returns its query.
func callback(t *testing.T, resp *http.Response) url.Values {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("expected 302 from authorize, got %d: %s", resp.StatusCode, body(t, resp))
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc.Query()
}

// authorize runs an AutoLogin authorization request with PKCE and nonce
// and returns the code and verifier.
func (f *fixture) authorize(extra ...oauth2.AuthCodeOption) (code, verifier string) {
	f.t.Helper()
	verifier = oauth2.GenerateVerifier()
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce("n-0S6_WzA2Mj")}, extra...)
	q := callback(f.t, f.get(f.cfg.AuthCodeURL("st-123", opts...)))
	if q.Get("error") != "" {
		f.t.Fatalf("authorize error: %v", q)
	}
	return q.Get("code"), verifier
}

func (f *fixture) login() *oauth2.Token {
	f.t.Helper()
	code, verifier := f.authorize()
	tok, err := f.cfg.Exchange(f.ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func (f *fixture) verifier() *oidc.IDTokenVerifier {
	return f.provider.Verifier(&oidc.Config{ClientID: testClientID, Now: f.idp.opts.Now})
}

// postToken sends a raw token request with Basic client authentication.
func (f *fixture) postToken(form url.Values) (int, map[string]any) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.idp.Issuer()+PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testSecret)
	return doJSON(f.t, req)
}

func doJSON(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("status %d, non-JSON body %q", resp.StatusCode, b)
		}
	}
	return resp.StatusCode, m
}

func wantOAuthErr(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("want oauth2 error %q, got %v", code, err)
	}
	if re.ErrorCode != code {
		t.Fatalf("want error %q, got %q (%s)", code, re.ErrorCode, re.ErrorDescription)
	}
}

func claimsOf(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
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

func TestCodeFlowAutoLogin(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice", IssuerPath: "/realms/app"})
	if !strings.HasSuffix(f.idp.Issuer(), "/realms/app") || !strings.HasPrefix(f.idp.Issuer(), "http://127.0.0.1:") {
		t.Fatalf("issuer %q", f.idp.Issuer())
	}
	verifier := oauth2.GenerateVerifier()
	q := callback(t, f.get(f.cfg.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-1"))))
	if q.Get("state") != "st-1" || q.Get("iss") != f.idp.Issuer() || q.Get("code") == "" {
		t.Fatalf("callback %v", q)
	}
	aq := f.idp.LastAuthorizeQuery()
	if aq.Get("code_challenge_method") != "S256" || aq.Get("code_challenge") == "" || aq.Get("nonce") != "nonce-1" || aq.Get("state") != "st-1" {
		t.Fatalf("authorize query %v", aq)
	}
	tok, err := f.cfg.Exchange(f.ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.RefreshToken == "" || time.Until(tok.Expiry) < 4*time.Minute {
		t.Fatalf("token %+v", tok)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := f.verifier().Verify(f.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if idt.Nonce != "nonce-1" {
		t.Fatalf("nonce %q", idt.Nonce)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Sub      string   `json:"sub"`
		Email    string   `json:"email"`
		Name     string   `json:"name"`
		Username string   `json:"preferred_username"`
		Groups   []string `json:"groups"`
		SID      string   `json:"sid"`
		AuthTime int64    `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Email != "alice@example.com" || claims.Username != "alice" || len(claims.Groups) != 2 || claims.SID == "" || claims.AuthTime == 0 {
		t.Fatalf("claims %+v", claims)
	}
	at := claimsOf(t, tok.AccessToken)
	if at["aud"] != testClientID || at["iss"] != f.idp.Issuer() || at["jti"] == nil || !strings.Contains(at["scope"].(string), "openid") {
		t.Fatalf("access token claims %v", at)
	}
	ui, err := f.provider.UserInfo(f.ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	if ui.Subject != claims.Sub || ui.Email != "alice@example.com" {
		t.Fatalf("userinfo %+v", ui)
	}
	for ep, want := range map[string]int{"discovery": 1, "authorize": 1, "token": 1, "token:authorization_code": 1, "userinfo": 1, "jwks": 1} {
		if got := f.idp.Count(ep); got != want {
			t.Errorf("Count(%q) = %d, want %d", ep, got, want)
		}
	}
	f.idp.ResetCounts()
	if f.idp.Count("token") != 0 {
		t.Fatal("ResetCounts")
	}
}

var txRe = regexp.MustCompile(`name="tx" value="([^"]+)"`)

func (f *fixture) submitLogin(page, user, pass, action string) *http.Response {
	f.t.Helper()
	m := txRe.FindStringSubmatch(page)
	if m == nil {
		f.t.Fatalf("no login form in %s", page)
	}
	form := url.Values{"tx": {m[1]}, "username": {user}, "password": {pass}, "action": {action}}
	resp, err := f.http.PostForm(f.idp.Issuer()+PathAuthorize, form)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestLoginFormSessionAndLogout(t *testing.T) {
	bc := newLogoutReceiver(t)
	f := setup(t, Options{ShowHints: true, Clients: []Client{{
		ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect},
		BackchannelLogoutURI: bc.srv.URL,
	}}})
	verifier := oauth2.GenerateVerifier()
	authURL := f.cfg.AuthCodeURL("st-form", oauth2.S256ChallengeOption(verifier))

	resp := f.get(authURL)
	page := body(t, resp)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("login page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`id="username"`, `id="password"`, `id="signin"`, `id="deny"`, `<label for="username">`, "wonderland", "builder"} {
		if !strings.Contains(page, want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("login page references external assets")
	}

	resp = f.submitLogin(page, "alice", "wrong", "signin")
	page = body(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(page, "Invalid username or password") {
		t.Fatalf("wrong password: %d %s", resp.StatusCode, page)
	}
	q := callback(t, f.submitLogin(page, "alice", "wonderland", "signin"))
	if q.Get("state") != "st-form" || q.Get("code") == "" {
		t.Fatalf("callback %v", q)
	}
	tok, err := f.cfg.Exchange(f.ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if f.idp.Count("login") != 2 {
		t.Fatalf("login count %d", f.idp.Count("login"))
	}

	// The provider session approves the next request without the form.
	q = callback(t, f.get(authURL))
	if q.Get("code") == "" {
		t.Fatalf("second authorize %v", q)
	}
	// prompt=login forces the form; Deny returns access_denied.
	resp = f.get(f.cfg.AuthCodeURL("st-deny", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "login")))
	page = body(t, resp)
	q = callback(t, f.submitLogin(page, "", "", "deny"))
	if q.Get("error") != "access_denied" || q.Get("state") != "st-deny" || q.Get("code") != "" {
		t.Fatalf("deny %v", q)
	}

	// RP-initiated logout ends the session, revokes tokens and sends a
	// back-channel logout token.
	rawID := tok.Extra("id_token").(string)
	idClaims := claimsOf(t, rawID)
	lq := url.Values{"id_token_hint": {rawID}, "post_logout_redirect_uri": {"http://app.example/bye"}, "state": {"ls"}}
	resp = f.get(f.idp.Issuer() + PathEndSession + "?" + lq.Encode())
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://app.example/bye?state=ls" {
		t.Fatalf("logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !f.idp.IsRevoked(tok.RefreshToken) || !f.idp.IsRevoked(tok.AccessToken) {
		t.Fatal("tokens not revoked by logout")
	}
	got := bc.wait(t)
	lt, err := f.verifier().VerifyLogout(f.ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	if lt.SessionID != idClaims["sid"] || lt.Subject != idClaims["sub"] {
		t.Fatalf("logout token %+v", lt)
	}
	// After logout the form is shown again.
	resp = f.get(authURL)
	if resp.StatusCode != 200 || !strings.Contains(body(t, resp), `id="signin"`) {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
	// Unregistered post_logout_redirect_uri is refused without redirect.
	lq.Set("post_logout_redirect_uri", "http://evil.example/")
	resp = f.get(f.idp.Issuer() + PathEndSession + "?" + lq.Encode())
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Fatalf("bad post_logout_redirect_uri: %d", resp.StatusCode)
	}
}

func TestPromptNoneWithoutSession(t *testing.T) {
	f := setup(t, Options{})
	v := oauth2.GenerateVerifier()
	q := callback(t, f.get(f.cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("prompt", "none"))))
	if q.Get("error") != "login_required" || q.Get("state") != "s" {
		t.Fatalf("%v", q)
	}
}

func TestRefreshRotation(t *testing.T) {
	clock := NewClock(time.Now())
	f := setup(t, Options{AutoLogin: "alice", RotateRefreshTokens: true, Now: clock.Now})
	tok := f.login()
	rt1 := tok.RefreshToken

	// Drive the refresh through x/oauth2 like a client would.
	clock.Advance(6 * time.Minute)
	tok.Expiry = time.Now().Add(-time.Second)
	tok2, err := f.cfg.TokenSource(f.ctx, tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == rt1 || tok2.AccessToken == tok.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	if _, err := f.verifier().Verify(f.ctx, tok2.Extra("id_token").(string)); err != nil {
		t.Fatal(err)
	}
	if !f.idp.IsRevoked(rt1) || f.idp.IsRevoked(tok2.RefreshToken) {
		t.Fatal("IsRevoked after rotation")
	}
	st, m := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
	if st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("reuse of rotated token: %d %v", st, m)
	}
	st, m = f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2.RefreshToken}, "scope": {"openid email"}})
	if st != 200 || m["scope"] != "openid email" {
		t.Fatalf("refresh: %d %v", st, m)
	}
	st, m = f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "scope": {"openid admin"}})
	if st != 400 || m["error"] != "invalid_scope" {
		t.Fatalf("scope escalation: %d %v", st, m)
	}
	if f.idp.Count("token:refresh_token") != 4 {
		t.Fatalf("refresh count %d", f.idp.Count("token:refresh_token"))
	}
	// Refresh tokens expire.
	last := f.login().RefreshToken
	clock.Advance(31 * time.Minute)
	st, m = f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {last}})
	if st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("expired refresh token: %d %v", st, m)
	}
}

func TestRefreshWithoutRotationAndClaimChange(t *testing.T) {
	f := setup(t, Options{AutoLogin: "bob"})
	tok := f.login()
	groups := make([]string, 500)
	for i := range groups {
		groups[i] = fmt.Sprintf("group-%03d", i)
	}
	f.idp.SetUserClaims("bob", map[string]any{"groups": groups, "email": nil})
	st, m := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
	if st != 200 || m["refresh_token"] != tok.RefreshToken {
		t.Fatalf("refresh: %d %v", st, m)
	}
	id := claimsOf(t, m["id_token"].(string))
	if len(id["groups"].([]any)) != 500 || id["email"] != nil || id["nonce"] != nil {
		t.Fatalf("refreshed id token claims: groups=%d email=%v nonce=%v", len(id["groups"].([]any)), id["email"], id["nonce"])
	}
	st, _ = f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
	if st != 200 {
		t.Fatalf("non-rotating refresh token reusable: %d", st)
	}
}

func TestCodeReuseRevokesTokens(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	code, v := f.authorize()
	tok, err := f.cfg.Exchange(f.ctx, code, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.cfg.Exchange(f.ctx, code, oauth2.VerifierOption(v))
	wantOAuthErr(t, err, "invalid_grant")
	if !f.idp.IsRevoked(tok.AccessToken) || !f.idp.IsRevoked(tok.RefreshToken) {
		t.Fatal("tokens from a replayed code must be revoked")
	}
	if _, err := f.provider.UserInfo(f.ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Fatal("userinfo accepted a revoked token")
	}
	st, m := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
	if st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("refresh after replay: %d %v", st, m)
	}
}

func TestRedirectURIValidation(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	for _, ru := range []string{"http://evil.example/callback", testRedirect + "/", testRedirect + "?x=1", ""} {
		cfg := f.cfg
		cfg.RedirectURL = ru
		resp := f.get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(body(t, resp), "redirect_uri") {
			t.Errorf("redirect_uri %q: status %d location %q", ru, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp := f.get(strings.Replace(f.cfg.AuthCodeURL("s"), "client_id=app", "client_id=nope", 1))
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("unknown client: %d", resp.StatusCode)
	}
	// A code issued for one registered URI cannot be redeemed with another.
	code, v := f.authorize()
	cfg := f.cfg
	cfg.RedirectURL = testRedirect2
	_, err := cfg.Exchange(f.ctx, code, oauth2.VerifierOption(v))
	wantOAuthErr(t, err, "invalid_grant")
}

func TestAuthorizeRequestErrors(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice", Clients: []Client{
		{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}},
		{ID: "spa", RedirectURIs: []string{testRedirect}},
	}})
	base := url.Values{"client_id": {testClientID}, "redirect_uri": {testRedirect}, "response_type": {"code"}, "scope": {"openid"}, "state": {"s"}}
	cases := []struct {
		name string
		mod  func(url.Values)
		want string
	}{
		{"no response_type", func(v url.Values) { v.Del("response_type") }, "invalid_request"},
		{"token response_type", func(v url.Values) { v.Set("response_type", "token") }, "unsupported_response_type"},
		{"unknown scope", func(v url.Values) { v.Set("scope", "openid admin") }, "invalid_scope"},
		{"plain PKCE", func(v url.Values) {
			v.Set("code_challenge", strings.Repeat("a", 43))
			v.Set("code_challenge_method", "plain")
		}, "invalid_request"},
		{"PKCE without method", func(v url.Values) { v.Set("code_challenge", strings.Repeat("a", 43)) }, "invalid_request"},
		{"duplicate state", func(v url.Values) { v["scope"] = []string{"openid", "email"} }, "invalid_request"},
		{"public client without PKCE", func(v url.Values) { v.Set("client_id", "spa") }, "invalid_request"},
		{"request object", func(v url.Values) { v.Set("request", "x.y.z") }, "request_not_supported"},
	}
	for _, c := range cases {
		v := url.Values{}
		for k, vals := range base {
			v[k] = append([]string(nil), vals...)
		}
		c.mod(v)
		q := callback(t, f.get(f.idp.Issuer()+PathAuthorize+"?"+v.Encode()))
		if q.Get("error") != c.want || q.Get("state") != "s" || q.Get("code") != "" || q.Get("iss") != f.idp.Issuer() {
			t.Errorf("%s: %v", c.name, q)
		}
	}
	// Plain OAuth (no openid scope): no ID token.
	v := oauth2.GenerateVerifier()
	cfg := f.cfg
	cfg.Scopes = []string{"email"}
	q := callback(t, f.get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v))))
	tok, err := cfg.Exchange(f.ctx, q.Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("id_token") != nil {
		t.Fatal("id_token issued without openid scope")
	}
}

func TestClientAuthentication(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice", Clients: []Client{
		{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}},
		{ID: "spa", RedirectURIs: []string{testRedirect}},
	}})
	tokenURL := f.idp.Issuer() + PathToken
	send := func(contentType, body string, basic [2]string) (int, map[string]any, http.Header) {
		req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if basic[0] != "" {
			req.SetBasicAuth(basic[0], basic[1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m, resp.Header
	}
	form := "grant_type=authorization_code&code=x&redirect_uri=" + url.QueryEscape(testRedirect)

	st, m, h := send("application/x-www-form-urlencoded", form, [2]string{testClientID, "wrong"})
	if st != 401 || m["error"] != "invalid_client" || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("wrong basic secret: %d %v", st, m)
	}
	st, m, _ = send("application/x-www-form-urlencoded", form+"&client_id=app&client_secret=wrong", [2]string{})
	if st != 401 || m["error"] != "invalid_client" {
		t.Errorf("wrong post secret: %d %v", st, m)
	}
	st, m, _ = send("application/x-www-form-urlencoded", form+"&client_id=app", [2]string{})
	if st != 401 || m["error"] != "invalid_client" {
		t.Errorf("no secret: %d %v", st, m)
	}
	st, m, _ = send("application/x-www-form-urlencoded", form+"&client_secret="+testSecret, [2]string{testClientID, testSecret})
	if st != 400 || m["error"] != "invalid_request" {
		t.Errorf("two auth methods: %d %v", st, m)
	}
	st, m, _ = send("application/json", `{"grant_type":"authorization_code","code":"x"}`, [2]string{testClientID, testSecret})
	if st != 400 || m["error"] != "invalid_request" {
		t.Errorf("JSON body: %d %v", st, m)
	}
	st, m, _ = send("application/x-www-form-urlencoded", form+"&grant_type=password", [2]string{testClientID, testSecret})
	if st != 400 || m["error"] != "invalid_request" {
		t.Errorf("duplicate grant_type: %d %v", st, m)
	}
	st, m, _ = send("application/x-www-form-urlencoded", "grant_type=password&username=a&password=b", [2]string{testClientID, testSecret})
	if st != 400 || m["error"] != "unsupported_grant_type" {
		t.Errorf("password grant: %d %v", st, m)
	}
	st, m, _ = send("application/x-www-form-urlencoded", form, [2]string{testClientID, testSecret})
	if st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("unknown code: %d %v", st, m)
	}

	// Client secret post works through x/oauth2 too, and a public client
	// authenticates with client_id only.
	for _, cfg := range []oauth2.Config{
		{ClientID: testClientID, ClientSecret: testSecret, RedirectURL: testRedirect, Scopes: []string{"openid"},
			Endpoint: oauth2.Endpoint{AuthURL: f.cfg.Endpoint.AuthURL, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}},
		{ClientID: "spa", RedirectURL: testRedirect, Scopes: []string{"openid"},
			Endpoint: oauth2.Endpoint{AuthURL: f.cfg.Endpoint.AuthURL, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}},
	} {
		v := oauth2.GenerateVerifier()
		q := callback(t, f.get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v))))
		if _, err := cfg.Exchange(f.ctx, q.Get("code"), oauth2.VerifierOption(v)); err != nil {
			t.Errorf("client %s: %v", cfg.ClientID, err)
		}
	}
}

func TestPKCE(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	code, _ := f.authorize()
	_, err := f.cfg.Exchange(f.ctx, code)
	wantOAuthErr(t, err, "invalid_grant")

	code, _ = f.authorize()
	_, err = f.cfg.Exchange(f.ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
	wantOAuthErr(t, err, "invalid_grant")

	// Downgrade: verifier without a challenge.
	q := callback(t, f.get(f.cfg.AuthCodeURL("s")))
	_, err = f.cfg.Exchange(f.ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
	wantOAuthErr(t, err, "invalid_grant")
}

func TestExpiryWithClock(t *testing.T) {
	clock := NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	f := setup(t, Options{AutoLogin: "alice", Now: clock.Now})
	code, v := f.authorize()
	clock.Advance(61 * time.Second)
	_, err := f.cfg.Exchange(f.ctx, code, oauth2.VerifierOption(v))
	wantOAuthErr(t, err, "invalid_grant")

	tok := f.login()
	if _, err := f.provider.UserInfo(f.ctx, oauth2.StaticTokenSource(tok)); err != nil {
		t.Fatal(err)
	}
	raw := tok.Extra("id_token").(string)
	clock.Advance(5*time.Minute + time.Second)
	if _, err := f.provider.UserInfo(f.ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Fatal("userinfo accepted an expired access token")
	}
	var expired *oidc.TokenExpiredError
	if _, err := f.verifier().Verify(f.ctx, raw); !errors.As(err, &expired) {
		t.Fatalf("want expired ID token, got %v", err)
	}
}

func TestRevocation(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	tok := f.login()
	revoke := func(token string, auth bool) int {
		req, _ := http.NewRequest(http.MethodPost, f.idp.Issuer()+PathRevoke, strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth {
			req.SetBasicAuth(testClientID, testSecret)
		}
		st, _ := doJSON(t, req)
		return st
	}
	if st := revoke(tok.RefreshToken, false); st != 401 {
		t.Fatalf("unauthenticated revoke: %d", st)
	}
	if f.idp.IsRevoked(tok.RefreshToken) {
		t.Fatal("revoked without authentication")
	}
	if st := revoke("unknown-token", true); st != 200 {
		t.Fatalf("unknown token: %d", st)
	}
	if st := revoke(tok.RefreshToken, true); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	if !f.idp.IsRevoked(tok.RefreshToken) || !f.idp.IsRevoked(tok.AccessToken) {
		t.Fatal("refresh token revocation must revoke the grant")
	}
	st, m := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
	if st != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("refresh after revoke: %d %v", st, m)
	}
	tok2 := f.login()
	if st := revoke(tok2.AccessToken, true); st != 200 || !f.idp.IsRevoked(tok2.AccessToken) || f.idp.IsRevoked(tok2.RefreshToken) {
		t.Fatal("access token revocation")
	}
	if f.idp.Count("revoke") != 4 {
		t.Fatalf("revoke count %d", f.idp.Count("revoke"))
	}
}

func TestTokenEndpointFaults(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	exchange := func() (*oauth2.Token, error) {
		code, v := f.authorize()
		return f.cfg.Exchange(f.ctx, code, oauth2.VerifierOption(v))
	}
	for _, kind := range []FaultKind{FaultStatus500HTML, FaultHTML200, FaultTextPlain, FaultTruncatedJSON, FaultMissingAccessToken, FaultCloseConnection, FaultResetConnection} {
		f.idp.SetFault("token", Fault{Kind: kind, Times: 1})
		if _, err := exchange(); err == nil {
			t.Errorf("%s: exchange succeeded", kind)
		}
		if _, err := exchange(); err != nil {
			t.Errorf("%s: fault did not clear after Times: %v", kind, err)
		}
	}

	f.idp.SetFault("token", Fault{Kind: FaultExpiresInString})
	code, v := f.authorize()
	st, m := f.postToken(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}, "code_verifier": {v}})
	if st != 200 || m["expires_in"] != "300" {
		t.Errorf("expires_in string: %d %#v", st, m["expires_in"])
	}

	f.idp.SetFault("token", Fault{Kind: FaultRaw, Status: 503, ContentType: "application/json", Body: `{"error":"temporarily_unavailable"}`})
	_, err := exchange()
	wantOAuthErr(t, err, "temporarily_unavailable")
	f.idp.ClearFaults()

	// Stall: the client's deadline fires; no real sleeping in the test.
	f.idp.SetFault("token", Fault{Kind: FaultStall})
	ctx, cancel := context.WithTimeout(f.ctx, 50*time.Millisecond)
	code, v = f.authorize()
	_, err = f.cfg.Exchange(ctx, code, oauth2.VerifierOption(v))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stall: %v", err)
	}
	f.idp.ClearFaults()

	// Refresh answered with invalid_grant; code exchange unaffected.
	f.idp.SetFault("token:refresh_token", Fault{Kind: FaultInvalidGrant})
	tok, err := exchange()
	if err != nil {
		t.Fatal(err)
	}
	st, m = f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
	if st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("refresh fault: %d %v", st, m)
	}
	f.idp.ClearFaults()
	st, _ = f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
	if st != 200 {
		t.Errorf("refresh after ClearFaults: %d", st)
	}
}

func TestIDTokenFaults(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	cases := []struct {
		kind      FaultKind
		verifyErr bool
		check     func(c map[string]any) bool
	}{
		{FaultIDTokenBadSignature, true, nil},
		{FaultIDTokenAlgNone, true, nil},
		{FaultIDTokenWrongIssuer, true, nil},
		{FaultIDTokenIssuerTrailingSlash, true, nil},
		{FaultIDTokenWrongAudience, true, nil},
		{FaultIDTokenMissingAudience, true, nil},
		{FaultIDTokenExpired, true, nil},
		{FaultIDTokenNotYetValid, true, nil},
		{FaultIDTokenUnknownKID, true, nil},
		{FaultIDTokenMissingSub, false, func(c map[string]any) bool { return c["sub"] == nil }},
		{FaultIDTokenWrongNonce, false, func(c map[string]any) bool { return c["nonce"] == "wrong-nonce" }},
		{FaultIDTokenMissingNonce, false, func(c map[string]any) bool { return c["nonce"] == nil }},
	}
	for _, c := range cases {
		f.idp.SetFault("token", Fault{Kind: c.kind})
		tok := f.login()
		raw, _ := tok.Extra("id_token").(string)
		_, err := f.verifier().Verify(f.ctx, raw)
		if c.verifyErr != (err != nil) {
			t.Errorf("%s: verify error = %v", c.kind, err)
		}
		if c.check != nil && !c.check(claimsOf(t, raw)) {
			t.Errorf("%s: claims %v", c.kind, claimsOf(t, raw))
		}
	}
	f.idp.ClearFaults()
	tok := f.login()
	if _, err := f.verifier().Verify(f.ctx, tok.Extra("id_token").(string)); err != nil {
		t.Fatal(err)
	}
}

func TestDiscoveryUserinfoAuthorizeFaults(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	f.idp.SetFault("discovery", Fault{Kind: FaultDiscoveryWrongIssuer})
	if _, err := oidc.NewProvider(f.ctx, f.idp.Issuer()); err == nil || !strings.Contains(err.Error(), "issuer") {
		t.Errorf("wrong discovery issuer: %v", err)
	}
	f.idp.ClearFaults()

	tok := f.login()
	ts := oauth2.StaticTokenSource(tok)
	f.idp.SetFault("userinfo", Fault{Kind: FaultStatus500HTML})
	if _, err := f.provider.UserInfo(f.ctx, ts); err == nil {
		t.Error("userinfo 500 accepted")
	}
	f.idp.SetFault("userinfo", Fault{Kind: FaultTruncatedJSON})
	if _, err := f.provider.UserInfo(f.ctx, ts); err == nil {
		t.Error("truncated userinfo accepted")
	}
	f.idp.SetFault("userinfo", Fault{Kind: FaultUserinfoExtraClaims, Claims: map[string]any{"role": "root"}})
	ui, err := f.provider.UserInfo(f.ctx, ts)
	var extra map[string]any
	if err != nil || ui.Claims(&extra) != nil || extra["role"] != "root" {
		t.Errorf("extra claims: %v %v", err, extra)
	}
	f.idp.SetFault("userinfo", Fault{Kind: FaultUserinfoMissingClaims, Value: "email"})
	if ui, err := f.provider.UserInfo(f.ctx, ts); err != nil || ui.Email != "" || ui.Subject == "" {
		t.Errorf("missing claims: %v %+v", err, ui)
	}
	f.idp.SetFault("userinfo", Fault{Kind: FaultUserinfoWrongSub})
	if ui, err := f.provider.UserInfo(f.ctx, ts); err != nil || ui.Subject != "wrong-subject" {
		t.Errorf("wrong sub: %v %+v", err, ui)
	}
	f.idp.ClearFaults()

	authz := func() url.Values {
		return callback(t, f.get(f.cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))))
	}
	f.idp.SetFault("authorize", Fault{Kind: FaultAuthorizeIss, Value: "https://evil.example"})
	if q := authz(); q.Get("iss") != "https://evil.example" {
		t.Errorf("iss fault: %v", q)
	}
	f.idp.SetFault("authorize", Fault{Kind: FaultAuthorizeNoState})
	if q := authz(); q.Has("state") || q.Get("code") == "" {
		t.Errorf("no state fault: %v", q)
	}
	f.idp.SetFault("authorize", Fault{Kind: FaultAuthorizeNoIss})
	if q := authz(); q.Has("iss") {
		t.Errorf("no iss fault: %v", q)
	}
	f.idp.SetFault("authorize", Fault{Kind: FaultAuthorizeError, Value: "temporarily_unavailable"})
	if q := authz(); q.Get("error") != "temporarily_unavailable" || q.Has("code") {
		t.Errorf("error fault: %v", q)
	}
}

func TestOmitIssParameter(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice", OmitIssParameter: true})
	var meta struct {
		Supported bool `json:"authorization_response_iss_parameter_supported"`
	}
	if err := f.provider.Claims(&meta); err != nil || meta.Supported {
		t.Fatalf("metadata: %v %v", err, meta)
	}
	q := callback(t, f.get(f.cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))))
	if q.Has("iss") {
		t.Fatalf("%v", q)
	}
	f.idp.SetFault("authorize", Fault{Kind: FaultAuthorizeIss})
	q = callback(t, f.get(f.cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))))
	if q.Get("iss") != f.idp.Issuer() {
		t.Fatalf("%v", q)
	}
}

func TestSignJWTAndKeyRotation(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	now := time.Now()
	claims := map[string]any{"iss": f.idp.Issuer(), "aud": testClientID, "sub": "x", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	verify := func(tok string, algs ...string) error {
		// A fresh key set each time so JWKS changes are observed.
		p, err := oidc.NewProvider(f.ctx, f.idp.Issuer())
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Verifier(&oidc.Config{ClientID: testClientID, SupportedSigningAlgs: algs}).Verify(f.ctx, tok)
		return err
	}
	cases := []struct {
		name string
		opts []SignOpt
		ok   bool
	}{
		{"default", nil, true},
		{"no kid", []SignOpt{SignNoKID()}, true},
		{"alg none", []SignOpt{SignAlgNone()}, false},
		{"wrong key", []SignOpt{SignWrongKey()}, false},
		{"ES256 with RS256-only verifier", []SignOpt{SignES256()}, false},
		{"unknown kid", []SignOpt{SignKID("nope")}, false},
		{"unpublished key", []SignOpt{SignUnpublishedKey()}, false},
	}
	for _, c := range cases {
		if err := verify(f.idp.SignJWT(claims, c.opts...)); (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
	}
	if err := verify(f.idp.SignJWT(claims, SignES256()), "RS256", "ES256"); err != nil {
		t.Errorf("ES256 with ES256 allowed: %v", err)
	}
	if h := claimsOfHeader(t, f.idp.SignJWT(claims, SignHeader("typ", "at+jwt"))); h["typ"] != "at+jwt" || h["kid"] != f.idp.CurrentKID() {
		t.Errorf("header %v", h)
	}

	oldTok := f.idp.SignJWT(claims)
	oldKID, newKID := f.idp.RotateKey()
	if oldKID == newKID || f.idp.CurrentKID() != newKID || len(f.idp.JWKS().Keys) != 3 {
		t.Fatalf("rotate: %s %s %d", oldKID, newKID, len(f.idp.JWKS().Keys))
	}
	newTok := f.idp.SignJWT(claims)
	if claimsOfHeader(t, newTok)["kid"] != newKID {
		t.Fatal("new token not signed with new key")
	}
	// A verifier that cached the old JWKS picks up the new key.
	cached := f.verifier()
	if _, err := cached.Verify(f.ctx, oldTok); err != nil {
		t.Fatal(err)
	}
	if _, err := cached.Verify(f.ctx, newTok); err != nil {
		t.Fatalf("new key after rotation: %v", err)
	}
	if err := verify(oldTok); err != nil {
		t.Fatalf("old key still published: %v", err)
	}
	f.idp.UnpublishKey(oldKID)
	if err := verify(oldTok); err == nil {
		t.Fatal("token of unpublished key accepted")
	}
	// Tokens issued after rotation verify.
	tok := f.login()
	if _, err := cached.Verify(f.ctx, tok.Extra("id_token").(string)); err != nil {
		t.Fatal(err)
	}
}

func claimsOfHeader(t *testing.T, jwt string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

type logoutReceiver struct {
	srv *httptest.Server
	ch  chan string
}

func newLogoutReceiver(t *testing.T) *logoutReceiver {
	lr := &logoutReceiver{ch: make(chan string, 10)}
	lr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "bad request", 400)
			return
		}
		lr.ch <- r.PostFormValue("logout_token")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(lr.srv.Close)
	return lr
}

func (lr *logoutReceiver) wait(t *testing.T) string {
	t.Helper()
	select {
	case tok := <-lr.ch:
		return tok
	case <-time.After(5 * time.Second):
		t.Fatal("no logout token received")
		return ""
	}
}

func TestBackchannelLogout(t *testing.T) {
	lr := newLogoutReceiver(t)
	f := setup(t, Options{AutoLogin: "alice", Clients: []Client{{
		ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}, BackchannelLogoutURI: lr.srv.URL,
	}}})
	if err := f.idp.SendBackchannelLogout(testClientID, "sub-1", "sid-1"); err != nil {
		t.Fatal(err)
	}
	raw := lr.wait(t)
	lt, err := f.verifier().VerifyLogout(f.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if lt.Subject != "sub-1" || lt.SessionID != "sid-1" || lt.TokenID == "" || lt.Issuer != f.idp.Issuer() {
		t.Fatalf("%+v", lt)
	}
	c := claimsOf(t, raw)
	if _, ok := c["nonce"]; ok {
		t.Fatal("logout token has nonce")
	}
	if _, ok := c["events"].(map[string]any)["http://schemas.openid.net/event/backchannel-logout"]; !ok {
		t.Fatalf("events %v", c["events"])
	}
	if claimsOfHeader(t, raw)["typ"] != "logout+jwt" {
		t.Fatal("typ")
	}
	if err := f.idp.SendBackchannelLogout(testClientID, "", "sid-only"); err != nil {
		t.Fatal(err)
	}
	if lt, err := f.verifier().VerifyLogout(f.ctx, lr.wait(t)); err != nil || lt.Subject != "" || lt.SessionID != "sid-only" {
		t.Fatalf("sid-only: %v %+v", err, lt)
	}
	// Admin "sign out everywhere" notifies the client and kills refresh.
	tok := f.login()
	n, err := f.idp.EndUserSessions("alice")
	if n < 1 || err != nil {
		t.Fatalf("EndUserSessions: %d %v", n, err)
	}
	lr.wait(t)
	if !f.idp.IsRevoked(tok.RefreshToken) {
		t.Fatal("refresh token survived EndUserSessions")
	}
	if f.idp.Count("backchannel_logout") < 3 {
		t.Fatalf("count %d", f.idp.Count("backchannel_logout"))
	}
}

func TestHandlerMountedWithSetIssuer(t *testing.T) {
	idp, err := New(Options{Users: DemoUsers(), IssuerPath: "/realms/demo", AutoLogin: "bob",
		Clients: []Client{{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(idp.Handler())
	defer ts.Close()
	idp.SetIssuer(ts.URL)
	if idp.Issuer() != ts.URL+"/realms/demo" || idp.URL() != ts.URL {
		t.Fatalf("issuer %q url %q", idp.Issuer(), idp.URL())
	}
	p, err := oidc.NewProvider(context.Background(), idp.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	p.Claims(&meta)
	for _, k := range []string{"revocation_endpoint", "end_session_endpoint"} {
		if !strings.HasPrefix(meta[k].(string), idp.Issuer()+"/") {
			t.Errorf("%s = %v", k, meta[k])
		}
	}
	if m := meta["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
		t.Errorf("code_challenge_methods_supported %v", m)
	}
	if meta["backchannel_logout_supported"] != true {
		t.Error("backchannel_logout_supported")
	}
}

func TestConcurrentUse(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice", RotateRefreshTokens: true})
	tok := f.login()
	// Concurrent refreshes of the same rotating token: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _ := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
			mu.Lock()
			defer mu.Unlock()
			if st == 200 {
				ok++
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d concurrent refreshes succeeded", ok)
	}
}

// BenchmarkRefreshGrant measures refresh_token grants per second over
// loopback, with the client on the same machine. Each parallel client
// refreshes its own grant (no rotation); the ID token and the access token
// are both signed, so the signing algorithm dominates.
func BenchmarkRefreshGrant(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			idp, err := New(Options{Users: DemoUsers(), AutoLogin: "alice", SigningAlg: alg,
				Clients: []Client{{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}}}})
			if err != nil {
				b.Fatal(err)
			}
			if err := idp.Start(); err != nil {
				b.Fatal(err)
			}
			defer idp.Close()
			client := &http.Client{
				Transport:     &http.Transport{MaxIdleConnsPerHost: 64},
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
			post := func(form url.Values) (*http.Response, error) {
				req, _ := http.NewRequest(http.MethodPost, idp.Issuer()+PathToken, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(testClientID, testSecret)
				return client.Do(req)
			}
			login := func() (string, error) {
				q := url.Values{"client_id": {testClientID}, "redirect_uri": {testRedirect}, "response_type": {"code"}, "scope": {"openid profile"}}
				resp, err := client.Get(idp.Issuer() + PathAuthorize + "?" + q.Encode())
				if err != nil {
					return "", err
				}
				resp.Body.Close()
				loc, _ := url.Parse(resp.Header.Get("Location"))
				resp, err = post(url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {testRedirect}})
				if err != nil {
					return "", err
				}
				defer resp.Body.Close()
				var m struct {
					RefreshToken string `json:"refresh_token"`
				}
				if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || m.RefreshToken == "" {
					return "", fmt.Errorf("login: status %d: %v", resp.StatusCode, err)
				}
				return m.RefreshToken, nil
			}
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rt, err := login()
				if err != nil {
					b.Error(err)
					return
				}
				form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
				for pb.Next() {
					resp, err := post(form)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("refresh: %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refreshes/s")
		})
	}
}

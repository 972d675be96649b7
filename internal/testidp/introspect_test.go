package testidp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// introspect posts token to the introspection endpoint, authenticating
// with Basic id:secret unless id is empty.
func (f *fixture) introspect(token, id, secret string) (int, map[string]any) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.idp.Issuer()+PathIntrospect, strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	return doJSON(f.t, req)
}

func (f *fixture) userinfoStatus(access string) int {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.idp.Issuer()+PathUserinfo, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	st, _ := doJSON(f.t, req)
	return st
}

func TestIntrospectionDiscovery(t *testing.T) {
	f := setup(t, Options{})
	var meta struct {
		Endpoint string   `json:"introspection_endpoint"`
		Methods  []string `json:"introspection_endpoint_auth_methods_supported"`
	}
	if err := f.provider.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	if meta.Endpoint != f.idp.Issuer()+PathIntrospect || len(meta.Methods) == 0 {
		t.Fatalf("%+v", meta)
	}
	for _, m := range meta.Methods {
		if m == "none" {
			t.Fatalf("introspection advertises auth method none: %v", meta.Methods)
		}
	}
}

func TestIntrospection(t *testing.T) {
	for _, opaque := range []bool{false, true} {
		t.Run(map[bool]string{false: "JWT access tokens", true: "opaque access tokens"}[opaque], func(t *testing.T) {
			clock := NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
			f := setup(t, Options{AutoLogin: "alice", Now: clock.Now, OpaqueAccessTokens: opaque, Clients: []Client{
				{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}},
				{ID: "api", Secret: "api-secret"},
				{ID: "spa", RedirectURIs: []string{testRedirect}},
			}})
			tok := f.login()
			if isJWT := strings.Count(tok.AccessToken, ".") == 2; isJWT == opaque {
				t.Fatalf("access token %q", tok.AccessToken)
			}
			if got := claimsOf(t, tok.Extra("id_token").(string))["at_hash"]; got != atHash(tok.AccessToken) {
				t.Fatalf("at_hash %v", got)
			}
			if st := f.userinfoStatus(tok.AccessToken); st != 200 {
				t.Fatalf("userinfo %d", st)
			}

			st, m := f.introspect(tok.AccessToken, "api", "api-secret")
			now := clock.Now().Unix()
			want := map[string]any{
				"active": true, "scope": "openid profile email groups", "client_id": testClientID, "username": "alice",
				"token_type": "Bearer", "exp": float64(now + 300), "iat": float64(now),
				"sub": DemoUsers()[0].Claims["sub"], "aud": testClientID, "iss": f.idp.Issuer(),
			}
			if st != 200 {
				t.Fatalf("introspect: %d %v", st, m)
			}
			for k, v := range want {
				if m[k] != v {
					t.Errorf("%s = %v, want %v", k, m[k], v)
				}
			}
			if st, m := f.introspect(tok.RefreshToken, testClientID, testSecret); st != 200 || m["active"] != true || m["client_id"] != testClientID || m["username"] != "alice" {
				t.Errorf("refresh token: %d %v", st, m)
			}

			inactive := func(name, token string) {
				t.Helper()
				if st, m := f.introspect(token, "api", "api-secret"); st != 200 || m["active"] != false || len(m) != 1 {
					t.Errorf("%s: %d %v", name, st, m)
				}
			}
			inactive("unknown", "no-such-token")
			inactive("ID token", tok.Extra("id_token").(string))
			inactive("signed by another key", f.idp.SignJWT(claimsOf(t, f.login().Extra("id_token").(string)), SignHeader("typ", "at+jwt"), SignWrongKey()))

			revoked := f.login()
			req, _ := http.NewRequest(http.MethodPost, f.idp.Issuer()+PathRevoke, strings.NewReader(url.Values{"token": {revoked.AccessToken}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(testClientID, testSecret)
			if st, _ := doJSON(t, req); st != 200 {
				t.Fatalf("revoke %d", st)
			}
			inactive("revoked", revoked.AccessToken)
			if st := f.userinfoStatus(revoked.AccessToken); st != 401 {
				t.Errorf("userinfo of a revoked token: %d", st)
			}

			f.idp.DisableUser("alice")
			inactive("disabled user", tok.AccessToken)
			inactive("disabled user's refresh token", tok.RefreshToken)
			f.idp.EnableUser("alice")

			clock.Advance(301 * time.Second)
			inactive("expired", tok.AccessToken)
			if st := f.userinfoStatus(tok.AccessToken); st != 401 {
				t.Errorf("userinfo of an expired token: %d", st)
			}

			ended := f.login()
			if n, _ := f.idp.EndUserSessions("alice"); n == 0 {
				t.Fatal("no session ended")
			}
			inactive("session ended", ended.AccessToken)
			inactive("refresh token of an ended session", ended.RefreshToken)

			// Client authentication is required.
			fresh := f.login()
			for _, c := range []struct{ name, id, secret string }{
				{"no credentials", "", ""},
				{"wrong secret", "api", "wrong"},
				{"unknown client", "nobody", "x"},
			} {
				if st, m := f.introspect(fresh.AccessToken, c.id, c.secret); st != 401 || m["error"] != "invalid_client" {
					t.Errorf("%s: %d %v", c.name, st, m)
				}
			}
			req, _ = http.NewRequest(http.MethodPost, f.idp.Issuer()+PathIntrospect, strings.NewReader(url.Values{"token": {fresh.AccessToken}, "client_id": {"spa"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if st, m := doJSON(t, req); st != 401 || m["error"] != "invalid_client" {
				t.Errorf("public client: %d %v", st, m)
			}
			req, _ = http.NewRequest(http.MethodGet, f.idp.Issuer()+PathIntrospect+"?token="+url.QueryEscape(fresh.AccessToken), nil)
			req.SetBasicAuth("api", "api-secret")
			if st, _ := doJSON(t, req); st != 405 {
				t.Errorf("GET: %d", st)
			}
			if st, m := f.introspect("", "api", "api-secret"); st != 400 || m["error"] != "invalid_request" {
				t.Errorf("no token: %d %v", st, m)
			}
		})
	}
}

func TestIntrospectionCounterAndFault(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	tok := f.login()
	f.idp.SetFault("introspect", Fault{Kind: FaultRaw, Status: 503, Body: "busy", Times: 1})
	if st, _ := f.introspectRaw(tok.AccessToken); st != 503 {
		t.Fatalf("fault: %d", st)
	}
	if st, m := f.introspect(tok.AccessToken, testClientID, testSecret); st != 200 || m["active"] != true {
		t.Fatalf("after fault: %d %v", st, m)
	}
	if n := f.idp.Count("introspect"); n != 2 {
		t.Fatalf("count %d", n)
	}
}

func (f *fixture) introspectRaw(token string) (int, string) {
	req, _ := http.NewRequest(http.MethodPost, f.idp.Issuer()+PathIntrospect, strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, body(f.t, resp)
}

func TestAccessTokenFormat(t *testing.T) {
	cases := []struct {
		name    string
		opts    Options
		wantAud string
	}{
		{"default audience is the client", Options{}, testClientID},
		{"AccessTokenAudience", Options{AccessTokenAudience: "https://api.example"}, "https://api.example"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.AutoLogin = "alice"
			f := setup(t, c.opts)
			tok := f.login()
			if h := claimsOfHeader(t, tok.AccessToken); h["typ"] != "at+jwt" || h["kid"] != f.idp.CurrentKID() {
				t.Errorf("header %v", h)
			}
			at := claimsOf(t, tok.AccessToken)
			for _, claim := range []string{"iss", "exp", "aud", "sub", "client_id", "iat", "jti"} { // RFC 9068 §2.2
				if at[claim] == nil {
					t.Errorf("no %s", claim)
				}
			}
			if at["aud"] != c.wantAud || at["client_id"] != testClientID {
				t.Errorf("aud %v client_id %v", at["aud"], at["client_id"])
			}
			if _, m := f.introspect(tok.AccessToken, testClientID, testSecret); m["aud"] != c.wantAud {
				t.Errorf("introspection aud %v", m["aud"])
			}
			if _, err := f.provider.UserInfo(f.ctx, oauth2.StaticTokenSource(tok)); err != nil {
				t.Errorf("userinfo: %v", err)
			}
		})
	}
}

package testidp

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// loginWith runs an authorization request with extra parameters, exchanges
// the code and returns the token and its ID token claims.
func (f *fixture) loginWith(params ...string) (*oauth2.Token, map[string]any) {
	f.t.Helper()
	var opts []oauth2.AuthCodeOption
	for i := 0; i+1 < len(params); i += 2 {
		opts = append(opts, oauth2.SetAuthURLParam(params[i], params[i+1]))
	}
	code, v := f.authorize(opts...)
	tok, err := f.cfg.Exchange(f.ctx, code, oauth2.VerifierOption(v))
	if err != nil {
		f.t.Fatal(err)
	}
	return tok, claimsOf(f.t, tok.Extra("id_token").(string))
}

func amrOf(c map[string]any) string {
	var out []string
	a, _ := c["amr"].([]any)
	for _, v := range a {
		s, _ := v.(string)
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestACRValues(t *testing.T) {
	cases := []struct {
		name      string
		opts      Options
		acrValues string
		wantACR   string
		wantAMR   string
	}{
		{"no acr_values", Options{}, "", "1", "pwd"},
		{"second level", Options{}, "2", "2", "pwd mfa"},
		{"first supported value", Options{}, "3 2 1", "2", "pwd mfa"},
		{"lowest first", Options{}, "1 2", "1", "pwd"},
		{"unsupported only", Options{}, "3", "1", "pwd"},
		{"custom values", Options{ACRValues: []string{"urn:low", "urn:high"}}, "urn:high", "urn:high", "pwd mfa"},
		{"custom values, none requested", Options{ACRValues: []string{"urn:low", "urn:high"}}, "", "urn:low", "pwd"},
		{"IgnoreACRValues", Options{IgnoreACRValues: true}, "2", "1", "pwd"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
			c.opts.AutoLogin, c.opts.Now = "alice", clock.Now
			f := setup(t, c.opts)
			var params []string
			if c.acrValues != "" {
				params = []string{"acr_values", c.acrValues}
			}
			tok, id := f.loginWith(params...)
			if id["acr"] != c.wantACR || amrOf(id) != c.wantAMR || id["auth_time"] != float64(clock.Now().Unix()) {
				t.Fatalf("acr %v amr %v auth_time %v", id["acr"], id["amr"], id["auth_time"])
			}
			at := claimsOf(t, tok.AccessToken)
			if at["acr"] != c.wantACR || amrOf(at) != c.wantAMR || at["auth_time"] != id["auth_time"] {
				t.Fatalf("access token acr %v amr %v auth_time %v", at["acr"], at["amr"], at["auth_time"])
			}
			if _, m := f.introspect(tok.AccessToken, testClientID, testSecret); m["acr"] != c.wantACR || m["auth_time"] != id["auth_time"] {
				t.Fatalf("introspection %v", m)
			}
			var meta struct {
				ACRs   []string `json:"acr_values_supported"`
				Claims []string `json:"claims_supported"`
			}
			f.provider.Claims(&meta)
			want := c.opts.ACRValues
			if want == nil {
				want = []string{"1", "2"}
			}
			if !slices.Equal(meta.ACRs, want) || !slices.Contains(meta.Claims, "acr") || !slices.Contains(meta.Claims, "amr") {
				t.Fatalf("discovery %+v", meta)
			}
		})
	}
}

// TestAutoLoginSessionReauthentication walks one provider session through
// max_age, prompt=login and step-up, checking auth_time, acr and amr.
func TestAutoLoginSessionReauthentication(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := NewClock(t0)
	f := setup(t, Options{AutoLogin: "alice", AutoLoginSession: true, Now: clock.Now})
	first, id := f.loginWith()
	sid := id["sid"]
	steps := []struct {
		name         string
		advance      time.Duration
		params       []string
		wantAuthTime time.Duration // since t0
		wantACR      string
	}{
		{"session reused", 10 * time.Minute, nil, 0, "1"},
		{"max_age exceeded", 0, []string{"max_age", "300"}, 10 * time.Minute, "1"},
		{"max_age satisfied", time.Minute, []string{"max_age", "300"}, 10 * time.Minute, "1"},
		{"max_age=0", 0, []string{"max_age", "0"}, 11 * time.Minute, "1"},
		{"prompt=login", time.Minute, []string{"prompt", "login"}, 12 * time.Minute, "1"},
		{"step-up", time.Minute, []string{"acr_values", "2"}, 13 * time.Minute, "2"},
		{"stepped-up session reused", time.Minute, nil, 13 * time.Minute, "2"},
		{"lower level satisfied by the session", time.Minute, []string{"acr_values", "1"}, 13 * time.Minute, "2"},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		_, id := f.loginWith(st.params...)
		if id["auth_time"] != float64(t0.Add(st.wantAuthTime).Unix()) || id["acr"] != st.wantACR {
			t.Fatalf("%s: auth_time %v (want +%s) acr %v", st.name, time.Unix(int64(id["auth_time"].(float64)), 0).Sub(t0), st.wantAuthTime, id["acr"])
		}
		if id["sid"] != sid {
			t.Fatalf("%s: sid changed", st.name)
		}
	}

	// A refresh keeps the authentication of the original grant.
	stp, m := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}})
	if stp != 200 {
		t.Fatalf("refresh: %d %v", stp, m)
	}
	rid := claimsOf(t, m["id_token"].(string))
	if rid["auth_time"] != float64(t0.Unix()) || rid["acr"] != "1" || amrOf(rid) != "pwd" {
		t.Fatalf("refreshed ID token: auth_time %v acr %v amr %v", rid["auth_time"], rid["acr"], rid["amr"])
	}
	if rat := claimsOf(t, m["access_token"].(string)); rat["acr"] != "1" || rat["auth_time"] != float64(t0.Unix()) {
		t.Fatalf("refreshed access token %v", rat)
	}
}

func TestIgnoreMaxAgeAndACRValues(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := NewClock(t0)
	f := setup(t, Options{AutoLogin: "alice", AutoLoginSession: true, IgnoreMaxAge: true, IgnoreACRValues: true, Now: clock.Now})
	f.loginWith()
	clock.Advance(time.Hour)
	for _, params := range [][]string{{"max_age", "60"}, {"max_age", "0"}, {"acr_values", "2"}} {
		_, id := f.loginWith(params...)
		if id["auth_time"] != float64(t0.Unix()) || id["acr"] != "1" {
			t.Fatalf("%v: auth_time %v acr %v", params, id["auth_time"], id["acr"])
		}
	}
	// prompt=login is still honoured.
	if _, id := f.loginWith("prompt", "login"); id["auth_time"] != float64(t0.Add(time.Hour).Unix()) {
		t.Fatalf("prompt=login: auth_time %v", id["auth_time"])
	}
}

func TestFormLoginReauthentication(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := NewClock(t0)
	f := setup(t, Options{Now: clock.Now})
	authURL := func(params ...string) string {
		opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(oauth2.GenerateVerifier())}
		for i := 0; i+1 < len(params); i += 2 {
			opts = append(opts, oauth2.SetAuthURLParam(params[i], params[i+1]))
		}
		return f.cfg.AuthCodeURL("st", opts...)
	}
	isForm := func(params ...string) bool {
		resp := f.get(authURL(params...))
		return resp.StatusCode == 200 && strings.Contains(body(t, resp), `id="signin"`)
	}
	// Sign in once.
	callback(t, f.submitLogin(body(t, f.get(authURL())), "alice", "wonderland", "signin"))
	clock.Advance(10 * time.Minute)
	cases := []struct {
		name   string
		params []string
		form   bool
	}{
		{"session reused", nil, false},
		{"max_age satisfied", []string{"max_age", "3600"}, false},
		{"max_age exceeded", []string{"max_age", "60"}, true},
		{"max_age=0", []string{"max_age", "0"}, true},
		{"step-up", []string{"acr_values", "2"}, true},
		{"prompt=login", []string{"prompt", "login"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := isForm(c.params...); got != c.form {
				t.Fatalf("login form shown = %v", got)
			}
		})
	}
	if q := callback(t, f.get(authURL("max_age", "60", "prompt", "none"))); q.Get("error") != "login_required" {
		t.Fatalf("prompt=none with max_age exceeded: %v", q)
	}
	// Authenticating again with acr_values=2 steps the session up in place.
	v := oauth2.GenerateVerifier()
	resp := f.get(f.cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("acr_values", "2")))
	q := callback(t, f.submitLogin(body(t, resp), "alice", "wonderland", "signin"))
	tok, err := f.cfg.Exchange(f.ctx, q.Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	id := claimsOf(t, tok.Extra("id_token").(string))
	if id["acr"] != "2" || amrOf(id) != "pwd mfa" || id["auth_time"] != float64(t0.Add(10*time.Minute).Unix()) {
		t.Fatalf("stepped up: %v", id)
	}
	if isForm("acr_values", "2") {
		t.Fatal("stepped-up session not reused")
	}
}

func TestHintsRecorded(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	f.authorize(oauth2.SetAuthURLParam("login_hint", "alice@example.com"), oauth2.SetAuthURLParam("domain_hint", "example.com"))
	if q := f.idp.LastAuthorizeQuery(); q.Get("login_hint") != "alice@example.com" || q.Get("domain_hint") != "example.com" {
		t.Fatalf("front channel: %v", q)
	}
	p := pushParams(oauth2.GenerateVerifier())
	p.Set("login_hint", "bob@example.com")
	p.Set("domain_hint", "example.org")
	p.Set("acr_values", "2")
	_, m := f.push(p, testClientID, testSecret)
	callback(t, f.get(f.authorizeURI(testClientID, m["request_uri"].(string), nil)))
	if q := f.idp.LastAuthorizeQuery(); q.Get("login_hint") != "bob@example.com" || q.Get("domain_hint") != "example.org" || q.Get("acr_values") != "2" {
		t.Fatalf("pushed: %v", q)
	}
}

package testidp

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// push sends a pushed authorization request with Basic authentication
// (or none when id is empty).
func (f *fixture) push(params url.Values, id, secret string) (int, map[string]any) {
	f.t.Helper()
	if id == "" {
		return postForm(f.t, http.DefaultClient, f.idp.Issuer()+PathPAR, params)
	}
	return postForm(f.t, http.DefaultClient, f.idp.Issuer()+PathPAR, params, id, secret)
}

func pushParams(verifier string) url.Values {
	return url.Values{
		"response_type": {"code"}, "redirect_uri": {testRedirect}, "scope": {"openid email"},
		"state": {"st-par"}, "nonce": {"n-par"}, "login_hint": {"alice@example.com"},
		"code_challenge": {s256(verifier)}, "code_challenge_method": {"S256"},
	}
}

func (f *fixture) authorizeURI(clientID, requestURI string, extra url.Values) string {
	q := url.Values{"client_id": {clientID}, "request_uri": {requestURI}}
	for k, v := range extra {
		q[k] = v
	}
	return f.idp.Issuer() + PathAuthorize + "?" + q.Encode()
}

var errorCodeRe = regexp.MustCompile(`<code id="error-code">([^<]+)</code>`)

// errorPageCode checks for a 400 error page without redirect and returns
// its error code.
func errorPageCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Fatalf("want a 400 error page, got %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	m := errorCodeRe.FindStringSubmatch(body(t, resp))
	if m == nil {
		t.Fatal("no error code on the page")
	}
	return m[1]
}

func TestPAR(t *testing.T) {
	clock := NewClock(time.Now())
	f := setup(t, Options{AutoLogin: "alice", Now: clock.Now, Clients: []Client{
		{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}},
		{ID: "other", Secret: testSecret, RedirectURIs: []string{testRedirect}},
		{ID: "spa", RedirectURIs: []string{testRedirect}},
	}})
	var meta struct {
		Endpoint string `json:"pushed_authorization_request_endpoint"`
		Require  bool   `json:"require_pushed_authorization_requests"`
	}
	if err := f.provider.Claims(&meta); err != nil || meta.Endpoint != f.idp.Issuer()+PathPAR || meta.Require {
		t.Fatalf("discovery %+v %v", meta, err)
	}

	t.Run("code flow", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		st, m := f.push(pushParams(v), testClientID, testSecret)
		uri, _ := m["request_uri"].(string)
		if st != 201 || !strings.HasPrefix(uri, "urn:ietf:params:oauth:request_uri:") || m["expires_in"] != float64(60) {
			t.Fatalf("push: %d %v", st, m)
		}
		if p := f.idp.LastPushedRequest(); p.Get("login_hint") != "alice@example.com" || p.Get("client_id") != testClientID || p.Has("client_secret") {
			t.Fatalf("LastPushedRequest %v", p)
		}
		// Front-channel parameters other than client_id and request_uri
		// are ignored (RFC 9101 §5).
		q := callback(t, f.get(f.authorizeURI(testClientID, uri, url.Values{
			"state": {"front"}, "redirect_uri": {testRedirect2}, "scope": {"openid admin"}, "nonce": {"front"},
		})))
		if q.Get("state") != "st-par" || q.Get("code") == "" {
			t.Fatalf("callback %v", q)
		}
		aq := f.idp.LastAuthorizeQuery()
		if aq.Get("login_hint") != "alice@example.com" || aq.Get("request_uri") != uri || aq.Get("state") != "st-par" {
			t.Fatalf("LastAuthorizeQuery %v", aq)
		}
		tok, err := f.cfg.Exchange(f.ctx, q.Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		if c := claimsOf(t, tok.Extra("id_token").(string)); c["nonce"] != "n-par" {
			t.Fatalf("nonce %v", c["nonce"])
		}
		if tok.Extra("scope") != "openid email" {
			t.Fatalf("scope %v", tok.Extra("scope"))
		}

		// Single use.
		if code := errorPageCode(t, f.get(f.authorizeURI(testClientID, uri, nil))); code != "invalid_request_uri" {
			t.Fatalf("reuse: %s", code)
		}
	})

	t.Run("request_uri errors", func(t *testing.T) {
		pushed := func() string {
			_, m := f.push(pushParams(oauth2.GenerateVerifier()), testClientID, testSecret)
			return m["request_uri"].(string)
		}
		uri := pushed()
		if code := errorPageCode(t, f.get(f.authorizeURI("other", uri, nil))); code != "invalid_request_uri" {
			t.Fatalf("other client: %s", code)
		}
		if code := errorPageCode(t, f.get(f.idp.Issuer()+PathAuthorize+"?"+url.Values{"request_uri": {uri}}.Encode())); code != "invalid_request" {
			t.Fatalf("no client_id: %s", code)
		}
		// Still usable by its own client.
		if q := callback(t, f.get(f.authorizeURI(testClientID, uri, nil))); q.Get("code") == "" {
			t.Fatalf("%v", q)
		}
		if code := errorPageCode(t, f.get(f.authorizeURI(testClientID, RequestURIPrefix+"made-up", nil))); code != "invalid_request_uri" {
			t.Fatalf("unknown: %s", code)
		}
		uri = pushed()
		clock.Advance(61 * time.Second)
		if code := errorPageCode(t, f.get(f.authorizeURI(testClientID, uri, nil))); code != "invalid_request_uri" {
			t.Fatalf("expired: %s", code)
		}
		uri = pushed()
		clock.Advance(59 * time.Second)
		if q := callback(t, f.get(f.authorizeURI(testClientID, uri, nil))); q.Get("code") == "" {
			t.Fatalf("before expiry: %v", q)
		}
	})

	t.Run("push errors", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		mod := func(f func(url.Values)) url.Values { p := pushParams(v); f(p); return p }
		cases := []struct {
			name       string
			params     url.Values
			id, secret string
			status     int
			code       string
		}{
			{"no client authentication", pushParams(v), "", "", 401, "invalid_client"},
			{"wrong secret", pushParams(v), testClientID, "wrong", 401, "invalid_client"},
			{"client_id of another client", mod(func(p url.Values) { p.Set("client_id", "other") }), testClientID, testSecret, 400, "invalid_request"},
			{"unregistered redirect_uri", mod(func(p url.Values) { p.Set("redirect_uri", "http://evil.example/cb") }), testClientID, testSecret, 400, "invalid_request"},
			{"unknown scope", mod(func(p url.Values) { p.Set("scope", "openid admin") }), testClientID, testSecret, 400, "invalid_scope"},
			{"request_uri pushed", mod(func(p url.Values) { p.Set("request_uri", RequestURIPrefix+"x") }), testClientID, testSecret, 400, "invalid_request"},
			{"unsupported response_type", mod(func(p url.Values) { p.Set("response_type", "token") }), testClientID, testSecret, 400, "unsupported_response_type"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				st, m := f.push(c.params, c.id, c.secret)
				if st != c.status || m["error"] != c.code {
					t.Fatalf("%d %v", st, m)
				}
			})
		}
		// Public clients push with client_id only, and need PKCE.
		p := pushParams(v)
		p.Set("client_id", "spa")
		if st, m := f.push(p, "", ""); st != 201 {
			t.Fatalf("public client: %d %v", st, m)
		}
		p.Del("code_challenge")
		p.Del("code_challenge_method")
		if st, m := f.push(p, "", ""); st != 400 || m["error"] != "invalid_request" {
			t.Fatalf("public client without PKCE: %d %v", st, m)
		}
		req, _ := http.NewRequest(http.MethodGet, f.idp.Issuer()+PathPAR, nil)
		req.SetBasicAuth(testClientID, testSecret)
		if st, _ := doJSON(t, req); st != 405 {
			t.Fatalf("GET: %d", st)
		}
	})

	t.Run("counter and fault", func(t *testing.T) {
		f.idp.ResetCounts()
		f.idp.SetFault("par", Fault{Kind: FaultStatus500HTML, Times: 1})
		resp, err := http.PostForm(f.idp.Issuer()+PathPAR, pushParams(oauth2.GenerateVerifier()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 500 {
			t.Fatalf("fault: %d", resp.StatusCode)
		}
		if st, _ := f.push(pushParams(oauth2.GenerateVerifier()), testClientID, testSecret); st != 201 {
			t.Fatalf("after fault: %d", st)
		}
		if n := f.idp.Count("par"); n != 2 {
			t.Fatalf("count %d", n)
		}
	})
}

func TestRequirePAR(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice", RequirePAR: true})
	var meta struct {
		Require bool `json:"require_pushed_authorization_requests"`
	}
	if f.provider.Claims(&meta); !meta.Require {
		t.Fatal("require_pushed_authorization_requests not advertised")
	}
	q := callback(t, f.get(f.cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))))
	if q.Get("error") != "invalid_request" || q.Has("code") || q.Get("state") != "st" {
		t.Fatalf("without PAR: %v", q)
	}
	// An unregistered redirect_uri still gets an error page, not a redirect.
	cfg := f.cfg
	cfg.RedirectURL = "http://evil.example/cb"
	if code := errorPageCode(t, f.get(cfg.AuthCodeURL("st"))); code != "invalid_request" {
		t.Fatalf("bad redirect_uri: %s", code)
	}
	_, m := f.push(pushParams(oauth2.GenerateVerifier()), testClientID, testSecret)
	if q := callback(t, f.get(f.authorizeURI(testClientID, m["request_uri"].(string), nil))); q.Get("code") == "" {
		t.Fatalf("with PAR: %v", q)
	}
}

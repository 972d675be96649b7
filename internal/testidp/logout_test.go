package testidp

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

var (
	iframeRe      = regexp.MustCompile(`<iframe class="frontchannel-logout" src="([^"]+)"`)
	metaRefreshRe = regexp.MustCompile(`<meta http-equiv="refresh" content="2;url=([^"]+)">`)
)

// loginAs runs a code flow for clientID (secret testSecret) in the
// fixture's browser and returns the ID token.
func (f *fixture) loginAs(clientID string) string {
	f.t.Helper()
	cfg := f.cfg
	cfg.ClientID = clientID
	v := oauth2.GenerateVerifier()
	q := callback(f.t, f.get(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(v))))
	tok, err := cfg.Exchange(f.ctx, q.Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		f.t.Fatal(err)
	}
	return tok.Extra("id_token").(string)
}

func TestFrontchannelLogout(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice", AutoLoginSession: true, Clients: []Client{
		{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect},
			FrontchannelLogoutURI: "http://app.example/fc-logout?x=1", FrontchannelLogoutSessionRequired: true},
		{ID: "other", Secret: testSecret, RedirectURIs: []string{testRedirect}, FrontchannelLogoutURI: "http://other.example/logout"},
		{ID: "third", Secret: testSecret, RedirectURIs: []string{testRedirect}},
		{ID: "absent", Secret: testSecret, RedirectURIs: []string{testRedirect}, FrontchannelLogoutURI: "http://absent.example/logout"},
	}})
	var meta struct {
		Supported        bool `json:"frontchannel_logout_supported"`
		SessionSupported bool `json:"frontchannel_logout_session_supported"`
	}
	if f.provider.Claims(&meta); !meta.Supported || !meta.SessionSupported {
		t.Fatalf("discovery %+v", meta)
	}
	idToken := f.loginAs(testClientID)
	f.loginAs("other")
	f.loginAs("third")
	sid, _ := claimsOf(t, idToken)["sid"].(string)
	if sid == "" {
		t.Fatal("ID token without sid")
	}
	want := []string{
		"http://app.example/fc-logout?" + url.Values{"iss": {f.idp.Issuer()}, "sid": {sid}, "x": {"1"}}.Encode(),
		"http://other.example/logout",
	}
	if got := f.idp.FrontchannelLogoutURLs(sid); !slices.Equal(got, want) {
		t.Fatalf("before logout: %v, want %v", got, want)
	}
	if got := f.idp.FrontchannelLogoutURLs("unknown"); got != nil {
		t.Fatalf("unknown sid: %v", got)
	}

	lq := url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {"http://app.example/bye"}, "state": {"ls"}}
	resp := f.get(f.idp.Issuer() + PathEndSession + "?" + lq.Encode())
	page := body(t, resp)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("logout page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var frames []string
	for _, m := range iframeRe.FindAllStringSubmatch(page, -1) {
		frames = append(frames, html.UnescapeString(m[1]))
	}
	if !slices.Equal(frames, want) {
		t.Fatalf("iframes %v, want %v", frames, want)
	}
	if m := metaRefreshRe.FindStringSubmatch(page); m == nil || html.UnescapeString(m[1]) != "http://app.example/bye?state=ls" {
		t.Fatalf("no redirect to the post-logout URI in %s", page)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-src http://app.example http://other.example;") || !strings.HasPrefix(csp, "default-src 'none';") {
		t.Fatalf("CSP %q", csp)
	}
	if got := f.idp.FrontchannelLogoutURLs(sid); !slices.Equal(got, want) {
		t.Fatalf("after logout: %v", got)
	}
	if n := f.idp.Count("frontchannel_logout"); n != 2 {
		t.Fatalf("count %d", n)
	}
	// The session is over: a new login is a new session.
	if newSID := claimsOf(t, f.loginAs("third"))["sid"]; newSID == sid {
		t.Fatal("session survived logout")
	}

	// Without post_logout_redirect_uri the page has no redirect.
	idToken = f.loginAs(testClientID)
	resp = f.get(f.idp.Issuer() + PathEndSession + "?" + url.Values{"id_token_hint": {idToken}}.Encode())
	page = body(t, resp)
	if resp.StatusCode != 200 || len(iframeRe.FindAllString(page, -1)) != 1 || metaRefreshRe.MatchString(page) {
		t.Fatalf("logout without redirect: %d %s", resp.StatusCode, page)
	}
	// Without front-channel participants the redirect is immediate.
	f.loginAs("third")
	resp = f.get(f.idp.Issuer() + PathEndSession + "?" + url.Values{"client_id": {"third"}, "post_logout_redirect_uri": {"http://app.example/bye"}}.Encode())
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://app.example/bye" {
		t.Fatalf("plain logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if err := f.idp.AddClient(Client{ID: "bad", FrontchannelLogoutURI: "/relative"}); err == nil {
		t.Fatal("relative FrontchannelLogoutURI accepted")
	}
}

func TestBackchannelLogoutTokenAtLogout(t *testing.T) {
	lr := newLogoutReceiver(t)
	clock := NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	f := setup(t, Options{AutoLogin: "alice", Now: clock.Now, Clients: []Client{
		{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}, BackchannelLogoutURI: lr.srv.URL},
	}})
	var jtis []string
	for range 2 {
		idToken := f.loginAs(testClientID)
		id := claimsOf(t, idToken)
		resp := f.get(f.idp.Issuer() + PathEndSession + "?" + url.Values{"id_token_hint": {idToken}}.Encode())
		if resp.StatusCode != 200 {
			t.Fatalf("logout %d", resp.StatusCode)
		}
		raw := lr.wait(t)
		h := claimsOfHeader(t, raw)
		if h["typ"] != "logout+jwt" || h["alg"] != "RS256" || h["kid"] != f.idp.CurrentKID() {
			t.Fatalf("header %v", h)
		}
		if err := f.verifySignature(raw); err != nil {
			t.Fatal(err)
		}
		c := claimsOf(t, raw)
		now := float64(clock.Now().Unix())
		if c["iss"] != f.idp.Issuer() || c["aud"] != testClientID || c["iat"] != now || c["exp"] == nil ||
			c["sid"] != id["sid"] || c["sub"] != id["sub"] || c["jti"] == "" || c["jti"] == nil {
			t.Fatalf("claims %v (ID token %v)", c, id)
		}
		if _, ok := c["nonce"]; ok {
			t.Fatal("logout token has a nonce")
		}
		ev, _ := c["events"].(map[string]any)
		if e, ok := ev["http://schemas.openid.net/event/backchannel-logout"].(map[string]any); !ok || len(e) != 0 || len(ev) != 1 {
			t.Fatalf("events %v", c["events"])
		}
		jtis = append(jtis, c["jti"].(string))
	}
	if jtis[0] == jtis[1] {
		t.Fatal("jti reused")
	}
}

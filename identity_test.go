package authgate

// Identity that stays true after login (issue 16): one test per line of the
// issue's "fail today" list that identity.go answers, each through a real
// Caddy in front of the strict test provider, asserting what a user meets
// (status, page or JSON), what the backend saw, what was logged and whether
// the session survived.

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// caddyLog is a JSON log file of Caddy's, for tests that assert what was
// logged.
type caddyLog struct {
	t    *testing.T
	path string
}

// newCaddyLog returns a log file and the global options that make Caddy
// write to it.
func newCaddyLog(t *testing.T) (*caddyLog, string) {
	p := filepath.Join(t.TempDir(), "caddy.log")
	return &caddyLog{t: t, path: p}, fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel INFO\n\t}", p)
}

// count is how many authgate lines with msg carry every field of want.
func (l *caddyLog) count(msg string, want map[string]string) int {
	l.t.Helper()
	_, recs := logLines(l.t, l.path)
	n := 0
	for _, r := range recs {
		if r["logger"] != "authgate" || r["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range want {
			if fmt.Sprint(r[k]) != v {
				ok = false
			}
		}
		if ok {
			n++
		}
	}
	return n
}

// expectLine fails unless a log line with msg and want was written since
// the count before.
func (l *caddyLog) expectLine(before int, msg string, want map[string]string) {
	l.t.Helper()
	if n := l.count(msg, want); n != before+1 {
		raw, _ := logLines(l.t, l.path)
		l.t.Errorf("%d new log lines %q with %v, want 1; the log:\n%s", n-before, msg, want, tail(raw, 3000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// identityProxy sends the placeholders a backend might use, so that tests
// see them beside the headers.
const identityProxy = `header_up X-Placeholder-User {http.auth.user.id}
		header_up X-Placeholder-Email {http.auth.user.email}
		header_up X-Placeholder-Groups {http.auth.user.groups}
		header_up X-Placeholder-Department {http.auth.user.department}`

// headerIs fails unless the backend got exactly one h with value v, or,
// for v == "", none (or an empty one: an empty placeholder).
func headerIs(t *testing.T, saw echoed, h, v string) {
	t.Helper()
	got := saw.Headers.Values(h)
	switch {
	case v == "" && len(got) > 0 && slices.ContainsFunc(got, func(s string) bool { return s != "" }):
		t.Errorf("backend got %s=%q, want none", h, got)
	case v != "" && (len(got) != 1 || got[0] != v):
		t.Errorf("backend got %s=%q, want %q", h, got, v)
	}
}

// "A user removed from admins at the provider keeps getting
// X-Forwarded-Groups: ...,admins and passing allow group admins after
// refresh."
func TestIdentityRefreshRecomputesGroups(t *testing.T) {
	logs, logOpts := newCaddyLog(t)
	s := setupSiteWith(t, siteConfig{caddyGlobal: logOpts, handler: "allow group admins", proxy: identityProxy})
	b := newBrowser(t)
	saw := s.login(t, b)
	headerIs(t, saw, "X-Forwarded-Groups", "admins,staff")

	t.Run("a group removed at the provider is gone after the refresh, from the header and the placeholder", func(t *testing.T) {
		s.idp.SetUserClaims("alice", map[string]any{"groups": []any{"admins", "ops"}, "name": "Alice Renamed"})
		// Until the access token is due, the session is what was said.
		resp, body := b.get(s.origin+"/before", "X-Forwarded-Groups", "forged")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("before the refresh: %d %s", resp.StatusCode, body)
		}
		headerIs(t, backendSaw(t, body), "X-Forwarded-Groups", "admins,staff")
		refreshes := logs.count("refresh", map[string]string{"result": "ok", "user_id": "alice-sub"})
		s.idp.ResetCounts()
		advanceClock(t, 6*time.Minute)
		resp, body = b.get(s.origin+"/after", "X-Forwarded-Groups", "forged")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("after the refresh: %d %s", resp.StatusCode, body)
		}
		saw := backendSaw(t, body)
		headerIs(t, saw, "X-Forwarded-Groups", "admins,ops")
		headerIs(t, saw, "X-Placeholder-Groups", "admins,ops")
		headerIs(t, saw, "X-Placeholder-User", "alice-sub")
		if n := s.idp.Count("token:refresh_token"); n != 1 {
			t.Errorf("%d refreshes, want 1", n)
		}
		if n := s.idp.Count("userinfo"); n != 1 {
			t.Errorf("%d userinfo reads with the refresh, want 1", n)
		}
		logs.expectLine(refreshes, "refresh", map[string]string{"result": "ok", "user_id": "alice-sub"})
		sess := mustOpenSession(t, jarSession(t, b, s.origin), testKey)
		if g := fmt.Sprint(sess.Claims["groups"]); g != "[admins ops]" || sess.Claims["name"] != "Alice Renamed" {
			t.Errorf("the refreshed session holds groups %s and name %v, want [admins ops] and the new name", g, sess.Claims["name"])
		}
		if resp, body := b.api("GET", s.origin+"/oauth2/userinfo"); !strings.Contains(body, `"groups":["admins","ops"]`) || !strings.Contains(body, "Alice Renamed") {
			t.Errorf("/oauth2/userinfo after the refresh: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("a user removed from admins no longer passes allow group admins: 403, still signed in", func(t *testing.T) {
		s.idp.SetUserClaims("alice", map[string]any{"groups": []any{"ops"}})
		denied := logs.count("denied", map[string]string{"user_id": "alice-sub"})
		advanceClock(t, 12*time.Minute)
		resp, body := b.get(s.origin + "/admin")
		assertHTMLError(t, resp, body, http.StatusForbidden, "forbidden")
		if strings.Contains(body, `"headers"`) {
			t.Error("the backend was reached")
		}
		resp, body = b.api("GET", s.origin+"/api/admin")
		assertJSONError(t, resp, body, http.StatusForbidden, "forbidden")
		if n := logs.count("denied", map[string]string{"user_id": "alice-sub"}); n != denied+2 {
			t.Errorf("%d denials logged for two refused requests, want 2", n-denied)
		}
		// The session survived the refresh: the user is signed in, with
		// the groups the provider says now.
		sess := mustOpenSession(t, jarSession(t, b, s.origin), testKey)
		if g := fmt.Sprint(sess.Claims["groups"]); g != "[ops]" {
			t.Errorf("the session holds groups %s, want [ops]", g)
		}
		if resp, body := b.api("GET", s.origin+"/oauth2/userinfo"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"groups":["ops"]`) {
			t.Errorf("/oauth2/userinfo: %d %s", resp.StatusCode, body)
		}
	})
}

// "A refreshed ID token whose iss, sub or aud changed answers 502 (and
// keeps the broken session); one whose azp names another client is
// accepted."
func TestIdentityRefreshIdentityChanged(t *testing.T) {
	logs, logOpts := newCaddyLog(t)
	s := setupSiteWith(t, siteConfig{caddyGlobal: logOpts})
	for _, tc := range []struct {
		name   string
		claims map[string]any
	}{
		{"iss", map[string]any{"iss": "https://another-issuer.example"}},
		{"sub", map[string]any{"sub": "mallory-sub"}},
		{"aud", map[string]any{"aud": "other-client"}},
		{"aud with a second audience", map[string]any{"aud": []any{"app", "other-client"}, "azp": "app"}},
		{"azp of another client", map[string]any{"azp": "other-client"}},
		{"azp dropped", map[string]any{"azp": nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			s.login(t, b)
			cookie := sessionCookieHeader(b, s.origin)
			advanceClock(t, 6*time.Minute)
			s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultIDTokenClaims, Claims: tc.claims, Times: 1})
			defer s.idp.ClearFaults()
			signedOut := logs.count("signed out: your identity at the provider changed", map[string]string{"reason": "identity_changed", "user_id": "alice-sub"})

			resp, body := b.api("GET", s.origin+"/api/after-refresh")
			assertJSONError(t, resp, body, http.StatusUnauthorized, "identity_changed")
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			if !expiredCookieNames(resp)["_authgate"] {
				t.Errorf("the session cookie was not cleared: %v", setCookieHeaders(resp))
			}
			assertNoSessionSet(t, resp)
			logs.expectLine(signedOut, "signed out: your identity at the provider changed", map[string]string{"reason": "identity_changed", "user_id": "alice-sub"})
			// The session is gone: the browser holds none, and a copy of
			// the old cookie refreshes again and is refused again.
			assertJarHasNoSession(t, b, s.origin)
			s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultIDTokenClaims, Claims: tc.claims, Times: 1})
			resp, body = rawRequest(t, s.origin+"/page", cookie, true)
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, s.idp.Issuer()+"/authorize") {
				t.Errorf("a browser with the changed identity: %d to %q, want a new login at the provider\n%.300s", resp.StatusCode, loc, body)
			}
			if !expiredCookieNames(resp)["_authgate"] {
				t.Errorf("the browser's session cookie was not cleared: %v", setCookieHeaders(resp))
			}
		})
	}
	t.Run("control: an unchanged refreshed ID token keeps the session", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		advanceClock(t, 6*time.Minute)
		if resp, body := b.api("GET", s.origin+"/api/after-refresh"); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

// "An ID token with a wrong at_hash is accepted." And the azp line at
// login: one audience, azp of another client.
func TestIdentityIDTokenHashesAndAZP(t *testing.T) {
	logs, logOpts := newCaddyLog(t)
	s := setupSiteWith(t, siteConfig{caddyGlobal: logOpts})
	loginRefused := func(t *testing.T, fault testidp.Fault) {
		t.Helper()
		b := newBrowser(t)
		cb := startLoginAt(t, b, s.origin+"/private")
		fault.Times = 1
		s.idp.SetFault("token:authorization_code", fault)
		defer s.idp.ClearFaults()
		failed := logs.count("login failed", map[string]string{"reason": "id_token_invalid"})
		resp, body := b.get(cb)
		assertHTMLError(t, resp, body, http.StatusUnauthorized, "id_token_invalid")
		assertNoSessionSet(t, resp)
		assertJarHasNoSession(t, b, s.origin)
		logs.expectLine(failed, "login failed", map[string]string{"reason": "id_token_invalid", "provider": "corp"})
	}
	t.Run("wrong at_hash at login: 401 page, no session", func(t *testing.T) {
		loginRefused(t, testidp.Fault{Kind: testidp.FaultIDTokenWrongATHash})
	})
	t.Run("azp of another client with one audience at login: 401 page, no session", func(t *testing.T) {
		loginRefused(t, testidp.Fault{Kind: testidp.FaultIDTokenClaims, Claims: map[string]any{"azp": "other-client"}})
	})
	t.Run("c_hash that is not the code's at login: 401 page, no session", func(t *testing.T) {
		loginRefused(t, testidp.Fault{Kind: testidp.FaultIDTokenClaims, Claims: map[string]any{"c_hash": "bm90LXRoZS1jb2Rl"}})
	})
	t.Run("wrong at_hash on refresh: 401, the session ends", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		advanceClock(t, 6*time.Minute)
		s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultIDTokenWrongATHash, Times: 1})
		defer s.idp.ClearFaults()
		signedOut := logs.count("signed out: the identity provider's answer was refused", map[string]string{"reason": "id_token_invalid"})
		resp, body := b.api("GET", s.origin+"/api/after-refresh")
		assertJSONError(t, resp, body, http.StatusUnauthorized, "id_token_invalid")
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("the session cookie was not cleared: %v", setCookieHeaders(resp))
		}
		logs.expectLine(signedOut, "signed out: the identity provider's answer was refused", map[string]string{"reason": "id_token_invalid", "user_id": "alice-sub"})
		assertJarHasNoSession(t, b, s.origin)
	})
	t.Run("control: the real at_hash is checked and passes, at login and on refresh", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		advanceClock(t, 6*time.Minute)
		if resp, body := b.api("GET", s.origin+"/api/after-refresh"); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

// "A userinfo sub that differs from the ID token's sub answers 502 instead
// of refusing the login with a 4xx page."
func TestIdentityUserinfoSubMismatch(t *testing.T) {
	logs, logOpts := newCaddyLog(t)
	s := setupSiteWith(t, siteConfig{caddyGlobal: logOpts})
	t.Run("at login: 401 page, no session", func(t *testing.T) {
		b := newBrowser(t)
		cb := startLoginAt(t, b, s.origin+"/private")
		s.idp.SetFault("userinfo", testidp.Fault{Kind: testidp.FaultUserinfoWrongSub, Times: 1})
		defer s.idp.ClearFaults()
		failed := logs.count("login failed", map[string]string{"reason": "userinfo_mismatch"})
		resp, body := b.get(cb)
		assertHTMLError(t, resp, body, http.StatusUnauthorized, "userinfo_mismatch")
		if !strings.Contains(body, "for another user") {
			t.Errorf("the page does not say what happened: %.500s", body)
		}
		assertNoSessionSet(t, resp)
		assertJarHasNoSession(t, b, s.origin)
		logs.expectLine(failed, "login failed", map[string]string{"reason": "userinfo_mismatch", "provider": "corp"})
	})
	t.Run("on refresh: 401, the session ends", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		advanceClock(t, 6*time.Minute)
		s.idp.SetFault("userinfo", testidp.Fault{Kind: testidp.FaultUserinfoWrongSub, Times: 1})
		defer s.idp.ClearFaults()
		signedOut := logs.count("signed out: the identity provider's answer was refused", map[string]string{"reason": "userinfo_mismatch"})
		resp, body := b.api("GET", s.origin+"/api/after-refresh")
		assertJSONError(t, resp, body, http.StatusUnauthorized, "userinfo_mismatch")
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("the session cookie was not cleared: %v", setCookieHeaders(resp))
		}
		logs.expectLine(signedOut, "signed out: the identity provider's answer was refused", map[string]string{"reason": "userinfo_mismatch", "user_id": "alice-sub"})
		assertJarHasNoSession(t, b, s.origin)
	})
}

// "email_verified: false is ignored: an unverified address is forwarded and
// satisfies allow email / allow domain rules."
func TestIdentityEmailUnverified(t *testing.T) {
	unverified := func(v any) func(*testidp.Server) {
		return func(idp *testidp.Server) { idp.SetUserClaims("alice", map[string]any{"email_verified": v}) }
	}
	for _, v := range []any{false, "false"} {
		t.Run(fmt.Sprintf("email_verified %#v: not forwarded, nor in the placeholder or /oauth2/userinfo", v), func(t *testing.T) {
			s := setupSiteWith(t, siteConfig{proxy: identityProxy, handler: "claim_header X-Mail email", beforeStart: unverified(v)})
			b := newBrowser(t)
			resp, body := b.get(s.origin+"/dashboard", "X-Forwarded-Email", "forged@example.test", "X-Mail", "forged")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("login: %d %s", resp.StatusCode, body)
			}
			saw := backendSaw(t, body)
			headerIs(t, saw, "X-Forwarded-User", "alice-sub")
			headerIs(t, saw, "X-Forwarded-Email", "")
			headerIs(t, saw, "X-Mail", "")
			headerIs(t, saw, "X-Placeholder-Email", "")
			if resp, body := b.api("GET", s.origin+"/oauth2/userinfo"); resp.StatusCode != http.StatusOK || strings.Contains(body, "alice@example.test") {
				t.Errorf("/oauth2/userinfo: %d %s, want the identity without the address", resp.StatusCode, body)
			}
		})
	}
	t.Run("allow domain: an unverified address does not match; 403 email_unverified, session ended", func(t *testing.T) {
		logs, logOpts := newCaddyLog(t)
		s := setupSiteWith(t, siteConfig{caddyGlobal: logOpts, handler: "allow domain example.test", beforeStart: unverified(false)})
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/dashboard")
		assertHTMLError(t, resp, body, http.StatusForbidden, "email_unverified")
		if !strings.Contains(body, "not verified") {
			t.Errorf("the page does not say why: %.500s", body)
		}
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("the session cookie was not cleared: %v", setCookieHeaders(resp))
		}
		logs.expectLine(0, "denied", map[string]string{"reason": "email_unverified", "user_id": "alice-sub"})
		assertJarHasNoSession(t, b, s.origin)
	})
	t.Run("allow email: an unverified address does not match (API: 403 JSON)", func(t *testing.T) {
		s := setupSiteWith(t, siteConfig{handler: "allow email alice@example.test", beforeStart: unverified("false")})
		b := newBrowser(t)
		b.get(s.origin + "/dashboard")
		s.idp.SetUserClaims("alice", map[string]any{"email_verified": true})
		s.login(t, b) // verified now: the new login reads it
		s.idp.SetUserClaims("alice", map[string]any{"email_verified": false})
		advanceClock(t, 6*time.Minute) // the refresh reads email_verified false
		resp, body := b.api("GET", s.origin+"/api")
		assertJSONError(t, resp, body, http.StatusForbidden, "email_unverified")
	})
	t.Run("allow_unverified_email: forwarded and matched", func(t *testing.T) {
		s := setupSiteWith(t, siteConfig{provider: "allow_unverified_email", handler: "allow domain example.test", beforeStart: unverified(false)})
		headerIs(t, s.login(t, newBrowser(t)), "X-Forwarded-Email", "alice@example.test")
	})
	t.Run("control: verified, and a provider that sends no email_verified, as before", func(t *testing.T) {
		s := setupSiteWith(t, siteConfig{handler: "allow domain example.test", beforeStart: unverified(true)})
		headerIs(t, s.login(t, newBrowser(t)), "X-Forwarded-Email", "alice@example.test")
		s.idp.SetUserClaims("alice", map[string]any{"email_verified": nil})
		headerIs(t, s.login(t, newBrowser(t)), "X-Forwarded-Email", "alice@example.test")
	})
}

// "A mapped claim that is absent for a user (a provider that omits
// groups/roles for users in no group, as Keycloak, Entra ID and Spring
// servers do) fails the whole login (claims_missing, 502)."
func TestIdentityOptionalClaims(t *testing.T) {
	noRoles := func(idp *testidp.Server) { idp.SetUserClaims("alice", map[string]any{"groups": nil}) }
	t.Run("a user in no group signs in: no groups header, empty placeholders", func(t *testing.T) {
		s := setupSiteWith(t, siteConfig{
			provider: "claim groups roles\n\t\t\tclaim name display.name", handler: "claim_header X-Department department",
			proxy: identityProxy, beforeStart: noRoles,
		})
		b := newBrowser(t)
		resp, body := b.get(s.origin+"/dashboard", "X-Forwarded-Groups", "admins", "X-Department", "forged")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("login of a user without roles: %d %s", resp.StatusCode, body)
		}
		saw := backendSaw(t, body)
		headerIs(t, saw, "X-Forwarded-User", "alice-sub")
		headerIs(t, saw, "X-Forwarded-Groups", "")
		headerIs(t, saw, "X-Department", "")
		headerIs(t, saw, "X-Placeholder-Groups", "")
		headerIs(t, saw, "X-Placeholder-Department", "") // not the placeholder's text
		if resp, body := b.api("GET", s.origin+"/oauth2/userinfo"); resp.StatusCode != http.StatusOK || strings.Contains(body, `"groups"`) || strings.Contains(body, `"name"`) {
			t.Errorf("/oauth2/userinfo: %d %s", resp.StatusCode, body)
		}
		// Roles granted later arrive with the next refresh.
		s.idp.SetUserClaims("alice", map[string]any{"roles": []any{"editor"}})
		advanceClock(t, 6*time.Minute)
		resp, body = b.get(s.origin + "/later")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("after the refresh: %d %s", resp.StatusCode, body)
		}
		headerIs(t, backendSaw(t, body), "X-Forwarded-Groups", "editor")
	})
	t.Run("require_claim: absent, the login is refused with a 403 page", func(t *testing.T) {
		logs, logOpts := newCaddyLog(t)
		s := setupSiteWith(t, siteConfig{caddyGlobal: logOpts, provider: "claim groups roles\n\t\t\trequire_claim groups department", beforeStart: noRoles})
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/dashboard")
		assertHTMLError(t, resp, body, http.StatusForbidden, "claims_missing")
		if resp.Request.URL.Path != "/oauth2/callback" {
			t.Errorf("refused at %s, want the callback", resp.Request.URL.Path)
		}
		assertJarHasNoSession(t, b, s.origin)
		logs.expectLine(0, "login failed", map[string]string{"reason": "claims_missing", "provider": "corp"})
	})
	t.Run("require_claim: present, the login succeeds; removed later, the refresh ends the session", func(t *testing.T) {
		s := setupSiteWith(t, siteConfig{provider: "require_claim groups department", beforeStart: func(idp *testidp.Server) {
			idp.SetUserClaims("alice", map[string]any{"department": "research"})
		}})
		b := newBrowser(t)
		s.login(t, b)
		s.idp.SetUserClaims("alice", map[string]any{"department": nil})
		advanceClock(t, 6*time.Minute)
		resp, body := b.get(s.origin + "/after-refresh")
		assertHTMLError(t, resp, body, http.StatusForbidden, "claims_missing")
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("the session cookie was not cleared: %v", setCookieHeaders(resp))
		}
		assertJarHasNoSession(t, b, s.origin)
	})
}

// "A session cookie minted by another authgate site (another provider,
// another client_id, the same cookie name) answers 502 instead of being
// treated as no session (login / 401)." Before sessions recorded where
// they were made, such a cookie was taken for a session of the provider of
// the same name: served as its user while its access token lasted, then
// refreshed at this site's provider with the other site's refresh token,
// which a provider that answers that with unauthorized_client (Google
// does) made a 502 with the cookie kept, on every request.
func TestIdentityForeignSiteCookie(t *testing.T) {
	logs, logOpts := newCaddyLog(t)
	originA := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	originB := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	originC := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	idpA := newIDP(t, testidp.Options{Clients: []testidp.Client{
		{ID: "app", Secret: "app-secret", RedirectURIs: []string{originA + "/oauth2/callback"}},
		{ID: "other", Secret: "other-secret", RedirectURIs: []string{originC + "/oauth2/callback"}},
	}})
	idpB := newIDP(t, testidp.Options{}, originB+"/oauth2/callback")
	be := newBackend(t)
	// Three sites, one cookie name, one key: A signs in at provider A as
	// client app; B has a provider of the same name at another issuer; C
	// the same issuer as A with another client.
	startCaddy(t, fmt.Sprintf(`{
	%s
	%s
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
		}
	}
}
%s {
	authgate
	reverse_proxy %s
}
%s {
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
		}
	}
	reverse_proxy %s
}
%s {
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id other
			client_secret other-secret
		}
	}
	reverse_proxy %s
}
`, globalPrelude, logOpts, testKey, idpA.Issuer(), originA, be.URL,
		originB, testKey, idpB.Issuer(), be.URL,
		originC, testKey, idpA.Issuer(), be.URL))

	b := newBrowser(t)
	resp, body := b.get(originA + "/dashboard")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login at site A: %d %s", resp.StatusCode, body)
	}
	cookieA := sessionCookieHeader(b, originA)
	sess := mustOpenSession(t, jarSession(t, b, originA), testKey)
	if sess.Issuer != bindingPrint(idpA.Issuer()) || sess.ClientID != bindingPrint("app") || sess.IDAudience != nil || sess.IDTokenKind != 2 {
		t.Fatalf("site A's session records issuer %q, client %q, aud %q, ID token %d", sess.Issuer, sess.ClientID, sess.IDAudience, sess.IDTokenKind)
	}

	foreign := func(t *testing.T, origin string, idp *testidp.Server) {
		t.Helper()
		idpA.ResetCounts()
		idp.ResetCounts()
		resp, body := rawRequest(t, origin+"/api/x", cookieA, false)
		assertJSONError(t, resp, body, http.StatusUnauthorized, "unauthenticated")
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
		}
		if strings.Contains(body, `"headers"`) {
			t.Errorf("the backend was reached with another site's session: %s", body)
		}
		resp, body = rawRequest(t, origin+"/page", cookieA, true)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, idp.Issuer()+"/authorize") {
			t.Errorf("a browser with another site's cookie: %d to %q, want a login at this site's provider\n%.300s", resp.StatusCode, loc, body)
		}
		// The cookie is the other site's: left alone, not cleared.
		if expiredCookieNames(resp)["_authgate"] {
			t.Errorf("another site's session cookie was cleared")
		}
		if n := idpA.Count("token") + idp.Count("token"); n != 0 {
			t.Errorf("%d token requests for another site's cookie, want none", n)
		}
	}
	t.Run("another issuer, provider of the same name: login / 401", func(t *testing.T) {
		foreign(t, originB, idpB)
	})
	t.Run("another client_id at the same issuer: login / 401", func(t *testing.T) {
		foreign(t, originC, idpA)
	})
	t.Run("another client_id, access token due, provider answers unauthorized_client: 401, no 502, no refresh", func(t *testing.T) {
		advanceClock(t, 6*time.Minute)
		idpA.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultRaw, Status: http.StatusBadRequest,
			ContentType: "application/json", Body: `{"error":"unauthorized_client","error_description":"Unauthorized"}`})
		defer idpA.ClearFaults()
		foreign(t, originC, idpA)
		if n := logs.count("provider failure", nil); n != 0 {
			t.Errorf("%d provider failures logged", n)
		}
	})
	t.Run("control: the session works at its own site, refresh included", func(t *testing.T) {
		if resp, body := rawRequest(t, originA+"/api/own", cookieA, false); resp.StatusCode != http.StatusOK {
			t.Fatalf("at its own site: %d %s", resp.StatusCode, body)
		}
		advanceClock(t, 6*time.Minute)
		if resp, body := rawRequest(t, originA+"/api/own-refreshed", cookieA, false); resp.StatusCode != http.StatusOK {
			t.Fatalf("refreshed at its own site: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("a session made before sessions recorded issuer and client keeps working, and records them at its refresh", func(t *testing.T) {
		legacy := *sess
		legacy.Issuer, legacy.ClientID, legacy.IDAudience, legacy.IDTokenKind, legacy.UserinfoAt = "", "", nil, 0, 0
		raw, err := json.Marshal(legacy)
		if err != nil || strings.Contains(string(raw), `"is"`) || strings.Contains(string(raw), `"ci"`) {
			t.Fatalf("the legacy session still names issuer or client: %s", raw)
		}
		codec, err := newCookieCodec([]string{testKey}, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		value, err := codec.encode("_authgate", &legacy)
		if err != nil {
			t.Fatal(err)
		}
		resp, body := rawRequest(t, originA+"/api/legacy", "_authgate="+value, false)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("a legacy session: %d %s", resp.StatusCode, body)
		}
		headerIs(t, backendSaw(t, body), "X-Forwarded-User", "alice-sub")
		advanceClock(t, 6*time.Minute)
		resp, body = rawRequest(t, originA+"/api/legacy-refreshed", "_authgate="+value, false)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("a legacy session, refreshed: %d %s", resp.StatusCode, body)
		}
		v := sessionValueFrom(liveSessionCookies(resp))
		if v == "" {
			t.Fatal("the refresh wrote no session")
		}
		if ns := mustOpenSession(t, v, testKey); ns.Issuer != bindingPrint(idpA.Issuer()) || ns.ClientID != bindingPrint("app") || ns.IDTokenKind != 2 {
			t.Errorf("the refreshed legacy session records issuer %q, client %q, ID token %d", ns.Issuer, ns.ClientID, ns.IDTokenKind)
		}
	})
}

// userinfo_refresh_interval (item 2), against the test provider: a provider
// without a refresh grant re-reads userinfo with the stored access token.
func TestIdentityUserinfoRefreshInterval(t *testing.T) {
	logs, logOpts := newCaddyLog(t)
	s := setupSiteWith(t, siteConfig{
		opts: testidp.Options{AccessTokenTTL: time.Hour}, caddyGlobal: logOpts,
		provider: "refresh off\n\t\t\tuserinfo_refresh_interval 5m", handler: "allow group admins",
	})
	b := newBrowser(t)
	headerIs(t, s.login(t, b), "X-Forwarded-Groups", "admins,staff")
	if sess := mustOpenSession(t, jarSession(t, b, s.origin), testKey); sess.AccessToken == "" || sess.RefreshToken != "" {
		t.Fatalf("the session keeps no access token to re-read userinfo with (refresh token %q)", sess.RefreshToken)
	}

	t.Run("within the interval nothing is read", func(t *testing.T) {
		s.idp.ResetCounts()
		advanceClock(t, 4*time.Minute)
		if resp, _ := b.get(s.origin + "/soon"); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d", resp.StatusCode)
		}
		if n := s.idp.Count("userinfo"); n != 0 {
			t.Errorf("%d userinfo reads within the interval", n)
		}
	})
	advanceClock(t, 6*time.Minute)
	t.Run("after it: userinfo is read once for a burst, the claims follow it", func(t *testing.T) {
		s.idp.SetUserClaims("alice", map[string]any{"groups": []any{"admins", "ops"}})
		s.idp.ResetCounts()
		for i, r := range burst(t, s.origin+"/api/burst", sessionCookieHeader(b, s.origin), 10) {
			if r.status != http.StatusOK {
				t.Errorf("request %d: %d %s", i, r.status, r.body)
			}
		}
		if n := s.idp.Count("userinfo"); n != 1 {
			t.Errorf("%d userinfo reads for 10 concurrent requests, want 1", n)
		}
		resp, body := b.get(s.origin + "/after")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		headerIs(t, backendSaw(t, body), "X-Forwarded-Groups", "admins,ops")
		if n := s.idp.Count("token"); n != 0 {
			t.Errorf("%d token requests", n)
		}
	})
	advanceClock(t, 6*time.Minute)
	t.Run("a 5xx keeps the session and serves it, logged, not retried at once", func(t *testing.T) {
		s.idp.SetFault("userinfo", testidp.Fault{Kind: testidp.FaultStatus500HTML})
		defer s.idp.ClearFaults()
		s.idp.ResetCounts()
		failed := logs.count("userinfo re-read", map[string]string{"result": "failed; session kept"})
		for i := 0; i < 3; i++ {
			resp, body := b.get(s.origin + "/during-outage")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d during a userinfo outage: %d %s", i, resp.StatusCode, body)
			}
			headerIs(t, backendSaw(t, body), "X-Forwarded-Groups", "admins,ops")
		}
		if n := s.idp.Count("userinfo"); n != 1 {
			t.Errorf("%d userinfo reads during the outage, want 1 (then a back-off)", n)
		}
		logs.expectLine(failed, "userinfo re-read", map[string]string{"result": "failed; session kept", "user_id": "alice-sub"})
	})
	advanceClock(t, time.Minute)
	t.Run("a user removed from admins meets the 403 at the next read", func(t *testing.T) {
		s.idp.SetUserClaims("alice", map[string]any{"groups": []any{"ops"}})
		resp, body := b.get(s.origin + "/admin")
		assertHTMLError(t, resp, body, http.StatusForbidden, "forbidden")
		s.idp.SetUserClaims("alice", map[string]any{"groups": []any{"admins"}})
	})
	advanceClock(t, 6*time.Minute)
	t.Run("a user disabled at the provider: userinfo 401 ends the session", func(t *testing.T) {
		s.idp.DisableUser("alice")
		defer s.idp.EnableUser("alice")
		signedOut := logs.count("signed out: the identity provider ended the session", map[string]string{"reason": "session_ended"})
		resp, body := b.api("GET", s.origin+"/api/disabled")
		assertJSONError(t, resp, body, http.StatusUnauthorized, "session_ended")
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("the session cookie was not cleared: %v", setCookieHeaders(resp))
		}
		logs.expectLine(signedOut, "signed out: the identity provider ended the session", map[string]string{"reason": "session_ended", "user_id": "alice-sub"})
		assertJarHasNoSession(t, b, s.origin)
	})
}

// The comparison a refresh or userinfo re-read makes with the session,
// on bindings as sessions record them.
func TestIdentityBindingChangedFrom(t *testing.T) {
	id := func(iss, client, sub string, aud []string, azp string) recordedBinding {
		return identityBinding{Issuer: iss, ClientID: client, Subject: sub, Audience: aud, AZP: azp}.recorded()
	}
	session := id("https://idp", "app", "alice", []string{"app"}, "app")
	if session.Audience != nil || session.IDToken != 2 || len(session.Issuer) != 12 || session.Issuer == bindingPrint("https://other") {
		t.Fatalf("recorded = %+v: the usual audience and azp are not stored, the issuer is a 12-character fingerprint", session)
	}
	legacy := recordedBinding{Subject: "alice"} // a session from before bindings were recorded
	for _, tc := range []struct {
		name       string
		prev, next recordedBinding
		changed    string
	}{
		{"the same", session, session, ""},
		{"audience in another order", id("https://idp", "app", "alice", []string{"app", "api"}, "app"), id("https://idp", "app", "alice", []string{"api", "app"}, "app"), ""},
		{"no ID token this time: aud and azp not compared", session, id("https://idp", "app", "alice", nil, ""), ""},
		{"no ID token at login: aud and azp not compared", id("https://idp", "app", "alice", nil, ""), session, ""},
		{"legacy session: issuer, client, aud and azp not compared", legacy, id("https://other", "x", "alice", []string{"x"}, ""), ""},
		{"legacy session: sub still compared", legacy, id("https://idp", "app", "mallory", nil, ""), "sub"},
		{"iss", session, id("https://other", "app", "alice", []string{"app"}, "app"), "iss"},
		{"client", session, id("https://idp", "other", "alice", []string{"app"}, "app"), "client_id"},
		{"sub", session, id("https://idp", "app", "mallory", []string{"app"}, "app"), "sub"},
		{"aud", session, id("https://idp", "app", "alice", []string{"app", "other"}, "app"), "aud"},
		{"azp appears", id("https://idp", "app", "alice", []string{"app"}, ""), session, "azp"},
		{"azp dropped", session, id("https://idp", "app", "alice", []string{"app"}, ""), "azp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.next.changedFrom(tc.prev)
			switch {
			case tc.changed == "" && err != nil:
				t.Errorf("changedFrom = %v, want nil", err)
			case tc.changed != "" && (err == nil || !strings.Contains(err.Error(), "another "+tc.changed+" ")):
				t.Errorf("changedFrom = %v, want a change of %s", err, tc.changed)
			case tc.changed != "" && (!errors.Is(err, errIdentityChanged) || !errors.Is(err, errIdentityRefused) || isProviderFailure(err)):
				t.Errorf("changedFrom = %v: not classified as an identity change", err)
			}
		})
	}
}

// One classification: refusals are 401/403 and never provider failures;
// a key set that cannot be fetched is a provider failure.
func TestIdentityClassification(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		reason string
	}{
		{refuseIdentity("id_token_invalid", errors.New("x")), 401, "id_token_invalid"},
		{refuseIdentity("userinfo_mismatch", errors.New("x")), 401, "userinfo_mismatch"},
		{refuseIdentity("identity_changed", errors.New("x")), 401, "identity_changed"},
		{fmt.Errorf("refreshing: %w", refuseIdentity("claims_missing", errClaimMissing)), 403, "claims_missing"},
		{refuseIdentity("email_unverified", errEmailUnverified), 403, "email_unverified"},
	} {
		status, reason, msg, ok := refusal(tc.err)
		if !ok || status != tc.status || reason != tc.reason || msg == "" || isProviderFailure(tc.err) {
			t.Errorf("refusal(%v) = %d %q %q %v, want %d %q", tc.err, status, reason, msg, ok, tc.status, tc.reason)
		}
	}
	if _, _, _, ok := refusal(withReason("userinfo_failed", errProviderDown)); ok {
		t.Error("a provider failure is taken for a refusal")
	}
	for msg, want := range map[string]error{
		"failed to verify signature: fetching keys oidc: get keys failed Get \"http://x/jwks\": dial tcp: connection refused": errProviderDown,
		"failed to verify signature: fetching keys context deadline exceeded":                                                 errProviderTimeout,
	} {
		if err := keysUnavailable(errors.New(msg)); !errors.Is(err, want) {
			t.Errorf("keysUnavailable(%q) = %v, want %v", msg, err, want)
		}
	}
	if err := keysUnavailable(errors.New("failed to verify signature: failed to verify id token signature")); err != nil {
		t.Errorf("a bad signature is taken for a provider failure: %v", err)
	}
}

func TestIdentityProviderOptionsValidate(t *testing.T) {
	pc := ProviderConfig{ClientID: "x", AuthorizeURL: "https://a", TokenURL: "https://t", UserinfoRefreshInterval: caddy.Duration(time.Minute)}
	if err := pc.validate("p"); err == nil || !strings.Contains(err.Error(), "userinfo_refresh_interval needs userinfo_url") {
		t.Errorf("validate = %v", err)
	}
	pc.UserinfoURL = "https://u"
	if err := pc.validate("p"); err != nil {
		t.Errorf("validate = %v", err)
	}
}

// The bearer path answers with the same classification: a token that does
// not verify is 401 invalid_token; a verified token for a user who lacks a
// required claim, or whose address is unverified, is 403 (the address is
// not forwarded either).
func TestIdentityBearerClassification(t *testing.T) {
	s := setupSiteWith(t, siteConfig{provider: "require_claim department", handler: "bearer_tokens"})
	now := testNow()
	token := func(extra map[string]any) string {
		c := map[string]any{"iss": s.idp.Issuer(), "aud": "app", "sub": "svc-robot", "email": "robot@example.test",
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "department": "ops"}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return s.idp.SignJWT(c)
	}
	b := newBrowser(t)
	resp, body := b.api("GET", s.origin+"/api/ok", "Authorization", "Bearer "+token(map[string]any{"email_verified": false}))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a valid bearer token: %d %s", resp.StatusCode, body)
	}
	headerIs(t, backendSaw(t, body), "X-Forwarded-Email", "")
	resp, body = b.api("GET", s.origin+"/api/no-department", "Authorization", "Bearer "+token(map[string]any{"department": nil}))
	assertJSONError(t, resp, body, http.StatusForbidden, "claims_missing")
	resp, body = b.api("GET", s.origin+"/api/bad-signature", "Authorization", "Bearer "+s.idp.SignJWT(map[string]any{
		"iss": s.idp.Issuer(), "aud": "app", "sub": "svc-robot", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}, testidp.SignWrongKey()))
	assertJSONError(t, resp, body, http.StatusUnauthorized, "invalid_token")
}

// Google's ID tokens name their issuer as https://accounts.google.com or,
// in some flows, accounts.google.com; go-oidc accepts both for that issuer.
// The session must record the configured issuer whichever form a token
// has, or the session check refuses the session it just made (a sign-in
// loop) and a refresh answering in the other form ends it.
func TestIdentityGoogleLegacyIssuer(t *testing.T) {
	const issuer, client = "https://accounts.google.com", "google-client"
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims map[string]any) string {
		enc := func(v any) string {
			b, _ := json.Marshal(v)
			return base64.RawURLEncoding.EncodeToString(b)
		}
		in := enc(map[string]any{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims)
		sum := sha256.Sum256([]byte(in))
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return in + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	p, err := newProvider("google", ProviderConfig{Issuer: issuer, ClientID: client, ClientSecret: "s"}, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	keys := &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{key.Public()}}
	st := &providerState{issuer: issuer, verifier: &idVerifier{v: oidc.NewVerifier(issuer, keys, &oidc.Config{ClientID: client})}}
	now := time.Now().Unix()
	token := func(iss, nonce string) string {
		c := map[string]any{"iss": iss, "sub": "1234", "aud": client, "iat": now, "exp": now + 3600, "email": "a@example.com", "email_verified": true}
		if nonce != "" {
			c["nonce"] = nonce
		}
		return sign(c)
	}
	want := bindingPrint(providerIssuer(p))
	for _, first := range []string{"accounts.google.com", issuer} {
		d, err := deriveIdentity(context.Background(), p, st, providerAnswer{idToken: token(first, "n"), login: true, nonce: "n"})
		if err != nil {
			t.Fatalf("sign-in with iss %q: %v", first, err)
		}
		rec := d.binding.recorded()
		if rec.Issuer != want {
			t.Fatalf("sign-in with iss %q recorded issuer %q, the session check expects %q", first, rec.Issuer, want)
		}
		for _, later := range []string{"accounts.google.com", issuer} {
			if _, err := deriveIdentity(context.Background(), p, st, providerAnswer{idToken: token(later, ""), session: &rec}); err != nil {
				t.Fatalf("refresh answering iss %q after sign-in with %q: %v", later, first, err)
			}
		}
	}
}

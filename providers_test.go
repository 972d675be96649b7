package authgate

// The example Caddyfiles of examples/, run unchanged (but for the provider's
// host, the site address and the backend) against strict emulators of their
// providers. Each subtest is a cell of the table in docs/providers.md.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/emulators"
)

func TestProviderNTPU(t *testing.T) {
	s := startExample(t, example{
		dir: "ntpu", env: "NTPU", realBase: "https://oauth.ntpu.cc", newEmulator: emulators.NewNTPU,
	})
	// The access token is a JWT whose exp (15 minutes) is its only lifetime.
	const ttl = 15 * time.Minute

	t.Run("login", func(t *testing.T) {
		// "https://oauth.ntpu.cc/?clientId={your client id}" and nothing else.
		s.checkLogin(t, "/", "clientId")
	})
	t.Run("headers", func(t *testing.T) {
		s.checkHeaders(t, map[string]string{
			"X-Forwarded-User":               "410123456",
			"X-Forwarded-Email":              "s410123456@gm.ntpu.edu.tw",
			"X-Forwarded-Department":         "資訊工程學系",
			"X-Forwarded-Groups":             "",
			"X-Forwarded-Preferred-Username": "",
		}, "王小明")
	})
	// NTPU has no refresh grant: at expiry the session ends, APIs get 401
	// and browsers sign in again; nothing is ever sent to refresh.
	t.Run("refresh", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b, "/before-expiry")
		before := s.emu.Counts()
		advanceClock(t, ttl+time.Minute)
		resp, body := getWithCookie(t, s.origin+"/api/after-expiry", b.cookieHeader(s.origin))
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"session_expired"`) {
			t.Errorf("API request after expiry: %d %s, want 401 session_expired", resp.StatusCode, body)
		}
		s.checkRelogin(t, b, "/after-expiry", before)
	})
	t.Run("concurrent_refresh", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b, "/before-burst")
		before := s.emu.Counts()
		advanceClock(t, ttl+time.Minute)
		for i, r := range burst(t, s.origin+"/api/burst", b.cookieHeader(s.origin), 20) {
			if r.status != http.StatusUnauthorized || !strings.Contains(r.body, `"session_expired"`) {
				t.Errorf("request %d: %d %s, want 401 session_expired", i, r.status, r.body)
			}
		}
		if n := s.emu.Count("token") - before["token"]; n != 0 {
			t.Errorf("%d token requests for 20 requests on an expired session, want none", n)
		}
		s.checkRelogin(t, b, "/after-burst", before)
	})
	// Without refresh, userinfo_refresh_interval (5m in the example)
	// re-reads the user's details within the token's 15 minutes.
	t.Run("revalidation", func(t *testing.T) {
		changed := emulators.DefaultUser("ntpu")
		changed["department"] = "電機工程學系"
		another := emulators.DefaultUser("ntpu")
		another["id"] = "410999999"
		s.checkRevalidation(t, changed, map[string]string{"X-Forwarded-Department": "電機工程學系", "X-Forwarded-User": "410123456"}, another)
	})
	t.Run("optional_claims", func(t *testing.T) {
		u := emulators.DefaultUser("ntpu")
		delete(u, "department")
		delete(u, "email")
		s.checkOptionalClaims(t, u, map[string]string{"X-Forwarded-User": "410123456", "X-Forwarded-Department": "", "X-Forwarded-Email": ""})
	})
	t.Run("logout", func(t *testing.T) { s.checkLogout(t, 0, false) })
	t.Run("denial", func(t *testing.T) { s.checkDenial(t) })
	t.Run("strictness", func(t *testing.T) { s.checkStrictness(t) })
}

func TestProviderOmniport(t *testing.T) {
	// Omniport's tokens live 36000 s; two refresh cycles of that would
	// outlast the 12 h session. One hour keeps the test inside one session;
	// authgate reads the lifetime from expires_in either way.
	const ttl = time.Hour
	s := startExample(t, example{
		dir: "omniport", env: "OMNIPORT", realBase: "https://channeli.in", newEmulator: emulators.NewOmniport,
		accessTTL: ttl,
	})

	t.Run("login", func(t *testing.T) {
		s.checkLogin(t, "/oauth/authorise/",
			"client_id", "code_challenge", "code_challenge_method", "redirect_uri", "response_type", "state")
	})
	t.Run("headers", func(t *testing.T) {
		s.checkHeaders(t, map[string]string{
			"X-Forwarded-User":               "1234",
			"X-Forwarded-Email":              "xyz@iitr.ac.in",
			"X-Forwarded-Preferred-Username": "15xxx009",
			"X-Forwarded-Groups":             "Student,Maintainer",
			"X-Forwarded-Enrolment-Number":   "15xxx009",
		}, "Dhruv Kanti Bhanushali")
	})
	t.Run("refresh", func(t *testing.T) { s.checkRefresh(t, ttl) })
	t.Run("concurrent_refresh", func(t *testing.T) { s.checkConcurrentRefresh(t, ttl) })
	t.Run("identity_after_refresh", func(t *testing.T) {
		changed := emulators.DefaultUser("omniport")
		changed["person"] = map[string]any{"fullName": "Dhruv K. Bhanushali", "roles": []any{map[string]any{"role": "Student", "activeStatus": "ActiveStatus.IS_ACTIVE"}}}
		another := emulators.DefaultUser("omniport")
		another["userId"] = 9999
		s.checkIdentityAfterRefresh(t, ttl, changed, map[string]string{"X-Forwarded-Groups": "Student", "X-Forwarded-User": "1234"}, "Dhruv K. Bhanushali", another)
	})
	// Omniport's person.roles is absent for a user without roles, and
	// student for staff: no groups, no enrolment number, still signed in.
	t.Run("optional_claims", func(t *testing.T) {
		u := emulators.DefaultUser("omniport")
		u["person"] = map[string]any{"fullName": "Staff Member"}
		delete(u, "student")
		s.checkOptionalClaims(t, u, map[string]string{"X-Forwarded-User": "1234", "X-Forwarded-Groups": "", "X-Forwarded-Enrolment-Number": "", "X-Forwarded-Email": "xyz@iitr.ac.in"})
	})
	// One revocation at /open_auth/revoke_token/: the refresh token; revoking it ends the grant and its
	// access tokens (RFC 7009 §2.1, and Omniport does so).
	t.Run("logout", func(t *testing.T) { s.checkLogout(t, 1, false) })
	// Omniport sends a user who denies "back to Omniport home", never to
	// the application: the browser ends there, without a session.
	t.Run("denial", func(t *testing.T) {
		b := newBrowser(t)
		denied := s.emu.Count("denied")
		s.emu.Deny(true)
		defer s.emu.Deny(false)
		resp, body := b.get(s.origin + "/denied")
		if got := resp.Request.URL.String(); got != s.emu.URL()+"/" || resp.StatusCode != http.StatusOK || !strings.Contains(body, "Omniport home") {
			t.Errorf("denial ended at %s with %d, want the Omniport home page %s/\n%s", got, resp.StatusCode, s.emu.URL(), body)
		}
		if n := s.emu.Count("denied") - denied; n != 1 {
			t.Errorf("%d denials at the provider, want 1", n)
		}
		for _, hop := range b.hops {
			if strings.HasPrefix(hop, s.origin+"/oauth2/callback") {
				t.Errorf("the browser came back to the callback after a denial: %v", b.hops)
			}
		}
		noSessionCookie(t, b, s.origin)
		// The abandoned pending login is in nobody's way.
		s.login(t, b, "/after-denial")
	})
	t.Run("strictness", func(t *testing.T) { s.checkStrictness(t) })
}

func TestProviderProto(t *testing.T) {
	const ttl = 3600 * time.Second // Passport's expires_in
	s := startExample(t, example{
		dir: "proto", env: "PROTO", realBase: "https://www.proto.utwente.nl", newEmulator: emulators.NewProto,
	})

	t.Run("login", func(t *testing.T) {
		s.checkLogin(t, "/oauth/authorize",
			"client_id", "code_challenge", "code_challenge_method", "redirect_uri", "response_type", "state")
	})
	t.Run("headers", func(t *testing.T) {
		s.checkHeaders(t, map[string]string{
			"X-Forwarded-User":               "1234",
			"X-Forwarded-Email":              "jan.devries@proto.utwente.nl",
			"X-Proto-Member":                 "true",
			"X-Forwarded-Groups":             "",
			"X-Forwarded-Preferred-Username": "",
		}, "Jan de Vries")
	})
	t.Run("refresh", func(t *testing.T) { s.checkRefresh(t, ttl) })
	t.Run("concurrent_refresh", func(t *testing.T) { s.checkConcurrentRefresh(t, ttl) })
	t.Run("identity_after_refresh", func(t *testing.T) {
		changed := emulators.DefaultUser("proto")
		changed["is_member"] = false
		another := emulators.DefaultUser("proto")
		another["id"] = 5678
		s.checkIdentityAfterRefresh(t, ttl, changed, map[string]string{"X-Proto-Member": "false", "X-Forwarded-User": "1234"}, "Jan de Vries", another)
	})
	t.Run("optional_claims", func(t *testing.T) {
		u := emulators.DefaultUser("proto")
		delete(u, "email")
		delete(u, "is_member")
		s.checkOptionalClaims(t, u, map[string]string{"X-Forwarded-User": "1234", "X-Forwarded-Email": "", "X-Proto-Member": ""})
	})
	t.Run("logout", func(t *testing.T) { s.checkLogout(t, 0, false) })
	t.Run("denial", func(t *testing.T) { s.checkDenial(t) })
	t.Run("strictness", func(t *testing.T) { s.checkStrictness(t) })
}

func TestProviderChaster(t *testing.T) {
	const ttl = 300 * time.Second // Keycloak's expires_in
	s := startExample(t, example{
		dir: "chaster", env: "CHASTER", realBase: "https://sso.chaster.app", newEmulator: emulators.NewChaster,
	})

	t.Run("login", func(t *testing.T) {
		s.checkLogin(t, "/auth/realms/app/protocol/openid-connect/auth",
			"client_id", "code_challenge", "code_challenge_method", "nonce", "redirect_uri", "response_type", "scope", "state")
	})
	t.Run("headers", func(t *testing.T) {
		s.checkHeaders(t, map[string]string{
			"X-Forwarded-User":               "3f0c2a4e-8d51-4b7a-9c3e-2b6f1d7a9e10",
			"X-Forwarded-Email":              "alex.keyholder@example.org",
			"X-Forwarded-Preferred-Username": "alexkh",
			"X-Forwarded-Groups":             "",
		}, "Alex Keyholder")
	})
	t.Run("refresh", func(t *testing.T) { s.checkRefresh(t, ttl) })
	t.Run("concurrent_refresh", func(t *testing.T) { s.checkConcurrentRefresh(t, ttl) })
	// Keycloak: the refreshed ID token and userinfo carry the user as the
	// realm has it now; an address no longer verified is not forwarded.
	t.Run("identity_after_refresh", func(t *testing.T) {
		changed := emulators.DefaultUser("chaster")
		changed["name"] = "Alex K. Holder"
		changed["email_verified"] = false
		another := emulators.DefaultUser("chaster")
		another["sub"] = "9d2e6b1a-0c4f-4e3a-8b7d-5a1c3e9f0b22"
		s.checkIdentityAfterRefresh(t, ttl, changed, map[string]string{"X-Forwarded-Email": "", "X-Forwarded-User": "3f0c2a4e-8d51-4b7a-9c3e-2b6f1d7a9e10"}, "Alex K. Holder", another)
	})
	t.Run("optional_claims", func(t *testing.T) {
		u := emulators.DefaultUser("chaster")
		delete(u, "email")
		delete(u, "email_verified")
		delete(u, "preferred_username")
		s.checkOptionalClaims(t, u, map[string]string{"X-Forwarded-User": "3f0c2a4e-8d51-4b7a-9c3e-2b6f1d7a9e10", "X-Forwarded-Email": "", "X-Forwarded-Preferred-Username": ""})
	})
	// Both tokens revoked (RFC 7009), then the end-session endpoint.
	// One revocation: the refresh token, which ends Keycloak's session.
	t.Run("logout", func(t *testing.T) { s.checkLogout(t, 1, true) })
	t.Run("denial", func(t *testing.T) { s.checkDenial(t) })
	t.Run("strictness", func(t *testing.T) { s.checkStrictness(t) })
}

func TestProviderCitesphere(t *testing.T) {
	// expires_in is 406 s after login and 3600 s after a refresh.
	const ttl = 3600 * time.Second
	s := startExample(t, example{
		dir: "citesphere", env: "CITESPHERE", realBase: "https://diging.asu.edu/citesphere", newEmulator: emulators.NewCitesphere,
	})

	t.Run("login", func(t *testing.T) {
		s.checkLogin(t, "/api/oauth/authorize", "client_id", "redirect_uri", "response_type", "scope", "state")
	})
	t.Run("headers", func(t *testing.T) {
		s.checkHeaders(t, map[string]string{
			"X-Forwarded-User":               "jdoe",
			"X-Forwarded-Email":              "jane.doe@asu.edu",
			"X-Forwarded-Preferred-Username": "jdoe",
			"X-Forwarded-Groups":             "ROLE_USER",
		}, "")
	})
	t.Run("refresh", func(t *testing.T) { s.checkRefresh(t, ttl) })
	t.Run("concurrent_refresh", func(t *testing.T) { s.checkConcurrentRefresh(t, ttl) })
	t.Run("identity_after_refresh", func(t *testing.T) {
		changed := emulators.DefaultUser("citesphere")
		delete(changed, "roles") // Spring omits roles for a user without any
		changed["email"] = "jane.doe@example.edu"
		another := emulators.DefaultUser("citesphere")
		another["username"] = "mallory"
		s.checkIdentityAfterRefresh(t, ttl, changed, map[string]string{"X-Forwarded-Groups": "", "X-Forwarded-Email": "jane.doe@example.edu", "X-Forwarded-User": "jdoe"}, "", another)
	})
	t.Run("optional_claims", func(t *testing.T) {
		u := emulators.DefaultUser("citesphere")
		delete(u, "roles")
		s.checkOptionalClaims(t, u, map[string]string{"X-Forwarded-User": "jdoe", "X-Forwarded-Groups": ""})
	})
	t.Run("logout", func(t *testing.T) { s.checkLogout(t, 0, false) })
	t.Run("denial", func(t *testing.T) { s.checkDenial(t) })
	t.Run("strictness", func(t *testing.T) { s.checkStrictness(t) })
}

// example says how to run one examples/<dir>/Caddyfile against the
// emulator of its provider.
type example struct {
	dir         string // directory under examples/
	env         string // prefix of the <env>_CLIENT_ID/_CLIENT_SECRET variables
	realBase    string // the provider's real URL prefix, replaced by the emulator's
	newEmulator func(emulators.Config) *emulators.Server
	accessTTL   time.Duration // 0: the provider's own
}

// exampleSite is a running example: Caddy in front of a backend, signing in
// at an emulator.
type exampleSite struct {
	emu     *emulators.Server
	origin  string
	backend *httptest.Server
	logs    *caddyLog
	// provoked counts the refusals tests caused on purpose (a revoked
	// token shown to the provider), which checkStrictness allows.
	provoked int
}

func startExample(t *testing.T, ex example) *exampleSite {
	t.Helper()
	origin := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	clientID, secret := ex.dir+"-client", ex.dir+"-secret-0123456789"
	emu := ex.newEmulator(emulators.Config{
		ClientID:     clientID,
		ClientSecret: secret,
		RedirectURI:  origin + "/oauth2/callback",
		AutoApprove:  true,
		AccessTTL:    ex.accessTTL,
		Now:          testNow,
	})
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	be := newBackend(t)

	raw, err := os.ReadFile(filepath.Join("examples", ex.dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for _, r := range [][2]string{{ex.realBase, emu.URL()}, {"app.example.com", origin}, {"localhost:8080", be.URL}} {
		if !strings.Contains(conf, r[0]) {
			t.Fatalf("examples/%s/Caddyfile does not mention %s", ex.dir, r[0])
		}
		conf = strings.ReplaceAll(conf, r[0], r[1])
	}
	if !strings.Contains(conf, "\n{\n") {
		t.Fatalf("examples/%s/Caddyfile has no global options block", ex.dir)
	}
	logs, logOpts := newCaddyLog(t)
	conf = strings.Replace(conf, "\n{\n", "\n{\n\t"+globalPrelude+"\t"+logOpts+"\n", 1)
	// Every request must go to the emulator: no real URL may be left
	// outside comments.
	for i, line := range strings.Split(conf, "\n") {
		if code, _, _ := strings.Cut(line, "#"); strings.Contains(code, "https://") {
			t.Fatalf("examples/%s/Caddyfile line %d still has a real URL after substitution: %s", ex.dir, i+1, line)
		}
	}
	t.Setenv("AUTHGATE_KEY", testKey)
	t.Setenv(ex.env+"_CLIENT_ID", clientID)
	t.Setenv(ex.env+"_CLIENT_SECRET", secret)
	startCaddy(t, conf)
	return &exampleSite{emu: emu, origin: origin, backend: be, logs: logs}
}

// login signs b in by navigating to path and returns what the backend saw.
func (s *exampleSite) login(t *testing.T, b *browser, path string, headers ...string) echoed {
	t.Helper()
	resp, body := b.get(s.origin+path, headers...)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != s.origin+path {
		t.Fatalf("login: %d at %s after %v\n%s\nlast rejection at the provider: %q",
			resp.StatusCode, resp.Request.URL, b.hops, body, s.emu.LastRejection())
	}
	saw := backendSaw(t, body)
	if saw.Path != path {
		t.Fatalf("the backend saw %s, want %s", saw.Path, path)
	}
	return saw
}

// checkLogin signs in and checks that the authorization request went to
// authorizePath with exactly the given parameters.
func (s *exampleSite) checkLogin(t *testing.T, authorizePath string, params ...string) {
	b := newBrowser(t)
	before := s.emu.Counts()
	s.login(t, b, "/dashboard")
	if len(b.hops) == 0 || !strings.HasPrefix(b.hops[0], s.emu.URL()+"/") {
		t.Fatalf("the first redirect is not to the provider: %v", b.hops)
	}
	u, err := url.Parse(b.hops[0])
	if err != nil {
		t.Fatal(err)
	}
	if u.Path != authorizePath {
		t.Errorf("authorization request to %s, want %s", u.Path, authorizePath)
	}
	var got []string
	for k := range u.Query() {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, params) {
		t.Errorf("authorization request parameters %v, want %v", got, params)
	}
	if m := u.Query().Get("code_challenge_method"); slices.Contains(params, "code_challenge_method") && m != "S256" {
		t.Errorf("code_challenge_method %q, want S256", m)
	}
	for _, ep := range []string{"authorize", "token:authorization_code", "userinfo"} {
		if n := s.emu.Count(ep) - before[ep]; n != 1 {
			t.Errorf("%d %s requests for one login, want 1", n, ep)
		}
	}
	if resp, _ := b.api("GET", s.origin+"/api/signed-in"); resp.StatusCode != http.StatusOK {
		t.Errorf("API request with the session: %d", resp.StatusCode)
	}
}

// checkHeaders signs in with forged identity headers and checks what the
// backend receives: want maps a header to its value, "" meaning absent.
// name is the display name /oauth2/userinfo reports.
func (s *exampleSite) checkHeaders(t *testing.T, want map[string]string, name string) {
	b := newBrowser(t)
	var forged []string
	for h := range want {
		forged = append(forged, h, "forged-by-the-client")
	}
	saw := s.login(t, b, "/whoami", forged...)
	for h, v := range want {
		got := saw.Headers.Values(h)
		switch {
		case v == "" && len(got) != 0:
			t.Errorf("backend got %s=%q, want it absent", h, got)
		case v != "" && (len(got) != 1 || got[0] != v):
			t.Errorf("backend got %s=%q, want %q", h, got, v)
		}
	}
	if c := saw.Headers.Get("Cookie"); strings.Contains(c, "_authgate") {
		t.Errorf("the session cookie reached the backend: %q", c)
	}
	if tok := saw.Headers.Get("X-Forwarded-Access-Token"); tok != "" {
		t.Errorf("access token forwarded without pass_access_token")
	}
	resp, body := b.api("GET", s.origin+"/oauth2/userinfo")
	var ui userinfoJSON
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &ui) != nil {
		t.Fatalf("/oauth2/userinfo: %d %s", resp.StatusCode, body)
	}
	if ui.User != want["X-Forwarded-User"] || ui.Name != name {
		t.Errorf("/oauth2/userinfo user %q name %q, want %q and %q", ui.User, ui.Name, want["X-Forwarded-User"], name)
	}
}

// checkRefresh lets the access token expire twice: each time the next
// request refreshes it once, in the request, with the refresh token the
// provider returned last (rotated or not).
func (s *exampleSite) checkRefresh(t *testing.T, ttl time.Duration) {
	b := newBrowser(t)
	s.login(t, b, "/before-expiry")
	start := s.emu.Count("token:refresh_token")
	for round := 1; round <= 2; round++ {
		advanceClock(t, ttl+time.Minute)
		for _, path := range []string{"/after-expiry", "/after-refresh"} {
			resp, body := b.get(s.origin + path)
			if resp.StatusCode != http.StatusOK || len(b.hops) != 0 {
				t.Fatalf("round %d, %s: %d after %v, want 200 without signing in again\n%s\nlast rejection: %q",
					round, path, resp.StatusCode, b.hops, body, s.emu.LastRejection())
			}
			if n := s.emu.Count("token:refresh_token") - start; n != round {
				t.Errorf("round %d, %s: %d refreshes in all, want %d", round, path, n, round)
			}
		}
	}
}

// checkConcurrentRefresh sends 20 requests at once with a cookie whose
// access token has expired: one refresh, all served. The browser, still
// holding the old cookie, is served from the refresh's result and gets the
// new session; its next refresh must then use the new refresh token (the
// emulators of rotating providers refuse a spent one).
func (s *exampleSite) checkConcurrentRefresh(t *testing.T, ttl time.Duration) {
	b := newBrowser(t)
	s.login(t, b, "/before-burst")
	start := s.emu.Count("token:refresh_token")
	advanceClock(t, ttl+time.Minute)
	for i, r := range burst(t, s.origin+"/api/burst", b.cookieHeader(s.origin), 20) {
		if r.status != http.StatusOK {
			t.Errorf("request %d: %d %s", i, r.status, r.body)
		}
	}
	if n := s.emu.Count("token:refresh_token") - start; n != 1 {
		t.Fatalf("%d refreshes for 20 concurrent requests, want exactly 1 (last rejection: %q)", n, s.emu.LastRejection())
	}
	if resp, body := b.api("GET", s.origin+"/api/old-cookie"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the pre-refresh cookie right after the refresh: %d %s", resp.StatusCode, body)
	}
	if n := s.emu.Count("token:refresh_token") - start; n != 1 {
		t.Errorf("%d refreshes after the old cookie came back, want still 1", n)
	}
	advanceClock(t, ttl+time.Minute)
	if resp, body := b.api("GET", s.origin+"/api/next-expiry"); resp.StatusCode != http.StatusOK {
		t.Fatalf("next expiry: %d %s (last rejection: %q)", resp.StatusCode, body, s.emu.LastRejection())
	}
	if n := s.emu.Count("token:refresh_token") - start; n != 2 {
		t.Errorf("%d refreshes after the next expiry, want 2", n)
	}
}

// checkIdentityAfterRefresh: the user changes at the provider; the next
// refresh re-reads who they are, and the backend, /oauth2/userinfo (name)
// and the stored session follow. Then the provider names another user for
// the same session: the refresh ends it (401 identity_changed, cookie
// cleared, logged) and a browser signs in again.
func (s *exampleSite) checkIdentityAfterRefresh(t *testing.T, ttl time.Duration, changed map[string]any, want map[string]string, name string, another map[string]any) {
	b := newBrowser(t)
	s.login(t, b, "/before-change")
	defer s.emu.SetUser(nil)
	s.emu.SetUser(changed)
	start := s.emu.Count("token:refresh_token")
	refreshes := s.logs.count("refresh", map[string]string{"result": "ok"})
	advanceClock(t, ttl+time.Minute)
	var forged []string
	for h := range want {
		forged = append(forged, h, "forged-by-the-client")
	}
	resp, body := b.get(s.origin+"/after-change", forged...)
	if resp.StatusCode != http.StatusOK || len(b.hops) != 0 {
		t.Fatalf("after the refresh: %d after %v\n%s\nlast rejection: %q", resp.StatusCode, b.hops, body, s.emu.LastRejection())
	}
	saw := backendSaw(t, body)
	for h, v := range want {
		headerIs(t, saw, h, v)
	}
	if n := s.emu.Count("token:refresh_token") - start; n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	s.logs.expectLine(refreshes, "refresh", map[string]string{"result": "ok"})
	resp, body = b.api("GET", s.origin+"/oauth2/userinfo")
	var ui userinfoJSON
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &ui) != nil || ui.Name != name {
		t.Errorf("/oauth2/userinfo after the refresh: %d %s, want name %q", resp.StatusCode, body, name)
	}

	s.emu.SetUser(another)
	signedOut := s.logs.count("signed out: your identity at the provider changed", map[string]string{"reason": "identity_changed"})
	advanceClock(t, ttl+time.Minute)
	resp, body = b.api("GET", s.origin+"/api/another-user")
	assertJSONError(t, resp, body, http.StatusUnauthorized, "identity_changed")
	if !expiredCookieNames(resp)["_authgate"] {
		t.Errorf("the session cookie was not cleared: %v", setCookieHeaders(resp))
	}
	s.logs.expectLine(signedOut, "signed out: your identity at the provider changed", map[string]string{"reason": "identity_changed"})
	noSessionCookie(t, b, s.origin)
	// A browser signs in again, as whoever the provider says now.
	s.login(t, b, "/signed-in-again")
	if len(b.hops) == 0 || !strings.HasPrefix(b.hops[0], s.emu.URL()+"/") {
		t.Errorf("the browser did not sign in again at the provider: %v", b.hops)
	}
}

// checkRevalidation (providers without refresh, userinfo_refresh_interval
// 5m): within the token's lifetime userinfo is re-read with the stored
// access token; the backend follows the change, another user id ends the
// session, and so does a token the provider refuses.
func (s *exampleSite) checkRevalidation(t *testing.T, changed map[string]any, want map[string]string, another map[string]any) {
	b := newBrowser(t)
	s.login(t, b, "/before-change")
	defer s.emu.SetUser(nil)
	s.emu.SetUser(changed)
	start := s.emu.Counts()
	advanceClock(t, 6*time.Minute)
	resp, body := b.get(s.origin + "/after-change")
	if resp.StatusCode != http.StatusOK || len(b.hops) != 0 {
		t.Fatalf("after the interval: %d after %v\n%s", resp.StatusCode, b.hops, body)
	}
	saw := backendSaw(t, body)
	for h, v := range want {
		headerIs(t, saw, h, v)
	}
	if n := s.emu.Count("userinfo") - start["userinfo"]; n != 1 {
		t.Errorf("%d userinfo reads after the interval, want 1", n)
	}
	if n := s.emu.Count("token") - start["token"]; n != 0 {
		t.Errorf("%d token requests to a provider without refresh", n)
	}
	if resp, _ := b.get(s.origin + "/again"); resp.StatusCode != http.StatusOK || s.emu.Count("userinfo")-start["userinfo"] != 1 {
		t.Errorf("the next request: %d, %d userinfo reads in all, want 200 and still 1", resp.StatusCode, s.emu.Count("userinfo")-start["userinfo"])
	}

	s.emu.SetUser(another)
	signedOut := s.logs.count("signed out: your identity at the provider changed", map[string]string{"reason": "identity_changed"})
	advanceClock(t, 6*time.Minute)
	resp, body = b.api("GET", s.origin+"/api/another-user")
	assertJSONError(t, resp, body, http.StatusUnauthorized, "identity_changed")
	s.logs.expectLine(signedOut, "signed out: your identity at the provider changed", map[string]string{"reason": "identity_changed"})
	noSessionCookie(t, b, s.origin)

	t.Run("a token the provider refuses ends the session", func(t *testing.T) {
		s.emu.SetUser(nil)
		b := newBrowser(t)
		s.login(t, b, "/before-revocation")
		s.emu.RevokeAll()
		s.provoked++ // the provider refuses the revoked token once
		ended := s.logs.count("signed out: the identity provider ended the session", map[string]string{"reason": "session_ended"})
		advanceClock(t, 6*time.Minute)
		resp, body := b.api("GET", s.origin+"/api/revoked")
		assertJSONError(t, resp, body, http.StatusUnauthorized, "session_ended")
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("the session cookie was not cleared: %v", setCookieHeaders(resp))
		}
		s.logs.expectLine(ended, "signed out: the identity provider ended the session", map[string]string{"reason": "session_ended"})
		noSessionCookie(t, b, s.origin)
	})
}

// checkOptionalClaims: a user without the optional claims of want ("")
// signs in: those headers are absent (the client's forged copies removed
// too), the others are set.
func (s *exampleSite) checkOptionalClaims(t *testing.T, user map[string]any, want map[string]string) {
	defer s.emu.SetUser(nil)
	s.emu.SetUser(user)
	b := newBrowser(t)
	var forged []string
	for h := range want {
		forged = append(forged, h, "forged-by-the-client")
	}
	saw := s.login(t, b, "/without-optional-claims", forged...)
	for h, v := range want {
		headerIs(t, saw, h, v)
	}
	if resp, body := b.api("GET", s.origin+"/api/still-signed-in"); resp.StatusCode != http.StatusOK {
		t.Errorf("the session of a user without optional claims: %d %s", resp.StatusCode, body)
	}
}

// checkRelogin: for a provider without refresh, a browser with an expired
// session is sent to the provider and signs in afresh.
func (s *exampleSite) checkRelogin(t *testing.T, b *browser, path string, before map[string]int) {
	t.Helper()
	s.login(t, b, path)
	if len(b.hops) == 0 || !strings.HasPrefix(b.hops[0], s.emu.URL()+"/") {
		t.Errorf("the expired session did not send the browser to the provider: %v", b.hops)
	}
	if n := s.emu.Count("token:authorization_code") - before["token:authorization_code"]; n != 1 {
		t.Errorf("%d code exchanges, want 1 (a new login)", n)
	}
	if n := s.emu.Count("token:refresh_token") - before["token:refresh_token"]; n != 0 {
		t.Errorf("%d refresh requests to a provider without a refresh grant", n)
	}
}

// checkLogout signs in and out: every authgate cookie is cleared, the
// provider sees the expected revocations and, with endSession, the
// browser passes its end-session endpoint on the way back.
func (s *exampleSite) checkLogout(t *testing.T, revocations int, endSession bool) {
	b := newBrowser(t)
	s.login(t, b, "/before-logout")
	before := s.emu.Counts()
	resp, body := b.api("GET", s.origin+"/oauth2/logout")
	if endSession {
		endpoint := s.emu.Issuer() + "/protocol/openid-connect/logout"
		loc, params, ok := endSessionRequest(resp, body)
		if !ok || loc.String() != endpoint {
			t.Fatalf("logout: %d to %v, want the end-session endpoint %s", resp.StatusCode, loc, endpoint)
		}
		if params.Get("id_token_hint") != "" && strings.Contains(resp.Header.Get("Location"), "id_token_hint") {
			t.Error("the ID token went into a URL")
		}
		c := *b.client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.PostForm(loc.String(), params)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		respBody, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != s.origin+"/" {
			t.Errorf("end session: %d to %q, want 302 back to %s/\n%s", resp.StatusCode, resp.Header.Get("Location"), s.origin, respBody)
		}
		if n := s.emu.Count("end_session") - before["end_session"]; n != 1 {
			t.Errorf("end-session endpoint visited %d times, want 1", n)
		}
	} else if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "/" {
		t.Errorf("logout: %d to %q, want 302 to /", resp.StatusCode, loc)
	}
	if n := s.emu.Count("revoke") - before["revoke"]; n != revocations {
		t.Errorf("%d revocation requests, want %d", n, revocations)
	}
	noSessionCookie(t, b, s.origin)
	if resp, body := b.api("GET", s.origin+"/api/after-logout"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after logout: %d %s, want 401", resp.StatusCode, body)
	}
}

// checkDenial: the user refuses at the provider, which sends
// error=access_denied back; authgate shows its 403 page, no session.
func (s *exampleSite) checkDenial(t *testing.T) {
	b := newBrowser(t)
	s.emu.Deny(true)
	defer s.emu.Deny(false)
	resp, body := b.get(s.origin + "/denied")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "sign_in_denied") {
		t.Errorf("denial: %d at %s after %v, want 403 sign_in_denied\n%s", resp.StatusCode, resp.Request.URL, b.hops, body)
	}
	if got := resp.Request.URL.Path; got != "/oauth2/callback" {
		t.Errorf("denial page at %s, want the callback", got)
	}
	noSessionCookie(t, b, s.origin)
	s.login(t, b, "/after-denial")
}

// checkStrictness: the emulator refused nothing during the whole test, so
// every request authgate sent was in the provider's dialect.
func (s *exampleSite) checkStrictness(t *testing.T) {
	if n := s.emu.Count("rejected") - s.provoked; n != 0 {
		t.Errorf("the emulator rejected %d requests; the last: %s", n, s.emu.LastRejection())
	}
}

// noSessionCookie fails when b holds an authgate session cookie (or chunk)
// for origin. Pending-login cookies (_authgate_login_*) do not count.
func noSessionCookie(t *testing.T, b *browser, origin string) {
	t.Helper()
	for _, u := range []string{origin + "/", origin + "/oauth2/callback"} {
		for _, c := range b.cookies(u) {
			if c.Name == "_authgate" || strings.HasPrefix(c.Name, "_authgate_") && !strings.HasPrefix(c.Name, "_authgate_login_") {
				t.Errorf("session cookie %s present for %s", c.Name, u)
			}
		}
	}
}

// getWithCookie sends one API request with an explicit Cookie header,
// leaving every browser's jar alone.
func getWithCookie(t *testing.T, u, cookie string) (*http.Response, string) {
	t.Helper()
	r := burst(t, u, cookie, 1)[0]
	if r.resp == nil {
		t.FailNow()
	}
	return r.resp, r.body
}

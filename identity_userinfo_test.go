package authgate

// userinfo_refresh_interval (issue 16, item 2) when the re-read does not
// answer 200: a 403 ends the session, a timeout keeps it. Real Caddy, the
// test provider over loopback.

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// revalidatingSite is a provider without refresh whose sessions re-read
// userinfo every 5 minutes; provider adds provider options.
func revalidatingSite(t *testing.T, logOpts, provider string) *configuredSite {
	t.Helper()
	return setupSiteWith(t, siteConfig{
		opts: testidp.Options{AccessTokenTTL: time.Hour}, caddyGlobal: logOpts,
		provider: "refresh off\n\t\t\tuserinfo_refresh_interval 5m\n\t\t\t" + provider,
	})
}

// A userinfo 403 (the token lost its rights: a revoked grant, a user no
// longer allowed to use the client) ends the session: an API gets 401
// with WWW-Authenticate, a browser is sent to sign in, the cookie is
// cleared and the sign-out is logged.
func TestIdentityUserinfoRefresh403EndsSession(t *testing.T) {
	logs, logOpts := newCaddyLog(t)
	s := revalidatingSite(t, logOpts, "")
	forbid := func(t *testing.T) {
		s.idp.SetFault("userinfo", testidp.Fault{Kind: testidp.FaultRaw, Status: http.StatusForbidden,
			ContentType: "application/json", Body: `{"error":"insufficient_scope"}`, Times: 1})
		t.Cleanup(s.idp.ClearFaults)
	}
	const signedOut = "signed out: the identity provider ended the session"
	fields := map[string]string{"reason": "session_ended", "during": "userinfo", "user_id": "alice-sub"}

	t.Run("API: 401 session_ended", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		advanceClock(t, 6*time.Minute)
		forbid(t)
		s.idp.ResetCounts()
		before := logs.count(signedOut, fields)
		resp, body := b.api("GET", s.origin+"/api/orders")
		assertJSONError(t, resp, body, http.StatusUnauthorized, "session_ended")
		if wa := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Bearer") {
			t.Errorf("WWW-Authenticate %q", wa)
		}
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("the session cookie was not cleared: %v", setCookieHeaders(resp))
		}
		if n := s.idp.Count("userinfo"); n != 1 {
			t.Errorf("%d userinfo reads, want 1", n)
		}
		logs.expectLine(before, signedOut, fields)
		assertJarHasNoSession(t, b, s.origin)
	})
	t.Run("browser: sent to the provider to sign in again", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b)
		cookie := sessionCookieHeader(b, s.origin)
		advanceClock(t, 6*time.Minute)
		forbid(t)
		before := logs.count(signedOut, fields)
		resp, body := rawRequest(t, s.origin+"/reports?q=1", cookie, true)
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), s.idp.Issuer()+"/authorize") {
			t.Fatalf("%d to %q, want 302 to the provider: %.300s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("the session cookie was not cleared: %v", setCookieHeaders(resp))
		}
		assertNoSessionSet(t, resp)
		logs.expectLine(before, signedOut, fields)
	})
}

// A userinfo that does not answer within the provider's timeout keeps the
// session: the request is served as before (after at most the timeout),
// the failure is logged, and the next requests within the back-off do not
// wait on userinfo again. The provider timeout is 10 s by default; this
// test sets `timeout 1s` and stalls userinfo for 3 s, so it takes about
// a second.
func TestIdentityUserinfoRefreshTimeoutKeepsSession(t *testing.T) {
	logs, logOpts := newCaddyLog(t)
	s := revalidatingSite(t, logOpts, "timeout 1s")
	b := newBrowser(t)
	headerIs(t, s.login(t, b), "X-Forwarded-Groups", "admins,staff")
	session := jarSession(t, b, s.origin)
	advanceClock(t, 6*time.Minute)

	s.idp.SetFault("userinfo", testidp.Fault{Kind: testidp.FaultStall, Delay: 3 * time.Second})
	t.Cleanup(s.idp.ClearFaults)
	s.idp.ResetCounts()
	kept := map[string]string{"result": "failed; session kept", "user_id": "alice-sub"}
	before := logs.count("userinfo re-read", kept)
	start := time.Now()
	resp, body := b.get(s.origin + "/during-stall")
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a request while userinfo stalls: %d %s", resp.StatusCode, body)
	}
	saw := backendSaw(t, body)
	headerIs(t, saw, "X-Forwarded-User", "alice-sub")
	headerIs(t, saw, "X-Forwarded-Groups", "admins,staff")
	if took < 900*time.Millisecond || took > 2500*time.Millisecond {
		t.Errorf("the request took %v, want about the 1 s provider timeout", took)
	}
	if len(b.hops) != 0 {
		t.Errorf("the request was redirected: %v", b.hops)
	}
	for _, c := range resp.Cookies() {
		if isSessionCookieName(c.Name) && c.MaxAge < 0 {
			t.Errorf("the session cookie was cleared: %v", setCookieHeaders(resp))
		}
	}
	if jarSession(t, b, s.origin) != session {
		t.Errorf("the session cookie changed on a failed re-read")
	}
	logs.expectLine(before, "userinfo re-read", kept)

	start = time.Now()
	if resp, body := b.api("GET", s.origin+"/api/right-after"); resp.StatusCode != http.StatusOK {
		t.Fatalf("an API call right after: %d %s", resp.StatusCode, body)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("the next request waited %v: userinfo tried again within the back-off", took)
	}
	if n := s.idp.Count("userinfo"); n != 1 {
		t.Errorf("%d userinfo reads, want 1 (then a back-off)", n)
	}

	s.idp.ClearFaults()
	advanceClock(t, time.Minute)
	ok := logs.count("userinfo re-read", map[string]string{"result": "ok"})
	if resp, body := b.get(s.origin + "/after-recovery"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after userinfo recovered: %d %s", resp.StatusCode, body)
	}
	if n := s.idp.Count("userinfo"); n != 2 {
		t.Errorf("%d userinfo reads after the back-off, want 2", n)
	}
	logs.expectLine(ok, "userinfo re-read", map[string]string{"result": "ok"})
}

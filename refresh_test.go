package authgate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// debugLog returns Caddy global options that write every log line, debug
// included, as JSON to a file, and a function that reads its records.
func debugLog(t *testing.T) (caddyGlobal string, records func() []map[string]any) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "caddy.log")
	return fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", path), func() []map[string]any {
		_, recs := logLines(t, path)
		return recs
	}
}

// logsWith returns the records whose msg is msg.
func logsWith(recs []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// refreshMetric reads authgate_refreshes_total{provider="corp",result=…}
// from Caddy's metrics endpoint. Counters live as long as the test
// process: compare before and after.
func refreshMetric(t *testing.T, result string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://localhost:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want := `authgate_refreshes_total{provider="corp",result="` + result + `"} `
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", sc.Text(), err)
			}
			return f
		}
	}
	return 0
}

// redisGlobal is the session_store block for redis-server rs with its
// own key prefix.
func redisGlobal(rs *redisServer, prefix string) string {
	return fmt.Sprintf("session_store redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t\tkey_prefix %s:\n\t\t}", rs.port, prefix)
}

// storedSessionExists reports whether redis-server rs holds the session
// whose id the store-mode cookie value carries.
func storedSessionExists(t *testing.T, rs *redisServer, prefix, cookieValue string) bool {
	t.Helper()
	codec, err := newCookieCodec([]string{testKey}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var ref storeRef
	if _, err := codec.decode("_authgate", cookieValue, &ref); err != nil || ref.ID == "" {
		t.Fatalf("the cookie holds no session id: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rs.port)})
	defer c.Close()
	n, err := c.Exists(context.Background(), prefix+":session:"+ref.ID).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// assertSessionKept checks that a response neither set nor deleted a
// session cookie.
func assertSessionKept(t *testing.T, resp *http.Response) {
	t.Helper()
	for _, c := range resp.Cookies() {
		if isSessionCookieName(c.Name) {
			t.Errorf("the response touched session cookie %s (Max-Age %d): the session must be kept as it is", c.Name, c.MaxAge)
		}
	}
}

// assertBackendSawAlice checks a 200 from the backend with alice's identity.
func assertBackendSawAlice(t *testing.T, resp *http.Response, body string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want the backend's 200: %.300s", resp.StatusCode, body)
	}
	if u := backendSaw(t, body).Headers.Get("X-Forwarded-User"); u != "alice-sub" {
		t.Errorf("backend saw X-Forwarded-User %q, want alice-sub", u)
	}
}

// TestRefreshOutageKeepsSession: issue 16, "a provider answering 503 to
// one refresh: the session is gone once the provider is back". A refresh
// failing at the provider keeps the session and its refresh token: served
// while the access token lasts, then the provider-unavailable answer with
// the cookie kept; the session waits refreshBackoff before asking again;
// once the provider is back the same session refreshes and works.
func TestRefreshOutageKeepsSession(t *testing.T) {
	for _, mode := range []string{"cookie", "redis"} {
		t.Run(mode, func(t *testing.T) {
			outer := t // clock moves last for the whole mode
			global, logs := debugLog(t)
			cfg := siteConfig{opts: testidp.Options{RotateRefreshTokens: true, AccessTokenTTL: 5 * time.Minute}, caddyGlobal: global}
			var rs *redisServer
			prefix := "outage" + strconv.FormatInt(time.Now().UnixNano(), 36)
			if mode == "redis" {
				rs = startRedis(t)
				cfg.global = redisGlobal(rs, prefix)
			}
			s := setupSiteWith(t, cfg)
			b := newBrowser(t)
			s.login(t, b)
			cookie := sessionCookieHeader(b, s.origin)
			s.idp.ResetCounts()
			s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultRaw, Status: http.StatusServiceUnavailable,
				ContentType: "application/json", Body: `{"error":"temporarily_unavailable"}`})

			t.Run("503 while the access token is valid: served, no cookie touched", func(t *testing.T) {
				advanceClock(outer, 5*time.Minute-10*time.Second) // within the 30 s skew
				resp, body := b.api("GET", s.origin+"/api")
				assertBackendSawAlice(t, resp, body)
				assertSessionKept(t, resp)
				resp, body = b.api("GET", s.origin+"/api-again")
				assertBackendSawAlice(t, resp, body)
				if n := s.idp.Count("token:refresh_token"); n != 1 {
					t.Errorf("%d refresh attempts for two requests within the back-off, want 1", n)
				}
				recs := logsWith(logs(), "refresh")
				if len(recs) != 1 || !strings.Contains(fmt.Sprint(recs[0]["result"]), "failed, token still valid") || recs[0]["provider"] != "corp" {
					t.Errorf("refresh log lines %v, want one: failed, token still valid, provider corp", recs)
				}
			})
			t.Run("503 once the access token expired: 502 (JSON, page), the cookie and the stored session kept", func(t *testing.T) {
				advanceClock(outer, 20*time.Second) // expired, and past the back-off
				resp, body := b.api("GET", s.origin+"/api")
				assertJSONError(t, resp, body, http.StatusBadGateway, "provider_unavailable")
				assertSessionKept(t, resp)
				if n := s.idp.Count("token:refresh_token"); n != 2 {
					t.Errorf("%d refresh attempts, want 2 (a new one after the back-off)", n)
				}
				resp, body = b.get(s.origin + "/page")
				assertHTMLError(t, resp, body, http.StatusBadGateway, "provider_unavailable")
				assertSessionKept(t, resp)
				if n := s.idp.Count("token:refresh_token"); n != 2 {
					t.Errorf("%d refresh attempts, want still 2: the session is backing off", n)
				}
				if got := sessionCookieHeader(b, s.origin); got != cookie {
					t.Error("the browser's session cookie changed during the outage")
				}
				if rs != nil && !storedSessionExists(t, rs, prefix, jarSession(t, b, s.origin)) {
					t.Error("the stored session is gone during the outage")
				}
				failures := logsWith(logs(), "provider failure")
				if len(failures) != 2 {
					t.Errorf("%d provider failure log lines, want 2 (one per request answered 502)", len(failures))
				}
				for _, f := range failures {
					if f["provider"] != "corp" || f["operation"] != "refresh" {
						t.Errorf("provider failure line %v does not name the provider corp and the refresh", f)
					}
				}
			})
			t.Run("provider back: after the back-off the same session refreshes and works", func(t *testing.T) {
				s.idp.ClearFaults()
				advanceClock(outer, refreshBackoff)
				resp, body := b.api("GET", s.origin+"/api")
				assertBackendSawAlice(t, resp, body)
				resp, body = b.get(s.origin + "/page")
				assertBackendSawAlice(t, resp, body)
				if n := s.idp.Count("token:refresh_token"); n != 3 {
					t.Errorf("%d refresh attempts, want 3 (one that succeeded)", n)
				}
				var results []string
				for _, r := range logsWith(logs(), "refresh") {
					results = append(results, fmt.Sprint(r["result"]))
				}
				if len(results) != 3 || results[2] != "ok" || !strings.HasPrefix(results[1], "failed;") {
					t.Errorf("refresh log lines %q, want one per provider call: failed (token valid), failed, ok", results)
				}
			})
		})
	}
}

// TestRefreshOutageTransportErrors: a connection closed without an answer
// and a provider that does not answer within its timeout keep the session
// like a 5xx does.
func TestRefreshOutageTransportErrors(t *testing.T) {
	s := setupSiteWith(t, siteConfig{opts: testidp.Options{RotateRefreshTokens: true, AccessTokenTTL: 5 * time.Minute}, provider: "timeout 1s"})
	b := newBrowser(t)
	s.login(t, b)
	outer := t
	advanceClock(t, 6*time.Minute)
	for _, tc := range []struct {
		name   string
		fault  testidp.Fault
		status int
		reason string
	}{
		{"connection closed", testidp.Fault{Kind: testidp.FaultCloseConnection, Times: 1}, http.StatusBadGateway, "provider_unavailable"},
		{"no answer within the timeout", testidp.Fault{Kind: testidp.FaultStall, Times: 1}, http.StatusGatewayTimeout, "provider_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.idp.SetFault("token:refresh_token", tc.fault)
			defer s.idp.ClearFaults()
			resp, body := b.api("GET", s.origin+"/api")
			assertJSONError(t, resp, body, tc.status, tc.reason)
			assertSessionKept(t, resp)
			advanceClock(outer, refreshBackoff)
			resp, body = b.api("GET", s.origin+"/api")
			assertBackendSawAlice(t, resp, body)
			advanceClock(outer, 6*time.Minute) // due again for the next case
		})
	}
}

// TestRefreshBurstAtExpiry: issue 16, "a 20-way parallel request burst at
// expiry with rotating refresh tokens still gives one refresh and nobody
// logged out, including when the first refresh attempt gets a 503". The
// refresh log line and authgate_refreshes_total count provider calls, not
// the requests that shared them.
func TestRefreshBurstAtExpiry(t *testing.T) {
	for _, tc := range []struct {
		name       string
		expired    bool // the burst comes after the token's expiry, not just within the skew
		first503   bool
		burstCodes []int // statuses the first burst may answer
	}{
		{"within the skew", false, false, []int{200}},
		{"after expiry", true, false, []int{200}},
		{"within the skew, first attempt 503", false, true, []int{200}},
		{"after expiry, first attempt 503", true, true, []int{502}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			global, logs := debugLog(t)
			s := setupSiteWith(t, siteConfig{opts: testidp.Options{RotateRefreshTokens: true, AccessTokenTTL: 5 * time.Minute}, caddyGlobal: global})
			b := newBrowser(t)
			s.login(t, b)
			before := sessionCookieHeader(b, s.origin)
			oldRT := mustOpenSession(t, jarSession(t, b, s.origin), testKey).RefreshToken
			if tc.expired {
				advanceClock(t, 5*time.Minute+time.Second)
			} else {
				advanceClock(t, 5*time.Minute-10*time.Second)
			}
			s.idp.ResetCounts()
			okBefore, errBefore := refreshMetric(t, "ok"), refreshMetric(t, "error")
			if tc.first503 {
				s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultRaw, Status: http.StatusServiceUnavailable, Times: 1})
			}
			newValues := map[string]bool{}
			check := func(round []burstResult, allowed []int) {
				t.Helper()
				for i, r := range round {
					if !slices.Contains(allowed, r.status) {
						t.Errorf("request %d of the burst: status %d, want one of %v: %.200s", i, r.status, allowed, r.body)
						continue
					}
					if r.status == http.StatusOK {
						assertBackendSawAlice(t, r.resp, r.body)
					}
					for _, c := range r.resp.Cookies() {
						if isSessionCookieName(c.Name) && c.MaxAge < 0 {
							t.Errorf("request %d of the burst deleted the session cookie: a logout", i)
						}
					}
					if v := sessionValueFrom(liveSessionCookies(r.resp)); v != "" {
						newValues[v] = true
					}
				}
			}
			check(burst(t, s.origin+"/burst", before, 20), tc.burstCodes)
			calls := 1
			if tc.first503 {
				if n := s.idp.Count("token:refresh_token"); n != 1 {
					t.Fatalf("%d refresh attempts for the first burst, want 1 (the 503; the others wait out the back-off)", n)
				}
				s.idp.ClearFaults()
				advanceClock(t, refreshBackoff)
				check(burst(t, s.origin+"/burst", before, 20), []int{200})
				calls = 2
			}
			if n := s.idp.Count("token:refresh_token"); n != calls {
				t.Errorf("%d refresh attempts at the provider, want %d", n, calls)
			}
			if d := refreshMetric(t, "ok") - okBefore; d != 1 {
				t.Errorf("authgate_refreshes_total{result=ok} grew by %v, want 1 (one per provider call)", d)
			}
			if d := refreshMetric(t, "error") - errBefore; d != float64(calls-1) {
				t.Errorf("authgate_refreshes_total{result=error} grew by %v, want %d", d, calls-1)
			}
			recs := logs()
			if lines := logsWith(recs, "refresh"); len(lines) != calls {
				t.Errorf("%d refresh log lines, want %d (one per provider call): %v", len(lines), calls, lines)
			}
			reused := logsWith(recs, "refresh reused")
			if len(reused) == 0 {
				t.Error("no debug line for the requests that reused the shared refresh")
			}
			for _, r := range reused {
				if src := r["reused"]; src != "in flight" && src != "grace" && src != "back-off" {
					t.Errorf("refresh reused line names source %v", src)
				}
			}
			// Nobody logged out: every response that carried the session
			// carried the same rotated one, and it works; the pre-burst
			// cookie still gets the shared result within the grace window.
			rts := map[string]bool{}
			for v := range newValues {
				rts[mustOpenSession(t, v, testKey).RefreshToken] = true
				resp, body := rawRequest(t, s.origin+"/after", "_authgate="+v, false)
				assertBackendSawAlice(t, resp, body)
			}
			if len(rts) != 1 || rts[oldRT] {
				t.Errorf("the bursts' responses carry %d refresh tokens (the spent one among them: %v), want the one rotated token", len(rts), rts[oldRT])
			}
			resp, body := rawRequest(t, s.origin+"/late", before, false)
			assertBackendSawAlice(t, resp, body)
			if n := s.idp.Count("token:refresh_token"); n != calls {
				t.Errorf("%d refresh attempts after the late request with the old cookie, want still %d", n, calls)
			}
		})
	}
}

// TestRefreshShortTokens: issue 16, "a provider issuing short access
// tokens (shorter than refresh_skew, e.g. 20 s tokens with the default
// 30 s skew) makes authgate refresh on every single request". The skew is
// capped at half of each token's lifetime: 20 s tokens refresh every 10 s.
func TestRefreshShortTokens(t *testing.T) {
	global, logs := debugLog(t)
	s := setupSiteWith(t, siteConfig{opts: testidp.Options{RotateRefreshTokens: true, AccessTokenTTL: 20 * time.Second}, caddyGlobal: global})
	b := newBrowser(t)
	s.login(t, b)
	sess := mustOpenSession(t, jarSession(t, b, s.origin), testKey)
	if sess.Expiry-sess.TokenIssued != 20 {
		t.Fatalf("the session records a token lifetime of %d s, want 20", sess.Expiry-sess.TokenIssued)
	}
	// Steps are dated from the token's issue, in the middle of a second:
	// the session keeps whole seconds.
	issued := time.Unix(sess.TokenIssued, 0).Add(500 * time.Millisecond)
	s.idp.ResetCounts()
	for _, step := range []struct {
		at        time.Duration // since the token was issued
		refreshes int           // at the provider so far
	}{
		{1 * time.Second, 0}, {5 * time.Second, 0}, {9 * time.Second, 0},
		{10 * time.Second, 1}, // half of 20 s left: refreshed
		{11 * time.Second, 1}, {15 * time.Second, 1}, {19 * time.Second, 1},
		{20 * time.Second, 2}, // the new token, from 10 s, is half spent
		{25 * time.Second, 2},
	} {
		if d := issued.Add(step.at).Sub(testNow()); d > 0 {
			advanceClock(t, d)
		}
		resp, body := b.api("GET", s.origin+"/api")
		assertBackendSawAlice(t, resp, body)
		if n := s.idp.Count("token:refresh_token"); n != step.refreshes {
			t.Errorf("%s after the token was issued: %d refreshes, want %d", step.at, n, step.refreshes)
		}
	}
	if n := len(logsWith(logs(), "refresh")); n != 2 {
		t.Errorf("%d refresh log lines, want 2", n)
	}
	t.Run("a token without a known lifetime keeps the configured skew", func(t *testing.T) {
		rf := &refresher{skew: 30 * time.Second}
		now := timeNow().Unix()
		for _, tc := range []struct {
			s    Session
			want time.Duration
		}{
			{Session{Expiry: now + 20, TokenIssued: now}, 10 * time.Second},
			{Session{Expiry: now + 3600, TokenIssued: now}, 30 * time.Second},
			{Session{Expiry: now + 20}, 30 * time.Second}, // no ti: a cookie of an earlier version, or no expires_in
			{Session{Expiry: now + 20, TokenIssued: now + 30}, 30 * time.Second},
		} {
			if got := rf.skewFor(&tc.s); got != tc.want {
				t.Errorf("skewFor(expiry +%ds, issued %+ds) = %s, want %s", tc.s.Expiry-now, tc.s.TokenIssued-now, got, tc.want)
			}
		}
	})
}

// rotatingTokenEndpoint is a token endpoint that answers refresh grants
// only: each refresh token works once and is replaced by a new one, like
// a provider with refresh-token rotation, without signing anything.
type rotatingTokenEndpoint struct {
	mu    sync.Mutex
	spent map[string]bool
	calls int
}

func (te *rotatingTokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := r.PostFormValue("refresh_token")
	te.mu.Lock()
	te.calls++
	replay := te.spent[rt]
	te.spent[rt] = true
	te.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.PostFormValue("grant_type") != "refresh_token" || rt == "" || replay {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_grant"}`)
		return
	}
	fmt.Fprintf(w, `{"access_token":"at","token_type":"Bearer","expires_in":300,"refresh_token":%q}`, rt+"+")
}

// TestRefreshGraceHoldsABigMorning: "the grace table holds 10,000 and is
// cleared when full, so a bigger morning logs people out". 20,000 sessions
// refresh within the grace window; every one of them, asked again with its
// pre-refresh cookie (a request that raced the refresh), gets the refreshed
// session from the grace table and never replays its spent refresh token.
func TestRefreshGraceHoldsABigMorning(t *testing.T) {
	const sessions = 20_000
	te := &rotatingTokenEndpoint{spent: map[string]bool{}}
	cfg := &ProviderConfig{AuthorizeURL: "https://idp.test/authorize", TokenURL: "https://idp.test/token", ClientID: "app", ClientSecret: "app-secret"}
	gw, err := newGateway(context.Background(), nil, Settings{SessionKeys: []string{testKey}, Providers: map[string]*ProviderConfig{"corp": cfg}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	// The token endpoint is served in process, without sockets: 20,000
	// refreshes cost what the refresher and x/oauth2 cost.
	p, err := newProvider("corp", *cfg, zap.NewNop(), roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		te.ServeHTTP(rec, r)
		return rec.Result(), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	now := timeNow().Unix()
	entries := make([]*sessionEntry, sessions)
	for i := range entries {
		id := fmt.Sprintf("user-%d", i)
		entries[i] = &sessionEntry{
			sess: &Session{Version: sessionVersion, ID: "s" + id, Provider: "corp", Created: now, Expiry: now - 1,
				RefreshToken: "rt-" + id, Claims: map[string]any{"sub": id}},
			identity: &Identity{Provider: "corp", ID: id}, provider: p,
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	each := func(fn func(i int)) {
		var wg sync.WaitGroup
		next := make(chan int)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					fn(i)
				}
			}()
		}
		for i := range entries {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	refreshed := make([]string, sessions)
	first := timeNow()
	each(func(i int) {
		s, src, err := gw.refresher.refreshCookie(req, entries[i])
		if err != nil || src != refreshedHere {
			t.Errorf("session %d: refresh %v from %q", i, err, src)
			return
		}
		refreshed[i] = s.RefreshToken
	})
	if t.Failed() {
		t.FailNow()
	}
	// Late, but within the window of the first session refreshed.
	if late := refreshGrace - 3*time.Second - timeNow().Sub(first); late > 0 {
		advanceClock(t, late)
	}
	each(func(i int) {
		s, src, err := gw.refresher.refreshCookie(req, entries[i])
		switch {
		case err != nil:
			t.Errorf("session %d, its pre-refresh cookie within the grace window: %v (logged out)", i, err)
		case src != reusedGrace || s.RefreshToken != refreshed[i]:
			t.Errorf("session %d: %q from %q, want the refreshed session %q from the grace table", i, s.RefreshToken, src, refreshed[i])
		}
	})
	if te.calls != sessions {
		t.Errorf("%d calls at the token endpoint for %d sessions, want one each", te.calls, sessions)
	}
	if n := gw.refresher.grace.len(); n > maxGraceEntries {
		t.Errorf("grace table holds %d entries, over its bound %d", n, maxGraceEntries)
	}
	t.Run("past the window the spent token is replayed and refused", func(t *testing.T) {
		advanceClock(t, 3*time.Second)
		if _, _, err := gw.refresher.refreshCookie(req, entries[0]); !errors.Is(err, errInvalidGrant) {
			t.Errorf("pre-refresh cookie after the grace window: %v, want invalid_grant", err)
		}
	})
}

// TestLogoutWinsRefreshRaces: issue 17 item 5, no way back after logout.
// Neither the grace window (a refresh's result reused for a racing request
// with the older cookie) nor a refresh that finishes after the logout
// brings the session back; with session_store redis the late refresh does
// not write the session back into the store.
func TestLogoutWinsRefreshRaces(t *testing.T) {
	opts := testidp.Options{RotateRefreshTokens: true, AccessTokenTTL: 5 * time.Minute}
	t.Run("cookie sessions: a racing request with the pre-refresh cookie after logout", func(t *testing.T) {
		global, logs := debugLog(t)
		s := setupSiteWith(t, siteConfig{opts: opts, caddyGlobal: global})
		b := newBrowser(t)
		s.login(t, b)
		old := sessionCookieHeader(b, s.origin)
		advanceClock(t, 5*time.Minute-10*time.Second)
		resp, body := b.api("GET", s.origin+"/api") // refreshes; the jar gets the new cookie
		assertBackendSawAlice(t, resp, body)
		if sessionCookieHeader(b, s.origin) == old {
			t.Fatal("setup: the refresh did not rewrite the cookie")
		}
		b.api("GET", s.origin+"/oauth2/logout")
		s.idp.ResetCounts()
		resp, body = rawRequest(t, s.origin+"/api", old, false)
		assertJSONError(t, resp, body, http.StatusUnauthorized, "unauthenticated")
		assertNoSessionSet(t, resp)
		if !expiredCookieNames(resp)["_authgate"] {
			t.Errorf("the old cookie was not cleared: %v", setCookieHeaders(resp))
		}
		resp, _ = rawRequest(t, s.origin+"/page", old, true)
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), s.idp.Issuer()) {
			t.Errorf("browser with the old cookie after logout: %d to %q, want 302 to sign in", resp.StatusCode, resp.Header.Get("Location"))
		}
		assertNoSessionSet(t, resp)
		if n := s.idp.Count("token:refresh_token"); n != 0 {
			t.Errorf("%d refreshes for a signed-out session, want 0", n)
		}
		refused := 0
		for _, r := range logsWith(logs(), "refresh reused") {
			if r["reused"] == "logout" && r["ok"] == false {
				refused++
			}
		}
		if refused != 2 {
			t.Errorf("%d debug lines for requests refused after the logout, want 2", refused)
		}
	})
	for _, mode := range []string{"cookie", "redis"} {
		t.Run(mode+" sessions: a refresh that finishes after the logout", func(t *testing.T) {
			cfg := siteConfig{opts: opts}
			var rs *redisServer
			prefix := "race" + strconv.FormatInt(time.Now().UnixNano(), 36)
			if mode == "redis" {
				rs = startRedis(t)
				cfg.global = redisGlobal(rs, prefix)
			}
			s := setupSiteWith(t, cfg)
			b := newBrowser(t)
			s.login(t, b)
			cookie := sessionCookieHeader(b, s.origin)
			advanceClock(t, 5*time.Minute+time.Second)
			s.idp.ResetCounts()
			// The provider takes its time over the refresh, and the
			// logout's revocation fails: only authgate can keep the
			// session from coming back.
			s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultStall, Delay: 1500 * time.Millisecond, Times: 1})
			s.idp.SetFault("revoke", testidp.Fault{Kind: testidp.FaultStatus500HTML})
			defer s.idp.ClearFaults()
			type answer struct {
				resp *http.Response
				body string
			}
			late := make(chan answer, 1)
			go func() {
				resp, body := rawRequest(t, s.origin+"/api", cookie, false)
				late <- answer{resp, body}
			}()
			deadline := time.Now().Add(5 * time.Second)
			for s.idp.Count("token:refresh_token") == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the refresh never reached the provider")
				}
				time.Sleep(5 * time.Millisecond) // polling for the request to arrive at the provider
			}
			if resp, body := rawRequest(t, s.origin+"/oauth2/logout", cookie, false); resp.StatusCode >= 400 {
				t.Fatalf("logout: %d %s", resp.StatusCode, body)
			}
			a := <-late
			if s.idp.Count("token:refresh_token") != 1 {
				t.Fatalf("setup: %d refreshes", s.idp.Count("token:refresh_token"))
			}
			assertJSONError(t, a.resp, a.body, http.StatusUnauthorized, "unauthenticated")
			assertNoSessionSet(t, a.resp)
			if rs != nil && storedSessionExists(t, rs, prefix, sessionValueFrom(func() []*http.Cookie {
				r := &http.Request{Header: http.Header{"Cookie": {cookie}}}
				return r.Cookies()
			}())) {
				t.Error("the late refresh wrote the signed-out session back into the store")
			}
			resp, body := rawRequest(t, s.origin+"/api", cookie, false)
			assertJSONError(t, resp, body, http.StatusUnauthorized, "unauthenticated")
			assertNoSessionSet(t, resp)
		})
	}
}

// storedSession reads the session a store-mode cookie value stands for
// straight from redis-server rs.
func storedSession(t *testing.T, rs *redisServer, prefix, cookieValue string) *Session {
	t.Helper()
	codec, err := newCookieCodec([]string{testKey}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var ref storeRef
	if _, err := codec.decode("_authgate", cookieValue, &ref); err != nil {
		t.Fatalf("the cookie holds no session id: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rs.port)})
	defer c.Close()
	val, err := c.Get(context.Background(), prefix+":session:"+ref.ID).Result()
	if err != nil {
		t.Fatalf("stored session %s: %v", ref.ID, err)
	}
	var s Session
	if _, err := codec.decode(storedName(ref.ID), val, &s); err != nil {
		t.Fatalf("stored session %s does not decode: %v", ref.ID, err)
	}
	return &s
}

// TestRefreshStorm: issue 18, "correctness under the storm". A few hundred
// sessions whose access tokens expire at one instant, with requests
// rotating through them on 32 connections: every session is refreshed
// exactly once, nobody is logged out, and every request gets the
// backend's 200 — with rotating refresh tokens, and with the provider
// answering 503 to one refresh in ten (those sessions keep working on
// their token and refresh on a later request, after the back-off).
func TestRefreshStorm(t *testing.T) {
	const sessions = 200
	for _, tc := range []struct {
		name  string
		redis bool
		fault bool
	}{
		{"cookie sessions", false, false},
		{"cookie sessions, 503 to one refresh in ten", false, true},
		{"session_store redis", true, false},
		{"session_store redis, 503 to one refresh in ten", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := siteConfig{opts: testidp.Options{RotateRefreshTokens: true, SigningAlg: "ES256", AccessTokenTTL: 5 * time.Minute}}
			var rs *redisServer
			prefix := "storm" + strconv.FormatInt(time.Now().UnixNano(), 36)
			if tc.redis {
				rs = startRedis(t)
				cfg.global = redisGlobal(rs, prefix)
			}
			s := setupSiteWith(t, cfg)
			// Every login's access token expires at one instant; the
			// refreshed ones live the usual five minutes.
			expiry := testNow().Add(2 * time.Minute).Truncate(time.Second)
			s.idp.SetAccessTokenExpiry(expiry)
			cookies := make([]string, sessions)
			refreshTokens := make([]string, sessions)
			var mu sync.Mutex // guards cookies
			parallel := func(workers, jobs int, job func(i int)) {
				var wg sync.WaitGroup
				next := make(chan int)
				for w := 0; w < workers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range next {
							job(i)
						}
					}()
				}
				for i := 0; i < jobs; i++ {
					next <- i
				}
				close(next)
				wg.Wait()
			}
			refreshTokenOf := func(i int) string {
				mu.Lock()
				c := cookies[i]
				mu.Unlock()
				v := sessionValueFrom((&http.Request{Header: http.Header{"Cookie": {c}}}).Cookies())
				if tc.redis {
					return storedSession(t, rs, prefix, v).RefreshToken
				}
				return mustOpenSession(t, v, testKey).RefreshToken
			}
			parallel(8, sessions, func(i int) {
				b := newBrowser(t)
				resp, body := b.get(fmt.Sprintf("%s/login/%d", s.origin, i))
				if resp.StatusCode != http.StatusOK {
					t.Errorf("login %d: %d %.200s", i, resp.StatusCode, body)
					return
				}
				mu.Lock()
				cookies[i] = sessionCookieHeader(b, s.origin)
				mu.Unlock()
			})
			if t.Failed() {
				t.FailNow()
			}
			s.idp.SetAccessTokenExpiry(time.Time{})
			for i := range refreshTokens {
				refreshTokens[i] = refreshTokenOf(i)
			}
			// Into the refresh window, 28 s before the common expiry: every
			// session is due, no token has expired.
			advanceClock(t, expiry.Add(-28*time.Second).Sub(testNow()))
			s.idp.ResetCounts()
			okBefore := refreshMetric(t, "ok")
			if tc.fault {
				s.idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultRaw, Status: http.StatusServiceUnavailable, Every: 10})
			}
			var requests, failures int
			request := func(i int, cookie string) {
				resp, body := rawRequest(t, fmt.Sprintf("%s/storm/%d", s.origin, i), cookie, false)
				mu.Lock()
				defer mu.Unlock()
				requests++
				if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"X-Forwarded-User":["alice-sub"]`) {
					failures++
					if failures <= 5 {
						t.Errorf("session %d: %d %.200s", i, resp.StatusCode, body)
					}
				}
				for _, c := range resp.Cookies() {
					if isSessionCookieName(c.Name) && c.MaxAge < 0 {
						failures++
						t.Errorf("session %d: its cookie was deleted (logged out)", i)
					}
				}
				if v := sessionValueFrom(liveSessionCookies(resp)); v != "" {
					cookies[i] = "_authgate=" + v
				}
			}
			current := func(i int) string {
				mu.Lock()
				defer mu.Unlock()
				return cookies[i]
			}
			// The storm: each session three times at once with the cookie
			// it had, then once more with whatever it holds now.
			before := append([]string(nil), cookies...)
			start := time.Now()
			parallel(32, 4*sessions, func(j int) {
				if i := j / 3; j < 3*sessions {
					request(i, before[i])
				} else {
					request(j-3*sessions, current(j-3*sessions))
				}
			})
			storm := time.Since(start)
			// Sessions whose refresh got a 503 refresh on a later request,
			// after the back-off (still before their tokens expire).
			pending := func() []int {
				var left []int
				for i := range refreshTokens {
					if refreshTokenOf(i) == refreshTokens[i] {
						left = append(left, i)
					}
				}
				return left
			}
			rounds := 0
			for left := pending(); len(left) > 0; left = pending() {
				if !tc.fault || rounds == 4 {
					t.Fatalf("%d sessions not refreshed after %d later rounds: %v", len(left), rounds, left)
				}
				rounds++
				advanceClock(t, refreshBackoff)
				parallel(32, sessions, func(i int) { request(i, current(i)) })
			}
			calls := s.idp.Count("token:refresh_token")
			refused := 0
			if tc.fault {
				refused = calls / 10
			}
			if ok := calls - refused; ok != sessions {
				t.Errorf("%d refreshes reached the provider (%d answered 503): %d succeeded for %d sessions, want exactly one each", calls, refused, ok, sessions)
			}
			if d := refreshMetric(t, "ok") - okBefore; d != sessions {
				t.Errorf("authgate_refreshes_total{result=ok} grew by %v, want %d", d, sessions)
			}
			if failures != 0 {
				t.Errorf("%d of %d requests were not the backend's 200 for the signed-in user", failures, requests)
			}
			// Afterwards: everybody is signed in, nobody is due.
			s.idp.ClearFaults()
			s.idp.ResetCounts()
			parallel(32, sessions, func(i int) { request(i, current(i)) })
			if n := s.idp.Count("token:refresh_token"); n != 0 {
				t.Errorf("%d refreshes after the storm, want 0", n)
			}
			t.Logf("%d sessions, %d requests: storm of %d requests in %s, %d later rounds, %d provider calls (%d answered 503)",
				sessions, requests, 4*sessions, storm.Round(time.Millisecond), rounds, calls, refused)
		})
	}
}

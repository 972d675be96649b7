package authgate

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
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

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// TestLimits checks the bounds on what a client or a broken provider
// controls.
func TestLimits(t *testing.T) {
	huge := `{"padding":"` + strings.Repeat("x", 2<<20) + `"}`

	t.Run("oversized discovery document", func(t *testing.T) {
		s := setupSite(t, testidp.Options{}, "", "")
		// setupSite's Caddy has already discovered; a fresh provider is
		// needed, discovered while the fault is on.
		s.idp.SetFault("discovery", testidp.Fault{Kind: testidp.FaultRaw, Status: 200, ContentType: "application/json", Body: huge})
		port := freePort(t)
		origin := fmt.Sprintf("http://127.0.0.1:%d", port)
		startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		provider fresh {
			issuer %s
			client_id app
		}
	}
}
%s {
	authgate
	respond "app"
}
`, globalPrelude, testKey, s.idp.Issuer(), origin))
		s.idp.ResetCounts()
		resp, body := newBrowser(t).get(origin + "/")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d: %.200s", resp.StatusCode, body)
		}
		if n := s.idp.Count("authorize"); n != 0 {
			t.Errorf("%d authorization requests after a bad discovery", n)
		}
	})

	t.Run("oversized token response", func(t *testing.T) {
		s := setupSite(t, testidp.Options{}, "", "")
		s.idp.SetFault("token", testidp.Fault{Kind: testidp.FaultRaw, Status: 200, ContentType: "application/json", Body: huge})
		defer s.idp.ClearFaults()
		b := newBrowser(t)
		resp, _ := b.get(s.origin + "/")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
		for _, c := range b.cookies(s.origin) {
			if c.Name == "_authgate" {
				t.Error("a session was set")
			}
		}
	})

	s := setupSite(t, testidp.Options{}, "", "")
	t.Run("pending logins are bounded per browser", func(t *testing.T) {
		var cookies []string
		for i := 0; i < 20; i++ {
			cookies = append(cookies, fmt.Sprintf("_authgate_login_%02d=junk%d", i, i))
		}
		c := *newBrowser(t).client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		req, _ := http.NewRequest("GET", s.origin+"/oauth2/start?rd=/", nil)
		req.Header.Set("Cookie", strings.Join(cookies, "; "))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		expired, set := 0, 0
		for _, sc := range resp.Header.Values("Set-Cookie") {
			if !strings.HasPrefix(sc, "_authgate_login_") {
				continue
			}
			if strings.Contains(sc, "Max-Age=0") {
				expired++
			} else {
				set++
			}
		}
		if set != 1 || 20-expired+set > maxPendingLogins {
			t.Errorf("%d pending logins kept of 21 (expired %d, set %d), want at most %d", 20-expired+set, expired, set, maxPendingLogins)
		}
	})
	t.Run("too many chunks is no session, never a 500", func(t *testing.T) {
		var cookies []string
		// 30 chunks, under Caddy's 16 KiB header limit in total.
		for i := 0; i < 30; i++ {
			cookies = append(cookies, fmt.Sprintf("_authgate_%d=%s", i, strings.Repeat("A", 400)))
		}
		resp, _ := newBrowser(t).api("GET", s.origin+"/api", "Cookie", strings.Join(cookies, "; "))
		if resp.StatusCode != 401 {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
	t.Run("a session over the server's header limit is refused at login, not looped", func(t *testing.T) {
		groups := make([]any, 400)
		for i := range groups {
			sum := sha256.Sum256([]byte(fmt.Sprint(i)))
			groups[i] = hex.EncodeToString(sum[:]) // incompressible
		}
		s.idp.SetUserClaims("alice", map[string]any{"groups": groups})
		defer s.idp.SetUserClaims("alice", map[string]any{"groups": []any{"admins", "staff"}})
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "session_too_large") {
			t.Fatalf("status %d: %.300s", resp.StatusCode, body)
		}
		for _, c := range b.cookies(s.origin) {
			if strings.HasPrefix(c.Name, "_authgate") && !strings.HasPrefix(c.Name, "_authgate_login_") {
				t.Errorf("session cookie %s set", c.Name)
			}
		}
	})
	t.Run("oversized bearer token", func(t *testing.T) {
		resp, _ := newBrowser(t).api("GET", s.origin+"/api", "Authorization", "Bearer "+strings.Repeat("a", 20000))
		if resp.StatusCode != 401 {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
}

// TestLimitEdges checks every limit of the Limits section of the README at
// the limit (accepted) and one past it (refused, cut or evicted).
func TestLimitEdges(t *testing.T) {
	t.Run("provider body", func(t *testing.T) {
		for _, tc := range []struct {
			size int
			ok   bool
		}{{maxProviderBody, true}, {maxProviderBody + 1, false}} {
			body := `{"sub":"a","pad":"` + strings.Repeat("x", tc.size-len(`{"sub":"a","pad":""}`)) + `"}`
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, body)
			}))
			c := newOAuthClient(oauthClientConfig{UserinfoURL: srv.URL, Transport: limitedTransport{base: http.DefaultTransport}})
			claims, err := c.userinfo(context.Background(), "token")
			srv.Close()
			if tc.ok && (err != nil || claims["sub"] != "a") {
				t.Errorf("%d bytes: %v", tc.size, err)
			}
			if !tc.ok && !errors.Is(err, errProviderBadResponse) {
				t.Errorf("%d bytes: error %v, want an unusable response", tc.size, err)
			}
		}
	})
	t.Run("cookie header", func(t *testing.T) {
		codec, err := newCookieCodec([]string{testKey}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cs, _ := newCookieSettings(nil)
		m := newSessionManager(codec, cs, time.Hour, nil, nil, sessionCacheSize)
		sess := &Session{Version: sessionVersion, ID: "id", Provider: "corp", Created: testNow().Unix(),
			Claims: map[string]any{"sub": "a", "pad": randomString(3000)}}
		value, err := codec.encode(cs.Name, sess)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			limit int
			ok    bool
		}{{len(value), true}, {len(value) - 1, false}} {
			// The value is what the server's max_header_size leaves for
			// session cookies: 3 KiB less.
			srv := &caddyhttp.Server{MaxHeaderBytes: tc.limit + 3<<10}
			r := httptest.NewRequest("GET", "/", nil)
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.ServerCtxKey, srv))
			err := m.writeCookie(httptest.NewRecorder(), r, sess)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, errSessionTooLarge)) {
				t.Errorf("value of %d bytes, limit %d: %v", len(value), tc.limit, err)
			}
		}
	})
	t.Run("chunk count", func(t *testing.T) {
		cs, _ := newCookieSettings(nil)
		parts, err := splitValue(cs, strings.Repeat("v", 100_000))
		_ = parts
		if err == nil {
			t.Fatal("100 kB fit")
		}
		two, _ := splitValue(cs, strings.Repeat("v", 2*cookieBudget))
		room := len(two[0])
		if _, err := splitValue(cs, strings.Repeat("v", maxCookieChunks*room)); err != nil {
			t.Errorf("%d chunks refused: %v", maxCookieChunks, err)
		}
		if _, err := splitValue(cs, strings.Repeat("v", maxCookieChunks*room+1)); err == nil {
			t.Errorf("%d chunks accepted", maxCookieChunks+1)
		}
		// Reading: chunks 0..15 join; a chunk 16 is no chunk.
		var cookies []string
		for i := 0; i <= maxCookieChunks; i++ {
			cookies = append(cookies, fmt.Sprintf("_authgate_%d=p%d", i, i))
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", strings.Join(cookies, "; "))
		sc := scanSessionCookie(r, "_authgate")
		if sc.n != maxCookieChunks || strings.Contains(sc.value(), fmt.Sprintf("p%d", maxCookieChunks)) {
			t.Errorf("read %d chunks: %q", sc.n, sc.value())
		}
	})
	t.Run("pending logins", func(t *testing.T) {
		s := setupSite(t, testidp.Options{}, "", "")
		b := newBrowser(t)
		u, _ := url.Parse(s.origin + "/")
		start := func(cookie string) (set string, expired int) {
			t.Helper()
			resp, _ := rawRequest(t, s.origin+"/oauth2/start?rd=/", cookie, true)
			for _, c := range resp.Cookies() {
				if !strings.HasPrefix(c.Name, "_authgate_login_") {
					continue
				}
				if c.MaxAge < 0 {
					expired++
				} else {
					set = c.Name
				}
			}
			b.client.Jar.SetCookies(u, resp.Cookies())
			return set, expired
		}
		// Up to the limit every login takes a slot of its own.
		var slots []string
		for i := 0; i < maxPendingLogins; i++ {
			set, expired := start(b.cookieHeader(s.origin + "/"))
			if set == "" || expired != 0 || slices.Contains(slots, set) {
				t.Fatalf("login %d of %d: set %q, %d expired, after %v", i+1, maxPendingLogins, set, expired, slots)
			}
			slots = append(slots, set)
		}
		// One past it: the oldest login's slot is reused, nothing grows.
		if set, expired := start(b.cookieHeader(s.origin + "/")); set != slots[0] || expired != 0 {
			t.Errorf("login %d: set %q with %d expired, want the oldest login's slot %q", maxPendingLogins+1, set, expired, slots[0])
		}
		pending := 0
		for _, c := range b.cookies(s.origin + "/") {
			if strings.HasPrefix(c.Name, "_authgate_login_") {
				pending++
			}
		}
		if pending != maxPendingLogins {
			t.Errorf("%d pending-login cookies after %d logins, want %d", pending, maxPendingLogins+1, maxPendingLogins)
		}
		// Cookies of earlier versions (other names) are expired.
		var legacy []string
		for i := 0; i < 20; i++ {
			legacy = append(legacy, fmt.Sprintf("_authgate_login_%02d=junk%d", i, i))
		}
		if _, expired := start(strings.Join(legacy, "; ")); expired != len(legacy) {
			t.Errorf("%d of %d earlier pending-login cookies expired", expired, len(legacy))
		}
	})
	t.Run("claim size", func(t *testing.T) {
		for _, tc := range []struct {
			size int
			ok   bool
		}{{maxClaimsJSON, true}, {maxClaimsJSON + 1, false}} {
			claims := map[string]any{"p": strings.Repeat("x", tc.size-len(`{"p":""}`))}
			if err := checkClaimsSize(claims); tc.ok != (err == nil) {
				t.Errorf("%d bytes: %v", tc.size, err)
			}
		}
	})
	t.Run("header value", func(t *testing.T) {
		at := strings.Repeat("a,", maxHeaderValueLen/2)[:maxHeaderValueLen]
		if got := sanitizeHeaderValue(at); got != at {
			t.Errorf("a value of %d bytes was cut to %d", len(at), len(got))
		}
		if got := sanitizeHeaderValue(at + "b"); len(got) >= maxHeaderValueLen || strings.HasSuffix(got, "b") {
			t.Errorf("a value of %d bytes kept %d", len(at)+1, len(got))
		}
	})
	t.Run("bearer token", func(t *testing.T) {
		logFile := filepath.Join(t.TempDir(), "caddy.log")
		s := setupSiteWith(t, siteConfig{caddyGlobal: jsonLogTo(logFile), handler: "bearer_tokens"})
		for _, n := range []int{maxBearerTokenLen, maxBearerTokenLen + 1} {
			resp, body := newBrowser(t).api("GET", s.origin+"/api", "Authorization", "Bearer "+strings.Repeat("a", n))
			assertJSONError(t, resp, body, 401, "invalid_token")
		}
		over := fmt.Sprintf("over %d bytes", maxBearerTokenLen)
		_, recs := logLines(t, logFile)
		var reasons []string
		for _, r := range recs {
			if r["msg"] == "bearer token refused" {
				reasons = append(reasons, fmt.Sprint(r["reason"]))
			}
		}
		if len(reasons) != 2 || strings.Contains(reasons[0], over) || !strings.Contains(reasons[1], over) {
			t.Errorf("reasons %q: only the second should be the length", reasons)
		}
	})
	t.Run("bearer caches", TestBearerCacheEvictsOneAtATime)
	t.Run("JWT header", func(t *testing.T) {
		head := func(n int) string {
			// A base64url header of exactly n characters (n divisible by 4).
			pad := strings.Repeat("x", n/4*3-len(`{"typ":"JWT","p":""}`))
			return base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","p":"` + pad + `"}`))
		}
		if h := head(4096); len(h) != 4096 {
			t.Fatalf("header of %d", len(h))
		}
		if _, err := jwtHeaderType(head(4096) + ".e30.sig"); err != nil {
			t.Errorf("4096: %v", err)
		}
		if _, err := jwtHeaderType(head(4096) + "x.e30.sig"); err == nil || !strings.Contains(err.Error(), "too large") {
			t.Errorf("4097: %v", err)
		}
	})
	t.Run("replay cache", func(t *testing.T) {
		// Every jti accepted is remembered for longer than a token with it
		// is accepted; the window edges are TestParseLogoutToken's, jti
		// length too (maxLogoutJTI).
		if logoutReplayWindow <= maxLogoutTokenAge+logoutTokenLeeway {
			t.Errorf("replay window %s does not outlast the iat window %s+%s", logoutReplayWindow, maxLogoutTokenAge, logoutTokenLeeway)
		}
		t.Run("iat and jti", TestParseLogoutToken)
	})
	t.Run("forward-auth redirects", func(t *testing.T) {
		for i := 0; i < maxAuthRedirects; i++ {
			if !firstAuthRedirect(sha256.Sum256([]byte(fmt.Sprint("limit-", i)))) {
				t.Fatalf("cookie %d counted as redirected before", i)
			}
		}
		if firstAuthRedirect(sha256.Sum256([]byte("limit-0"))) {
			t.Fatal("at the limit, the first cookie was forgotten")
		}
		firstAuthRedirect(sha256.Sum256([]byte("limit-one-more")))
		if authRedirects.Len() != maxAuthRedirects {
			t.Errorf("%d remembered, want %d", authRedirects.Len(), maxAuthRedirects)
		}
		if authRedirects.Contains(sha256.Sum256([]byte("limit-1"))) {
			t.Error("one past the limit, the least recent cookie is still remembered")
		}
		if !authRedirects.Contains(sha256.Sum256([]byte("limit-0"))) || !authRedirects.Contains(sha256.Sum256([]byte("limit-2"))) {
			t.Error("one past the limit, more than one cookie was forgotten")
		}
	})
	t.Run("return URL", func(t *testing.T) {
		var p redirectPolicy
		at := "/" + strings.Repeat("a", maxReturnURLLen-1)
		if _, ok := p.check(at, "h"); !ok {
			t.Errorf("%d bytes refused", len(at))
		}
		if _, ok := p.check(at+"a", "h"); ok {
			t.Errorf("%d bytes accepted", len(at)+1)
		}
	})
	t.Run("token lifetime", func(t *testing.T) {
		now := testNow()
		for _, tc := range []struct{ exp, want int64 }{
			{now.Unix() + maxTokenLifetimeSecs, now.Unix() + maxTokenLifetimeSecs},
			{now.Unix() + maxTokenLifetimeSecs + 1, now.Unix() + maxTokenLifetimeSecs},
		} {
			in, err := parseIntrospection([]byte(fmt.Sprintf(`{"active":true,"token_type":"Bearer","exp":%d}`, tc.exp)), now)
			if err != nil || in.Expiry.Unix() != tc.want {
				t.Errorf("exp %d: %v %v", tc.exp, in, err)
			}
		}
	})
	t.Run("back-channel body", func(t *testing.T) {
		rs := startRedis(t)
		s := setupSiteWith(t, siteConfig{global: fmt.Sprintf("session_store redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t}", rs.port)})
		for _, tc := range []struct {
			size   int
			reason string
		}{{maxLogoutBody, "invalid_logout_token"}, {maxLogoutBody + 1, "invalid_request"}} {
			form := "logout_token=x&pad="
			form += strings.Repeat("p", tc.size-len(form))
			req, _ := http.NewRequest(http.MethodPost, s.origin+"/oauth2/backchannel-logout", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, body := newBrowser(t).do(req)
			assertJSONError(t, resp, body, 400, tc.reason)
		}
	})
}

// TestLimitEdgesMore: the remaining limits at the limit and one past it.
func TestLimitEdgesMore(t *testing.T) {
	t.Run("ID token hint", func(t *testing.T) {
		cs, _ := newCookieSettings(nil)
		m := newSessionManager(nil, cs, time.Hour, nil, nil, sessionCacheSize)
		p := &provider{cfg: ProviderConfig{IDTokenHint: true}}
		st := &providerState{endSession: "https://op/logout"}
		at := strings.Repeat("t", maxIDTokenHint)
		if got := m.idTokenToKeep(p, st, at); got != at {
			t.Errorf("an ID token of %d bytes was not kept", len(at))
		}
		if got := m.idTokenToKeep(p, st, at+"t"); got != "" {
			t.Errorf("an ID token of %d bytes was kept", len(at)+1)
		}
	})
	t.Run("refresh grace table", func(t *testing.T) {
		rf := newRefresher(nil, time.Second, eventLog{})
		key := func(i int) [32]byte { return sha256.Sum256([]byte(fmt.Sprint(i))) }
		for i := 0; i < maxGraceEntries; i++ {
			rf.grace.put(key(i), &Session{})
		}
		for _, i := range []int{0, maxGraceEntries - 1} {
			if _, ok := rf.grace.get(key(i)); !ok {
				t.Fatalf("entry %d missing at the limit", i)
			}
		}
		rf.grace.put(key(maxGraceEntries), &Session{})
		if n := rf.grace.len(); n != maxGraceEntries {
			t.Errorf("%d entries one past the limit, want %d", n, maxGraceEntries)
		}
		_, oldest := rf.grace.get(key(0))
		_, next := rf.grace.get(key(1))
		_, newest := rf.grace.get(key(maxGraceEntries))
		if oldest || !next || !newest {
			t.Errorf("one past the limit: oldest kept %v, second oldest kept %v, newest kept %v; want only the oldest gone", oldest, next, newest)
		}
	})
	t.Run("decompressed session", func(t *testing.T) {
		var js jsonSerializer
		for _, tc := range []struct {
			size int
			ok   bool
		}{{maxInflated, true}, {maxInflated + 1, false}} {
			raw := `{"p":"` + strings.Repeat("x", tc.size-len(`{"p":""}`)) + `"}`
			var buf bytes.Buffer
			buf.WriteByte(tagDeflate)
			fw, _ := flate.NewWriter(&buf, flate.BestCompression)
			_, _ = fw.Write([]byte(raw))
			fw.Close()
			var v map[string]any
			if err := js.Deserialize(buf.Bytes(), &v); tc.ok != (err == nil) {
				t.Errorf("%d bytes inflated: %v", tc.size, err)
			}
		}
	})
	t.Run("claim path", TestParseClaimPath)
	t.Run("header value", TestSanitizeHeaderValue)
	t.Run("metric site labels", TestSiteLabelsBounded)
}

// TestLimitsListed: the README's Limits table names every limit constant
// with its value, so the one place that lists them stays true.
func TestLimitsListed(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(readme, []byte("\n## Limits\n"))
	end := bytes.Index(readme[start+1:], []byte("\n## "))
	if start < 0 || end < 0 {
		t.Fatal("README has no Limits section")
	}
	section := string(readme[start : start+1+end])
	for _, l := range []struct {
		name, value string
		got         any
		want        any
	}{
		{"maxProviderBody", "1 MiB", maxProviderBody, 1 << 20},
		{"cookieBudget", "4000 bytes", cookieBudget, 4000},
		{"maxCookieChunks", "| 16 |", maxCookieChunks, 16},
		{"maxInflated", "256 KiB", maxInflated, 256 << 10},
		{"maxPendingLogins", "| 3 |", maxPendingLogins, 3},
		{"maxClaimsJSON", "48 KiB", maxClaimsJSON, 48 << 10},
		{"maxClaimPathLen", "256 bytes", maxClaimPathLen, 256},
		{"maxHeaderValueLen", "32 KiB", maxHeaderValueLen, 32 << 10},
		{"maxReturnURLLen", "4096 bytes", maxReturnURLLen, 4096},
		{"maxIDTokenHint", "2048 bytes", maxIDTokenHint, 2048},
		{"maxBearerTokenLen", "16 KiB", maxBearerTokenLen, 16 << 10},
		{"maxBearerCacheItems", "10,000 (LRU, ≤ 1 min", maxBearerCacheItems, 10000},
		{"maxBearerRejections", "10,000 (LRU, 10 s", maxBearerRejections, 10000},
		{"defaultBearerRateLimit", "20 per second", defaultBearerRateLimit, 20},
		{"maxAuthRedirects", "10,000 (LRU, 30 s", maxAuthRedirects, 10000},
		{"maxLogoutBody", "64 KiB", maxLogoutBody, 64 << 10},
		{"maxLogoutJTI", "1 KiB", maxLogoutJTI, 1 << 10},
		{"maxLogoutTokenAge", "10 min old", maxLogoutTokenAge, 10 * time.Minute},
		{"logoutTokenLeeway", "1 min ahead", logoutTokenLeeway, time.Minute},
		{"logoutReplayWindow", "20 min per", logoutReplayWindow, 20 * time.Minute},
		{"maxTokenLifetimeSecs", "10 years", maxTokenLifetimeSecs, 10 * 365 * 24 * 3600},
		{"maxGraceEntries", "100,000 refreshes", maxGraceEntries, 100000},
		{"refreshBackoff", "5 s per session", refreshBackoff, 5 * time.Second},
		{"maxBackoffEntries", "100,000 sessions", maxBackoffEntries, 100000},
		{"loggedOutMemory", "5 min", loggedOutMemory, 5 * time.Minute},
		{"maxLoggedOut", "100,000 logouts", maxLoggedOut, 100000},
		{"unsavedMemory", "1 h each", unsavedMemory, time.Hour},
		{"maxUnsaved", "10,000 sessions", maxUnsaved, 10000},
		{"sessionCacheSize", "32 MiB", sessionCacheSize, 32 << 20},
		{"maxSiteLabels", "| 100 |", maxSiteLabels, 100},
		{"jwksMinInterval", "one per second", jwksMinInterval, time.Second},
		{"jwksAbsentMemory", "10 s", jwksAbsentMemory, 10 * time.Second},
		{"maxAbsentKIDs", "1,024", maxAbsentKIDs, 1024},
		{"maxLoginHint", "256 bytes", maxLoginHint, 256},
		{"maxDomainHint", "253 bytes", maxDomainHint, 253},
		{"maxAuthValues", "8 values", maxAuthValues, 8},
		{"maxAMR", "| 16 |", maxAMR, 16},
		{"maxAssertionsPerIdentity", "| 4 (one per site", maxAssertionsPerIdentity, 4},
		{"assertionCacheItems", "4,096 per generation", assertionCacheItems, 4096},
		{"cookieHeaderLimit", "less 3 KiB", nil, nil},
	} {
		if fmt.Sprint(l.got) != fmt.Sprint(l.want) {
			t.Errorf("%s is %v; the README says %s (%v)", l.name, l.got, l.value, l.want)
		}
		var row string
		for _, line := range strings.Split(section, "\n") {
			if strings.Contains(line, "`"+l.name+"`") {
				row = line
			}
		}
		if row == "" || !strings.Contains(row, l.value) {
			t.Errorf("the Limits table has no row for %s saying %q", l.name, l.value)
		}
	}
}

package authgate

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

func TestBearerTokens(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "bearer_tokens")
	now := testNow()
	claims := func(mut func(map[string]any)) map[string]any {
		c := map[string]any{
			"iss": s.idp.Issuer(), "aud": "app", "sub": "svc-robot", "email": "robot@example.test",
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		}
		if mut != nil {
			mut(c)
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"valid", s.idp.SignJWT(claims(nil)), 200},
		{"valid at+jwt", s.idp.SignJWT(claims(nil), testidp.SignHeader("typ", "at+jwt")), 200},
		{"valid ES256 not advertised", s.idp.SignJWT(claims(nil), testidp.SignES256()), 401},
		{"expired", s.idp.SignJWT(claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), 401},
		{"wrong audience", s.idp.SignJWT(claims(func(c map[string]any) { c["aud"] = "other-app" })), 401},
		{"wrong issuer", s.idp.SignJWT(claims(func(c map[string]any) { c["iss"] = "https://evil.example" })), 401},
		{"issuer with trailing slash", s.idp.SignJWT(claims(func(c map[string]any) { c["iss"] = s.idp.Issuer() + "/" })), 401},
		{"bad signature", s.idp.SignJWT(claims(nil), testidp.SignWrongKey()), 401},
		{"alg none", s.idp.SignJWT(claims(nil), testidp.SignAlgNone()), 401},
		{"unknown kid", s.idp.SignJWT(claims(nil), testidp.SignUnpublishedKey()), 401},
		{"ID token: nonce", s.idp.SignJWT(claims(func(c map[string]any) { c["nonce"] = "n" })), 401},
		{"ID token: at_hash", s.idp.SignJWT(claims(func(c map[string]any) { c["at_hash"] = "x" })), 401},
		{"ID token: s_hash", s.idp.SignJWT(claims(func(c map[string]any) { c["s_hash"] = "x" })), 401},
		{"Keycloak ID token: typ ID", s.idp.SignJWT(claims(func(c map[string]any) { c["typ"] = "ID" })), 401},
		{"Keycloak refresh token: typ Refresh", s.idp.SignJWT(claims(func(c map[string]any) { c["typ"] = "Refresh" })), 401},
		{"Keycloak access token: typ Bearer", s.idp.SignJWT(claims(func(c map[string]any) { c["typ"] = "Bearer" })), 200},
		{"logout token: events", s.idp.SignJWT(claims(func(c map[string]any) {
			c["events"] = map[string]any{backchannelEvent: map[string]any{}}
		})), 401},
		{"logout token: header typ", s.idp.SignJWT(claims(nil), testidp.SignHeader("typ", "logout+jwt")), 401},
		{"DPoP proof: header typ", s.idp.SignJWT(claims(nil), testidp.SignHeader("typ", "dpop+jwt")), 401},
		{"header typ not a string", s.idp.SignJWT(claims(nil), testidp.SignHeader("typ", 7)), 401},
		{"opaque junk", "not-a-jwt-at-all", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			resp, body := b.api("GET", s.origin+"/api/data", "Authorization", "Bearer "+tc.token)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 200 {
				saw := backendSaw(t, body)
				if saw.Headers.Get("X-Forwarded-User") != "svc-robot" || saw.Headers.Get("X-Forwarded-Email") != "robot@example.test" {
					t.Errorf("identity headers: %v", saw.Headers)
				}
				if len(setCookieHeaders(resp)) != 0 {
					t.Errorf("a bearer request got cookies: %v", setCookieHeaders(resp))
				}
				return
			}
			assertJSONError(t, resp, body, 401, "invalid_token")
			if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("a browser navigation with a bad bearer token gets 401, not a login", func(t *testing.T) {
		resp, body := newBrowser(t).api("GET", s.origin+"/page", "Authorization", "Bearer junk-token", "Accept", "text/html")
		if resp.StatusCode != 401 {
			t.Fatalf("status %d: %.200s", resp.StatusCode, body)
		}
	})
	t.Run("refusals are cached: junk cannot make us call the provider each time", func(t *testing.T) {
		s.idp.ResetCounts()
		b := newBrowser(t)
		for i := 0; i < 5; i++ {
			b.api("GET", s.origin+"/api/data", "Authorization", "Bearer another-opaque-junk")
		}
		if n := s.idp.Count("introspect"); n != 1 {
			t.Errorf("%d introspection calls for 5 requests with one token, want 1", n)
		}
		if n := s.idp.Count("userinfo"); n != 0 {
			t.Errorf("%d userinfo calls: userinfo is not used unless enabled", n)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		s2 := setupSite(t, testidp.Options{}, "", "")
		b := newBrowser(t)
		resp, _ := b.api("GET", s2.origin+"/api", "Authorization", "Bearer "+s2.idp.SignJWT(map[string]any{
			"iss": s2.idp.Issuer(), "aud": "app", "sub": "x", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		}))
		if resp.StatusCode != 401 {
			t.Errorf("bearer accepted without bearer_tokens: %d", resp.StatusCode)
		}
	})
}

// TestBearerResourceAudience: with a resource audience, JWTs must be typed
// at+jwt (RFC 9068) and name the resource; the provider's own access
// tokens pass, its ID tokens never do.
func TestBearerResourceAudience(t *testing.T) {
	const api = "https://api.example.test"
	s := setupSiteWith(t, siteConfig{
		opts:    testidp.Options{AccessTokenAudience: api},
		handler: "bearer_tokens {\n\t\t\tresource_audience " + api + "\n\t\t}",
	})
	tokens := obtainTokens(t, s.idp, "app", "app-secret", s.origin+"/oauth2/callback")
	now := testNow()
	claims := func(aud string) map[string]any {
		return map[string]any{"iss": s.idp.Issuer(), "aud": aud, "sub": "svc", "client_id": "app",
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": randomString(8)}
	}
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"the provider's access token (typ at+jwt, aud the resource)", tokens.Access, 200},
		{"the provider's ID token", tokens.ID, 401},
		{"at+jwt for the resource", s.idp.SignJWT(claims(api), testidp.SignHeader("typ", "at+jwt")), 200},
		{"application/at+jwt for the resource", s.idp.SignJWT(claims(api), testidp.SignHeader("typ", "application/at+jwt")), 200},
		{"typ JWT for the resource", s.idp.SignJWT(claims(api)), 401},
		{"at+jwt for the client id only", s.idp.SignJWT(claims("app"), testidp.SignHeader("typ", "at+jwt")), 401},
		{"at+jwt for another resource", s.idp.SignJWT(claims("https://other.example.test"), testidp.SignHeader("typ", "at+jwt")), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := newBrowser(t).api("GET", s.origin+"/api", "Authorization", "Bearer "+tc.token)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status != 200 {
				assertJSONError(t, resp, body, 401, "invalid_token")
			}
		})
	}
}

// TestBearerIntrospection: opaque tokens are checked by RFC 7662
// introspection at the endpoint discovery names, with active, the token's
// kind, the audience (or client_id) and exp checked, answers and refusals
// cached, and the provider called at most at the configured rate.
func TestBearerIntrospection(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	s := setupSiteWith(t, siteConfig{
		opts:        testidp.Options{OpaqueAccessTokens: true},
		caddyGlobal: jsonLogTo(logFile),
		handler:     "bearer_tokens",
		beforeStart: func(idp *testidp.Server) {
			if err := idp.AddClient(testidp.Client{ID: "other", Secret: "other-secret", RedirectURIs: []string{"http://127.0.0.1:9/cb"}}); err != nil {
				t.Fatal(err)
			}
		},
	})
	cb := s.origin + "/oauth2/callback"
	call := func(token string) (*http.Response, string) {
		return newBrowser(t).api("GET", s.origin+"/api", "Authorization", "Bearer "+token)
	}

	t.Run("an active access token of this client is accepted, once asked", func(t *testing.T) {
		tok := obtainTokens(t, s.idp, "app", "app-secret", cb)
		s.idp.ResetCounts()
		for i := 0; i < 3; i++ {
			resp, body := call(tok.Access)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			saw := backendSaw(t, body)
			if saw.Headers.Get("X-Forwarded-User") != "alice-sub" || saw.Headers.Get("X-Forwarded-Preferred-Username") != "alice" {
				t.Errorf("identity headers: %v", saw.Headers)
			}
		}
		if n := s.idp.Count("introspect"); n != 1 {
			t.Errorf("%d introspection calls for 3 requests, want 1 (cached)", n)
		}
		if n := s.idp.Count("userinfo"); n != 0 {
			t.Errorf("%d userinfo calls", n)
		}
	})
	refused := func(t *testing.T, token, why string) {
		t.Helper()
		resp, body := call(token)
		assertJSONError(t, resp, body, 401, "invalid_token")
		if !logHas(t, logFile, "bearer token refused", why) {
			t.Errorf("no log line \"bearer token refused\" saying %q", why)
		}
	}
	t.Run("a token issued to another client is refused (audience)", func(t *testing.T) {
		refused(t, obtainTokens(t, s.idp, "other", "other-secret", "http://127.0.0.1:9/cb").Access, "audience [other]")
	})
	t.Run("a refresh token is no access token", func(t *testing.T) {
		refused(t, obtainTokens(t, s.idp, "app", "app-secret", cb).Refresh, "no token_type")
	})
	t.Run("the token of a disabled account is inactive", func(t *testing.T) {
		tok := obtainTokens(t, s.idp, "app", "app-secret", cb)
		s.idp.DisableUser("alice")
		defer s.idp.EnableUser("alice")
		refused(t, tok.Access, "token is not active")
	})
	t.Run("an expired token is inactive, and a cached answer ends with it", func(t *testing.T) {
		tok := obtainTokens(t, s.idp, "app", "app-secret", cb)
		if resp, _ := call(tok.Access); resp.StatusCode != 200 {
			t.Fatalf("fresh token: %d", resp.StatusCode)
		}
		advanceClock(t, 6*time.Minute) // past the 5 min lifetime and the 1 min cache
		refused(t, tok.Access, "token is not active")
	})
	t.Run("a provider failure is 502 and not cached", func(t *testing.T) {
		tok := obtainTokens(t, s.idp, "app", "app-secret", cb)
		s.idp.SetFault("introspect", testidp.Fault{Kind: testidp.FaultStatus500HTML, Times: 1})
		resp, body := call(tok.Access)
		assertJSONError(t, resp, body, http.StatusBadGateway, "provider_unavailable")
		if resp, body := call(tok.Access); resp.StatusCode != 200 {
			t.Errorf("after the provider recovered: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("a malformed answer is 502", func(t *testing.T) {
		s.idp.SetFault("introspect", testidp.Fault{Kind: testidp.FaultRaw, Status: 200, ContentType: "application/json",
			Body: `{"active":"true","token_type":"Bearer","sub":"x","aud":"app"}`, Times: 1})
		resp, body := call("opaque-token-with-a-strange-answer")
		assertJSONError(t, resp, body, http.StatusBadGateway, "provider_unavailable")
	})
	t.Run("an active answer with exp in the past is refused", func(t *testing.T) {
		s.idp.SetFault("introspect", testidp.Fault{Kind: testidp.FaultRaw, Status: 200, ContentType: "application/json",
			Body: fmt.Sprintf(`{"active":true,"token_type":"Bearer","sub":"x","aud":"app","exp":%d}`, testNow().Add(-time.Second).Unix()), Times: 1})
		refused(t, "opaque-token-the-provider-calls-expired", "is past")
	})
	t.Run("an answer without aud needs client_id to be an audience", func(t *testing.T) {
		s.idp.SetFault("introspect", testidp.Fault{Kind: testidp.FaultRaw, Status: 200, ContentType: "application/json",
			Body: `{"active":true,"token_type":"Bearer","sub":"x","client_id":"someone"}`, Times: 1})
		refused(t, "opaque-token-of-someone", `client_id "someone"`)
	})
}

// TestBearerRateLimit: the calls made to the provider to check tokens are
// capped per second; over the cap a new token gets 503 with Retry-After,
// while cached answers keep being served.
func TestBearerRateLimit(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	s := setupSiteWith(t, siteConfig{
		opts:        testidp.Options{OpaqueAccessTokens: true},
		caddyGlobal: jsonLogTo(logFile),
		handler:     "bearer_tokens {\n\t\t\trate_limit 3\n\t\t}",
	})
	call := func(token string) (*http.Response, string) {
		return newBrowser(t).api("GET", s.origin+"/api", "Authorization", "Bearer "+token)
	}
	good := obtainTokens(t, s.idp, "app", "app-secret", s.origin+"/oauth2/callback").Access
	advanceClock(t, 2*time.Second) // a full bucket
	if resp, _ := call(good); resp.StatusCode != 200 {
		t.Fatalf("good token: %d", resp.StatusCode)
	}
	s.idp.ResetCounts()
	statuses := []int{}
	var busy *http.Response
	var busyBody string
	for i := 0; i < 4; i++ {
		resp, body := call(fmt.Sprintf("junk-%d-%s", i, randomString(6)))
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == http.StatusServiceUnavailable {
			busy, busyBody = resp, body
		}
	}
	if fmt.Sprint(statuses) != "[401 401 503 503]" {
		t.Fatalf("statuses %v, want two refusals then 503 (rate 3/s, one spent on the good token)", statuses)
	}
	assertJSONError(t, busy, busyBody, http.StatusServiceUnavailable, "token_validation_busy")
	if busy.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if !logHas(t, logFile, "bearer token validation busy", "rate limit") {
		t.Error("no log line for the 503")
	}
	if n := s.idp.Count("introspect"); n != 2 {
		t.Errorf("%d introspection calls, want 2", n)
	}
	if resp, _ := call(good); resp.StatusCode != 200 {
		t.Errorf("cached good token while the limit is spent: %d", resp.StatusCode)
	}
	advanceClock(t, time.Second)
	if resp, _ := call("junk-after-a-second"); resp.StatusCode != 401 {
		t.Errorf("a second later: %d, want 401", resp.StatusCode)
	}
}

// TestBearerOpaqueWithoutIntrospection: userinfo checks opaque tokens only
// when the operator opts in; without it and without introspection they
// are refused with a reason.
func TestBearerOpaqueWithoutIntrospection(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	s := setupSiteWith(t, siteConfig{
		opts:        testidp.Options{OpaqueAccessTokens: true},
		caddyGlobal: jsonLogTo(logFile),
		handler:     "bearer_tokens {\n\t\t\tintrospection off\n\t\t}",
	})
	tok := obtainTokens(t, s.idp, "app", "app-secret", s.origin+"/oauth2/callback")
	s.idp.ResetCounts()
	resp, body := newBrowser(t).api("GET", s.origin+"/api", "Authorization", "Bearer "+tok.Access)
	assertJSONError(t, resp, body, 401, "invalid_token")
	if n := s.idp.Count("introspect") + s.idp.Count("userinfo"); n != 0 {
		t.Errorf("%d provider calls", n)
	}
	if !logHas(t, logFile, "bearer token refused", "userinfo is off") {
		t.Error("no log line saying why")
	}

	s.cfg.handler = "bearer_tokens {\n\t\t\tintrospection off\n\t\t\tuserinfo on\n\t\t}"
	s.start(t, testKey)
	resp, body = newBrowser(t).api("GET", s.origin+"/api", "Authorization", "Bearer "+tok.Access)
	if resp.StatusCode != 200 || backendSaw(t, body).Headers.Get("X-Forwarded-User") != "alice-sub" {
		t.Fatalf("with userinfo on: %d %s", resp.StatusCode, body)
	}
	if n := s.idp.Count("userinfo"); n != 1 {
		t.Errorf("%d userinfo calls, want 1", n)
	}
}

func TestBearerCacheEvictsOneAtATime(t *testing.T) {
	c := newBearerCache(maxBearerCacheItems, maxBearerRejections)
	until := testNow().Add(time.Minute)
	key := func(kind string, i int) [32]byte { return sha256.Sum256([]byte(fmt.Sprint(kind, i))) }
	for i := 0; i < maxBearerCacheItems; i++ {
		c.put(key("good", i), bearerResult{id: &Identity{ID: fmt.Sprint(i)}, until: until})
	}
	// A flood of refusals, one more than the refusal cache holds, must not
	// touch the answers.
	for i := 0; i <= maxBearerRejections; i++ {
		c.put(key("bad", i), bearerResult{err: errBadBearer, until: until})
	}
	if n := c.good.Len(); n != maxBearerCacheItems {
		t.Fatalf("%d answers after a flood of refusals, want %d", n, maxBearerCacheItems)
	}
	if n := c.bad.Len(); n != maxBearerRejections {
		t.Errorf("%d refusals kept, want %d", n, maxBearerRejections)
	}
	if _, ok := c.get(key("bad", 0)); ok {
		t.Error("the oldest refusal survived one over the limit")
	}
	if _, ok := c.get(key("bad", 1)); !ok {
		t.Error("the second oldest refusal was evicted too")
	}
	// Touch the oldest answer, then add one more: the least recently used
	// goes, and only it.
	if _, ok := c.get(key("good", 0)); !ok {
		t.Fatal("answer 0 missing at the limit")
	}
	c.put(key("good", maxBearerCacheItems), bearerResult{id: &Identity{ID: "new"}, until: until})
	if n := c.good.Len(); n != maxBearerCacheItems {
		t.Errorf("%d answers at limit+1, want %d", n, maxBearerCacheItems)
	}
	if _, ok := c.get(key("good", 0)); !ok {
		t.Error("the recently used answer was evicted")
	}
	if _, ok := c.get(key("good", 1)); ok {
		t.Error("the least recently used answer survived")
	}
	if _, ok := c.get(key("good", 2)); !ok {
		t.Error("more than one answer was evicted")
	}
	// An expired answer is no answer.
	c.put(key("old", 0), bearerResult{id: &Identity{}, until: testNow().Add(-time.Second)})
	if _, ok := c.get(key("old", 0)); ok {
		t.Error("an expired answer was returned")
	}
}

// issued are the tokens of one authorization-code flow at the test
// provider.
type issued struct{ Access, Refresh, ID string }

// obtainTokens runs an authorization-code flow with PKCE at idp for a
// client, as an API client would, and returns its tokens. The redirect
// back is not followed: the code is read from it.
func obtainTokens(t *testing.T, idp *testidp.Server, clientID, secret, redirectURI string) issued {
	t.Helper()
	verifier := randomString(32)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirectURI},
		"scope": {"openid profile email"}, "state": {randomString(8)}, "nonce": {randomString(8)},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(idp.Issuer() + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {redirectURI}, "code_verifier": {verifier}}
	req, _ := http.NewRequest(http.MethodPost, idp.Issuer()+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		IDToken      string `json:"id_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return issued{tr.AccessToken, tr.RefreshToken, tr.IDToken}
}

// jsonLogTo is a Caddy global log block writing JSON lines to path.
func jsonLogTo(path string) string {
	return fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t}", path)
}

// logHas reports whether a log line with message msg has a field whose
// text contains want.
func logHas(t *testing.T, path, msg, want string) bool {
	t.Helper()
	_, recs := logLines(t, path)
	for _, r := range recs {
		if r["msg"] != msg {
			continue
		}
		for k, v := range r {
			if s, ok := v.(string); ok && k != "msg" && strings.Contains(s, want) {
				return true
			}
		}
	}
	return false
}

// TestBearerIntrospectionClientAuth: introspection authenticates the
// client as the token endpoint does (here client_secret_post, the only
// method the client may use), and the one-line bearer_tokens form names
// the audiences.
func TestBearerIntrospectionClientAuth(t *testing.T) {
	port := freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := newIDP(t, testidp.Options{OpaqueAccessTokens: true, Clients: []testidp.Client{
		{ID: "app", Secret: "app-secret", RedirectURIs: []string{origin + "/oauth2/callback"}, AuthMethod: testidp.AuthClientSecretPost},
		{ID: "cli", Secret: "cli-secret", RedirectURIs: []string{"http://127.0.0.1:9/cb"}},
	}})
	be := newBackend(t)
	startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
			client_auth body
		}
	}
}
%s {
	authgate {
		bearer_tokens cli
	}
	reverse_proxy %s
}
`, globalPrelude, testKey, idp.Issuer(), origin, be.URL))
	tok := obtainTokens(t, idp, "cli", "cli-secret", "http://127.0.0.1:9/cb")
	resp, body := newBrowser(t).api("GET", origin+"/api", "Authorization", "Bearer "+tok.Access)
	if resp.StatusCode != 200 || backendSaw(t, body).Headers.Get("X-Forwarded-User") != "alice-sub" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if n := idp.Count("introspect"); n != 1 {
		t.Errorf("%d introspection calls", n)
	}
}

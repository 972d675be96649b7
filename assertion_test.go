package authgate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// assertionSite is a site that sends assertions, with its keys in a
// storage directory of its own.
func assertionSite(t *testing.T, handler, global string) (*configuredSite, string) {
	t.Helper()
	dir := t.TempDir()
	s := setupSiteWith(t, siteConfig{
		caddyGlobal: "storage file_system " + dir,
		global:      global,
		handler:     handler,
	})
	return s, dir
}

// verifyAssertion checks raw as a backend would, with go-oidc against
// the site's JWKS endpoint, and returns its claims.
func verifyAssertion(t *testing.T, issuer, audience, raw string) (map[string]any, error) {
	t.Helper()
	return verifyAssertionAt(t, issuer, issuer, audience, raw)
}

// verifyAssertionAt verifies with the keys another site publishes.
func verifyAssertionAt(t *testing.T, jwksOrigin, issuer, audience, raw string) (map[string]any, error) {
	t.Helper()
	ctx := context.Background()
	keys := oidc.NewRemoteKeySet(ctx, jwksOrigin+"/.well-known/authgate/jwks.json")
	v := oidc.NewVerifier(issuer, keys, &oidc.Config{ClientID: audience, Now: testNow, SupportedSigningAlgs: []string{"ES256"}})
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	return claims, nil
}

// jwtHeader decodes a compact JWT's header, unverified.
func jwtHeader(t *testing.T, raw string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("not a JWT: %q", raw)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jwksKids(t *testing.T, origin string) []string {
	t.Helper()
	resp, err := http.Get(origin + jwksPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

func TestAssertionVerifiedByBackend(t *testing.T) {
	s, _ := assertionSite(t, "assertion_header", "")
	host := strings.TrimPrefix(s.origin, "http://")
	b := newBrowser(t)
	saw := s.login(t, b)
	raw := saw.Headers.Get(defaultAssertionHeader)
	if raw == "" {
		t.Fatalf("the backend received no %s: %v", defaultAssertionHeader, saw.Headers)
	}

	t.Run("go-oidc verifies it against the JWKS endpoint", func(t *testing.T) {
		claims, err := verifyAssertion(t, s.origin, host, raw)
		if err != nil {
			t.Fatalf("verifying the assertion: %v", err)
		}
		if claims["sub"] != "alice-sub" || claims["email"] != "alice@example.test" || claims["name"] != "Alice Example" ||
			claims["provider"] != "corp" || claims["iss"] != s.origin || claims["aud"] != host {
			t.Errorf("claims: %v", claims)
		}
		if g, _ := claims["groups"].([]any); len(g) != 2 || g[0] != "admins" || g[1] != "staff" {
			t.Errorf("groups: %v", claims["groups"])
		}
		iat, exp := claims["iat"].(float64), claims["exp"].(float64)
		if exp-iat != 300 {
			t.Errorf("lifetime %v s, want 300", exp-iat)
		}
		if claims["jti"] == "" || claims["auth_time"] == nil {
			t.Errorf("jti %v, auth_time %v", claims["jti"], claims["auth_time"])
		}
		if h := jwtHeader(t, raw); h["alg"] != "ES256" || h["kid"] == "" || h["typ"] != "JWT" {
			t.Errorf("header %v", h)
		}
	})
	t.Run("another audience or issuer does not verify", func(t *testing.T) {
		if _, err := verifyAssertion(t, s.origin, "other-app", raw); err == nil {
			t.Error("verified for another audience")
		}
		ks := oidc.NewRemoteKeySet(context.Background(), s.origin+jwksPath)
		v := oidc.NewVerifier("https://elsewhere.example", ks, &oidc.Config{ClientID: host, Now: testNow})
		if _, err := v.Verify(context.Background(), raw); err == nil {
			t.Error("verified for another issuer")
		}
	})
	t.Run("signed once, not per request", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			resp, body := b.api("GET", s.origin+"/api")
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if got := backendSaw(t, body).Headers.Get(defaultAssertionHeader); got != raw {
				t.Fatalf("request %d carried another assertion: signed again", i)
			}
		}
		// Within a minute of expiry it is signed again.
		advanceClock(t, 4*time.Minute+time.Second)
		resp, body := b.api("GET", s.origin+"/api")
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		fresh := backendSaw(t, body).Headers.Get(defaultAssertionHeader)
		if fresh == raw {
			t.Fatal("the assertion was not renewed a minute before its expiry")
		}
		claims, err := verifyAssertion(t, s.origin, host, fresh)
		if err != nil {
			t.Fatalf("renewed assertion: %v", err)
		}
		if exp := int64(claims["exp"].(float64)); exp < testNow().Add(4*time.Minute).Unix() {
			t.Errorf("renewed assertion expires at %d, in under 4 minutes", exp)
		}
	})
	t.Run("a forged or expired assertion from the client never reaches the backend", func(t *testing.T) {
		advanceClock(t, 6*time.Minute) // the first assertion is now past its exp
		if _, err := verifyAssertion(t, s.origin, host, raw); err == nil {
			t.Fatal("the first assertion should have expired")
		}
		forged := strings.Replace(raw, ".", ".e30.", 1)
		for name, v := range map[string]string{"forged": forged, "expired": raw} {
			resp, body := b.api("GET", s.origin+"/api", defaultAssertionHeader, v, strings.ToLower(defaultAssertionHeader), v)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
			}
			got := backendSaw(t, body).Headers.Values(defaultAssertionHeader)
			if len(got) != 1 || got[0] == v {
				t.Errorf("%s: the backend saw %q", name, got)
			}
		}
		// Without a session the request does not reach the backend at all.
		resp, _ := newBrowser(t).api("GET", s.origin+"/api", defaultAssertionHeader, raw)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous request with an assertion: %d", resp.StatusCode)
		}
	})
}

func TestAssertionOffStillStripsClientCopy(t *testing.T) {
	s := setupSiteWith(t, siteConfig{handler: "header user X-User"})
	b := newBrowser(t)
	s.login(t, b)
	resp, body := b.api("GET", s.origin+"/api", defaultAssertionHeader, "eyJhbGciOiJub25lIn0.e30.")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if got := backendSaw(t, body).Headers.Values(defaultAssertionHeader); len(got) != 0 {
		t.Errorf("the client's assertion reached the backend: %q", got)
	}
	// No site sends assertions: no keys, and the path is the app's.
	resp, _ = b.api("GET", s.origin+jwksPath)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "" {
		t.Errorf("%s without assertions: status %d, Cache-Control %q (want the backend's answer)", jwksPath, resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
}

func TestAssertionHeaderNameAudienceLifetime(t *testing.T) {
	s, _ := assertionSite(t, "assertion_header X-Identity\n\t\tassertion_audience legacy-app\n\t\tassertion_lifetime 2m", "")
	b := newBrowser(t)
	saw := s.login(t, b)
	raw := saw.Headers.Get("X-Identity")
	if saw.Headers.Get(defaultAssertionHeader) != "" || raw == "" {
		t.Fatalf("headers: %v", saw.Headers)
	}
	claims, err := verifyAssertion(t, s.origin, "legacy-app", raw)
	if err != nil {
		t.Fatal(err)
	}
	if claims["exp"].(float64)-claims["iat"].(float64) != 120 {
		t.Errorf("lifetime: %v", claims)
	}
	resp, body := b.api("GET", s.origin+"/api", "X-Identity", "forged")
	if got := backendSaw(t, body).Headers.Values("X-Identity"); resp.StatusCode != 200 || len(got) != 1 || got[0] != raw {
		t.Errorf("%d: X-Identity %q", resp.StatusCode, got)
	}
}

func mustGet(t *testing.T, b *browser, u string) string {
	t.Helper()
	resp, body := b.get(u)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d after %v\n%s", u, resp.StatusCode, b.hops, body)
	}
	return body
}

// Through forward_auth the assertion is one of the headers to copy; its
// issuer is the app's origin (forward_auth keeps the Host), its keys are
// published by the authgate site.
func TestAssertionThroughForwardAuth(t *testing.T) {
	authPort, appPort := freePort(t), freePort(t)
	authOrigin := fmt.Sprintf("http://127.0.0.1:%d", authPort)
	appOrigin := fmt.Sprintf("http://127.0.0.1:%d", appPort)
	idp := newIDP(t, testidp.Options{}, authOrigin+"/oauth2/callback")
	be := newBackend(t)
	startCaddy(t, fmt.Sprintf(`{
	%s
	storage file_system %s
	authgate {
		session_keys %s
		auth_host 127.0.0.1:%d
		allowed_redirect_domains 127.0.0.1
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
		}
	}
}
%s {
	authgate {
		assertion_header
	}
	respond "auth service" 404
}
%s {
	forward_auth 127.0.0.1:%d {
		uri /oauth2/auth
		copy_headers X-Forwarded-User X-Authgate-Assertion
	}
	reverse_proxy %s
}
`, globalPrelude, t.TempDir(), testKey, authPort, idp.Issuer(), authOrigin, appOrigin, authPort, be.URL))
	b := newBrowser(t)
	raw := backendSaw(t, mustGet(t, b, appOrigin+"/page")).Headers.Get(defaultAssertionHeader)
	claims, err := verifyAssertionAt(t, authOrigin, appOrigin, strings.TrimPrefix(appOrigin, "http://"), raw)
	if err != nil {
		t.Fatalf("%v (%q)", err, raw)
	}
	if claims["sub"] != "alice-sub" {
		t.Errorf("claims %v", claims)
	}
	// A client's own copy is replaced on the way to the app.
	resp, body := b.api("GET", appOrigin+"/api", defaultAssertionHeader, "forged")
	if got := backendSaw(t, body).Headers.Values(defaultAssertionHeader); resp.StatusCode != 200 || len(got) != 1 || got[0] == "forged" {
		t.Errorf("%d: %q", resp.StatusCode, got)
	}
}

// A request that does not reach the backend through authgate's success
// path carries no client-sent assertion anywhere: with error_pages caddy
// the site's handle_errors routes see the request too.
func TestAssertionDroppedOnErrorRoutes(t *testing.T) {
	errors := newBackend(t)
	s := setupSiteWith(t, siteConfig{
		caddyGlobal: "storage file_system " + t.TempDir(),
		handler:     "assertion_header\n\t\terror_pages caddy\n\t\tdeny email bob@*",
		siteExtra:   "handle_errors {\n\t\treverse_proxy " + errors.URL + "\n\t}",
	})
	// The error route's backend answers (its status replaces the 401).
	_, body := newBrowser(t).api("GET", s.origin+"/api", defaultAssertionHeader, "forged")
	if got := backendSaw(t, body).Headers.Values(defaultAssertionHeader); len(got) != 0 {
		t.Errorf("the error route received the client's assertion: %q", got)
	}
	s.idp.SetUserClaims("alice", map[string]any{"email": "bob@example.test"})
	b := newBrowser(t)
	_, body = b.get(s.origin+"/page", defaultAssertionHeader, "forged")
	if saw := backendSaw(t, body); saw.Headers.Get("X-Forwarded-User") != "" {
		t.Fatalf("the refused user reached the error route as signed in: %v", saw.Headers)
	}
	if got := backendSaw(t, body).Headers.Values(defaultAssertionHeader); len(got) != 0 {
		t.Errorf("the error route of a refused user received the client's assertion: %q", got)
	}
}

// With sessions in Redis, an instance reads a session again every
// second; the assertion is found by its content, not signed again.
func TestAssertionWithSessionStore(t *testing.T) {
	rs := startRedis(t)
	s := setupSiteWith(t, siteConfig{
		caddyGlobal: "storage file_system " + t.TempDir(),
		global:      fmt.Sprintf("session_store redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t}", rs.port),
		handler:     "assertion_header",
	})
	b := newBrowser(t)
	first := backendSaw(t, mustGet(t, b, s.origin+"/page")).Headers.Get(defaultAssertionHeader)
	for i := 0; i < 3; i++ {
		advanceClock(t, 2*storeCacheTTL)
		resp, body := b.api("GET", s.origin+"/api")
		if got := backendSaw(t, body).Headers.Get(defaultAssertionHeader); resp.StatusCode != 200 || got != first {
			t.Fatalf("after the store was read again: %d, same assertion %v", resp.StatusCode, got == first)
		}
	}
	if _, err := verifyAssertion(t, s.origin, strings.TrimPrefix(s.origin, "http://"), first); err != nil {
		t.Fatal(err)
	}
}

// Each request gets a header value of its own, even from one batch: a
// handler that rewrites its value in place (request_header ... replace)
// changes no other request's. Run with -race.
func TestAssertionHeaderValuesOwnedPerRequest(t *testing.T) {
	sa := &signedAssertion{jwt: "the-jwt"}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3*headerValuesBatch; i++ {
				v := sa.header()
				if len(v) != 1 || cap(v) != 1 || v[0] != "the-jwt" {
					t.Errorf("value %q (len %d cap %d)", v, len(v), cap(v))
					return
				}
				v[0] = fmt.Sprint("rewritten by ", g) // as request_header replace would
			}
		}()
	}
	wg.Wait()
}

// An identity remembers at most maxAssertionsPerIdentity assertions (one
// per site, scheme and host it is used on), the newest first.
func TestAssertionsRememberedPerIdentity(t *testing.T) {
	a := &assertionSigner{}
	id := &Identity{}
	now := timeNow().UnixNano()
	for i := 0; i < maxAssertionsPerIdentity+2; i++ {
		a.remember(id, &signedAssertion{signer: a, host: fmt.Sprint("host", i), jwt: fmt.Sprint("jwt", i), renewAt: now + int64(time.Minute)}, now)
	}
	// The same host again replaces its entry.
	a.remember(id, &signedAssertion{signer: a, host: "host5", jwt: "jwt5b", renewAt: now + int64(time.Minute)}, now)
	set := id.memo.Load().(*assertionSet)
	var got []string
	for _, sa := range set.items {
		got = append(got, sa.jwt)
	}
	if want := []string{"jwt5b", "jwt4", "jwt3", "jwt2"}; !slices.Equal(got, want) {
		t.Errorf("remembered %v, want %v", got, want)
	}
	// Those due for renewal are dropped.
	a.remember(id, &signedAssertion{signer: a, host: "host9", jwt: "jwt9", renewAt: now + int64(time.Minute)}, now+int64(2*time.Minute))
	if n := len(id.memo.Load().(*assertionSet).items); n != 1 {
		t.Errorf("%d remembered after the others' renewal time", n)
	}
}

// An assertion larger than a header may carry (a user with thousands of
// groups, with session_store where such a session fits) is a clear 500
// and a log line, never a truncated token.
func TestAssertionTooLarge(t *testing.T) {
	rs := startRedis(t)
	s := setupSiteWith(t, siteConfig{
		caddyGlobal: "storage file_system " + t.TempDir(),
		global:      fmt.Sprintf("session_store redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t}", rs.port),
		handler:     "assertion_header\n\t\theader groups off",
		beforeStart: func(idp *testidp.Server) {
			idp.SetUserClaims("alice", map[string]any{"groups": namedGroups(1900)})
		},
	})
	resp, body := newBrowser(t).get(s.origin + "/page")
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "assertion_failed") {
		t.Fatalf("%d %.300s", resp.StatusCode, body)
	}
}

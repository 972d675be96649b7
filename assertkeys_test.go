package authgate

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// Two Caddy processes (built from ./cmd/caddy, as the scale-out tests
// do) started at the same moment on one storage directory: the storage
// lock makes them generate one key, and each verifies the other's
// assertions. caddytest runs one Caddy per test process, so a real second
// instance has to be a child process; the in-process rotation test
// (TestAssertionKeyRotation) covers two gateways in one configuration.
func TestAssertionKeySharedByInstances(t *testing.T) {
	bin, err := caddyBinary()
	if err != nil {
		t.Fatal(err)
	}
	storage := t.TempDir()
	ports := []int{freePort(t), freePort(t)}
	var origins, callbacks []string
	for _, p := range ports {
		o := fmt.Sprintf("http://127.0.0.1:%d", p)
		origins = append(origins, o)
		callbacks = append(callbacks, o+"/oauth2/callback")
	}
	idp := newIDP(t, testidp.Options{}, callbacks...)
	be := newBackend(t)
	dir := t.TempDir()
	var files []string
	for i, p := range ports {
		conf := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	storage file_system %s
	authgate {
		session_keys {env.AUTHGATE_TEST_KEY}
		provider corp {
			issuer %s
			client_id app
			client_secret {env.AUTHGATE_TEST_SECRET}
		}
	}
}
http://127.0.0.1:%d {
	authgate {
		assertion_header
	}
	reverse_proxy %s
}
`, storage, idp.Issuer(), p, be.URL)
		f := filepath.Join(dir, fmt.Sprintf("Caddyfile.%d", i))
		if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// Both at once: neither finds a key, both want to make one.
	for i, f := range files {
		startProcess(t, fmt.Sprintf("caddy instance %d", i), bin, "run", "--config", f, "--adapter", "caddyfile")
	}
	for _, p := range ports {
		waitListening(t, p, "caddy")
	}
	var raws []string
	for _, o := range origins {
		raws = append(raws, backendSaw(t, mustGet(t, newBrowser(t), o+"/page")).Headers.Get(defaultAssertionHeader))
	}
	kids0, kids1 := jwksKids(t, origins[0]), jwksKids(t, origins[1])
	if len(kids0) != 1 || !slices.Equal(kids0, kids1) {
		t.Fatalf("instances publish %v and %v: want one shared key", kids0, kids1)
	}
	for i, raw := range raws {
		if jwtHeader(t, raw)["kid"] != kids0[0] {
			t.Errorf("instance %d signed with %v", i, jwtHeader(t, raw)["kid"])
		}
		// Verified against the other instance's JWKS, with the issuer
		// and audience of the instance that signed it.
		if _, err := verifyAssertionAt(t, origins[1-i], origins[i], strings.TrimPrefix(origins[i], "http://"), raw); err != nil {
			t.Errorf("instance %d's assertion against instance %d's keys: %v", i, 1-i, err)
		}
	}
	var doc storedKeys
	data, err := os.ReadFile(filepath.Join(storage, "authgate", "assertion_keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil || len(doc.Keys) != 1 {
		t.Errorf("storage holds %d keys (%v): two instances made two", len(doc.Keys), err)
	}
}

// Two key rings on one storage, looking at it at the same instant on
// first start, end up with one key: the second to take the lock reads
// what the first wrote instead of writing its own.
func TestAssertionKeyRingsAgreeOnFirstKey(t *testing.T) {
	for round := 0; round < 3; round++ {
		st := &certmagic.FileStorage{Path: t.TempDir()}
		rings := []*keyRing{
			{storage: st, rotate: defaultKeyRotate, grace: defaultKeyGrace, logger: zap.NewNop(), parsed: map[string]*signingKey{}},
			{storage: st, rotate: defaultKeyRotate, grace: defaultKeyGrace, logger: zap.NewNop(), parsed: map[string]*signingKey{}},
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, len(rings))
		for i, kr := range rings {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				errs[i] = kr.maintain(ctx, timeNow())
			}()
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatal(errs)
		}
		now := timeNow()
		if a, b := rings[0].signer(now).kid, rings[1].signer(now).kid; a != b {
			t.Fatalf("round %d: the rings sign with %s and %s", round, a, b)
		}
	}
}

func TestAssertionKeyPlan(t *testing.T) {
	kr := &keyRing{rotate: 10 * time.Hour, grace: 2 * time.Hour}
	now := time.Unix(1_800_000_000, 0)
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	key := func(pemTag string, active time.Duration) storedKey {
		return storedKey{PEM: pemTag, Created: at(active), ActiveFrom: at(active)}
	}
	for _, tc := range []struct {
		name    string
		keys    []storedKey
		want    []string // PEM tags, newest first; "new" for a generated key
		changed bool
		newFrom time.Duration // when the generated key starts signing
	}{
		{"first start", nil, []string{"new"}, true, 0},
		{"young key: nothing to do", []storedKey{key("a", -time.Hour)}, []string{"a"}, false, 0},
		{"rotation due: a new key, published before it signs", []storedKey{key("a", -10*time.Hour)}, []string{"new", "a"}, true, keyPrePublish},
		{"rotation already pending", []storedKey{key("b", 5*time.Minute), key("a", -10*time.Hour)}, []string{"b", "a"}, false, 0},
		{"replaced key within grace", []storedKey{key("a", -3*time.Hour), key("b", -time.Hour)}, []string{"b", "a"}, false, 0},
		{"replaced key past grace", []storedKey{key("b", -3*time.Hour), key("a", -13*time.Hour)}, []string{"b"}, true, 0},
		{"clock went back: the oldest signs, nothing dropped", []storedKey{key("b", 2*time.Hour), key("a", time.Hour)}, []string{"b", "a"}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed, err := kr.plan(&storedKeys{Keys: tc.keys}, now)
			if err != nil {
				t.Fatal(err)
			}
			var tags []string
			for _, k := range got.Keys {
				tag := k.PEM
				if strings.Contains(k.PEM, "PRIVATE KEY") {
					tag = "new"
					if k.ActiveFrom != at(tc.newFrom) {
						t.Errorf("new key signs from %d, want %d", k.ActiveFrom, at(tc.newFrom))
					}
				}
				tags = append(tags, tag)
			}
			if !slices.Equal(tags, tc.want) || changed != tc.changed {
				t.Errorf("keys %v changed %v, want %v %v", tags, changed, tc.want, tc.changed)
			}
		})
	}
}

func TestAssertionJWKSEndpoint(t *testing.T) {
	s, _ := assertionSite(t, "assertion_header", "")
	resp, err := http.Get(s.origin + jwksPath)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=300" || resp.Header.Get("ETag") == "" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if len(set.Keys) != 1 || set.Keys[0].Algorithm != "ES256" || set.Keys[0].Use != "sig" || !set.Keys[0].IsPublic() || set.Keys[0].KeyID == "" {
		t.Fatalf("keys: %+v", set.Keys)
	}
	req, _ := http.NewRequest(http.MethodGet, s.origin+jwksPath, nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d", again.StatusCode)
	}
	post, err := http.Post(s.origin+jwksPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", post.StatusCode)
	}
}

// The auth host (here: a site without assertions of its own, in the same
// gateway) publishes the same keys.
func TestAssertionJWKSUnderAuthHost(t *testing.T) {
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
	authgate
	respond "auth host"
}
%s {
	authgate {
		assertion_header
	}
	reverse_proxy %s
}
`, globalPrelude, t.TempDir(), testKey, authPort, idp.Issuer(), authOrigin, appOrigin, be.URL))
	b := newBrowser(t)
	resp, body := b.get(appOrigin + "/page")
	if resp.StatusCode != 200 {
		t.Fatalf("login through the auth host: %d %s", resp.StatusCode, body)
	}
	raw := backendSaw(t, body).Headers.Get(defaultAssertionHeader)
	appKids, authKids := jwksKids(t, appOrigin), jwksKids(t, authOrigin)
	if len(appKids) != 1 || !slices.Equal(appKids, authKids) || jwtHeader(t, raw)["kid"] != appKids[0] {
		t.Fatalf("app keys %v, auth host keys %v, assertion kid %v", appKids, authKids, jwtHeader(t, raw)["kid"])
	}
	if _, err := verifyAssertion(t, appOrigin, strings.TrimPrefix(appOrigin, "http://"), raw); err != nil {
		t.Fatal(err)
	}
}

func TestAssertionKeyRotation(t *testing.T) {
	// Two sites with settings of their own: two gateways, two key rings,
	// one storage, as two instances would be.
	dir := t.TempDir()
	portA, portB := freePort(t), freePort(t)
	originA := fmt.Sprintf("http://127.0.0.1:%d", portA)
	originB := fmt.Sprintf("http://127.0.0.1:%d", portB)
	idp := newIDP(t, testidp.Options{}, originA+"/oauth2/callback", originB+"/oauth2/callback")
	be := newBackend(t)
	site := func(origin string) string {
		return fmt.Sprintf(`%s {
	authgate {
		assertion_header
		session_keys %s
		assertion_keys {
			rotate 4h
			grace 2h
		}
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
		}
	}
	reverse_proxy %s
}
`, origin, testKey, idp.Issuer(), be.URL)
	}
	startCaddy(t, fmt.Sprintf("{\n\t%s\n\tstorage file_system %s\n}\n%s%s", globalPrelude, dir, site(originA), site(originB)))
	hostA, hostB := strings.TrimPrefix(originA, "http://"), strings.TrimPrefix(originB, "http://")
	a, bb := newBrowser(t), newBrowser(t)
	first := backendSaw(t, mustGet(t, a, originA+"/page")).Headers.Get(defaultAssertionHeader)
	firstB := backendSaw(t, mustGet(t, bb, originB+"/page")).Headers.Get(defaultAssertionHeader)
	k1 := jwtHeader(t, first)["kid"]
	if jwtHeader(t, firstB)["kid"] != k1 {
		t.Fatalf("two gateways on one storage sign with different keys: %v %v", k1, jwtHeader(t, firstB)["kid"])
	}

	// After the rotation interval a new key is published, and signs 10
	// minutes after.
	advanceClock(t, 4*time.Hour+time.Second)
	kids := jwksKids(t, originA)
	if len(kids) != 2 || kids[1] != k1 {
		t.Fatalf("after the rotation interval: keys %v, want a new one and %v", kids, k1)
	}
	k2 := kids[0]
	if got := jwtHeader(t, backendSaw(t, mustGet(t, a, originA+"/page")).Headers.Get(defaultAssertionHeader))["kid"]; got != k1 {
		t.Errorf("the new key signs before it was published for 10 minutes: %v", got)
	}
	// The other gateway sees it at its next look at the storage.
	if kidsB := jwksKids(t, originB); !slices.Equal(kidsB, kids) {
		t.Errorf("second gateway publishes %v, want %v", kidsB, kids)
	}

	advanceClock(t, 10*time.Minute)
	for _, c := range []struct {
		b      *browser
		origin string
		host   string
	}{{a, originA, hostA}, {bb, originB, hostB}} {
		raw := backendSaw(t, mustGet(t, c.b, c.origin+"/page")).Headers.Get(defaultAssertionHeader)
		if got := jwtHeader(t, raw)["kid"]; got != k2 {
			t.Errorf("%s: signed with %v after the new key's start, want %v", c.origin, got, k2)
		}
		if _, err := verifyAssertion(t, c.origin, c.host, raw); err != nil {
			t.Errorf("%s: new key's assertion: %v", c.origin, err)
		}
	}
	// The replaced key stays published for its grace period, then goes.
	if kids := jwksKids(t, originA); len(kids) != 2 {
		t.Errorf("within the grace period: %v", kids)
	}
	advanceClock(t, 2*time.Hour+time.Second)
	if kids := jwksKids(t, originA); !slices.Equal(kids, []string{k2}) {
		t.Errorf("after the grace period: %v, want only %v", kids, k2)
	}
	var doc storedKeys
	data, err := os.ReadFile(filepath.Join(dir, "authgate", "assertion_keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil || len(doc.Keys) != 1 {
		t.Errorf("storage holds %d keys (%v)", len(doc.Keys), err)
	}
}

// writeECKey writes a new P-256 key as PEM and returns it.
func writeECKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAssertionKeyFromPEMFiles(t *testing.T) {
	dir := t.TempDir()
	cur, prev := filepath.Join(dir, "current.pem"), filepath.Join(dir, "previous.pem")
	key := writeECKey(t, cur)
	writeECKey(t, prev)
	s := setupSiteWith(t, siteConfig{
		global:  fmt.Sprintf("assertion_keys {\n\t\t\tfile %s %s\n\t\t}", cur, prev),
		handler: "assertion_header",
	})
	raw := backendSaw(t, mustGet(t, newBrowser(t), s.origin+"/page")).Headers.Get(defaultAssertionHeader)
	// Verified with the PEM's own public key, not with what authgate
	// publishes: the first file signs.
	v := oidc.NewVerifier(s.origin, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{key.Public()}},
		&oidc.Config{ClientID: strings.TrimPrefix(s.origin, "http://"), Now: testNow, SupportedSigningAlgs: []string{"ES256"}})
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("the assertion is not signed by the first key file: %v", err)
	}
	if kids := jwksKids(t, s.origin); len(kids) != 2 {
		t.Errorf("published keys %v: want both files", kids)
	}
}

// provisionHandler provisions the authgate handler from JSON as Caddy
// would, with the given storage, and returns the error.
func provisionHandler(t *testing.T, storageRoot, app, handler string) error {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal([]byte(fmt.Sprintf(`{
		"storage": {"module": "file_system", "root": %q},
		"apps": {"authgate": %s}
	}`, storageRoot, app)), &cfg); err != nil {
		t.Fatal(err)
	}
	ctx, err := caddy.ProvisionContext(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ctx.LoadModuleByID("http.handlers.authgate", json.RawMessage(handler))
	return err
}

func TestAssertionKeyErrorsAtStart(t *testing.T) {
	dir := t.TempDir()
	app := func(extra string) string {
		return `{"session_keys": ["` + testKey + `"], "providers": {"corp": {"client_id": "app",
			"authorize_url": "http://127.0.0.1:9/authorize", "token_url": "http://127.0.0.1:9/token"}}` + extra + `}`
	}
	notAFile := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(notAFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbled := filepath.Join(dir, "garbled")
	if err := os.MkdirAll(filepath.Join(garbled, "authgate"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(garbled, "authgate", "assertion_keys.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	badPEM := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(badPEM, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name, storage, app, want string
	}{
		{"unreadable key file", dir, app(`, "assertion_keys": {"files": ["` + missing + `"]}`), "reading key file " + missing},
		{"no key in the file", dir, app(`, "assertion_keys": {"files": ["` + badPEM + `"]}`), "key file " + badPEM + ": no PEM private key"},
		{"storage that cannot be written", filepath.Join(notAFile, "storage"), app(""), filepath.Join(notAFile, "storage", "authgate", "assertion_keys.json")},
		{"storage holding something else", garbled, app(""), filepath.Join(garbled, "authgate", "assertion_keys.json") + ": not authgate's key file"},
		{"rotation too fast", dir, app(`, "assertion_keys": {"rotate": "10m"}`), "rotate 10m0s is too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := provisionHandler(t, tc.storage, tc.app, `{"assertion_header": "X-Authgate-Assertion"}`)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("no assertions: the storage is never touched", func(t *testing.T) {
		if err := provisionHandler(t, filepath.Join(notAFile, "storage"), app(""), `{}`); err != nil {
			t.Fatal(err)
		}
	})
}

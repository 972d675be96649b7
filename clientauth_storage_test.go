package authgate

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/certmagic"
	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// The client JWKS an operator registers at the provider, and where a
// provider's key is kept in file storage.
const testClientJWKSPath = "/.well-known/authgate/client-jwks.json"

func storedClientKeyFile(storage, provider string) string {
	return filepath.Join(storage, "authgate", "client_keys", provider+".pem")
}

// storageClientCaddyfile is a Caddyfile with file storage at storage and
// one site at origin whose provider corp signs private_key_jwt assertions
// with a key kept in that storage; alg is the client_auth alg line or "".
func storageClientCaddyfile(storage string, idp *testidp.Server, origin, backend, alg string) string {
	if alg != "" {
		alg = "\n\t\t\t\talg " + alg
	}
	return fmt.Sprintf(`{
	%s
	storage file_system %s
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_auth private_key_jwt {
				key storage%s
			}
		}
	}
}
%s {
	authgate
	reverse_proxy %s
}
`, globalPrelude, storage, testKey, idp.Issuer(), alg, origin, backend)
}

// clientJWKS fetches the published client key set.
func clientJWKS(t *testing.T, origin string) *jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(origin + testClientJWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s", testClientJWKSPath, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("client JWKS: %v", err)
	}
	return &set
}

// storageIDP is the test provider before the client is registered: the
// operator registers it with the key set authgate publishes.
func storageIDP(t *testing.T) *testidp.Server {
	return newIDP(t, testidp.Options{
		AssertionAudience: "token_endpoint", RotateRefreshTokens: true,
		Clients: []testidp.Client{{ID: "someone-else", Secret: "unused-secret"}},
	})
}

func registerStorageClient(t *testing.T, idp *testidp.Server, jwks *jose.JSONWebKeySet, origins ...string) {
	t.Helper()
	var redirects []string
	for _, o := range origins {
		redirects = append(redirects, o+"/oauth2/callback")
	}
	if err := idp.AddClient(testidp.Client{ID: "app", AuthMethod: testidp.AuthPrivateKeyJWT, JWKS: jwks, RedirectURIs: redirects}); err != nil {
		t.Fatal(err)
	}
}

// loginAndRefresh signs in at s and has the session refreshed, both token
// requests authenticated by an assertion the provider verifies.
func loginAndRefresh(t *testing.T, s *testSite) {
	t.Helper()
	before, beforeRefresh := s.idp.Count("token:authorization_code"), s.idp.Count("token:refresh_token")
	b := newBrowser(t)
	s.login(t, b)
	if n := s.idp.Count("token:authorization_code") - before; n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}
	advanceClock(t, 6*time.Minute) // the access token (5 minutes) has expired
	if resp, body := b.api("GET", s.origin+"/api/after-expiry"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after expiry: %d %s, want 200 (refreshed)", resp.StatusCode, body)
	}
	if n := s.idp.Count("token:refresh_token") - beforeRefresh; n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
}

// TestClientAuthStorage: `key storage` makes the private_key_jwt key in
// Caddy's storage on first start (RSA for the default RS256, P-256 for
// ES256), publishes its public half as the client JWKS, and the test
// provider, with that key set registered and private_key_jwt the only
// method it accepts, verifies the assertions of the code exchange and the
// refresh.
func TestClientAuthStorage(t *testing.T) {
	for _, tc := range []struct{ name, alg, kty string }{
		{"default_RS256", "", "RSA"},
		{"ES256", "ES256", "EC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storage := t.TempDir()
			idp := storageIDP(t)
			be := newBackend(t)
			port := freePort(t)
			origin := fmt.Sprintf("http://127.0.0.1:%d", port)
			startCaddy(t, storageClientCaddyfile(storage, idp, origin, be.URL, tc.alg))

			jwks := clientJWKS(t, origin)
			if len(jwks.Keys) != 1 {
				t.Fatalf("client JWKS has %d keys, want 1", len(jwks.Keys))
			}
			pub := jwks.Keys[0]
			wantAlg := orDefault(tc.alg, "RS256")
			if !pub.IsPublic() || pub.Algorithm != wantAlg || pub.Use != "sig" {
				t.Errorf("published key: public %v, alg %q, use %q; want a public %s signing key", pub.IsPublic(), pub.Algorithm, pub.Use, wantAlg)
			}
			raw, err := os.ReadFile(storedClientKeyFile(storage, "corp"))
			if err != nil {
				t.Fatalf("the key is not in the storage: %v", err)
			}
			stored, err := parsePrivateKeyPEM(raw)
			if err != nil {
				t.Fatal(err)
			}
			tp, _ := (&jose.JSONWebKey{Key: stored.Public()}).Thumbprint(crypto.SHA256)
			if kid := base64.RawURLEncoding.EncodeToString(tp); pub.KeyID != kid {
				t.Errorf("published kid %q, want the stored key's thumbprint %q", pub.KeyID, kid)
			}
			if kty := map[bool]string{true: "RSA", false: "EC"}[isRSA(stored)]; kty != tc.kty {
				t.Errorf("stored a %s key, want %s", kty, tc.kty)
			}
			if fi, err := os.Stat(storedClientKeyFile(storage, "corp")); err != nil || fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("stored key file mode %v (%v): readable by others", fi.Mode(), err)
			}

			registerStorageClient(t, idp, jwks, origin)
			loginAndRefresh(t, &testSite{port: port, origin: origin, backend: be, idp: idp})
		})
	}
}

func isRSA(k crypto.Signer) bool { _, ok := k.(*rsa.PrivateKey); return ok }

// TestClientAuthStorageShared: a second configuration on the same storage
// (another instance, or the next start) reads the key the first made:
// it publishes the same key set, leaves the stored key as it was, and its
// assertions are accepted by a provider that knows only the key the first
// published.
func TestClientAuthStorageShared(t *testing.T) {
	storage := t.TempDir()
	idp := storageIDP(t)
	be := newBackend(t)
	portA, portB := freePort(t), freePort(t)
	originA, originB := fmt.Sprintf("http://127.0.0.1:%d", portA), fmt.Sprintf("http://127.0.0.1:%d", portB)

	startCaddy(t, storageClientCaddyfile(storage, idp, originA, be.URL, ""))
	jwksA := clientJWKS(t, originA)
	storedA, err := os.ReadFile(storedClientKeyFile(storage, "corp"))
	if err != nil {
		t.Fatal(err)
	}
	registerStorageClient(t, idp, jwksA, originA, originB)
	loginAndRefresh(t, &testSite{port: portA, origin: originA, backend: be, idp: idp})

	startCaddy(t, storageClientCaddyfile(storage, idp, originB, be.URL, ""))
	jwksB := clientJWKS(t, originB)
	a, _ := json.Marshal(jwksA)
	b, _ := json.Marshal(jwksB)
	if !bytes.Equal(a, b) {
		t.Fatalf("the second configuration publishes %s, the first %s: want the same key", b, a)
	}
	if storedB, err := os.ReadFile(storedClientKeyFile(storage, "corp")); err != nil || !bytes.Equal(storedA, storedB) {
		t.Fatalf("the stored key changed at the second start (%v)", err)
	}
	loginAndRefresh(t, &testSite{port: portB, origin: originB, backend: be, idp: idp})
}

// TestClientAuthStorageStartedTogether: gateways starting at the same
// moment on one storage, none finding a key, make one key between them
// (the storage's lock), every one signs with it, and the one that made it
// logs its public key once, for the operator to register.
func TestClientAuthStorageStartedTogether(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	core, logs := observer.New(zap.InfoLevel)
	const n = 4
	kids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			gw, err := newGateway(context.Background(), storage, Settings{
				SessionKeys: []string{testKey},
				Providers: map[string]*ProviderConfig{"corp": {
					ClientID: "app", AuthorizeURL: "http://127.0.0.1:9/authorize", TokenURL: "http://127.0.0.1:9/token",
					Dialect: Dialect{ClientAuth: authPrivateKeyJWT},
					// RSA: making the key takes long enough for every
					// gateway to find none.
					ClientCredentials: &ClientCredentials{KeyStorage: true},
				}},
			}, zap.New(core))
			if errs[i] = err; err != nil {
				return
			}
			var set jose.JSONWebKeySet
			if errs[i] = json.Unmarshal(gw.clientJWKS, &set); errs[i] == nil && len(set.Keys) == 1 {
				kids[i] = set.Keys[0].KeyID
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || kids[i] == "" || kids[i] != kids[0] {
			t.Fatalf("gateway %d: kid %q, error %v; gateway 0: kid %q (want one shared key)", i, kids[i], errs[i], kids[0])
		}
	}
	made := logs.FilterMessageSnippet("private_key_jwt key made in storage").All()
	if len(made) != 1 {
		t.Fatalf("%d log lines about a key made, want 1", len(made))
	}
	var jwk jose.JSONWebKey
	if err := json.Unmarshal([]byte(made[0].ContextMap()["jwk"].(string)), &jwk); err != nil || jwk.KeyID != kids[0] || !jwk.IsPublic() {
		t.Errorf("logged jwk %v (%v): want the public key %s", made[0].ContextMap()["jwk"], err, kids[0])
	}
}

// TestClientAuthStorageBadKey: a stored key that does not parse or does
// not fit alg, or a storage that cannot keep the key, fails the start
// naming the key's place in the storage; a bad stored key is never
// replaced.
func TestClientAuthStorageBadKey(t *testing.T) {
	dir := t.TempDir()
	withKey := func(name string, pemData []byte) string {
		root := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(root, "authgate", "client_keys"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(storedClientKeyFile(root, "corp"), pemData, 0o600); err != nil {
			t.Fatal(err)
		}
		return root
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPEM := keyPEM(t, ecKey)
	smallKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	corrupt := []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
	notAFile := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(notAFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	unwritable := filepath.Join(notAFile, "storage")
	for _, tc := range []struct {
		name, storage, alg, want string
		keep                     []byte
	}{
		{"corrupt", withKey("corrupt", corrupt), "", storedClientKeyFile(filepath.Join(dir, "corrupt"), "corp") + ": PRIVATE KEY does not parse", corrupt},
		{"not PEM", withKey("notpem", []byte("hello")), "", storedClientKeyFile(filepath.Join(dir, "notpem"), "corp") + ": no PEM private key", []byte("hello")},
		{"EC key, RSA algorithm", withKey("ec", ecPEM), "RS256", storedClientKeyFile(filepath.Join(dir, "ec"), "corp") + `: an EC key on P-256 signs ES256, not "RS256"`, ecPEM},
		{"small RSA key", withKey("small", keyPEM(t, smallKey)), "", storedClientKeyFile(filepath.Join(dir, "small"), "corp") + ": RSA keys must have 2048 bits or more", nil},
		{"storage that cannot be written", unwritable, "", storedClientKeyFile(unwritable, "corp"), nil},
		{"algorithm no key is made for", filepath.Join(dir, "hs"), "HS256", `to make a key, not "HS256"`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alg := ""
			if tc.alg != "" {
				alg = "\n alg " + tc.alg
			}
			src := fmt.Sprintf("{\n\t%s\n\tstorage file_system %s\n\tauthgate {\n\t\tsession_keys %s\n\t\tprovider corp {\n\t\t\tissuer https://idp.invalid\n\t\t\tclient_id app\n\t\t\tclient_auth private_key_jwt {\n key storage%s\n}\n\t\t}\n\t}\n}\nhttp://127.0.0.1:%d {\n\tauthgate\n\trespond ok\n}\n", globalPrelude, tc.storage, testKey, alg, freePort(t))
			cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			err = caddy.Load(cfgJSON, true)
			if err == nil {
				t.Fatal("Caddy started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("start error %q does not say %q", err, tc.want)
			}
			if tc.keep != nil {
				if got, _ := os.ReadFile(storedClientKeyFile(tc.storage, "corp")); !bytes.Equal(got, tc.keep) {
					t.Error("the stored key was replaced")
				}
			}
			if tc.name == "algorithm no key is made for" {
				if _, err := os.Stat(storedClientKeyFile(tc.storage, "corp")); err == nil {
					t.Error("a key was stored for an algorithm it cannot serve")
				}
			}
		})
	}
	// The Caddyfile: `key storage` is the storage, `./storage` a file.
	for _, tc := range []struct{ key, want string }{
		{"storage", `"client_credentials":{"key_storage":true}`},
		{"./storage", `"client_credentials":{"key":"./storage"}`},
	} {
		src := "{\n\tauthgate {\n\t\tsession_keys k\n\t\tprovider corp {\n\t\t\tissuer https://idp.invalid\n\t\t\tclient_id app\n\t\t\tclient_auth private_key_jwt {\n key " + tc.key + "\n}\n\t\t}\n\t}\n}\n"
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("key %s adapts to %s (%v), want %s", tc.key, out, err, tc.want)
		}
	}
}

func keyPEM(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	raw, err := os.ReadFile(writeKey(t, t.TempDir(), "k.pem", key))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestClientAuthStorageJWKSEndpoint: the client key set is served to GET
// and HEAD only, cacheable, and only where a provider has a key.
func TestClientAuthStorageJWKSEndpoint(t *testing.T) {
	gw, err := newGateway(context.Background(), &certmagic.FileStorage{Path: t.TempDir()}, Settings{
		SessionKeys: []string{testKey},
		Providers: map[string]*ProviderConfig{"corp": {
			ClientID: "app", AuthorizeURL: "http://127.0.0.1:9/authorize", TokenURL: "http://127.0.0.1:9/token",
			Dialect:           Dialect{ClientAuth: authPrivateKeyJWT},
			ClientCredentials: &ClientCredentials{KeyStorage: true, Algorithm: "ES256"},
		}},
	}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method string
		status int
	}{{"GET", 200}, {"HEAD", 200}, {"POST", 405}} {
		w := httptest.NewRecorder()
		if err := serveClientJWKS(w, httptest.NewRequest(tc.method, testClientJWKSPath, nil), gw.clientJWKS); err != nil {
			t.Fatal(err)
		}
		if w.Code != tc.status {
			t.Errorf("%s: %d, want %d", tc.method, w.Code, tc.status)
		}
		if tc.status == 200 && !strings.HasPrefix(w.Header().Get("Cache-Control"), "public, max-age=") {
			t.Errorf("%s: Cache-Control %q", tc.method, w.Header().Get("Cache-Control"))
		}
	}
	plain, err := newGateway(context.Background(), nil, Settings{
		SessionKeys: []string{testKey},
		Providers:   map[string]*ProviderConfig{"corp": {ClientID: "app", ClientSecret: "s", AuthorizeURL: "http://127.0.0.1:9/a", TokenURL: "http://127.0.0.1:9/t"}},
	}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if plain.clientJWKS != nil {
		t.Errorf("a gateway without private_key_jwt publishes %s", plain.clientJWKS)
	}
}

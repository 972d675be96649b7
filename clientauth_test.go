package authgate

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// writePEM writes a PEM block to a file in dir and returns its path.
func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeKey(t *testing.T, dir, name string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name, "PRIVATE KEY", der)
}

// clientAuthSite is a site whose provider client authenticates with one
// method, and the test provider accepting only that one.
type clientAuthSite struct {
	*testSite
	providerLines string
}

// startClientAuth starts the test provider with client (its redirect URI
// filled in), and Caddy with a provider block of lines.
func startClientAuth(t *testing.T, opts testidp.Options, client testidp.Client, tls bool, lines func(idp *testidp.Server) string) *clientAuthSite {
	t.Helper()
	port := freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	client.RedirectURIs = []string{origin + "/oauth2/callback"}
	opts.Clients = []testidp.Client{client}
	opts.RotateRefreshTokens = true
	idp := newIDP(t, opts)
	if tls {
		if err := idp.StartTLS(); err != nil {
			t.Fatal(err)
		}
	}
	be := newBackend(t)
	pl := lines(idp)
	startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id %s
			%s
		}
	}
}
%s {
	authgate
	reverse_proxy %s
}
`, globalPrelude, testKey, idp.Issuer(), client.ID, pl, origin, be.URL))
	return &clientAuthSite{testSite: &testSite{port: port, origin: origin, backend: be, idp: idp}, providerLines: pl}
}

const jwtClientSecret = "client-secret-jwt-of-more-than-32-bytes-0123456789"

// TestClientAuthMethods: private_key_jwt (RSA and EC keys, the token
// endpoint or the issuer as audience), client_secret_jwt and
// tls_client_auth, each the only method the test provider accepts for the
// client and verified by it for real (signature, aud, exp, a jti never
// seen before; the certificate's chain and subject), for the code
// exchange, the refresh, the revocation at logout and introspection.
func TestClientAuthMethods(t *testing.T) {
	dir := t.TempDir()
	rsaKey, err := testidp.GenerateClientKey("RS256")
	if err != nil {
		t.Fatal(err)
	}
	rsaPath := writeKey(t, dir, "rsa.pem", rsaKey.Signer)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPath := writeKey(t, dir, "ec.pem", ecKey)
	// authgate's default kid is the RFC 7638 thumbprint.
	tp, _ := (&jose.JSONWebKey{Key: ecKey.Public()}).Thumbprint(crypto.SHA256)
	ecJWKS := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ecKey.Public(), KeyID: base64.RawURLEncoding.EncodeToString(tp), Algorithm: "ES256", Use: "sig"}}}
	const dn = "CN=authgate-test,O=Example"

	for _, tc := range []struct {
		name     string
		opts     testidp.Options
		client   testidp.Client
		tls      bool
		lines    func(idp *testidp.Server) string
		introURL func(idp *testidp.Server) string
	}{
		{
			name:   "private_key_jwt_rsa",
			opts:   testidp.Options{AssertionAudience: "token_endpoint"},
			client: testidp.Client{ID: "app", AuthMethod: testidp.AuthPrivateKeyJWT, JWKS: rsaKey.JWKS()},
			lines: func(*testidp.Server) string {
				return "client_auth private_key_jwt {\n\t\t\t\tkey " + rsaPath + "\n\t\t\t\tkey_id " + rsaKey.KID + "\n\t\t\t}"
			},
		},
		{
			name:   "private_key_jwt_ec_issuer_audience",
			opts:   testidp.Options{AssertionAudience: "issuer"},
			client: testidp.Client{ID: "app", AuthMethod: testidp.AuthPrivateKeyJWT, JWKS: ecJWKS},
			lines: func(*testidp.Server) string {
				return "client_auth private_key_jwt {\n\t\t\t\tkey " + ecPath + "\n\t\t\t\talg ES256\n\t\t\t\taudience issuer\n\t\t\t}"
			},
		},
		{
			name:   "client_secret_jwt",
			opts:   testidp.Options{AssertionAudience: "token_endpoint"},
			client: testidp.Client{ID: "app", Secret: jwtClientSecret, AuthMethod: testidp.AuthClientSecretJWT},
			lines: func(*testidp.Server) string {
				return "client_secret " + jwtClientSecret + "\n\t\t\tclient_auth client_secret_jwt"
			},
		},
		{
			name:   "tls_client_auth",
			client: testidp.Client{ID: "app", AuthMethod: testidp.AuthTLSClientAuth, TLSClientAuthSubjectDN: dn},
			tls:    true,
			lines: func(idp *testidp.Server) string {
				cert, err := idp.IssueClientCertificate(pkix.Name{CommonName: "authgate-test", Organization: []string{"Example"}})
				if err != nil {
					t.Fatal(err)
				}
				// Not .crt and .key: caddytest rewrites such paths.
				certPath := writePEM(t, dir, "client-cert.pem", "CERTIFICATE", cert.Certificate[0])
				keyPath := writeKey(t, dir, "client-key.pem", cert.PrivateKey.(crypto.Signer))
				caPath := filepath.Join(dir, "ca.pem")
				if err := os.WriteFile(caPath, idp.CACertificatePEM(), 0o600); err != nil {
					t.Fatal(err)
				}
				return "client_auth tls_client_auth {\n\t\t\t\tcertificate " + certPath + "\n\t\t\t\tcertificate_key " + keyPath + "\n\t\t\t}\n\t\t\ttls_trusted_ca " + caPath
			},
			introURL: func(idp *testidp.Server) string { return idp.TLSURL() + testidp.PathIntrospect },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startClientAuth(t, tc.opts, tc.client, tc.tls, tc.lines)
			b := newBrowser(t)
			s.login(t, b)
			if n := s.idp.Count("token:authorization_code"); n != 1 {
				t.Fatalf("%d code exchanges, want 1", n)
			}
			// Refresh: the access token (5 minutes) has expired.
			advanceClock(t, 6*time.Minute)
			if resp, body := b.api("GET", s.origin+"/api/after-expiry"); resp.StatusCode != http.StatusOK {
				t.Fatalf("after expiry: %d %s, want 200 (refreshed)", resp.StatusCode, body)
			}
			if n := s.idp.Count("token:refresh_token"); n != 1 {
				t.Errorf("%d refreshes, want 1", n)
			}
			sess := mustOpenSession(t, jarSession(t, b, s.origin), testKey)
			if sess.RefreshToken == "" {
				t.Fatal("the session has no refresh token")
			}
			// Introspection, with the provider's own client as the gateway
			// builds it.
			introURL := s.idp.Issuer() + testidp.PathIntrospect
			if tc.introURL != nil {
				introURL = tc.introURL(s.idp)
			}
			if active := introspectWith(t, s.idp.Issuer(), tc.client.ID, s.providerLines, introURL, sess.RefreshToken); active != true {
				t.Errorf("introspection of the refresh token: active %v, want true", active)
			}
			// Logout revokes the refresh token, authenticated the same way.
			if resp, _ := b.api("GET", s.origin+"/oauth2/logout"); resp.StatusCode != http.StatusFound {
				t.Errorf("logout: %d", resp.StatusCode)
			}
			if !s.idp.IsRevoked(sess.RefreshToken) {
				t.Error("the refresh token was not revoked at logout")
			}
		})
	}
}

// introspectWith builds the provider as authgate does from the provider
// block lines and introspects token with its client: the request any
// introspection code of authgate sends goes through the same transport.
func introspectWith(t *testing.T, issuer, clientID, lines, introURL, token string) any {
	t.Helper()
	src := fmt.Sprintf("{\n\tauthgate {\n\t\tsession_keys %s\n\t\tprovider corp {\n\t\t\tissuer %s\n\t\t\tclient_id %s\n\t\t\t%s\n\t\t}\n\t}\n}\nexample.com {\n\trespond ok\n}\n", testKey, issuer, clientID, lines)
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			Authgate App `json:"authgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	p, err := newProvider("corp", *cfg.Apps.Authgate.Providers["corp"], zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.state(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := st.client.postForm(context.Background(), introURL, url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &m) != nil {
		t.Fatalf("introspection: %d %s", resp.StatusCode, body)
	}
	return m["active"]
}

// TestClientAssertion: every assertion is fresh (jti), short (one
// minute), names the client and the audience, and carries the kid.
func TestClientAssertion(t *testing.T) {
	dir := t.TempDir()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	path := writeKey(t, dir, "k.pem", key)
	ca, err := newClientAuth(authPrivateKeyJWT, "app", "", &ClientCredentials{Key: path, KeyID: "k1"},
		func() string { return "https://idp.test/token" }, func() string { return "https://idp.test" })
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 3 {
		raw, err := ca.assertion()
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		if kid := tok.Signatures[0].Header.KeyID; kid != "k1" {
			t.Errorf("kid %q, want k1", kid)
		}
		payload, err := tok.Verify(&key.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Iss, Sub, Aud, Jti string
			Iat, Exp           int64
		}
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatal(err)
		}
		if c.Iss != "app" || c.Sub != "app" || c.Aud != "https://idp.test/token" || c.Exp-c.Iat != 60 || c.Jti == "" || seen[c.Jti] {
			t.Errorf("assertion claims %+v: want iss = sub = app, aud the token endpoint, exp a minute after iat, a new jti", c)
		}
		seen[c.Jti] = true
	}
}

// TestClientAuthBadCredentials: a key or certificate that cannot be used
// fails the start, naming the file.
func TestClientAuthBadCredentials(t *testing.T) {
	dir := t.TempDir()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaPath := writeKey(t, dir, "rsa.pem", rsaKey)
	smallKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallPath := writeKey(t, dir, "small.pem", smallKey)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPath := writeKey(t, dir, "ec.pem", ecKey)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"), 0o600)
	notPEM := filepath.Join(dir, "notpem.txt")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	certOnly := writePEM(t, dir, "cert.pem", "CERTIFICATE", []byte("x"))
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name, lines, want string
	}{
		{"missing file", "client_auth private_key_jwt {\n key " + missing + "\n}", missing},
		{"not PEM", "client_auth private_key_jwt {\n key " + notPEM + "\n}", "key " + notPEM + ": no PEM private key in the file"},
		{"does not parse", "client_auth private_key_jwt {\n key " + garbage + "\n}", "key " + garbage + ": PRIVATE KEY does not parse"},
		{"RSA key, EC algorithm", "client_auth private_key_jwt {\n key " + rsaPath + "\n alg ES256\n}", "key " + rsaPath + `: an RSA key signs RS256, RS384, RS512, PS256, PS384 or PS512, not "ES256"`},
		{"EC key, another curve's algorithm", "client_auth private_key_jwt {\n key " + ecPath + "\n alg ES384\n}", "key " + ecPath + `: an EC key on P-256 signs ES256, not "ES384"`},
		{"small RSA key", "client_auth private_key_jwt {\n key " + smallPath + "\n}", "key " + smallPath + ": RSA keys must have 2048 bits or more"},
		{"short secret for client_secret_jwt", "client_secret short-secret\nclient_auth client_secret_jwt", "HS256 needs a client secret of at least 32 bytes"},
		{"certificate that does not parse", "client_auth tls_client_auth {\n certificate " + certOnly + "\n certificate_key " + ecPath + "\n}", "certificate " + certOnly + " with key " + ecPath},
		{"CA file without certificates", "tls_trusted_ca " + notPEM, "tls_trusted_ca " + notPEM + ": no PEM certificate"},
		{"bad audience", "client_auth private_key_jwt {\n key " + rsaPath + "\n audience somewhere\n}", `audience must be token_endpoint, issuer or a URL, not "somewhere"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := fmt.Sprintf("{\n\t%s\n\tauthgate {\n\t\tsession_keys %s\n\t\tprovider corp {\n\t\t\tissuer https://idp.invalid\n\t\t\tclient_id app\n\t\t\t%s\n\t\t}\n\t}\n}\nhttp://127.0.0.1:%d {\n\tauthgate\n\trespond ok\n}\n", globalPrelude, testKey, tc.lines, freePort(t))
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
		})
	}
	// The Caddyfile refuses what it can see.
	for _, tc := range []struct{ lines, want string }{
		{"client_auth private_key_jwt", "client_auth private_key_jwt needs key"},
		{"client_auth tls_client_auth {\n certificate a\n}", "needs certificate <PEM file> and certificate_key"},
		{"client_auth basic {\n key a\n}", "client_auth basic takes no block"},
		{"client_auth private_key_jwt {\n key a\n key b\n}", "client_auth key may be given only once"},
		{"client_auth private_key_jwt {\n pin a\n}", "unrecognized client_auth subdirective pin"},
	} {
		src := "{\n\tauthgate {\n\t\tsession_keys k\n\t\tprovider corp {\n\t\t\tissuer https://idp.invalid\n\t\t\tclient_id app\n\t\t\t" + tc.lines + "\n\t\t}\n\t}\n}\n"
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.lines, err, tc.want)
		}
	}
}

package testidp

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

const jwtSecret = "a-client-secret-of-at-least-32-bytes!"

// postForm sends a form to an endpoint of idp (relative to base, the
// issuer or its mTLS alias) with optional Basic credentials.
func postForm(t *testing.T, c *http.Client, endpoint string, form url.Values, basic ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// probeEndpoints are the client endpoints with a request that succeeds
// exactly when the client is authenticated.
func probeEndpoints(base string) []struct {
	name, url string
	form      url.Values
	ok        func(int, map[string]any) bool
} {
	return []struct {
		name, url string
		form      url.Values
		ok        func(int, map[string]any) bool
	}{
		{"token", base + PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"unknown"}},
			func(st int, m map[string]any) bool { return st == 400 && m["error"] == "invalid_grant" }},
		{"revoke", base + PathRevoke, url.Values{"token": {"unknown"}},
			func(st int, m map[string]any) bool { return st == 200 }},
		{"introspect", base + PathIntrospect, url.Values{"token": {"unknown"}},
			func(st int, m map[string]any) bool { return st == 200 && m["active"] == false }},
		{"par", base + PathPAR, url.Values{"response_type": {"code"}, "redirect_uri": {testRedirect}, "scope": {"openid"},
			"code_challenge": {s256(strings.Repeat("v", 43))}, "code_challenge_method": {"S256"}},
			func(st int, m map[string]any) bool { return st == 201 && m["request_uri"] != nil }},
	}
}

func withForm(base url.Values, extra url.Values) url.Values {
	out := url.Values{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func assertionForm(assertion string) url.Values {
	return url.Values{"client_assertion_type": {ClientAssertionType}, "client_assertion": {assertion}}
}

func TestClientAssertions(t *testing.T) {
	rsaKey, err := GenerateClientKey("RS256")
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := GenerateClientKey("ES256")
	otherKey, _ := GenerateClientKey("RS256")
	keys := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{rsaKey.PublicJWK(), ecKey.PublicJWK()}}
	f := setup(t, Options{AutoLogin: "alice", Clients: []Client{
		{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}},
		{ID: "hs", Secret: jwtSecret, AuthMethod: AuthClientSecretJWT, RedirectURIs: []string{testRedirect}},
		{ID: "pk", JWKS: keys, AuthMethod: AuthPrivateKeyJWT, RedirectURIs: []string{testRedirect}},
	}})
	iss := f.idp.Issuer()
	type signer func(map[string]any) string
	hs := func(c map[string]any) string { return SignHS256(c, jwtSecret) }
	signers := []struct {
		name, client string
		sign         signer
		wrongSig     signer
	}{
		{"client_secret_jwt", "hs", hs, func(c map[string]any) string { return SignHS256(c, jwtSecret+"x") }},
		{"private_key_jwt RS256", "pk", rsaKey.Sign, func(c map[string]any) string {
			return (&ClientKey{Alg: "RS256", KID: rsaKey.KID, Signer: otherKey.Signer}).Sign(c)
		}},
		{"private_key_jwt ES256", "pk", ecKey.Sign, func(c map[string]any) string {
			k, _ := GenerateClientKey("ES256")
			k.KID = ecKey.KID
			return k.Sign(c)
		}},
	}
	for _, sg := range signers {
		t.Run(sg.name, func(t *testing.T) {
			cases := []struct {
				name string
				mod  func(c map[string]any) string // returns the assertion
				ok   bool
			}{
				{"valid", func(c map[string]any) string { return sg.sign(c) }, true},
				{"aud issuer", func(c map[string]any) string { c["aud"] = iss; return sg.sign(c) }, true},
				{"aud array", func(c map[string]any) string { c["aud"] = []string{"x", iss + PathToken}; return sg.sign(c) }, true},
				{"aud endpoint itself", nil, true}, // set per endpoint below
				{"wrong aud", func(c map[string]any) string { c["aud"] = "https://other.example/token"; return sg.sign(c) }, false},
				{"aud with trailing slash", func(c map[string]any) string { c["aud"] = iss + "/"; return sg.sign(c) }, false},
				{"bad signature", func(c map[string]any) string { return sg.wrongSig(c) }, false},
				{"alg none", func(c map[string]any) string {
					return encodeJWS(map[string]any{"alg": "none"}, c, nil)
				}, false},
				{"expired", func(c map[string]any) string { c["exp"] = time.Now().Add(-time.Second).Unix(); return sg.sign(c) }, false},
				{"exp too far", func(c map[string]any) string { c["exp"] = time.Now().Add(10 * time.Minute).Unix(); return sg.sign(c) }, false},
				{"no exp", func(c map[string]any) string { delete(c, "exp"); return sg.sign(c) }, false},
				{"no jti", func(c map[string]any) string { delete(c, "jti"); return sg.sign(c) }, false},
				{"not yet valid", func(c map[string]any) string { c["nbf"] = time.Now().Add(time.Minute).Unix(); return sg.sign(c) }, false},
				{"sub differs", func(c map[string]any) string { c["sub"] = "someone"; return sg.sign(c) }, false},
				{"iss of another client", func(c map[string]any) string { c["iss"], c["sub"] = testClientID, testClientID; return sg.sign(c) }, false},
			}
			for _, ep := range probeEndpoints(iss) {
				for _, c := range cases {
					t.Run(ep.name+"/"+c.name, func(t *testing.T) {
						claims := f.idp.ClientAssertionClaims(sg.client)
						var assertion string
						if c.mod == nil {
							claims["aud"] = ep.url
							assertion = sg.sign(claims)
						} else {
							assertion = c.mod(claims)
						}
						st, m := postForm(t, http.DefaultClient, ep.url, withForm(ep.form, assertionForm(assertion)))
						if c.ok != ep.ok(st, m) {
							t.Fatalf("%d %v", st, m)
						}
						if !c.ok && (st != 401 || m["error"] != "invalid_client") {
							t.Fatalf("want 401 invalid_client, got %d %v", st, m)
						}
					})
				}
				t.Run(ep.name+"/replayed jti", func(t *testing.T) {
					assertion := sg.sign(f.idp.ClientAssertionClaims(sg.client))
					if st, m := postForm(t, http.DefaultClient, ep.url, withForm(ep.form, assertionForm(assertion))); !ep.ok(st, m) {
						t.Fatalf("first use: %d %v", st, m)
					}
					if st, m := postForm(t, http.DefaultClient, ep.url, withForm(ep.form, assertionForm(assertion))); st != 401 || m["error"] != "invalid_client" {
						t.Fatalf("replay: %d %v", st, m)
					}
				})
			}
		})
	}

	t.Run("request errors", func(t *testing.T) {
		tokenURL := iss + PathToken
		probe := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"unknown"}}
		cases := []struct {
			name  string
			form  url.Values
			basic []string
			want  string
		}{
			{"client_id mismatch", withForm(assertionForm(hs(f.idp.ClientAssertionClaims("hs"))), url.Values{"client_id": {"pk"}}), nil, "invalid_request"},
			{"assertion and Basic", assertionForm(hs(f.idp.ClientAssertionClaims("hs"))), []string{"hs", jwtSecret}, "invalid_request"},
			{"assertion and client_secret", withForm(assertionForm(hs(f.idp.ClientAssertionClaims("hs"))), url.Values{"client_secret": {jwtSecret}}), nil, "invalid_request"},
			{"wrong assertion type", url.Values{"client_assertion_type": {"urn:x"}, "client_assertion": {hs(f.idp.ClientAssertionClaims("hs"))}}, nil, "invalid_request"},
			{"no assertion", url.Values{"client_assertion_type": {ClientAssertionType}}, nil, "invalid_request"},
			{"HS256 for a private_key_jwt client", assertionForm(SignHS256(f.idp.ClientAssertionClaims("pk"), jwtSecret)), nil, "invalid_client"},
			{"unknown kid", assertionForm((&ClientKey{Alg: "RS256", KID: "nope", Signer: rsaKey.Signer}).Sign(f.idp.ClientAssertionClaims("pk"))), nil, "invalid_client"},
			{"Basic for a client_secret_jwt client", nil, []string{"hs", jwtSecret}, "invalid_client"},
			{"client_secret_post for a client_secret_jwt client", url.Values{"client_id": {"hs"}, "client_secret": {jwtSecret}}, nil, "invalid_client"},
			{"private_key_jwt client without assertion", url.Values{"client_id": {"pk"}}, nil, "invalid_client"},
			{"assertion for a client_secret_basic client", assertionForm(SignHS256(f.idp.ClientAssertionClaims(testClientID), testSecret)), nil, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				st, m := postForm(t, http.DefaultClient, tokenURL, withForm(probe, c.form), c.basic...)
				if c.want == "" {
					// Without AuthMethod a secret allows client_secret_jwt too.
					if st != 400 || m["error"] != "invalid_grant" {
						t.Fatalf("%d %v", st, m)
					}
					return
				}
				if m["error"] != c.want {
					t.Fatalf("%d %v", st, m)
				}
			})
		}
	})

	t.Run("code flow with private_key_jwt", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		cfg := f.cfg
		cfg.ClientID, cfg.ClientSecret = "pk", ""
		q := callback(t, f.get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v))))
		st, m := postForm(t, http.DefaultClient, iss+PathToken, withForm(url.Values{
			"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {testRedirect}, "code_verifier": {v},
		}, assertionForm(ecKey.Sign(f.idp.ClientAssertionClaims("pk")))))
		if st != 200 || m["id_token"] == nil {
			t.Fatalf("%d %v", st, m)
		}
		if aud := claimsOf(t, m["id_token"].(string))["aud"]; aud != "pk" {
			t.Fatalf("aud %v", aud)
		}
		st, m = postForm(t, http.DefaultClient, iss+PathToken, withForm(url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)},
		}, assertionForm(rsaKey.Sign(f.idp.ClientAssertionClaims("pk")))))
		if st != 200 {
			t.Fatalf("refresh: %d %v", st, m)
		}
	})

	t.Run("discovery", func(t *testing.T) {
		var meta struct {
			Methods []string `json:"token_endpoint_auth_methods_supported"`
			Algs    []string `json:"token_endpoint_auth_signing_alg_values_supported"`
		}
		f.provider.Claims(&meta)
		if strings.Join(meta.Methods, " ") != "client_secret_basic client_secret_post client_secret_jwt private_key_jwt none" ||
			strings.Join(meta.Algs, " ") != "HS256 RS256 ES256" {
			t.Fatalf("%+v", meta)
		}
	})
}

func TestAssertionAudienceOption(t *testing.T) {
	for _, c := range []struct {
		opt               string
		issuerOK, tokenOK bool
	}{
		{"", true, true},
		{"issuer", true, false},
		{"token_endpoint", false, true},
	} {
		t.Run("AssertionAudience="+c.opt, func(t *testing.T) {
			f := setup(t, Options{AssertionAudience: c.opt, Clients: []Client{{ID: "hs", Secret: jwtSecret, AuthMethod: AuthClientSecretJWT}}})
			for aud, want := range map[string]bool{f.idp.Issuer(): c.issuerOK, f.idp.Issuer() + PathToken: c.tokenOK, f.idp.Issuer() + PathIntrospect: c.opt == ""} {
				claims := f.idp.ClientAssertionClaims("hs")
				claims["aud"] = aud
				st, m := postForm(t, http.DefaultClient, f.idp.Issuer()+PathIntrospect, withForm(url.Values{"token": {"x"}}, assertionForm(SignHS256(claims, jwtSecret))))
				if (st == 200) != want {
					t.Errorf("aud %s: %d %v", aud, st, m)
				}
			}
		})
	}
	if _, err := New(Options{AssertionAudience: "both"}); err == nil {
		t.Fatal("bad AssertionAudience accepted")
	}
}

func TestAuthMethodRestriction(t *testing.T) {
	f := setup(t, Options{Clients: []Client{
		{ID: "basic", Secret: testSecret, AuthMethod: AuthClientSecretBasic},
		{ID: "post", Secret: testSecret, AuthMethod: AuthClientSecretPost},
	}})
	probe := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"unknown"}}
	tokenURL := f.idp.Issuer() + PathToken
	cases := []struct {
		name  string
		form  url.Values
		basic []string
		ok    bool
	}{
		{"basic with Basic", nil, []string{"basic", testSecret}, true},
		{"basic with client_secret_post", url.Values{"client_id": {"basic"}, "client_secret": {testSecret}}, nil, false},
		{"post with client_secret_post", url.Values{"client_id": {"post"}, "client_secret": {testSecret}}, nil, true},
		{"post with Basic", nil, []string{"post", testSecret}, false},
		{"post with client_secret_jwt", assertionForm(SignHS256(f.idp.ClientAssertionClaims("post"), testSecret)), nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, m := postForm(t, http.DefaultClient, tokenURL, withForm(probe, c.form), c.basic...)
			if ok := st == 400 && m["error"] == "invalid_grant"; ok != c.ok {
				t.Fatalf("%d %v", st, m)
			}
			if !c.ok && (st != 401 || m["error"] != "invalid_client") {
				t.Fatalf("%d %v", st, m)
			}
		})
	}
	for _, bad := range []Client{
		{ID: "x", AuthMethod: "client_secret_magic", Secret: "s"},
		{ID: "x", AuthMethod: AuthClientSecretJWT},
		{ID: "x", AuthMethod: AuthPrivateKeyJWT},
		{ID: "x", AuthMethod: AuthTLSClientAuth},
		{ID: "x", AuthMethod: AuthNone, Secret: "s"},
		{ID: "x", JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("symmetric"), KeyID: "k"}}}},
	} {
		if err := f.idp.AddClient(bad); err == nil {
			t.Errorf("client %+v accepted", bad)
		}
	}
}

func TestTLSClientAuth(t *testing.T) {
	extraCA, err := newTestCA()
	if err != nil {
		t.Fatal(err)
	}
	const dn = "CN=mtls-client,O=Example"
	f := setup(t, Options{AutoLogin: "alice", TLSClientCAs: []*x509.Certificate{extraCA.cert}, Clients: []Client{
		{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}},
		{ID: "mtls", TLSClientAuthSubjectDN: dn, AuthMethod: AuthTLSClientAuth, RedirectURIs: []string{testRedirect}},
	}})
	if err := f.idp.StartTLS(); err != nil {
		t.Fatal(err)
	}
	if err := f.idp.StartTLS(); err == nil {
		t.Fatal("second StartTLS")
	}
	alias := f.idp.TLSURL()
	if !strings.HasPrefix(alias, "https://127.0.0.1:") || f.idp.Issuer() == alias {
		t.Fatalf("TLS URL %q issuer %q", alias, f.idp.Issuer())
	}

	subject := pkix.Name{CommonName: "mtls-client", Organization: []string{"Example"}}
	if subject.String() != dn {
		t.Fatalf("subject %q", subject.String())
	}
	good, err := f.idp.IssueClientCertificate(subject)
	if err != nil {
		t.Fatal(err)
	}
	wrongDN, _ := f.idp.IssueClientCertificate(pkix.Name{CommonName: "someone-else", Organization: []string{"Example"}})
	fromExtraCA, _ := extraCA.issue(&x509.Certificate{Subject: subject, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	untrustedCA, _ := newTestCA()
	untrusted, _ := untrustedCA.issue(&x509.Certificate{Subject: subject, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})

	var meta struct {
		Methods []string          `json:"token_endpoint_auth_methods_supported"`
		Aliases map[string]string `json:"mtls_endpoint_aliases"`
	}
	f.provider.Claims(&meta) // cached at setup, before StartTLS
	p := fetchDiscovery(t, f.idp.Issuer())
	json.Unmarshal(p, &meta)
	if !strings.Contains(strings.Join(meta.Methods, " "), AuthTLSClientAuth) ||
		meta.Aliases["token_endpoint"] != alias+PathToken || meta.Aliases["introspection_endpoint"] != alias+PathIntrospect ||
		meta.Aliases["revocation_endpoint"] != alias+PathRevoke || meta.Aliases["pushed_authorization_request_endpoint"] != alias+PathPAR {
		t.Fatalf("discovery %+v", meta)
	}

	mtlsForm := url.Values{"client_id": {"mtls"}}
	for _, ep := range probeEndpoints(alias) {
		cases := []struct {
			name   string
			cert   *tls.Certificate
			ok     bool
			tlsErr bool
		}{
			{"matching certificate", &good, true, false},
			{"certificate from Options.TLSClientCAs", &fromExtraCA, true, false},
			{"wrong subject DN", &wrongDN, false, false},
			{"no certificate", nil, false, false},
			{"untrusted certificate", &untrusted, false, true},
		}
		for _, c := range cases {
			t.Run(ep.name+"/"+c.name, func(t *testing.T) {
				client := f.idp.TLSClient(c.cert)
				req, _ := http.NewRequest(http.MethodPost, ep.url, strings.NewReader(withForm(ep.form, mtlsForm).Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := client.Do(req)
				if c.tlsErr {
					if err == nil {
						resp.Body.Close()
						t.Fatalf("untrusted certificate: status %d", resp.StatusCode)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var m map[string]any
				json.NewDecoder(resp.Body).Decode(&m)
				if ep.ok(resp.StatusCode, m) != c.ok {
					t.Fatalf("%d %v", resp.StatusCode, m)
				}
				if !c.ok && (resp.StatusCode != 401 || m["error"] != "invalid_client") {
					t.Fatalf("%d %v", resp.StatusCode, m)
				}
			})
		}
	}
	t.Run("plain HTTP", func(t *testing.T) {
		st, m := postForm(t, http.DefaultClient, f.idp.Issuer()+PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}, "client_id": {"mtls"}})
		if st != 401 || m["error"] != "invalid_client" {
			t.Fatalf("%d %v", st, m)
		}
	})
	t.Run("other clients unaffected by a certificate", func(t *testing.T) {
		st, m := postForm(t, f.idp.TLSClient(&good), alias+PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}, testClientID, testSecret)
		if st != 400 || m["error"] != "invalid_grant" {
			t.Fatalf("%d %v", st, m)
		}
	})
	t.Run("code flow", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		cfg := f.cfg
		cfg.ClientID, cfg.ClientSecret = "mtls", ""
		q := callback(t, f.get(cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v))))
		st, m := postForm(t, f.idp.TLSClient(&good), alias+PathToken, url.Values{
			"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {testRedirect}, "code_verifier": {v}, "client_id": {"mtls"},
		})
		if st != 200 {
			t.Fatalf("%d %v", st, m)
		}
		if c := claimsOf(t, m["id_token"].(string)); c["iss"] != f.idp.Issuer() || c["aud"] != "mtls" {
			t.Fatalf("claims %v", c)
		}
	})
}

func fetchDiscovery(t *testing.T, issuer string) []byte {
	t.Helper()
	resp, err := http.Get(issuer + PathDiscovery)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return []byte(body(t, resp))
}

func TestStartTLSAsIssuer(t *testing.T) {
	idp, err := New(Options{Users: DemoUsers(), AutoLogin: "alice", Clients: []Client{{ID: testClientID, Secret: testSecret, RedirectURIs: []string{testRedirect}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.StartTLS(); err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	if idp.Issuer() != idp.TLSURL() {
		t.Fatalf("issuer %q", idp.Issuer())
	}
	resp, err := idp.TLSClient(nil).Get(idp.Issuer() + PathDiscovery)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var meta map[string]any
	json.NewDecoder(resp.Body).Decode(&meta)
	if meta["issuer"] != idp.Issuer() || meta["mtls_endpoint_aliases"] != nil {
		t.Fatalf("%v", meta)
	}
}

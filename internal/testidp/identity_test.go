package testidp

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// verifySignature checks a JWT against the published JWKS only (no claim
// checks), so that tests of claim faults know the signature is good.
func (f *fixture) verifySignature(raw string) error {
	_, err := oidc.NewRemoteKeySet(f.ctx, f.idp.Issuer()+PathJWKS).VerifySignature(f.ctx, raw)
	return err
}

func TestIDTokenATHash(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	refresh := func(rt string) map[string]any {
		t.Helper()
		st, m := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if st != 200 {
			t.Fatalf("refresh: %d %v", st, m)
		}
		return m
	}
	tok := f.login()
	cases := []struct {
		name   string
		access string
		id     string
	}{
		{"code exchange", tok.AccessToken, tok.Extra("id_token").(string)},
	}
	m := refresh(tok.RefreshToken)
	cases = append(cases, struct{ name, access, id string }{"refresh", m["access_token"].(string), m["id_token"].(string)})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := claimsOf(t, c.id)["at_hash"]; got != atHash(c.access) {
				t.Fatalf("at_hash %v, want %s", got, atHash(c.access))
			}
			idt, err := f.provider.Verifier(&oidc.Config{ClientID: testClientID, SkipExpiryCheck: true}).Verify(f.ctx, c.id)
			if err != nil {
				t.Fatal(err)
			}
			if err := idt.VerifyAccessToken(c.access); err != nil {
				t.Fatal(err)
			}
		})
	}

	for _, key := range []string{"token:authorization_code", "token:refresh_token"} {
		t.Run("FaultIDTokenWrongATHash on "+key, func(t *testing.T) {
			f.idp.ClearFaults()
			f.idp.SetFault(key, Fault{Kind: FaultIDTokenWrongATHash, Times: 1})
			tok := f.login()
			access, raw := tok.AccessToken, tok.Extra("id_token").(string)
			if key == "token:refresh_token" {
				if got := claimsOf(t, raw)["at_hash"]; got != atHash(access) {
					t.Fatalf("code exchange affected: at_hash %v", got)
				}
				m := refresh(tok.RefreshToken)
				access, raw = m["access_token"].(string), m["id_token"].(string)
			}
			got, _ := claimsOf(t, raw)["at_hash"].(string)
			if got == "" || got == atHash(access) {
				t.Fatalf("at_hash %q not wrong", got)
			}
			idt, err := f.verifier().Verify(f.ctx, raw)
			if err != nil {
				t.Fatalf("the rest of the ID token must stay valid: %v", err)
			}
			if err := idt.VerifyAccessToken(access); err == nil {
				t.Fatal("wrong at_hash verified")
			}
		})
	}
}

// TestRefreshIDTokenIdentityChange checks that FaultIDTokenClaims on the
// refresh key can change each identity claim of a refreshed ID token, with
// a valid signature, while the code exchange is untouched.
func TestRefreshIDTokenIdentityChange(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	cases := []struct {
		claim string
		value any
	}{
		{"sub", "33333333-3333-4333-8333-333333333333"},
		{"iss", "https://other-issuer.example"},
		{"aud", "other-client"},
		{"azp", "other-client"},
		{"aud", []string{testClientID, "other-client"}},
	}
	for _, c := range cases {
		t.Run(c.claim, func(t *testing.T) {
			f.idp.SetFault("token:refresh_token", Fault{Kind: FaultIDTokenClaims, Claims: map[string]any{c.claim: c.value}})
			defer f.idp.ClearFaults()
			tok := f.login()
			first := claimsOf(t, tok.Extra("id_token").(string))
			if first["sub"] != DemoUsers()[0].Claims["sub"] || first["iss"] != f.idp.Issuer() || first["aud"] != testClientID || first["azp"] != testClientID {
				t.Fatalf("code exchange affected: %v", first)
			}
			st, m := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
			if st != 200 {
				t.Fatalf("refresh: %d %v", st, m)
			}
			raw := m["id_token"].(string)
			if err := f.verifySignature(raw); err != nil {
				t.Fatal(err)
			}
			got := claimsOf(t, raw)
			if string(mustJSON(got[c.claim])) != string(mustJSON(c.value)) {
				t.Fatalf("%s = %v, want %v", c.claim, got[c.claim], c.value)
			}
			for _, other := range []string{"sub", "iss", "aud", "azp"} {
				if other != c.claim && string(mustJSON(got[other])) != string(mustJSON(first[other])) {
					t.Errorf("%s changed too: %v", other, got[other])
				}
			}
		})
	}
}

func TestDisableUser(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	tok := f.login()
	userinfo := func(access string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, f.idp.Issuer()+PathUserinfo, nil)
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	refresh := func() (int, map[string]any) {
		return f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
	}
	f.idp.DisableUser("alice")
	t.Run("userinfo", func(t *testing.T) {
		st, www := userinfo(tok.AccessToken)
		if st != 401 || !strings.Contains(www, `error="invalid_token"`) {
			t.Fatalf("%d %q", st, www)
		}
	})
	t.Run("refresh", func(t *testing.T) {
		if st, m := refresh(); st != 400 || m["error"] != "invalid_grant" {
			t.Fatalf("%d %v", st, m)
		}
	})
	t.Run("authorize", func(t *testing.T) {
		q := callback(t, f.get(f.cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))))
		if q.Get("error") != "access_denied" || q.Has("code") || q.Get("state") != "st" {
			t.Fatalf("%v", q)
		}
	})
	t.Run("code issued before disabling", func(t *testing.T) {
		f.idp.EnableUser("alice")
		code, v := f.authorize()
		f.idp.DisableUser("alice")
		_, err := f.cfg.Exchange(f.ctx, code, oauth2.VerifierOption(v))
		wantOAuthErr(t, err, "invalid_grant")
	})
	t.Run("enabled again", func(t *testing.T) {
		f.idp.EnableUser("alice")
		if st, _ := userinfo(tok.AccessToken); st != 200 {
			t.Fatalf("userinfo %d", st)
		}
		if st, m := refresh(); st != 200 {
			t.Fatalf("refresh %d %v", st, m)
		}
		f.login()
	})
	t.Run("other users unaffected", func(t *testing.T) {
		f.idp.DisableUser("bob")
		if st, _ := userinfo(tok.AccessToken); st != 200 {
			t.Fatalf("userinfo %d", st)
		}
	})
}

func TestDisableUserLoginForm(t *testing.T) {
	f := setup(t, Options{})
	authURL := f.cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	callback(t, f.submitLogin(body(t, f.get(authURL)), "alice", "wonderland", "signin"))
	f.idp.DisableUser("alice")
	// The provider session no longer signs the user in silently.
	if q := callback(t, f.get(authURL)); q.Get("error") != "access_denied" {
		t.Fatalf("session of a disabled user: %v", q)
	}
	resp := f.get(f.cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "login")))
	resp = f.submitLogin(body(t, resp), "alice", "wonderland", "signin")
	if page := body(t, resp); resp.StatusCode != 200 || !strings.Contains(page, "Account is disabled") {
		t.Fatalf("login of a disabled user: %d %s", resp.StatusCode, page)
	}
}

func TestExtraJWKs(t *testing.T) {
	extra := []json.RawMessage{
		json.RawMessage(`{"kty":"OKP-unknown","kid":"odd-kty","x":"AAAA"}`),
		json.RawMessage(`{"kty":"RSA","kid":"odd-alg","alg":"RS999","use":"sig","n":"sXch","e":"AQAB"}`),
		json.RawMessage(`{"kty":"oct","kid":"secret","k":"c2VjcmV0"}`),
	}
	f := setup(t, Options{AutoLogin: "alice", ExtraJWKs: extra})
	resp := f.get(f.idp.Issuer() + PathJWKS)
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	own := len(f.idp.JWKS().Keys)
	if len(doc.Keys) != own+len(extra) {
		t.Fatalf("%d keys, want %d", len(doc.Keys), own+len(extra))
	}
	for i, raw := range extra {
		var want, got any
		json.Unmarshal(raw, &want)
		json.Unmarshal(doc.Keys[own+i], &got)
		if string(mustJSON(want)) != string(mustJSON(got)) {
			t.Errorf("extra key %d: %s", i, doc.Keys[own+i])
		}
	}
	// A tolerant relying party skips the keys it cannot use and verifies
	// with the good one.
	tok := f.login()
	raw := tok.Extra("id_token").(string)
	kid := claimsOfHeader(t, raw)["kid"]
	verified := false
	for _, k := range doc.Keys {
		var jwk jose.JSONWebKey
		if json.Unmarshal(k, &jwk) != nil || jwk.KeyID != kid {
			continue
		}
		jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify(jwk.Key); err != nil {
			t.Fatal(err)
		}
		verified = true
	}
	if !verified {
		t.Fatal("no usable key for the ID token")
	}

	for _, bad := range []string{`[1]`, `"key"`, `null`, `{`} {
		if _, err := New(Options{ExtraJWKs: []json.RawMessage{json.RawMessage(bad)}}); err == nil {
			t.Errorf("ExtraJWKs %s accepted", bad)
		}
	}
}

func TestRotateKeyPublishesAndSignsImmediately(t *testing.T) {
	for _, drop := range []bool{false, true} {
		t.Run(map[bool]string{false: "keep old key", true: "drop old key"}[drop], func(t *testing.T) {
			f := setup(t, Options{AutoLogin: "alice", RotateDropsOldKey: drop})
			before := f.login()
			oldKID, newKID := f.idp.RotateKey()
			kids := func() []string {
				var set jose.JSONWebKeySet
				if err := json.NewDecoder(f.get(f.idp.Issuer() + PathJWKS).Body).Decode(&set); err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, k := range set.Keys {
					out = append(out, k.KeyID)
				}
				return out
			}()
			if len(kids) == 0 || kids[0] != newKID {
				t.Fatalf("new key %s not published first: %v", newKID, kids)
			}
			hasOld := false
			for _, k := range kids {
				hasOld = hasOld || k == oldKID
			}
			if hasOld == drop {
				t.Fatalf("old key published = %v with RotateDropsOldKey %v", hasOld, drop)
			}
			st, m := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {before.RefreshToken}})
			if st != 200 {
				t.Fatalf("refresh: %d %v", st, m)
			}
			after := f.login()
			for name, raw := range map[string]string{
				"refreshed ID token": m["id_token"].(string), "refreshed access token": m["access_token"].(string),
				"new ID token": after.Extra("id_token").(string), "new access token": after.AccessToken,
			} {
				if kid := claimsOfHeader(t, raw)["kid"]; kid != newKID {
					t.Errorf("%s signed with %v, want %s", name, kid, newKID)
				}
				if err := f.verifySignature(raw); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
			err := f.verifySignature(before.Extra("id_token").(string))
			if (err == nil) == drop {
				t.Errorf("token of the old key: %v", err)
			}
		})
	}
}

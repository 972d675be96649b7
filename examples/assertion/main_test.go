package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// The handler accepts an assertion signed by a key of the JWKS and
// refuses a missing, forged, expired or misaddressed one.
func TestHandlerVerifiesAssertions(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	}))
	defer jwks.Close()
	sign := func(k *ecdsa.PrivateKey, claims map[string]any) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "k1"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(claims)
		obj, err := s.Sign(b)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := obj.CompactSerialize()
		return out
	}
	now := time.Now().Unix()
	good := map[string]any{"iss": "https://app.example.com", "aud": "legacy-app", "sub": "alice", "name": "Alice", "exp": now + 300, "iat": now}
	h := newHandler(context.Background(), "https://app.example.com", jwks.URL, "legacy-app", func(w http.ResponseWriter, r *http.Request, c caller) {
		_, _ = w.Write([]byte(c.Subject))
	})
	with := func(claims map[string]any, k *ecdsa.PrivateKey) map[string]any {
		out := map[string]any{}
		for k, v := range good {
			out[k] = v
		}
		for k, v := range claims {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		header string
		want   int
	}{
		{"signed by authgate", sign(key, good), 200},
		{"no assertion", "", 401},
		{"another key", sign(other, good), 401},
		{"expired", sign(key, with(map[string]any{"exp": now - 60}, key)), 401},
		{"another audience", sign(key, with(map[string]any{"aud": "other"}, key)), 401},
		{"another issuer", sign(key, with(map[string]any{"iss": "https://evil.example"}, key)), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			if tc.header != "" {
				req.Header.Set("X-Authgate-Assertion", tc.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want || (tc.want == 200 && rec.Body.String() != "alice") {
				t.Errorf("%d %q", rec.Code, rec.Body.String())
			}
		})
	}
}

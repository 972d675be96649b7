// Command assertion is a backend that believes no header but a verified
// authgate identity assertion:
//
//	go run ./examples/assertion -issuer https://app.example.com -audience legacy-app
//
// It fetches authgate's keys from the issuer's
// /.well-known/authgate/jwks.json (cached, refetched when a new key id
// appears), verifies X-Authgate-Assertion on every request with go-oidc
// (signature, iss, aud, exp) and answers with who is calling, or 401. See
// README.md beside it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"net/url"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// caller is what the backend learns from a verified assertion.
type caller struct {
	Subject  string   `json:"sub"`
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	Groups   []string `json:"groups"`
	Provider string   `json:"provider"`
	AuthTime int64    `json:"auth_time"`
	ACR      string   `json:"acr"`
	AMR      []string `json:"amr"`
}

// newHandler verifies the assertion of every request against the keys
// at jwksURL and hands the caller to next.
func newHandler(ctx context.Context, issuer, jwksURL, audience string, next func(http.ResponseWriter, *http.Request, caller)) http.Handler {
	keys := oidc.NewRemoteKeySet(ctx, jwksURL)
	verifier := oidc.NewVerifier(issuer, keys, &oidc.Config{
		ClientID:             audience,
		SupportedSigningAlgs: []string{oidc.ES256, oidc.RS256, oidc.EdDSA},
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.Header.Get("X-Authgate-Assertion")
		tok, err := verifier.Verify(r.Context(), raw)
		if err != nil {
			log.Printf("refused %s %s: %v", r.Method, r.URL.Path, err)
			http.Error(w, "not through authgate", http.StatusUnauthorized)
			return
		}
		var c caller
		if err := tok.Claims(&c); err != nil {
			http.Error(w, "unreadable assertion", http.StatusUnauthorized)
			return
		}
		next(w, r, c)
	})
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to serve on")
	issuer := flag.String("issuer", "https://app.example.com", "the site's origin, as authgate serves it (the assertion's iss)")
	jwks := flag.String("jwks", "", "authgate's key set (default: <issuer>/.well-known/authgate/jwks.json)")
	audience := flag.String("audience", "", "the assertion's aud (authgate's assertion_audience; default: the issuer's host)")
	flag.Parse()
	if *jwks == "" {
		*jwks = *issuer + "/.well-known/authgate/jwks.json"
	}
	if *audience == "" {
		u, err := url.Parse(*issuer)
		if err != nil {
			log.Fatalf("issuer: %v", err)
		}
		*audience = u.Host
	}
	h := newHandler(context.Background(), *issuer, *jwks, *audience, func(w http.ResponseWriter, r *http.Request, c caller) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"hello": c.Name, "caller": c, "path": r.URL.Path})
	})
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("verifying assertions from %s (keys %s, audience %s) on %s", *issuer, *jwks, *audience, *listen)
	log.Fatal(srv.ListenAndServe())
}

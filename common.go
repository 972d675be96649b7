package authgate

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// timeNow is the clock of the whole package; tests move it.
var timeNow = time.Now

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// randomString returns n bytes from the system's CSPRNG, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on supported platforms (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func requestID(r *http.Request) string {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if v, ok := repl.GetString("http.request.uuid"); ok {
			return v
		}
	}
	return ""
}

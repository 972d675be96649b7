package authgate

// What every file uses: the clock, random strings, defaults and the
// request log.

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
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

// eventLog writes authgate's structured log lines, each with the id of the
// request it is about. Values must never include tokens, codes, secrets or
// cookie values.
type eventLog struct{ logger *zap.Logger }

func (l eventLog) write(r *http.Request, level zapcore.Level, msg string, fields ...zap.Field) {
	if ce := l.logger.Check(level, msg); ce != nil {
		fields = append(fields, zap.String("request_id", requestID(r)))
		ce.Write(fields...)
	}
}

// requestID is Caddy's id of the request, which its access log carries too.
func requestID(r *http.Request) string {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if v, ok := repl.GetString("http.request.uuid"); ok {
			return v
		}
	}
	return ""
}

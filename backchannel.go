package authgate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// backchannelEvent is the events member every logout token must carry
// (OpenID Connect Back-Channel Logout 1.0, §2.4).
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// Logout token bounds. A token's iat may be at most maxLogoutTokenAge old
// and logoutTokenLeeway ahead of our clock; its jti is remembered for
// logoutReplayWindow (longer than any iat accepted), so a replay is
// refused either way.
const (
	maxLogoutTokenAge  = 10 * time.Minute
	logoutTokenLeeway  = time.Minute
	logoutReplayWindow = 2 * maxLogoutTokenAge
	// maxLogoutBody bounds the request body (the form with the token).
	maxLogoutBody = 64 << 10
	// maxLogoutJTI bounds a jti; it is hashed before it is stored.
	maxLogoutJTI = 1024
)

// serveBackchannelLogout receives a provider's logout_token, validates it
// (logoutToken: header typ, events, no nonce, iat window, sub or sid;
// then signature, iss, aud and exp like an ID token), refuses a jti seen
// before, and ends the matching sessions. It needs a session store: a
// cookie session lives in the browser and cannot be ended from the
// server, so without one the endpoint answers 501 (and has nothing to
// remember jtis for).
func serveBackchannelLogout(s *site, w http.ResponseWriter, r *http.Request) error {
	gw := s.gw
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return s.pages.json(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "Back-channel logout takes POST.")
	}
	if gw.sessions.store == nil {
		return s.pages.json(w, r, http.StatusNotImplemented, "no_session_store", "Back-channel logout needs session_store.")
	}
	refuse := func(err error) error {
		gw.log.write(r, zap.WarnLevel, "backchannel logout refused", zap.String("reason", err.Error()))
		return s.pages.json(w, r, http.StatusBadRequest, "invalid_logout_token", "The logout token is not valid.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutBody)
	if err := r.ParseForm(); err != nil {
		gw.log.write(r, zap.WarnLevel, "backchannel logout refused", zap.String("reason", "the body is not a form of at most 64 KiB"))
		return s.pages.json(w, r, http.StatusBadRequest, "invalid_request", "The request body is not a form.")
	}
	if len(r.PostForm["logout_token"]) > 1 {
		return refuse(errors.New("logout_token given more than once"))
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		gw.log.write(r, zap.WarnLevel, "backchannel logout refused", zap.String("reason", "no logout_token"))
		return s.pages.json(w, r, http.StatusBadRequest, "invalid_request", "logout_token is missing.")
	}
	lt, err := parseLogoutToken(raw, timeNow())
	if err != nil {
		return refuse(err)
	}
	var lastErr error
	for _, p := range s.providers {
		st, err := p.state(r.Context())
		if err != nil || st.verifier == nil {
			if err != nil {
				lastErr = err
			}
			continue
		}
		ended, err := endByLogoutToken(s, r, p, st, raw, lt)
		if err == nil {
			gw.log.write(r, zap.InfoLevel, "backchannel logout", zap.String("provider", p.name), zap.Int("sessions", ended))
			w.WriteHeader(http.StatusOK)
			return nil
		}
		lastErr = err
		if errors.Is(err, errStoreDown) {
			return s.pages.storeFailure(w, r, err)
		}
		if errors.Is(err, errLogoutReplayed) {
			break
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no provider of this site can verify logout tokens")
	}
	return refuse(lastErr)
}

var errLogoutReplayed = errors.New("logout token replayed (its jti was seen before)")

// endByLogoutToken verifies raw's signature, issuer, audience and expiry
// with p, ends the sessions it names and records its jti.
func endByLogoutToken(s *site, r *http.Request, p *provider, st *providerState, raw string, lt *logoutToken) (int, error) {
	if _, err := st.verifier.Verify(r.Context(), raw); err != nil {
		return 0, fmt.Errorf("verifying logout token with %s: %w", p.name, err)
	}
	n, fresh, err := s.gw.sessions.store.endLoggedOut(r.Context(), p.name+"\x00"+lt.JTI, logoutReplayWindow, p.name, lt.SID, lt.Sub)
	if err == nil && !fresh {
		return 0, errLogoutReplayed
	}
	return n, err
}

// logoutToken is what a logout token says, once its form is checked.
type logoutToken struct {
	Sub, SID, JTI string
	IAT           time.Time
}

// parseLogoutToken checks everything of a logout token but its signature,
// issuer, audience and expiry (go-oidc's verifier does those): a JOSE
// header whose typ, when present, is logout+jwt (§2.4, RFC 8725 §3.11);
// an events claim, an object holding the back-channel logout event with an
// object value; no nonce (so that an ID token cannot pass as a logout
// token); a jti; an iat no older than maxLogoutTokenAge and no further
// ahead than logoutTokenLeeway; and sub or sid, strings when present.
func parseLogoutToken(raw string, now time.Time) (*logoutToken, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("logout token is not a compact JWS")
	}
	var header struct {
		Typ json.RawMessage `json:"typ"`
	}
	if err := decodeJWTPart(parts[0], &header); err != nil {
		return nil, fmt.Errorf("logout token header: %w", err)
	}
	if header.Typ != nil {
		var typ string
		if err := json.Unmarshal(header.Typ, &typ); err != nil {
			return nil, errors.New("logout token header typ is not a string")
		}
		if t := strings.TrimPrefix(strings.ToLower(typ), "application/"); t != "logout+jwt" {
			return nil, fmt.Errorf("logout token header typ is %q, not logout+jwt", typ)
		}
	}
	var c struct {
		Events json.RawMessage `json:"events"`
		Nonce  json.RawMessage `json:"nonce"`
		JTI    json.RawMessage `json:"jti"`
		Sub    json.RawMessage `json:"sub"`
		SID    json.RawMessage `json:"sid"`
		IAT    json.RawMessage `json:"iat"`
	}
	if err := decodeJWTPart(parts[1], &c); err != nil {
		return nil, fmt.Errorf("logout token claims: %w", err)
	}
	var events map[string]json.RawMessage
	if c.Events == nil || json.Unmarshal(c.Events, &events) != nil || events == nil {
		return nil, errors.New("logout token has no events object")
	}
	var event map[string]any
	if ev, ok := events[backchannelEvent]; !ok || json.Unmarshal(ev, &event) != nil || event == nil {
		return nil, errors.New("logout token lacks the back-channel logout event (an object)")
	}
	if c.Nonce != nil {
		return nil, errors.New("logout token carries a nonce")
	}
	lt := &logoutToken{}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{{"jti", c.JTI, &lt.JTI}, {"sub", c.Sub, &lt.Sub}, {"sid", c.SID, &lt.SID}} {
		if f.raw != nil && json.Unmarshal(f.raw, f.dst) != nil {
			return nil, fmt.Errorf("logout token %s is not a string", f.name)
		}
	}
	switch {
	case lt.JTI == "":
		return nil, errors.New("logout token has no jti")
	case len(lt.JTI) > maxLogoutJTI:
		return nil, fmt.Errorf("logout token jti is over %d bytes", maxLogoutJTI)
	case lt.Sub == "" && lt.SID == "":
		return nil, errors.New("logout token has neither sub nor sid")
	}
	var iat float64
	if c.IAT == nil || json.Unmarshal(c.IAT, &iat) != nil || iat <= 0 || iat != iat {
		return nil, errors.New("logout token iat is missing or not a positive number")
	}
	if iat > float64(now.Add(logoutTokenLeeway).Unix()) {
		return nil, fmt.Errorf("logout token iat is more than %s ahead", logoutTokenLeeway)
	}
	lt.IAT = time.Unix(int64(iat), 0)
	if now.Sub(lt.IAT) > maxLogoutTokenAge {
		return nil, fmt.Errorf("logout token iat is more than %s old", maxLogoutTokenAge)
	}
	return lt, nil
}

// decodeJWTPart decodes one base64url part of a compact JWS into v, which
// must then be a JSON object with nothing after it.
func decodeJWTPart(part string, v any) error {
	if len(part) > maxLogoutBody {
		return errors.New("too large")
	}
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return errors.New("not base64url")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return errors.New("not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	return nil
}

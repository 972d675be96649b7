package authgate

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// backchannelEvent is the events member every logout token must carry
// (OpenID Connect Back-Channel Logout 1.0, §2.4).
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// maxLogoutTokenAge bounds how old a logout token's iat may be; token ids
// are remembered for as long, so a replay is refused either way.
const maxLogoutTokenAge = 10 * time.Minute

// serveBackchannelLogout receives a provider's logout_token, validates it
// like an ID token (signature, iss, aud, iat) plus the events claim, no
// nonce and a never-seen jti, and ends the matching sessions by sid or
// sub. It needs a session store: cookie sessions cannot be ended from the
// server.
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
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return s.pages.json(w, r, http.StatusBadRequest, "invalid_request", "The request body is not a form.")
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		return s.pages.json(w, r, http.StatusBadRequest, "invalid_request", "logout_token is missing.")
	}
	var lastErr error
	for _, p := range s.providers {
		st, err := p.state(r.Context())
		if err != nil || st.verifier == nil {
			continue
		}
		ended, err := endByLogoutToken(s, r, p, st, raw)
		if err == nil {
			gw.log.write(r, zap.InfoLevel, "backchannel logout", zap.String("provider", p.name), zap.Int("sessions", ended))
			w.WriteHeader(http.StatusOK)
			return nil
		}
		lastErr = err
		if errors.Is(err, errStoreDown) {
			return s.pages.storeFailure(w, r, err)
		}
	}
	gw.log.write(r, zap.WarnLevel, "backchannel logout refused", zap.Error(lastErr))
	return s.pages.json(w, r, http.StatusBadRequest, "invalid_logout_token", "The logout token is not valid.")
}

func endByLogoutToken(s *site, r *http.Request, p *provider, st *providerState, raw string) (int, error) {
	tok, err := st.verifier.Verify(r.Context(), raw)
	if err != nil {
		return 0, fmt.Errorf("verifying logout token: %w", err)
	}
	var claims struct {
		Events map[string]any `json:"events"`
		Nonce  *string        `json:"nonce"`
		JTI    string         `json:"jti"`
		SID    string         `json:"sid"`
		IAT    float64        `json:"iat"`
	}
	if err := tok.Claims(&claims); err != nil {
		return 0, fmt.Errorf("logout token claims: %w", err)
	}
	switch {
	case claims.Events == nil || claims.Events[backchannelEvent] == nil:
		return 0, errors.New("logout token lacks the back-channel logout event")
	case claims.Nonce != nil:
		return 0, errors.New("logout token carries a nonce")
	case claims.JTI == "":
		return 0, errors.New("logout token has no jti")
	case tok.Subject == "" && claims.SID == "":
		return 0, errors.New("logout token has neither sub nor sid")
	case claims.IAT == 0 || timeNow().Sub(time.Unix(int64(claims.IAT), 0)) > maxLogoutTokenAge:
		return 0, errors.New("logout token iat missing or too old")
	}
	fresh, err := s.gw.sessions.store.seen(r.Context(), p.name+"\x00"+claims.JTI, 2*maxLogoutTokenAge)
	if err != nil {
		return 0, err
	}
	if !fresh {
		return 0, errors.New("logout token replayed")
	}
	if claims.SID != "" {
		return s.gw.sessions.store.deleteIndexed(r.Context(), "sid", p.name, claims.SID)
	}
	return s.gw.sessions.store.deleteIndexed(r.Context(), "sub", p.name, tok.Subject)
}

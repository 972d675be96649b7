package testidp

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
)

// FaultKind names a misbehaviour; see the package documentation for the
// endpoints each kind applies to.
type FaultKind string

// Fault kinds.
const (
	// Generic, every endpoint, request not processed.
	FaultStatus500HTML   FaultKind = "status500_html"
	FaultHTML200         FaultKind = "html_200"
	FaultRaw             FaultKind = "raw"
	FaultStall           FaultKind = "stall"
	FaultCloseConnection FaultKind = "close_connection"
	FaultResetConnection FaultKind = "reset_connection"

	// Response shaping, request processed normally.
	FaultTextPlain     FaultKind = "text_plain"
	FaultTruncatedJSON FaultKind = "truncated_json"

	// Token endpoint.
	FaultInvalidGrant       FaultKind = "invalid_grant"
	FaultMissingAccessToken FaultKind = "missing_access_token"
	FaultExpiresInString    FaultKind = "expires_in_string"
	FaultMissingIDToken     FaultKind = "missing_id_token"

	// ID token mutations (token endpoint keys).
	FaultIDTokenBadSignature        FaultKind = "id_token_bad_signature"
	FaultIDTokenAlgNone             FaultKind = "id_token_alg_none"
	FaultIDTokenWrongIssuer         FaultKind = "id_token_wrong_issuer"
	FaultIDTokenIssuerTrailingSlash FaultKind = "id_token_issuer_trailing_slash"
	FaultIDTokenWrongAudience       FaultKind = "id_token_wrong_audience"
	FaultIDTokenMissingAudience     FaultKind = "id_token_missing_audience"
	FaultIDTokenMissingSub          FaultKind = "id_token_missing_sub"
	FaultIDTokenWrongNonce          FaultKind = "id_token_wrong_nonce"
	FaultIDTokenMissingNonce        FaultKind = "id_token_missing_nonce"
	FaultIDTokenExpired             FaultKind = "id_token_expired"
	FaultIDTokenNotYetValid         FaultKind = "id_token_not_yet_valid"
	FaultIDTokenUnknownKID          FaultKind = "id_token_unknown_kid"
	FaultIDTokenClaims              FaultKind = "id_token_claims"
	FaultIDTokenWrongATHash         FaultKind = "id_token_wrong_at_hash"

	// Discovery.
	FaultDiscoveryWrongIssuer FaultKind = "discovery_wrong_issuer"

	// Userinfo.
	FaultUserinfoExtraClaims   FaultKind = "userinfo_extra_claims"
	FaultUserinfoMissingClaims FaultKind = "userinfo_missing_claims"
	FaultUserinfoWrongSub      FaultKind = "userinfo_wrong_sub"

	// Authorization response.
	FaultAuthorizeIss        FaultKind = "authorize_iss"
	FaultAuthorizeNoIss      FaultKind = "authorize_no_iss"
	FaultAuthorizeNoState    FaultKind = "authorize_no_state"
	FaultAuthorizeWrongState FaultKind = "authorize_wrong_state"
	FaultAuthorizeError      FaultKind = "authorize_error"
)

// Fault describes a misbehaviour of one endpoint.
type Fault struct {
	Kind FaultKind
	// Value is the kind-specific value (wrong issuer, audience, nonce,
	// state, error code, comma separated claim names...).
	Value string
	// Delay is the stall duration for FaultStall (0 = until the client
	// gives up or the server is closed).
	Delay time.Duration
	// Status, ContentType and Body are sent verbatim by FaultRaw
	// (Status defaults to 200).
	Status      int
	ContentType string
	Body        string
	// Claims are merged by FaultIDTokenClaims and FaultUserinfoExtraClaims.
	Claims map[string]any
	// Times limits the fault to this many applications; 0 = unlimited.
	// With Every, only the requests the fault applies to are counted:
	// Every 10 and Times 3 hit the 10th, 20th and 30th request and then
	// the fault clears itself.
	Times int
	// Every, when > 0, applies the fault to every Every-th request of its
	// key only (the Every-th, 2·Every-th, ... counted from SetFault); the
	// others are served as if no fault were installed for the key, and do
	// not fall back to a fault of a less specific key (the token
	// endpoint's "token"). Only requests that reach the fault's phase are
	// counted: an ID token fault counts token responses with an ID token,
	// an authorization response fault counts redirects back to the client.
	// For example Fault{Kind: FaultRaw, Status: 503, Every: 10} on
	// "token:refresh_token" fails exactly 10% of refreshes.
	Every int

	seen int // requests that reached the fault's phase, for Every
}

const wrongIssuerDefault = "https://wrong-issuer.example"

// SetFault installs f for the endpoint key (replacing any previous fault
// for that key).
func (s *Server) SetFault(endpoint string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := f
	cp.Claims = maps.Clone(f.Claims)
	cp.seen = 0
	s.faults[endpoint] = &cp
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

type faultPhase int

const (
	phasePre faultPhase = iota
	phasePost
	phaseIDToken
	phaseAuthorizeRedirect
)

func (k FaultKind) phase() faultPhase {
	switch k {
	case FaultStatus500HTML, FaultHTML200, FaultRaw, FaultStall, FaultCloseConnection, FaultResetConnection, FaultInvalidGrant:
		return phasePre
	case FaultAuthorizeIss, FaultAuthorizeNoIss, FaultAuthorizeNoState, FaultAuthorizeWrongState, FaultAuthorizeError:
		return phaseAuthorizeRedirect
	}
	if strings.HasPrefix(string(k), "id_token_") {
		return phaseIDToken
	}
	return phasePost
}

// takeFault returns a copy of the fault of the first key among keys that
// has a fault whose kind belongs to phase, consuming one application; nil
// when there is none or Fault.Every skips this request.
func (s *Server) takeFault(phase faultPhase, keys ...string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeFaultLocked(phase, keys...)
}

func (s *Server) takeFaultLocked(phase faultPhase, keys ...string) *Fault {
	for _, k := range keys {
		f := s.faults[k]
		if f == nil || f.Kind.phase() != phase {
			continue
		}
		if f.Every > 0 {
			f.seen++
			if f.seen%f.Every != 0 {
				return nil
			}
		}
		cp := *f
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				delete(s.faults, k)
			}
		}
		return &cp
	}
	return nil
}

// runEndpoint applies pre/post faults for keys around h.
func (s *Server) runEndpoint(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, keys ...string) {
	if f := s.takeFault(phasePre, keys...); f != nil {
		if s.applyPreFault(w, r, f) {
			return
		}
	}
	if f := s.takeFault(phasePost, keys...); f != nil {
		rec := httptest.NewRecorder()
		h(rec, r)
		applyPostFault(w, rec, f)
		return
	}
	h(w, r)
}

const faultHTML = "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head><body><h1>Something went wrong</h1><p>The upstream identity provider failed.</p></body></html>\n"

// applyPreFault reports whether the request has been answered.
func (s *Server) applyPreFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	switch f.Kind {
	case FaultStatus500HTML:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(faultHTML))
	case FaultHTML200:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(faultHTML))
	case FaultRaw:
		if f.ContentType != "" {
			w.Header().Set("Content-Type", f.ContentType)
		}
		st := f.Status
		if st == 0 {
			st = http.StatusOK
		}
		w.WriteHeader(st)
		w.Write([]byte(f.Body))
	case FaultInvalidGrant:
		writeOAuthError(w, &oauthError{status: http.StatusBadRequest, code: "invalid_grant", desc: "Token is not active"})
	case FaultStall:
		var timer <-chan time.Time
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-timer:
			return false // then serve normally
		case <-r.Context().Done():
		case <-s.closed:
		}
	case FaultCloseConnection, FaultResetConnection:
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic(http.ErrAbortHandler)
		}
		conn, _, err := hj.Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		if f.Kind == FaultResetConnection {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
		}
		conn.Close()
	default:
		return false
	}
	return true
}

func applyPostFault(w http.ResponseWriter, rec *httptest.ResponseRecorder, f *Fault) {
	body := rec.Body.Bytes()
	status := rec.Code
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	switch f.Kind {
	case FaultTextPlain:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	case FaultTruncatedJSON:
		body = body[:len(body)/2]
	default:
		if status == http.StatusOK {
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			if dec.Decode(&m) == nil {
				mutateJSON(m, f)
				if b, err := json.Marshal(m); err == nil {
					body = b
				}
			}
		}
	}
	w.WriteHeader(status)
	w.Write(body)
}

func mutateJSON(m map[string]any, f *Fault) {
	switch f.Kind {
	case FaultMissingAccessToken:
		delete(m, "access_token")
	case FaultMissingIDToken:
		delete(m, "id_token")
	case FaultExpiresInString:
		if v, ok := m["expires_in"]; ok {
			m["expires_in"] = strings.Trim(string(mustJSON(v)), `"`)
		}
	case FaultDiscoveryWrongIssuer:
		m["issuer"] = orDefault(f.Value, wrongIssuerDefault)
	case FaultUserinfoExtraClaims:
		extra := f.Claims
		if len(extra) == 0 {
			extra = map[string]any{"unexpected_claim": "surprise"}
		}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
	case FaultUserinfoMissingClaims:
		for _, c := range strings.Split(orDefault(f.Value, "email,name,preferred_username,groups"), ",") {
			delete(m, strings.TrimSpace(c))
		}
	case FaultUserinfoWrongSub:
		m["sub"] = orDefault(f.Value, "wrong-subject")
	}
}

// mutateIDToken changes ID token claims for an ID token fault and returns
// the signing configuration to use.
func (s *Server) mutateIDToken(claims map[string]any, f *Fault, issuer string, now time.Time) signConfig {
	var cfg signConfig
	switch f.Kind {
	case FaultIDTokenBadSignature:
		cfg.wrongKey = true
	case FaultIDTokenAlgNone:
		cfg.algNone = true
	case FaultIDTokenWrongIssuer:
		claims["iss"] = orDefault(f.Value, wrongIssuerDefault)
	case FaultIDTokenIssuerTrailingSlash:
		claims["iss"] = issuer + "/"
	case FaultIDTokenWrongAudience:
		claims["aud"] = orDefault(f.Value, "some-other-client")
		delete(claims, "azp")
	case FaultIDTokenMissingAudience:
		delete(claims, "aud")
		delete(claims, "azp")
	case FaultIDTokenMissingSub:
		delete(claims, "sub")
	case FaultIDTokenWrongNonce:
		claims["nonce"] = orDefault(f.Value, "wrong-nonce")
	case FaultIDTokenMissingNonce:
		delete(claims, "nonce")
	case FaultIDTokenExpired:
		claims["iat"] = now.Add(-2 * time.Hour).Unix()
		claims["exp"] = now.Add(-time.Hour).Unix()
	case FaultIDTokenNotYetValid:
		claims["iat"] = now.Add(time.Hour).Unix()
		claims["nbf"] = now.Add(time.Hour).Unix()
		claims["exp"] = now.Add(2 * time.Hour).Unix()
	case FaultIDTokenUnknownKID:
		cfg.unpublished = true
	case FaultIDTokenWrongATHash:
		// A well-formed hash, of another token.
		sum := sha256.Sum256([]byte("not-the-access-token"))
		claims["at_hash"] = orDefault(f.Value, b64.EncodeToString(sum[:16]))
	case FaultIDTokenClaims:
		for k, v := range f.Claims {
			if v == nil {
				delete(claims, k)
			} else {
				claims[k] = v
			}
		}
	}
	return cfg
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

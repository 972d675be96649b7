package authgate

import (
	"encoding/json"
	"errors"
	"time"
)

// The Session itself: what a signed-in browser carries, where it was made,
// its one-pass decoding from the cookie payload, and the entry the request
// path and the session cache hold for it.

// sessionVersion is written into every session so that a later format can
// tell old cookies apart.
const sessionVersion = 1

// Errors a session can end in. None of them is shown to a user verbatim.
var (
	errNoSession       = errors.New("no session cookie")
	errSessionExpired  = errors.New("session lifetime over")
	errSessionTooLarge = errors.New("session too large")
	// errForeignSession: a cookie that opens with our keys but was made
	// for another issuer or client_id (another authgate site with the
	// same cookie name and keys). It is no session here, and is left for
	// the site it belongs to.
	errForeignSession = errors.New("session made for another issuer or client")
)

// Session is what a signed-in browser carries, encrypted and authenticated.
// Claims hold the merged ID-token and userinfo claims; the identity shown to
// backends is derived from them with the provider's claim mapping.
type Session struct {
	Version  int    `json:"v"`
	ID       string `json:"i"`
	Provider string `json:"p"`
	Created  int64  `json:"c"`
	Expiry   int64  `json:"e,omitempty"` // access token expiry, unix seconds; 0: unknown
	// TokenIssued is when the access token was issued (its token response,
	// with expires_in, arrived), unix seconds; with Expiry it gives the
	// token's lifetime, which bounds how early it is refreshed
	// (refresher.skewFor). 0: unknown (no expires_in), the configured
	// refresh_skew applies.
	TokenIssued  int64          `json:"ti,omitempty"`
	AccessToken  string         `json:"at,omitempty"` // only when needed: see sessionManager.accessTokenToKeep
	RefreshToken string         `json:"rt,omitempty"`
	IDToken      string         `json:"it,omitempty"`
	Claims       map[string]any `json:"cl"`
	// KeptGroups names the keep_groups the claims were narrowed under
	// (compiledClaimMap.keepPrint); a session narrowed under other ones
	// lacks groups the configuration now wants, and is refused.
	KeptGroups string `json:"kg,omitempty"`
	// Issuer and ClientID bind the session to where it was made: the
	// provider's issuer (its token URL for plain OAuth 2.0) and client_id,
	// each as a 12-character fingerprint (bindingPrint). A session whose
	// binding is not this provider's is no session here. Sessions made
	// before they were recorded have neither, and are not checked; their
	// next refresh records them.
	Issuer   string `json:"is,omitempty"`
	ClientID string `json:"ci,omitempty"`
	// IDAudience and IDTokenKind record the session's ID token, which a
	// refreshed one must repeat: its aud when that is not just the
	// client_id, and 1 (no azp) or 2 (azp, the client_id); 0 without one.
	IDAudience  []string `json:"ia,omitempty"`
	IDTokenKind int      `json:"iz,omitempty"`
	// UserinfoAt is when userinfo was last read (unix seconds), kept only
	// for userinfo_refresh_interval; 0: at Created.
	UserinfoAt int64 `json:"ua,omitempty"`
	// AuthTime, ACR and AMR are how the user last authenticated at the
	// provider (the ID token's auth_time, acr and amr; authctx.go), what
	// authgate_require checks. AuthTime is the login's time when the
	// provider sends none.
	AuthTime int64    `json:"au,omitempty"`
	ACR      string   `json:"acr,omitempty"`
	AMR      []string `json:"amr,omitempty"`

	// sealed is the session's cookie, encoded once (sessionManager.seal).
	sealed *sealedSession
}

// bind records where the session's identity comes from. An answer without
// an ID token leaves the recorded ID token as it was.
func (s *Session) bind(b recordedBinding) {
	s.Issuer, s.ClientID = b.Issuer, b.ClientID
	if b.IDToken != 0 {
		s.IDAudience, s.IDTokenKind = b.Audience, b.IDToken
	}
}

// binding is what later answers of the provider must repeat: the recorded
// issuer, client and ID token, and who the claims are about.
func (s *Session) binding(id *Identity) recordedBinding {
	return recordedBinding{Issuer: s.Issuer, ClientID: s.ClientID, Subject: subjectOf(s.Claims, id), Audience: s.IDAudience, IDToken: s.IDTokenKind}
}

// sealedSession is a session's cookie value and entry, made once for all
// the responses that carry the session: the requests that share one
// refresh. owner is the session it was made for: a copy of the session
// (a refresh starts from one) copies the pointer, and must not use it.
type sealedSession struct {
	owner *Session
	entry *sessionEntry
	value string
	name  string // the cookie name value is sealed for
}

// sealedFor returns s's sealed cookie, or nil.
func (s *Session) sealedFor() *sealedSession {
	if s.sealed != nil && s.sealed.owner == s {
		return s.sealed
	}
	return nil
}

// decodeJSON reads a session's JSON with jsonReader, into the typed
// fields directly. It takes only what encoding/json would read the same
// way: each field once, under its exact name, with a value of its type;
// anything else is left to encoding/json (see fastDecoder).
func (s *Session) decodeJSON(body []byte) bool {
	r := newJSONReader(body)
	var out Session
	var seen uint32
	ok := r.object(func(key string) bool {
		var bit uint32
		var dst *string
		var num *int64
		switch key {
		case "v":
			bit = 1 << 0
		case "i":
			bit, dst = 1<<1, &out.ID
		case "p":
			bit, dst = 1<<2, &out.Provider
		case "c":
			bit, num = 1<<3, &out.Created
		case "e":
			bit, num = 1<<4, &out.Expiry
		case "at":
			bit, dst = 1<<5, &out.AccessToken
		case "rt":
			bit, dst = 1<<6, &out.RefreshToken
		case "it":
			bit, dst = 1<<7, &out.IDToken
		case "kg":
			bit, dst = 1<<8, &out.KeptGroups
		case "cl":
			bit = 1 << 9
		case "is":
			bit, dst = 1<<10, &out.Issuer
		case "ci":
			bit, dst = 1<<11, &out.ClientID
		case "ia":
			bit = 1 << 12
		case "iz":
			bit = 1 << 13
		case "ua":
			bit, num = 1<<14, &out.UserinfoAt
		case "ti":
			bit, num = 1<<15, &out.TokenIssued
		case "au":
			bit, num = 1<<16, &out.AuthTime
		case "acr":
			bit, dst = 1<<17, &out.ACR
		case "amr":
			bit = 1 << 18
		default:
			return false // unknown, or differently cased
		}
		if seen&bit != 0 {
			return false // repeated
		}
		seen |= bit
		switch {
		case dst != nil:
			v, ok := r.str()
			*dst = v
			return ok
		case num != nil:
			n, ok := r.integer()
			*num = n
			return ok
		case key == "v" || key == "iz":
			n, ok := r.integer()
			v := int(n)
			if key == "v" {
				out.Version = v
			} else {
				out.IDTokenKind = v
			}
			return ok && int64(v) == n
		case key == "ia" || key == "amr":
			if r.peek() != '[' {
				return false // null, or not a list
			}
			list, ok := r.strings()
			if key == "ia" {
				out.IDAudience = list
			} else {
				out.AMR = list
			}
			return ok
		}
		if r.peek() != '{' {
			return false // null, or not an object
		}
		m, ok := r.claims()
		out.Claims = m
		return ok
	})
	if !ok {
		return false
	}
	*s = out
	return true
}

// storeRef is what the cookie carries when sessions live in the store.
type storeRef struct {
	Version  int    `json:"v"`
	ID       string `json:"i"`
	Provider string `json:"p"`
}

// sessionEntry is a session as the request path uses it: decoded, checked,
// and with its identity and provider worked out.
type sessionEntry struct {
	sess     *Session
	identity *Identity
	provider *provider
	oldKey   bool // the cookie was made with a retired key: re-encode it
	// ref and fetched are used with a session store: the cookie's
	// session id, and when the session was read from the store.
	ref     *storeRef
	fetched time.Time
}

// cacheSize is about how many bytes e holds, for the session cache's
// budget: its structs, the session's strings and claims, the identity's
// groups and header values. Estimating from the cookie's length alone
// counted a third of what a session with 300 groups really holds, and
// let such sessions take three times the budget.
func (e *sessionEntry) cacheSize() int {
	n := 256 // the entry, and what the size classes of its parts round up
	if e.ref != nil {
		n += 48 + len(e.ref.ID) + len(e.ref.Provider)
	}
	if s := e.sess; s != nil {
		n += 160 + len(s.ID) + len(s.Provider) + len(s.AccessToken) + len(s.RefreshToken) + len(s.IDToken) + len(s.KeptGroups)
		n += valueSize(s.Claims)
	}
	if id := e.identity; id != nil {
		n += 224 + 16*len(id.Groups) + len(id.out.groups)
	}
	return n
}

// valueSize is about how many bytes a decoded JSON value holds on the
// heap: boxes, slices and maps, and the bytes of strings (an eighth more:
// the allocation they share is rounded up to a size class).
func valueSize(v any) int {
	switch x := v.(type) {
	case string:
		return 16 + len(x) + len(x)/8
	case json.Number:
		return 16 + len(x)
	case []any:
		n := 24 + 16*len(x)
		for _, e := range x {
			n += valueSize(e)
		}
		return n
	case map[string]any:
		n := 48 + 40*len(x) // a map's header and its slots of key and value
		for k, e := range x {
			n += len(k) + valueSize(e)
		}
		return n
	}
	return 0 // bool and nil are not allocated
}

// seenThrough returns e as seen through one cookie, which may have been
// made with a retired key.
func (e *sessionEntry) seenThrough(oldKey bool) *sessionEntry {
	if !oldKey {
		return e
	}
	c := *e
	c.oldKey = true
	return &c
}

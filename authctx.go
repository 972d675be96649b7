package authgate

// What a login asks of the provider beyond the defaults (login hints,
// prompt, step-up), and what the provider said about the authentication:
// auth_time, acr and amr, which per-route requirements (authgate_require)
// check.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// authRequirement is what a route asks of the way its user signed in. It
// travels in the pending login of a step-up, so that the callback can tell
// a provider that ignored it (and answer 403 instead of looping).
type authRequirement struct {
	// MaxAge is the oldest an authentication may be, in seconds; 0: any.
	MaxAge int64 `json:"ma,omitempty"`
	// ACR lists the acceptable acr values; any one of them will do.
	ACR []string `json:"acr,omitempty"`
	// AMR lists methods that must all be among the session's amr.
	AMR []string `json:"amr,omitempty"`
}

// authLeeway absorbs the difference between the provider's clock and
// ours when an authentication's age is checked. The same check guards the
// route and the return from a step-up, so the two never disagree.
const authLeeway = 30 * time.Second

// authContext is how a user authenticated, as a session or a bearer
// token's claims record it.
type authContext struct {
	authTime int64 // unix seconds; 0: unknown
	acr      string
	amr      []string
}

// sessionAuthContext is the authentication context of a session; a
// session from before authgate recorded auth_time counts from its login.
func sessionAuthContext(s *Session) authContext {
	ac := authContext{authTime: s.AuthTime, acr: s.ACR, amr: s.AMR}
	if ac.authTime == 0 {
		ac.authTime = s.Created
	}
	return ac
}

// claimsAuthContext reads auth_time, acr and amr from token claims (a
// bearer token's).
func claimsAuthContext(claims map[string]any) authContext {
	var ac authContext
	ac.authTime, _ = authTimeClaim(claims["auth_time"])
	ac.acr, _ = acrClaim(claims["acr"])
	ac.amr, _ = amrClaim(claims["amr"])
	return ac
}

// unmet says, in words for a log line or a page, what of q the context
// does not satisfy, or "" when it satisfies all of it.
func (q *authRequirement) unmet(ac authContext, now time.Time) string {
	if q.MaxAge > 0 {
		limit := time.Duration(q.MaxAge)*time.Second + authLeeway
		if ac.authTime == 0 || now.Sub(time.Unix(ac.authTime, 0)) > limit {
			return "the sign-in is older than " + (time.Duration(q.MaxAge) * time.Second).String()
		}
	}
	if len(q.ACR) > 0 && !slices.Contains(q.ACR, ac.acr) {
		got := ac.acr
		if got == "" {
			got = "none"
		}
		return fmt.Sprintf("the authentication level (acr) is %s, not %s", got, strings.Join(q.ACR, " or "))
	}
	for _, m := range q.AMR {
		if !slices.Contains(ac.amr, m) {
			return "the sign-in did not use " + m
		}
	}
	return ""
}

// params are the authorization request parameters that ask the provider
// for what q requires: max_age, acr_values, and prompt=login for methods
// (there is no standard parameter naming a method).
func (q *authRequirement) params() url.Values {
	v := url.Values{}
	if q.MaxAge > 0 {
		v.Set("max_age", strconv.FormatInt(q.MaxAge, 10))
	}
	if len(q.ACR) > 0 {
		v.Set("acr_values", strings.Join(q.ACR, " "))
	}
	if len(q.AMR) > 0 {
		v.Set("prompt", "login")
	}
	return v
}

// wwwAuthenticate is the RFC 9470 challenge for an API request whose
// authentication does not meet q.
func (q *authRequirement) wwwAuthenticate() string {
	var b strings.Builder
	b.WriteString(`Bearer realm="authgate", error="insufficient_user_authentication", error_description="A more recent or stronger authentication is required"`)
	if len(q.ACR) > 0 {
		b.WriteString(`, acr_values="` + strings.Join(q.ACR, " ") + `"`)
	}
	if q.MaxAge > 0 {
		b.WriteString(`, max_age="` + strconv.FormatInt(q.MaxAge, 10) + `"`)
	}
	return b.String()
}

// checkAuthValue accepts an acr or amr value: printable ASCII without
// spaces, quotes or backslashes (values go into URLs and into the quoted
// strings of WWW-Authenticate), at most 128 bytes.
func checkAuthValue(v string) error {
	if v == "" || len(v) > 128 {
		return fmt.Errorf("%q: empty or longer than 128 bytes", v)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return fmt.Errorf("%q: only printable ASCII without spaces, quotes or backslashes", v)
		}
	}
	return nil
}

// recordLoginAuth records a login's authentication context in s from the
// ID token's claims; without auth_time, the login's time stands in.
func recordLoginAuth(s *Session, idClaims map[string]any) {
	applyAuthClaims(s, idClaims)
	if s.AuthTime == 0 {
		s.AuthTime = s.Created
	}
}

// applyAuthClaims updates s with the auth_time, acr and amr that claims
// carry; what they lack stays as it was (a refreshed ID token often
// repeats none of them).
func applyAuthClaims(s *Session, claims map[string]any) {
	if t, ok := authTimeClaim(claims["auth_time"]); ok {
		s.AuthTime = t
	}
	if acr, ok := acrClaim(claims["acr"]); ok {
		s.ACR = acr
	}
	if amr, ok := amrClaim(claims["amr"]); ok {
		s.AMR = amr
	}
}

func authTimeClaim(v any) (int64, bool) {
	var f float64
	switch t := v.(type) {
	case float64:
		f = t
	case json.Number:
		var err error
		if f, err = t.Float64(); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	// A time in the future (beyond clock skew) or before 2001 is no
	// authentication time.
	if f < 1e9 || f > float64(timeNow().Add(5*time.Minute).Unix()) {
		return 0, false
	}
	return int64(f), true
}

func acrClaim(v any) (string, bool) {
	s, ok := v.(string)
	if !ok || checkAuthValue(s) != nil {
		return "", false
	}
	return s, true
}

// maxAMR bounds how many methods a session records.
const maxAMR = 16

func amrClaim(v any) ([]string, bool) {
	arr, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, min(len(arr), maxAMR))
	for _, x := range arr {
		if s, ok := x.(string); ok && checkAuthValue(s) == nil && len(out) < maxAMR && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, true
}

// loginOptions shape one authorization request beyond the defaults.
type loginOptions struct {
	// params are extra authorization request parameters under their
	// standard names (login_hint, domain_hint, prompt, max_age,
	// acr_values). They are added before the dialect's rewrites, to the
	// front-channel request or to a pushed one alike.
	params url.Values
	// require, when set, must be met by the new session (a step-up);
	// otherwise the login ends in a 403 page rather than going back.
	require *authRequirement
}

// silent reports whether the login is prompt=none: the provider answers
// at once, without showing the user anything.
func (o loginOptions) silent() bool { return o.params.Get("prompt") == "none" }

// startQuery is o as /oauth2/start's parameters, for a login that
// continues at the auth host.
func (o loginOptions) startQuery(v url.Values) url.Values {
	for k, vs := range o.params {
		v[k] = vs
	}
	if o.require != nil && len(o.require.AMR) > 0 {
		v.Set("amr", strings.Join(o.require.AMR, " "))
	}
	return v
}

// Limits on what /oauth2/start passes through to the provider.
const (
	maxLoginHint  = 256
	maxDomainHint = 253
	maxAuthValues = 8
)

var errLoginParam = errors.New("invalid sign-in parameter")

// parseLoginOptions reads the parameters /oauth2/start passes through to
// the provider: login_hint, domain_hint and prompt, and the step-up ones,
// max_age, acr_values and amr (which are also required of the new
// session: they can only make a sign-in stricter). Anything else in the
// query is not forwarded. A malformed value is an error naming it.
func parseLoginOptions(q url.Values) (loginOptions, error) {
	var o loginOptions
	bad := func(name, why string) (loginOptions, error) {
		return loginOptions{}, fmt.Errorf("%w: %s %s", errLoginParam, name, why)
	}
	set := func(k, v string) {
		if o.params == nil {
			o.params = url.Values{}
		}
		o.params.Set(k, v)
	}
	for _, name := range []string{"login_hint", "domain_hint", "prompt", "max_age", "acr_values", "amr"} {
		vs, ok := q[name]
		if !ok {
			continue
		}
		if len(vs) != 1 {
			return bad(name, "is given more than once")
		}
		v := vs[0]
		switch name {
		case "login_hint":
			if v == "" || len(v) > maxLoginHint || !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				return bad(name, fmt.Sprintf("must be 1 to %d bytes of text without control characters", maxLoginHint))
			}
			set(name, v)
		case "domain_hint":
			if v == "" || len(v) > maxDomainHint || strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != "" {
				return bad(name, "must be a domain name")
			}
			set(name, v)
		case "prompt":
			fields := strings.Fields(v)
			if len(fields) == 0 || len(fields) > 4 {
				return bad(name, "must be none, login, consent or select_account")
			}
			for i, f := range fields {
				if !slices.Contains([]string{"none", "login", "consent", "select_account"}, f) || slices.Contains(fields[:i], f) {
					return bad(name, "must be none, login, consent or select_account, each once")
				}
			}
			if slices.Contains(fields, "none") && len(fields) > 1 {
				return bad(name, "none cannot be combined with other values")
			}
			set(name, strings.Join(fields, " "))
		case "max_age":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || len(v) > 9 {
				return bad(name, "must be a number of seconds")
			}
			set(name, strconv.FormatInt(n, 10))
			if o.require == nil {
				o.require = new(authRequirement)
			}
			// max_age=0 asks for an authentication now.
			o.require.MaxAge = max(n, 1)
		case "acr_values", "amr":
			fields := strings.Fields(v)
			if len(fields) == 0 || len(fields) > maxAuthValues {
				return bad(name, fmt.Sprintf("must list 1 to %d values", maxAuthValues))
			}
			for _, f := range fields {
				if err := checkAuthValue(f); err != nil {
					return bad(name, err.Error())
				}
			}
			if o.require == nil {
				o.require = new(authRequirement)
			}
			if name == "acr_values" {
				o.require.ACR = fields
				set(name, strings.Join(fields, " "))
			} else {
				o.require.AMR = fields
			}
		}
	}
	if o.require != nil && len(o.require.AMR) > 0 && !o.params.Has("prompt") {
		set("prompt", "login")
	}
	return o, nil
}

package authgate

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
)

// Limits on claims, which come from the provider and end up in cookies and
// headers.
const (
	maxClaimsJSON     = 48 << 10 // all claims of one session, encoded
	maxHeaderValueLen = 32 << 10
)

// ClaimMap says where each identity field is found in the merged ID-token
// and userinfo claims. A path is dot-separated; `[]` walks every element
// of an array and `[N]` one element: `person.roles[].role`,
// `contactInformation.instituteWebmailAddress`, `emails[0]`.
type ClaimMap struct {
	// User is the path of the user id. Default: sub.
	User string `json:"user,omitempty"`
	// Email is the path of the email address. Default: email.
	Email string `json:"email,omitempty"`
	// PreferredUsername is the path of the login name. Default: preferred_username.
	PreferredUsername string `json:"preferred_username,omitempty"`
	// Name is the path of the display name. Default: name.
	Name string `json:"name,omitempty"`
	// Groups is the path of the groups or roles (a list, or one value).
	// Default: groups.
	Groups string `json:"groups,omitempty"`
	// KeepGroups, when set, keeps only the groups matching one of these
	// glob patterns (`*` any run, `?` one character): in the session, the
	// groups header, the {http.auth.user.groups} placeholder and rules.
	// For users with hundreds of groups of which a site needs a few: every
	// request then carries a few. Groups reached through arrays of objects
	// (`roles[].name`) are filtered for the identity but stay whole in the
	// session.
	KeepGroups []string `json:"keep_groups,omitempty"`
	// Required are claims a user must have to sign in: a field (user,
	// email, preferred_username, name, groups) as mapped above, or any
	// other claim path. Only the user id is required otherwise; a field
	// that finds nothing gives no header and an empty placeholder. A
	// login (or refresh) without one of them is refused with 403
	// claims_missing. Default: none.
	Required []string `json:"required,omitempty"`
	// AllowUnverifiedEmail forwards an address the provider marks
	// `email_verified: false` (bool or string) and lets email and domain
	// rules match it. Default: false: such an address is not forwarded
	// (header, placeholder, /oauth2/userinfo) and no rule matches it. A
	// provider that sends no email_verified at all is taken at its word.
	AllowUnverifiedEmail bool `json:"allow_unverified_email,omitempty"`
}

// Identity is the signed-in user as backends see it.
type Identity struct {
	Provider          string
	ID                string
	Email             string
	PreferredUsername string
	Name              string
	Groups            []string
	Claims            map[string]any
	// EmailUnverified: the provider sent an address with email_verified
	// false, which Email (and Claims) therefore leave out.
	EmailUnverified bool

	// out holds the values as they go into headers and placeholders,
	// sanitised once: identities are cached with their sessions, so the
	// hot path only copies them.
	out identityOut

	// memo holds what is derived from this identity once and reused for
	// as long as it is cached: the signed assertions (an *assertionSet,
	// assertion.go).
	memo atomic.Value

	// tokenAuth holds a bearer token's auth_time, acr and amr (Claims
	// drops them as bookkeeping), for authgate_require; nil for sessions,
	// which record them themselves.
	tokenAuth map[string]any
}

type identityOut struct {
	id, email, username, name, groups string
	// placeholders is Identity.placeholder as a function value for
	// Caddy's replacer, made once rather than on every request.
	placeholders func(string) (any, bool)
}

// placeholder resolves {http.auth.user.*} for Caddy's replacer: the
// identity fields, then any top-level scalar claim. One provider per
// request instead of a map write per field.
func (id *Identity) placeholder(key string) (any, bool) {
	name, ok := strings.CutPrefix(key, "http.auth.user.")
	if !ok {
		return nil, false
	}
	switch name {
	case "id":
		return id.out.id, true
	case "email":
		return id.out.email, true
	case "preferred_username":
		return id.out.username, true
	case "name":
		return id.out.name, true
	case "groups":
		return id.out.groups, true
	case "provider":
		return id.Provider, true
	}
	v, ok := id.Claims[name]
	if !ok || v == nil {
		// A claim the user does not have is empty, not the placeholder's
		// own text in a header.
		return "", true
	}
	if s, ok := scalarString(v); ok {
		return sanitizeHeaderValue(s), true
	}
	return nil, false
}

// prepare fills in the header-ready values.
func (id *Identity) prepare() *Identity {
	id.out = identityOut{
		id:       sanitizeHeaderValue(id.ID),
		email:    sanitizeHeaderValue(id.Email),
		username: sanitizeHeaderValue(id.PreferredUsername),
		name:     sanitizeHeaderValue(id.Name),
		groups:   sanitizeHeaderValue(joinHeaderList(id.Groups)),
	}
	id.out.placeholders = id.placeholder
	return id
}

// compiledClaimMap holds the parsed paths and what a user must have.
type compiledClaimMap struct {
	user, email, username, name, groups claimPath
	// userIsEmail: the user id is read from the address, so an unverified
	// address is no user id.
	userIsEmail     bool
	required        []requirement
	allowUnverified bool
	keepGroups      []string // glob patterns; none: keep all
	// keepPrint names the keep_groups a session was narrowed under (see
	// Session.KeptGroups); "" when nothing is narrowed.
	keepPrint string
}

// requirement is one require_claim: a mapped field, or a claim path.
type requirement struct {
	name  string
	field string // user, email, preferred_username, name, groups; "" for a path
	path  claimPath
}

// Errors of mapping claims to an identity at sign-in; identity.go tells the
// user (403).
var (
	errClaimMissing    = errors.New("a claim the site requires is missing")
	errEmailUnverified = errors.New("the provider marks the address unverified")
)

func compileClaimMap(m ClaimMap) (*compiledClaimMap, error) {
	c := &compiledClaimMap{allowUnverified: m.AllowUnverifiedEmail}
	for _, f := range []struct {
		field, path, def string
		dst              *claimPath
	}{
		{"user", m.User, "sub", &c.user},
		{"email", m.Email, "email", &c.email},
		{"preferred_username", m.PreferredUsername, "preferred_username", &c.username},
		{"name", m.Name, "name", &c.name},
		{"groups", m.Groups, "groups", &c.groups},
	} {
		path := f.path
		if path == "" {
			path = f.def
		}
		p, err := parseClaimPath(path)
		if err != nil {
			return nil, fmt.Errorf("claim %s: %w", f.field, err)
		}
		*f.dst = p
	}
	c.userIsEmail = pathString(c.user) == pathString(c.email)
	for _, r := range m.Required {
		rq := requirement{name: r}
		switch r {
		case "user", "email", "preferred_username", "name", "groups":
			rq.field = r
		default:
			p, err := parseClaimPath(r)
			if err != nil {
				return nil, fmt.Errorf("require_claim: %w", err)
			}
			rq.path = p
		}
		c.required = append(c.required, rq)
	}
	for _, g := range m.KeepGroups {
		if g == "" {
			return nil, errors.New("keep_groups: empty pattern")
		}
	}
	c.keepGroups = m.KeepGroups
	if len(m.KeepGroups) > 0 {
		sum := sha256.Sum256([]byte(pathString(c.groups) + "\x00" + strings.Join(m.KeepGroups, "\x00")))
		c.keepPrint = base64.RawURLEncoding.EncodeToString(sum[:9])
	}
	return c, nil
}

// keeps reports whether group g is kept.
func (c *compiledClaimMap) keeps(g string) bool {
	if len(c.keepGroups) == 0 {
		return true
	}
	for _, pat := range c.keepGroups {
		if globMatch(pat, g) {
			return true
		}
	}
	return false
}

// pruneGroups returns claims with the groups claim narrowed to the kept
// groups, for storing in a session, and whether it narrowed anything: only
// when the groups path is a chain of object keys; the maps along the path
// are copied, never changed, and only group names (scalars) that are not
// kept are dropped. Other claims are returned as they are (the identity is
// filtered anyway).
func (c *compiledClaimMap) pruneGroups(claims map[string]any) (map[string]any, bool) {
	if len(c.keepGroups) == 0 {
		return claims, false
	}
	for _, st := range c.groups {
		if !st.plain() {
			return claims, false
		}
	}
	return c.pruneAt(claims, c.groups), true
}

func (c *compiledClaimMap) pruneAt(m map[string]any, p claimPath) map[string]any {
	v, ok := m[p[0].key]
	if !ok {
		return m
	}
	if len(p) > 1 {
		sub, ok := v.(map[string]any)
		if !ok {
			return m
		}
		out := maps.Clone(m)
		out[p[0].key] = c.pruneAt(sub, p[1:])
		return out
	}
	// A group is a non-empty scalar; anything else at the path is no
	// group and stays, as other claim paths may read it.
	dropped := func(e any) bool {
		s, ok := scalarString(e)
		return ok && s != "" && !c.keeps(s)
	}
	out := maps.Clone(m)
	switch x := v.(type) {
	case []any:
		kept := []any{}
		for _, e := range x {
			if !dropped(e) {
				kept = append(kept, e)
			}
		}
		out[p[0].key] = kept
	default:
		if dropped(x) {
			delete(out, p[0].key)
		}
	}
	return out
}

// narrowForSession returns the claims to store for a session that signed
// in with identity id: narrowed by keep_groups when that changes nothing
// about who the user is (a claim path of another field may lie under the
// groups claim), with the fingerprint to store beside them; otherwise the
// claims as they are.
func (c *compiledClaimMap) narrowForSession(provider string, claims map[string]any, id *Identity) (map[string]any, string) {
	pruned, ok := c.pruneGroups(claims)
	if !ok {
		return claims, ""
	}
	again, err := c.identity(provider, pruned, false)
	if err != nil || again.ID != id.ID || again.Email != id.Email || again.PreferredUsername != id.PreferredUsername ||
		again.Name != id.Name || !slices.Equal(again.Groups, id.Groups) {
		return claims, ""
	}
	return pruned, c.keepPrint
}

// overlapsGroups reports whether claim path p reads into the groups claim,
// or the groups claim into it: a rule on such a path would see claims that
// keep_groups narrowed.
func (c *compiledClaimMap) overlapsGroups(p claimPath) bool {
	n := min(len(p), len(c.groups))
	for i := 0; i < n; i++ {
		if p[i].key != c.groups[i].key {
			return false
		}
	}
	return true
}

// identity maps claims to an Identity. Only the user id is required: a
// field whose path finds nothing is empty. An address the provider marks
// unverified is left out (unless allowed), from Email and from the claims
// the identity shows. strict (whenever the provider has just spoken: login,
// refresh, userinfo re-read, bearer tokens) makes a missing user id or
// required claim an error wrapping errClaimMissing (errEmailUnverified for
// a required address that is unverified); stored sessions are mapped
// leniently.
func (c *compiledClaimMap) identity(provider string, claims map[string]any, strict bool) (*Identity, error) {
	id := &Identity{Provider: provider, Claims: claims}
	id.ID = c.user.first(claims)
	id.Email = c.email.first(claims)
	id.PreferredUsername = c.username.first(claims)
	id.Name = c.name.first(claims)
	id.Groups = c.groups.strings(claims)
	sentGroups := len(id.Groups) > 0
	if id.Email != "" && !c.allowUnverified && emailUnverified(claims) {
		if c.userIsEmail {
			return nil, fmt.Errorf("%w: the user id is that address", errEmailUnverified)
		}
		id.Email = ""
		id.EmailUnverified = true
		if _, ok := claims["email"]; ok {
			id.Claims = maps.Clone(claims)
			delete(id.Claims, "email")
		}
	}
	if strict {
		if id.ID == "" {
			return nil, fmt.Errorf("%w: claim user: path %q found nothing in the provider's claims", errClaimMissing, pathString(c.user))
		}
		for _, rq := range c.required {
			var ok bool
			switch rq.field {
			case "user":
				ok = id.ID != ""
			case "email":
				if id.EmailUnverified {
					return nil, fmt.Errorf("%w: require_claim email", errEmailUnverified)
				}
				ok = id.Email != ""
			case "preferred_username":
				ok = id.PreferredUsername != ""
			case "name":
				ok = id.Name != ""
			case "groups":
				ok = sentGroups
			default:
				ok = len(rq.path.strings(claims)) > 0
			}
			if !ok {
				return nil, fmt.Errorf("%w: require_claim %s found nothing in the provider's claims", errClaimMissing, rq.name)
			}
		}
	}
	if len(c.keepGroups) > 0 {
		kept := id.Groups[:0]
		for _, g := range id.Groups {
			if c.keeps(g) {
				kept = append(kept, g)
			}
		}
		id.Groups = kept
	}
	return id.prepare(), nil
}

// emailUnverified reports whether the provider says the address is not
// verified: email_verified false, as a JSON bool or the string "false"
// (some providers send strings). Absent means nothing was said.
func emailUnverified(claims map[string]any) bool {
	switch v := claims["email_verified"].(type) {
	case bool:
		return !v
	case string:
		return strings.EqualFold(strings.TrimSpace(v), "false")
	}
	return false
}

// sanitizeHeaderValue drops control characters (CR, LF, NUL and the rest)
// so that no claim can split or smuggle a header, and bounds the length.
func sanitizeHeaderValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			clean = false
			break
		}
	}
	if !clean {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, s)
	}
	if len(s) > maxHeaderValueLen {
		// Cut at a list separator, never inside a value: half a group
		// name could be the name of another group.
		cut := strings.LastIndexByte(s[:maxHeaderValueLen], ',')
		if cut < 0 {
			return ""
		}
		s = s[:cut]
	}
	return s
}

// registeredClaims are JWT bookkeeping, not identity; they are dropped
// before claims are stored in a session.
var registeredClaims = []string{"iss", "aud", "exp", "iat", "nbf", "auth_time", "at_hash", "c_hash", "nonce", "jti", "azp", "typ", "session_state", "acr", "amr"}

// mergeClaims combines ID-token and userinfo claims (userinfo wins, as it
// is fresher) and drops bookkeeping claims.
func mergeClaims(idClaims, userinfo map[string]any) map[string]any {
	out := make(map[string]any, len(idClaims)+len(userinfo))
	for k, v := range idClaims {
		out[k] = v
	}
	for k, v := range userinfo {
		out[k] = v
	}
	for _, k := range registeredClaims {
		delete(out, k)
	}
	return out
}

// checkClaimsSize fails when claims are too large to carry.
func checkClaimsSize(claims map[string]any) error {
	b, err := json.Marshal(claims)
	if err != nil {
		return fmt.Errorf("encoding claims: %w", err)
	}
	if len(b) > maxClaimsJSON {
		return fmt.Errorf("claims are %d bytes, over the %d allowed", len(b), maxClaimsJSON)
	}
	return nil
}

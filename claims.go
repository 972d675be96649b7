package authgate

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// Limits on claims, which come from the provider and end up in cookies and
// headers.
const (
	maxClaimPathLen   = 256
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
		groups:   sanitizeHeaderValue(strings.Join(id.Groups, ",")),
	}
	id.out.placeholders = id.placeholder
	return id
}

// claimPath is a parsed path.
type claimPath []pathStep

type pathStep struct {
	key   string
	all   bool // key[]
	index int  // key[N]; -1 when not indexed
	// The forms below read identities that an API spreads over lists of
	// objects (GitHub's /user/emails, /user/teams), as data rather than
	// code per provider.
	where []claimFilter // key[k=v,...]: the elements of an array whose k is v, for every filter
	keys  bool          // key[keys]: the member names of an object, sorted
	tuple []claimPath   // (a/b): per value reached so far, the first scalar of each sub-path, joined with "/"
	alts  []claimPath   // a|b: every alternative's values, in order; only as the whole path
}

// claimFilter keeps the array elements whose member key renders as value.
type claimFilter struct{ key, value string }

// plain reports whether the step only reads one member of an object.
func (st pathStep) plain() bool {
	return !st.all && st.index < 0 && st.where == nil && !st.keys && st.tuple == nil && st.alts == nil
}

var errClaimPath = errors.New("invalid claim path")

// parseClaimPath parses a path such as `person.roles[].role`. Besides
// dot-separated keys, `[]` (every element) and `[N]` (one element):
//
//	emails[primary=true,verified=true].email  the elements matching every filter
//	roles[keys]                                the member names of an object
//	teams[].(organization.login/slug)          per element, values joined with "/"
//	orgs[].login|teams[].slug                  the values of each alternative, in order
//	'https://example.com/roles'                a key with dots or slashes, quoted
//
// Keys may not contain . [ ] ( ) | ' or / unless quoted ('...').
func parseClaimPath(s string) (claimPath, error) {
	if s == "" || len(s) > maxClaimPathLen {
		return nil, fmt.Errorf("%w %q: empty or longer than %d", errClaimPath, s, maxClaimPathLen)
	}
	parts, err := splitClaimPath(s, '|')
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", errClaimPath, s, err)
	}
	if len(parts) == 1 {
		return parseSimplePath(s, s, false)
	}
	st := pathStep{index: -1}
	for _, part := range parts {
		p, err := parseSimplePath(s, part, false)
		if err != nil {
			return nil, err
		}
		st.alts = append(st.alts, p)
	}
	return claimPath{st}, nil
}

// splitClaimPath splits s at sep outside quotes, brackets and parentheses.
func splitClaimPath(s string, sep byte) ([]string, error) {
	var parts []string
	depth, quoted, from := 0, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted:
			quoted = c != '\''
		case c == '\'':
			quoted = true
		case c == '[' || c == '(':
			depth++
		case c == ']' || c == ')':
			depth--
		case c == sep && depth == 0:
			parts = append(parts, s[from:i])
			from = i + 1
		}
	}
	if quoted {
		return nil, errors.New("unclosed quote")
	}
	return append(parts, s[from:]), nil
}

// claimKeyStops are the characters that end an unquoted key.
const claimKeyStops = ".[]()|'/"

// parseSimplePath parses a path without alternatives; whole is the full
// path, for messages. A tuple is not allowed inside a tuple.
func parseSimplePath(whole, s string, inTuple bool) (claimPath, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w %q: %s", errClaimPath, whole, fmt.Sprintf(format, a...))
	}
	var p claimPath
	pos := 0
	for {
		st := pathStep{index: -1}
		segStart := pos
		switch {
		case pos < len(s) && s[pos] == '(':
			if inTuple {
				return nil, bad("a tuple inside a tuple")
			}
			closing := strings.LastIndexByte(s, ')')
			if closing != len(s)-1 {
				return nil, bad("a tuple (a/b) must end the path")
			}
			subs, err := splitClaimPath(s[pos+1:closing], '/')
			if err != nil {
				return nil, bad("%v", err)
			}
			if len(subs) < 2 {
				return nil, bad("a tuple joins two paths or more: (a/b)")
			}
			for _, sub := range subs {
				sp, err := parseSimplePath(whole, sub, true)
				if err != nil {
					return nil, err
				}
				st.tuple = append(st.tuple, sp)
			}
			return append(p, st), nil
		case pos < len(s) && s[pos] == '\'':
			end := strings.IndexByte(s[pos+1:], '\'')
			if end <= 0 {
				return nil, bad("empty or unclosed quoted key")
			}
			st.key = s[pos+1 : pos+1+end]
			pos += end + 2
		default:
			for pos < len(s) && !strings.ContainsRune(claimKeyStops, rune(s[pos])) {
				pos++
			}
			st.key = s[segStart:pos]
			if st.key == "" {
				if pos < len(s) && s[pos] != '.' && s[pos] != '[' {
					return nil, bad("unexpected %q", s[pos])
				}
				return nil, bad("empty segment")
			}
		}
		if pos < len(s) && s[pos] == '[' {
			end := strings.IndexByte(s[pos:], ']')
			if end < 0 {
				return nil, bad("bad brackets in %q", s[segStart:])
			}
			inner := s[pos+1 : pos+end]
			seg := s[segStart : pos+end+1]
			if strings.ContainsAny(inner, "[]") {
				return nil, bad("bad brackets in %q", seg)
			}
			switch {
			case inner == "":
				st.all = true
			case inner == "keys":
				st.keys = true
			case strings.Contains(inner, "="):
				for f := range strings.SplitSeq(inner, ",") {
					k, v, _ := strings.Cut(f, "=")
					if k == "" || v == "" || strings.ContainsAny(k+v, "='()|") {
						return nil, bad("bad filter %q in %q (key=value, comma-separated)", f, seg)
					}
					st.where = append(st.where, claimFilter{key: k, value: v})
				}
			default:
				// Digits only: Atoi would also take "+1" or "-0".
				n, err := strconv.Atoi(inner)
				if err != nil || n < 0 || strings.TrimLeft(inner, "0123456789") != "" {
					return nil, bad("bad index in %q", seg)
				}
				st.index = n
			}
			pos += end + 1
		}
		p = append(p, st)
		if pos == len(s) {
			return p, nil
		}
		if s[pos] != '.' {
			return nil, bad("bad brackets in %q", s[segStart:])
		}
		pos++
		if pos == len(s) {
			return nil, bad("empty segment")
		}
	}
}

// eval returns every value the path reaches; arrays at the end are
// flattened one level, so `groups` yields each group.
func (p claimPath) eval(claims map[string]any) []any {
	if len(p) == 1 && p[0].alts != nil {
		var out []any
		for _, alt := range p[0].alts {
			out = append(out, alt.eval(claims)...)
		}
		return out
	}
	cur := []any{claims}
	for _, st := range p {
		var next []any
		for _, c := range cur {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			if st.tuple != nil {
				if joined, ok := st.joinTuple(m); ok {
					next = append(next, joined)
				}
				continue
			}
			v, ok := m[st.key]
			if !ok || v == nil {
				continue
			}
			switch {
			case st.all:
				if arr, ok := v.([]any); ok {
					next = append(next, arr...)
				}
			case st.index >= 0:
				if arr, ok := v.([]any); ok && st.index < len(arr) {
					next = append(next, arr[st.index])
				}
			case st.where != nil:
				if arr, ok := v.([]any); ok {
					for _, e := range arr {
						if st.matches(e) {
							next = append(next, e)
						}
					}
				}
			case st.keys:
				if obj, ok := v.(map[string]any); ok {
					for _, k := range slices.Sorted(maps.Keys(obj)) {
						next = append(next, k)
					}
				}
			default:
				next = append(next, v)
			}
		}
		cur = next
		if len(cur) == 0 {
			return nil
		}
	}
	var out []any
	for _, v := range cur {
		if arr, ok := v.([]any); ok {
			out = append(out, arr...)
		} else {
			out = append(out, v)
		}
	}
	return out
}

// matches reports whether array element e passes every filter of st.
func (st pathStep) matches(e any) bool {
	obj, ok := e.(map[string]any)
	if !ok {
		return false
	}
	for _, f := range st.where {
		if s, ok := scalarString(obj[f.key]); !ok || s != f.value {
			return false
		}
	}
	return true
}

// joinTuple is the first scalar of each of st's sub-paths in m, joined
// with "/"; false when one of them has none.
func (st pathStep) joinTuple(m map[string]any) (string, bool) {
	parts := make([]string, 0, len(st.tuple))
	for _, sub := range st.tuple {
		vals := sub.strings(m)
		if len(vals) == 0 {
			return "", false
		}
		parts = append(parts, vals[0])
	}
	return strings.Join(parts, "/"), true
}

// scalarString renders a claim value as text; objects are not scalars.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// strings returns the scalar values the path reaches.
func (p claimPath) strings(claims map[string]any) []string {
	if v, ok := p.topLevel(claims); ok {
		// One key, the default mapping: what eval does, without its
		// lists (a cache miss maps five such paths).
		arr, isArr := v.([]any)
		if !isArr {
			if s, ok := scalarString(v); ok && s != "" {
				return []string{s}
			}
			return []string{}
		}
		out := make([]string, 0, len(arr))
		for _, e := range arr {
			if s, ok := scalarString(e); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	vals := p.eval(claims)
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		if s, ok := scalarString(v); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

// topLevel returns the value a path of one plain key names (ok false for
// any other path).
func (p claimPath) topLevel(claims map[string]any) (any, bool) {
	if len(p) != 1 || !p[0].plain() {
		return nil, false
	}
	return claims[p[0].key], true
}

// first returns the first of the values p.strings would return, or "".
func (p claimPath) first(claims map[string]any) string {
	v, ok := p.topLevel(claims)
	if !ok {
		if vals := p.strings(claims); len(vals) > 0 {
			return vals[0]
		}
		return ""
	}
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if s, ok := scalarString(e); ok && s != "" {
				return s
			}
		}
		return ""
	}
	s, _ := scalarString(v)
	return s
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

func pathString(p claimPath) string {
	if len(p) == 1 && p[0].alts != nil {
		alts := make([]string, len(p[0].alts))
		for i, a := range p[0].alts {
			alts[i] = pathString(a)
		}
		return strings.Join(alts, "|")
	}
	var b strings.Builder
	for i, st := range p {
		if i > 0 {
			b.WriteByte('.')
		}
		if st.tuple != nil {
			subs := make([]string, len(st.tuple))
			for j, sub := range st.tuple {
				subs[j] = pathString(sub)
			}
			b.WriteString("(" + strings.Join(subs, "/") + ")")
			continue
		}
		if strings.ContainsAny(st.key, claimKeyStops) {
			b.WriteString("'" + st.key + "'")
		} else {
			b.WriteString(st.key)
		}
		switch {
		case st.all:
			b.WriteString("[]")
		case st.index >= 0:
			b.WriteString("[" + strconv.Itoa(st.index) + "]")
		case st.keys:
			b.WriteString("[keys]")
		case st.where != nil:
			fs := make([]string, len(st.where))
			for j, f := range st.where {
				fs[j] = f.key + "=" + f.value
			}
			b.WriteString("[" + strings.Join(fs, ",") + "]")
		}
	}
	return b.String()
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

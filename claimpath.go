package authgate

// Claim paths: where in the provider's claims a value is found (`groups`,
// `realm_access.roles`, `resource_access.(client).roles`, filters and
// tuples), parsed once at provision and evaluated at sign-in.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// maxClaimPathLen bounds a configured claim path.
const maxClaimPathLen = 256

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

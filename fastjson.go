package authgate

import (
	"encoding/json"
	"unicode/utf8"
)

// jsonReader reads the JSON of a session payload in one pass: the form
// json.Marshal writes, into Go values as encoding/json decodes them into
// interfaces with UseNumber (map[string]any, []any, string, json.Number,
// bool, nil). encoding/json scans a value twice (once to validate it, once
// to decode it) and copies every string; this reader checks as it goes
// and takes strings without escapes as substrings of one copy of the
// input, which the decoded session then keeps. It was written for cookie
// misses, where JSON was half of what decoding a session cost.
//
// It gives up (ok false) on anything it does not handle exactly as
// encoding/json would, and the caller then decodes with encoding/json;
// so every input decodes as before, only faster. FuzzJSONReader checks
// that whatever the reader accepts, encoding/json decodes to the same
// value.
type jsonReader struct {
	s     string
	i     int
	depth int
	// stack holds the elements of the arrays being read, which are then
	// copied into slices of their exact length: appending would leave up
	// to half of each slice unused, in every cached session.
	stack []any
}

// maxReaderDepth is the nesting the reader follows before it gives up.
const maxReaderDepth = 64

func newJSONReader(b []byte) *jsonReader { return &jsonReader{s: string(b)} }

func (r *jsonReader) space() {
	for r.i < len(r.s) {
		switch r.s[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, 0 at the end.
func (r *jsonReader) peek() byte {
	r.space()
	if r.i >= len(r.s) {
		return 0
	}
	return r.s[r.i]
}

// eat consumes c when it is the next byte after white space.
func (r *jsonReader) eat(c byte) bool {
	if r.peek() != c {
		return false
	}
	r.i++
	return true
}

// object reads an object, calling field for each key with the reader
// positioned at its value; field reads the value.
func (r *jsonReader) object(field func(key string) bool) bool {
	if !r.eat('{') {
		return false
	}
	if r.eat('}') {
		return true
	}
	for {
		key, ok := r.str()
		if !ok || !r.eat(':') || !field(key) {
			return false
		}
		if r.eat('}') {
			return true
		}
		if !r.eat(',') {
			return false
		}
	}
}

// str reads a string. One without escapes, and valid UTF-8, is a
// substring of the input; one with escapes goes through encoding/json, so
// that every escape (and surrogate, and invalid byte) means what it means
// there.
func (r *jsonReader) str() (string, bool) {
	if !r.eat('"') {
		return "", false
	}
	start := r.i
	high := false
	for r.i < len(r.s) {
		c := r.s[r.i]
		switch {
		case c == '"':
			v := r.s[start:r.i]
			r.i++
			if high && !utf8.ValidString(v) {
				return r.unquote(start - 1)
			}
			return v, true
		case c == '\\':
			return r.escaped(start)
		case c < 0x20:
			return "", false // not JSON
		case c >= utf8.RuneSelf:
			high = true
		}
		r.i++
	}
	return "", false
}

// escaped finishes a string with escapes that starts at start (after its
// quote), and decodes it with encoding/json.
func (r *jsonReader) escaped(start int) (string, bool) {
	for r.i < len(r.s) {
		switch c := r.s[r.i]; {
		case c == '\\':
			r.i += 2
			continue
		case c == '"':
			r.i++
			return r.unquote(start - 1)
		case c < 0x20:
			return "", false
		}
		r.i++
	}
	return "", false
}

// unquote decodes the string token from quote to the reader's position.
func (r *jsonReader) unquote(quote int) (string, bool) {
	var v string
	if err := json.Unmarshal([]byte(r.s[quote:r.i]), &v); err != nil {
		return "", false
	}
	return v, true
}

// number reads a number's literal, checked against JSON's grammar.
func (r *jsonReader) number() (string, bool) {
	r.space()
	start := r.i
	if r.i < len(r.s) && r.s[r.i] == '-' {
		r.i++
	}
	switch {
	case r.i < len(r.s) && r.s[r.i] == '0':
		r.i++
	case r.digits() == 0:
		return "", false
	}
	if r.i < len(r.s) && r.s[r.i] == '.' {
		r.i++
		if r.digits() == 0 {
			return "", false
		}
	}
	if r.i < len(r.s) && (r.s[r.i] == 'e' || r.s[r.i] == 'E') {
		r.i++
		if r.i < len(r.s) && (r.s[r.i] == '+' || r.s[r.i] == '-') {
			r.i++
		}
		if r.digits() == 0 {
			return "", false
		}
	}
	return r.s[start:r.i], true
}

func (r *jsonReader) digits() int {
	n := 0
	for r.i < len(r.s) && r.s[r.i] >= '0' && r.s[r.i] <= '9' {
		r.i++
		n++
	}
	return n
}

// integer reads a number that is an integer within 64 bits, as
// encoding/json requires of an int or int64 field.
func (r *jsonReader) integer() (int64, bool) {
	lit, ok := r.number()
	if !ok {
		return 0, false
	}
	neg := lit[0] == '-'
	digits := lit
	if neg {
		digits = lit[1:]
	}
	var n uint64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' || n > (1<<63)/10 {
			return 0, false // a fraction, an exponent, or too large
		}
		n = n*10 + uint64(c-'0')
	}
	switch {
	case neg && n <= 1<<63:
		return -int64(n), true
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}

// literal consumes word (true, false, null).
func (r *jsonReader) literal(word string) bool {
	if len(r.s)-r.i < len(word) || r.s[r.i:r.i+len(word)] != word {
		return false
	}
	r.i += len(word)
	return true
}

// value reads any value, as encoding/json decodes it into an interface
// with UseNumber.
func (r *jsonReader) value() (any, bool) {
	switch r.peek() {
	case '"':
		return r.str()
	case '{':
		return r.claims()
	case '[':
		return r.array()
	case 't':
		return true, r.literal("true")
	case 'f':
		return false, r.literal("false")
	case 'n':
		return nil, r.literal("null")
	default:
		lit, ok := r.number()
		return json.Number(lit), ok
	}
}

// claims reads an object into a map (never nil, as encoding/json makes
// it); a repeated key keeps its last value, as there.
func (r *jsonReader) claims() (map[string]any, bool) {
	if r.depth++; r.depth > maxReaderDepth {
		return nil, false
	}
	m := map[string]any{}
	ok := r.object(func(key string) bool {
		v, ok := r.value()
		m[key] = v
		return ok
	})
	r.depth--
	return m, ok
}

// array reads an array (never nil, as encoding/json makes it).
func (r *jsonReader) array() ([]any, bool) {
	if r.depth++; r.depth > maxReaderDepth || !r.eat('[') {
		return nil, false
	}
	if r.eat(']') {
		r.depth--
		return []any{}, true
	}
	base := len(r.stack)
	for {
		v, ok := r.value()
		if !ok {
			return nil, false
		}
		r.stack = append(r.stack, v)
		if r.eat(']') {
			break
		}
		if !r.eat(',') {
			return nil, false
		}
	}
	out := make([]any, len(r.stack)-base)
	copy(out, r.stack[base:])
	clear(r.stack[base:])
	r.stack = r.stack[:base]
	r.depth--
	return out, true
}

// strings reads an array of strings into a []string (never nil, as
// encoding/json makes it); anything but strings in it makes it give up.
func (r *jsonReader) strings() ([]string, bool) {
	if !r.eat('[') {
		return nil, false
	}
	out := []string{}
	if r.eat(']') {
		return out, true
	}
	for {
		v, ok := r.str()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if r.eat(']') {
			return out, true
		}
		if !r.eat(',') {
			return nil, false
		}
	}
}

package authgate

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The list convention of the multi-valued identity headers (the groups
// header, claim headers) and of {http.auth.user.groups}: values joined
// with ",", each percent-encoded where it would be misread. Joined as they
// are, a group named "x,admins" reads as two, "admins" among them, and a
// backend's "deny group admins" or "allow group admins" decides on a group
// the user is not in. Encoded, as "%" and two upper-case hex digits per
// byte, are:
//
//   - "%" and "," (the escape and the separator);
//   - control characters, 0x00-0x1F and 0x7F, which no header may carry
//     (dropped, "ad\x00mins" would read as "admins");
//   - whitespace that begins or ends a value (a space, U+00A0, U+3000, a
//     byte-order mark: what Go's strings.TrimSpace, Python's strip or
//     JavaScript's trim remove), which a backend trimming the parts of
//     "x, admins" would lose.
//
// Everything else, spaces inside a value and non-ASCII text included,
// stays as it is, so that lists of plain names read as before. A backend
// splits on ",", trims spaces and percent-decodes each part (Go:
// url.PathUnescape; Python: urllib.parse.unquote; JavaScript:
// decodeURIComponent).

// outerEscapes returns the byte ranges of v encoded as whitespace: v[:lead]
// and v[trail:]; lead 0 and trail len(v) when v neither begins nor ends
// with whitespace.
func outerEscapes(v string) (lead, trail int) {
	trail = len(v)
	if v == "" {
		return 0, trail
	}
	if c := v[0]; c == ' ' || c >= utf8.RuneSelf {
		if r, n := utf8.DecodeRuneInString(v); outerSpace(r) {
			lead = n
		}
	}
	if c := v[len(v)-1]; c == ' ' || c >= utf8.RuneSelf {
		if r, n := utf8.DecodeLastRuneInString(v); outerSpace(r) {
			trail = len(v) - n
		}
	}
	return lead, trail
}

// outerSpace: what some language's trim removes (JavaScript's takes
// U+FEFF too; U+180E was whitespace before Unicode 6.3).
func outerSpace(r rune) bool {
	return unicode.IsSpace(r) || r == '\uFEFF' || r == '\u180E'
}

func needsListEscape(c byte) bool { return c == '%' || c == ',' || c < 0x20 || c == 0x7f }

// listValueExtra is how many bytes encoding v adds: 0 for a value that
// needs none, the common case.
func listValueExtra(v string) int {
	extra := 0
	for i := 0; i < len(v); i++ {
		if needsListEscape(v[i]) {
			extra += 2
		}
	}
	lead, trail := outerEscapes(v)
	for i := 0; i < lead; i++ {
		if !needsListEscape(v[i]) {
			extra += 2
		}
	}
	for i := max(trail, lead); i < len(v); i++ {
		if !needsListEscape(v[i]) {
			extra += 2
		}
	}
	return extra
}

// joinHeaderList encodes vals in the list convention. It costs what
// strings.Join costs when no value needs encoding (nothing for one value),
// and one allocation otherwise.
func joinHeaderList(vals []string) string {
	extra := 0
	for _, v := range vals {
		extra += listValueExtra(v)
	}
	if extra == 0 {
		return strings.Join(vals, ",")
	}
	n := extra + len(vals) - 1
	for _, v := range vals {
		n += len(v)
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(n)
	for j, v := range vals {
		if j > 0 {
			b.WriteByte(',')
		}
		lead, trail := outerEscapes(v)
		for i := 0; i < len(v); i++ {
			if c := v[i]; i < lead || i >= trail || needsListEscape(c) {
				b.WriteByte('%')
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

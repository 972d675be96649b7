package authgate

import "unicode/utf8"

// globMatch matches s against a pattern where `*` is any run of characters
// (slashes included) and `?` one character. It runs in O(len(p)·len(s)).
// A `*` in the pattern is always a wildcard, even against a literal `*` in
// s, and `?` consumes one UTF-8 character (or one byte of invalid UTF-8).
func globMatch(p, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		if px < len(p) && p[px] == '*' {
			starP, starS = px, sx
			px++
			continue
		}
		if px < len(p) {
			_, pw := utf8.DecodeRuneInString(p[px:])
			_, sw := utf8.DecodeRuneInString(s[sx:])
			if p[px] == '?' || p[px:px+pw] == s[sx:sx+sw] {
				px += pw
				sx += sw
				continue
			}
		}
		if starP < 0 {
			return false
		}
		_, w := utf8.DecodeRuneInString(s[starS:])
		starS += w
		px, sx = starP+1, starS
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

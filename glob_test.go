package authgate

import (
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"", "", true},
		{"", "a", false},
		{"a", "", false},
		{"*", "", true},
		{"*", "anything/with/slashes", true},
		{"**", "", true},
		{"**", "abc", true},
		{"a**b", "ab", true},
		{"a**b", "axxb", true},
		{"?", "", false},
		{"?", "a", true},
		{"?", "ab", false},
		{"??", "ab", true},
		{"*@example.test", "ada@example.test", true},
		{"*@example.test", "ada@example.test.evil", false},
		{"*@example.test", "ada@evilexample.test", false},
		{"*.example.test", "a.b.example.test", true},
		{"*.example.test", "example.test", false},
		{"a*", "a", true},
		{"*a", "a", true},
		{"*a", "ba", true},
		{"*a", "ab", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"a*b?d", "abbcd", true},
		{"exact", "exact", true},
		{"exact", "exact2", false},
		{"exact", "Exact", false}, // case folding is the caller's job
		// A pattern star is a wildcard even where the subject has a star.
		{"*b", "*ab", true},
		{"a*", "a*", true},
		{"*", "*", true},
		{"a*c", "a*bc", true},
		// A literal ? or * in the subject only matches a wildcard.
		{"?", "*", true},
		{"x", "?", false},
		// ? is one character, not one byte.
		{"?", "é", true},
		{"??", "é", false},
		{"?@example.test", "李@example.test", true},
		{"*é", "café", true},
		{"caf?", "café", true},
		{"é*", "e", false},
		// Invalid UTF-8 is compared byte by byte.
		{"?", "\xff", true},
		{"\xff*", "\xffabc", true},
		{"a?c", "a\xffc", true},
		{"*a*a*a*a*b", strings.Repeat("a", 40), false},
		{"*a*a*a*a*a", strings.Repeat("a", 40), true},
	}
	for _, tt := range tests {
		t.Run(tt.p+"~"+tt.s, func(t *testing.T) {
			if got := globMatch(tt.p, tt.s); got != tt.want {
				t.Errorf("globMatch(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
			}
		})
	}
}

// TestGlobMatchPathological checks the O(len(p)·len(s)) bound: a naive
// backtracking matcher takes exponential time on these.
func TestGlobMatchPathological(t *testing.T) {
	tests := []struct {
		name string
		p, s string
		want bool
	}{
		{"stars and a missing b", strings.Repeat("a*", 30) + "b", strings.Repeat("a", 20000), false},
		{"question marks and stars", strings.Repeat("*?", 50) + "b", strings.Repeat("a", 20000), false},
		{"long pattern long subject", strings.Repeat("*a", 500) + "*", strings.Repeat("a", 10000), true},
		{"classic a*a*a*a*b", "a*a*a*a*b", strings.Repeat("a", 100000), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			if got := globMatch(tt.p, tt.s); got != tt.want {
				t.Errorf("globMatch = %v, want %v", got, tt.want)
			}
			// Generous: linear-times-pattern work is microseconds to a few
			// tens of milliseconds; exponential would not finish at all.
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("globMatch took %v", d)
			}
		})
	}
}

// FuzzGlobMatch compares globMatch with the regular expression the pattern
// stands for.
func FuzzGlobMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"*@example.test", "ada@example.test"},
		{"*b", "*ab"},
		{"a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaa"},
		{"?", "é"},
		{"caf?", "café"},
		{"**?*", ""},
		{"[a]", "a"},
		{".*", "x"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > 64 || len(s) > 256 || !utf8.ValidString(p) || !utf8.ValidString(s) {
			return
		}
		var re strings.Builder
		re.WriteString(`^(?s:`)
		for _, r := range p {
			switch r {
			case '*':
				re.WriteString(`.*`)
			case '?':
				re.WriteString(`.`)
			default:
				re.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		re.WriteString(`)$`)
		want := regexp.MustCompile(re.String()).MatchString(s)
		if got := globMatch(p, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, regexp %s says %v", p, s, got, re.String(), want)
		}
	})
}

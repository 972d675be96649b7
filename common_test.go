package authgate

import (
	"strings"
	"testing"
)

func TestSessionRandomString(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		s := randomString(32)
		if len(s) != 43 || strings.ContainsAny(s, "+/=") || seen[s] {
			t.Fatalf("randomString = %q", s)
		}
		seen[s] = true
	}
}

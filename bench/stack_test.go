package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestSameBytesSiteQuoting: a value with quotes, braces, '#', commas and
// spaces reaches the upstream request byte for byte, through the
// Caddyfile adapter and header_up's placeholder expansion.
func TestSameBytesSiteQuoting(t *testing.T) {
	id := benchID
	id.email = `a "quoted" {bench.known} #not-a-comment, x}{`
	id.groups = []string{"one two", "{three}", `"four"`}
	site, err := sameBytesSite("http://127.0.0.1:9", "127.0.0.1:10", id)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\n\tadmin off\n}\n"+site), nil)
	if err != nil {
		t.Fatalf("adapting\n%s: %v", site, err)
	}
	// Find the reverse_proxy handler's header set operations.
	var set map[string][]string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "reverse_proxy" {
				b, _ := json.Marshal(v["headers"].(map[string]any)["request"].(map[string]any)["set"])
				_ = json.Unmarshal(b, &set)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var root any
	if err := json.Unmarshal(cfg, &root); err != nil {
		t.Fatal(err)
	}
	walk(root)
	repl := caddy.NewReplacer()
	repl.Set("bench.known", "EXPANDED") // what an unescaped {bench.known} would become
	for _, h := range id.upstreamHeaders() {
		vals := set[h[0]]
		if len(vals) != 1 {
			t.Fatalf("%s: set %q", h[0], vals)
		}
		if got := repl.ReplaceKnown(vals[0], ""); got != h[1] {
			t.Errorf("%s: header_up would send %q, want %q", h[0], got, h[1])
		}
	}
	if !strings.Contains(string(cfg), `"delete":["Cookie"]`) {
		t.Errorf("no header_up -Cookie in %s", cfg)
	}
	for _, bad := range []string{"a\\b", "a\nb", "{$HOME}"} {
		if _, err := caddyfileQuote(bad); err == nil {
			t.Errorf("caddyfileQuote(%q): no error", bad)
		}
	}
}

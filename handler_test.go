package authgate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

func TestStartupValidation(t *testing.T) {
	adapt := func(t *testing.T, caddyfile string) []byte {
		t.Helper()
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
		if err != nil {
			t.Fatalf("adapt: %v", err)
		}
		return out
	}
	validate := func(t *testing.T, caddyfile string) error {
		t.Helper()
		var cfg caddy.Config
		if err := json.Unmarshal(adapt(t, caddyfile), &cfg); err != nil {
			t.Fatal(err)
		}
		return caddy.Validate(&cfg)
	}
	site := func(global string) string {
		return "{\n\tadmin off\n\tauthgate {\n" + global + "\n\t}\n}\nhttp://127.0.0.1:1 {\n\tauthgate\n\trespond ok\n}\n"
	}
	provider := "\t\tprovider corp {\n\t\t\tissuer http://127.0.0.1:1/never\n\t\t\tclient_id app\n\t\t}"
	for _, tc := range []struct{ name, global, want string }{
		{"short key", "\t\tsession_keys too-short\n" + provider, "session key 1 is 9 bytes; at least 32 are needed"},
		{"missing key", "\t\tsession_keys {env.AUTHGATE_SURELY_UNSET_KEY}\n" + provider, "key 1 is empty (is its environment variable or file set?)"},
		{"no provider", "\t\tsession_keys " + testKey, "no authgate settings"},
		{"bad same_site at run time", "\t\tsession_keys " + testKey + "\n" + provider + "\n\t\tsession_lifetime 1s", "session_lifetime 1s is too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(t, site(tc.global))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}

	t.Run("a group rule on a group keep_groups drops", func(t *testing.T) {
		cfg := func(rule string) string {
			return "{\n\tadmin off\n\tauthgate {\n\t\tsession_keys " + testKey + "\n" +
				"\t\tprovider corp {\n\t\t\tissuer http://127.0.0.1:1/never\n\t\t\tclient_id app\n\t\t\tkeep_groups app-*\n\t\t}\n\t}\n}\n" +
				"http://127.0.0.1:1 {\n\tauthgate {\n\t\t" + rule + "\n\t}\n\trespond ok\n}\n"
		}
		// A deny that can never match would let in whom it names.
		for _, tc := range []struct{ rule, want string }{
			{"deny group contractors", "rule 1 (deny group contractors) can never match: provider corp keeps only the groups matching app-*"},
			{"allow group staff", "rule 1 (allow group staff) can never match"},
			{"deny group contract*", "rule 1 (deny group contract*) may miss groups that are dropped: contract* is not within a kept pattern"},
			{"deny group *-contractors", "may miss groups that are dropped"},
			{"deny claim groups banned", "rule 1 (deny claim groups banned) reads the groups claim, which keep_groups narrows"},
			{"allow group app-admin", ""},
			{"deny group app-contract*", ""}, // within app-*
			{"deny group app-?", ""},
			{"allow group *admin*", ""}, // an allow that misses only turns users away
			{"deny claim department sales", ""},
		} {
			err := validate(t, cfg(tc.rule))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%s: %v", tc.rule, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("%s: %v, want an error containing %q", tc.rule, err, tc.want)
			}
		}
	})

	t.Run("unreachable provider: start does not hang and other sites serve", func(t *testing.T) {
		dead := freePort(t) // nothing listens here
		port, other := freePort(t), freePort(t)
		start := time.Now()
		startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		provider down {
			issuer http://127.0.0.1:%d/realms/x
			client_id app
			timeout 2s
		}
	}
}
http://127.0.0.1:%d {
	authgate
	respond "protected"
}
http://127.0.0.1:%d {
	respond "other site" 200
}
`, globalPrelude, testKey, dead, port, other))
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("start took %s with an unreachable provider", d)
		}
		b := newBrowser(t)
		if resp, body := b.get(fmt.Sprintf("http://127.0.0.1:%d/", other)); resp.StatusCode != 200 || body != "other site" {
			t.Errorf("other site: %d %q", resp.StatusCode, body)
		}
		resp, body := b.get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Sign-in service unavailable") || !strings.Contains(body, "request-id") {
			t.Errorf("protected site with its provider down: %d %s", resp.StatusCode, body)
		}
	})
}

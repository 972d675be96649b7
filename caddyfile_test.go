package authgate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden adapt files of examples/")

// TestExamplesAdapt adapts every examples/*/Caddyfile and compares the JSON
// with the golden file beside it (caddy.json; `go test -run
// TestExamplesAdapt -update .` rewrites them).
func TestExamplesAdapt(t *testing.T) {
	files, err := filepath.Glob("examples/*/Caddyfile")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f)), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": f})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("warning: %s", w.String())
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			var cfg struct {
				Apps map[string]json.RawMessage `json:"apps"`
			}
			_ = json.Unmarshal(out, &cfg)
			if _, ok := cfg.Apps["authgate"]; !ok && !bytes.Contains(out, []byte(`"handler":"authgate"`)) {
				t.Errorf("no authgate in the adapted config")
			}
			golden := filepath.Join(filepath.Dir(f), "caddy.json")
			if *updateGolden {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("no golden file (run with -update): %v", err)
			}
			if !bytes.Equal(want, pretty.Bytes()) {
				t.Errorf("adapted JSON differs from %s (run with -update if intended):\n%s", golden, pretty.String())
			}
		})
	}
}

// TestCaddyfileErrors checks that bad Caddyfiles are refused with a message
// naming the option and the line.
func TestCaddyfileErrors(t *testing.T) {
	global := func(body string) string {
		return "{\n\tauthgate {\n" + body + "\n\t}\n}\nexample.com {\n\trespond ok\n}\n"
	}
	provider := "\t\tsession_keys {env.K}\n\t\tprovider corp {\n\t\t\tissuer https://sso.example.com\n\t\t\tclient_id x\n"
	for _, tc := range []struct {
		name, input, want string
	}{
		{"unknown global option", global("\t\tsesion_keys abc"), "unrecognized subdirective sesion_keys"},
		{"repeated option", global("\t\tsession_keys a\n\t\tsession_keys b"), "session_keys may be given only once"},
		{"bad duration", global("\t\tsession_lifetime forever"), `session_lifetime: "forever" is not a positive duration`},
		{"bad cache size", global("\t\tsession_cache_size lots"), `session_cache_size: "lots" is not a size from 1MiB to 1TiB`},
		{"tiny cache size", global("\t\tsession_cache_size 64KiB"), `session_cache_size: "64KiB" is not a size`},
		{"repeated cache size", global("\t\tsession_cache_size 64MiB\n\t\tsession_cache_size 64MiB"), "session_cache_size may be given only once"},
		{"bad same_site", global("\t\tcookie {\n\t\t\tsame_site sideways\n\t\t}"), "same_site must be lax, strict or none"},
		{"unknown cookie option", global("\t\tcookie {\n\t\t\tsecure off\n\t\t}"), "unrecognized cookie subdirective secure"},
		{"unknown provider option", global(provider + "\t\t\tclient_secrit y\n\t\t}"), "unrecognized subdirective client_secrit"},
		{"provider without endpoints", global("\t\tprovider p {\n\t\t\tclient_id x\n\t\t}"), "provider needs issuer, or authorize_url and token_url"},
		{"provider without client_id", global("\t\tprovider p {\n\t\t\tissuer https://x\n\t\t}"), "provider needs client_id"},
		{"provider twice", global(provider + "\t\t}\n\t\tprovider corp {\n\t\t\tissuer https://x\n\t\t\tclient_id y\n\t\t}"), "provider corp is defined twice"},
		{"bad token_request", global(provider + "\t\t\ttoken_request xml\n\t\t}"), `token_request must be form, json or query, not "xml"`},
		{"bad client_auth", global(provider + "\t\t\tclient_auth jwt\n\t\t}"), `client_auth must be basic, body, client_secret_jwt, private_key_jwt or tls_client_auth, not "jwt"`},
		{"bad switch", global(provider + "\t\t\tstate maybe\n\t\t}"), `state takes on or off`},
		{"bad claim path", global(provider + "\t\t\tclaim groups person..roles\n\t\t}"), "claim groups: invalid claim path"},
		{"bad claim field", global(provider + "\t\t\tclaim shoe_size size\n\t\t}"), `claim: unknown field "shoe_size"`},
		{"bad param action", global(provider + "\t\t\ttoken_param swap a b\n\t\t}"), `token_param: unknown action "swap"`},
		{"bad callback param", global(provider + "\t\t\tcallback_param nonce n\n\t\t}"), `callback_param: unknown parameter "nonce"`},
		{"keep_groups without patterns", global(provider + "\t\t\tkeep_groups\n\t\t}"), "keep_groups takes one or more glob patterns"},
		{"require_claim without a claim", global(provider + "\t\t\trequire_claim\n\t\t}"), "require_claim takes one or more fields"},
		{"require_claim with a bad path", global(provider + "\t\t\trequire_claim roles[x]\n\t\t}"), "require_claim: invalid claim path"},
		{"require_claim twice", global(provider + "\t\t\trequire_claim groups\n\t\t\trequire_claim groups\n\t\t}"), "require_claim groups is given twice"},
		{"allow_unverified_email maybe", global(provider + "\t\t\tallow_unverified_email maybe\n\t\t}"), "allow_unverified_email takes nothing, on or off"},
		{"allow_unverified_email twice", global(provider + "\t\t\tallow_unverified_email\n\t\t\tallow_unverified_email\n\t\t}"), "allow_unverified_email may be given only once"},
		{"bad userinfo_refresh_interval", global(provider + "\t\t\tuserinfo_refresh_interval often\n\t\t}"), `userinfo_refresh_interval: "often" is not a positive duration`},
		{"userinfo_refresh_interval twice", global(provider + "\t\t\tuserinfo_refresh_interval 5m\n\t\t\tuserinfo_refresh_interval 5m\n\t\t}"), "userinfo_refresh_interval may be given only once"},
		{"unknown handler option", "example.com {\n\tauthgate {\n\t\talow email *@x\n\t}\n}\n", "unrecognized subdirective alow"},
		{"bad rule field", "example.com {\n\tauthgate {\n\t\tallow shoe 42\n\t}\n}\n", `allow: unknown field "shoe"`},
		{"rule without pattern", "example.com {\n\tauthgate {\n\t\tdeny email\n\t}\n}\n", "deny takes a field"},
		{"repeated handler flag", "example.com {\n\tauthgate {\n\t\tpass_cookie\n\t\tpass_cookie\n\t}\n}\n", "pass_cookie may be given only once"},
		{"bad pass_access_token", "example.com {\n\tauthgate {\n\t\tpass_access_token everywhere\n\t}\n}\n", `pass_access_token takes nothing or forward_auth, not "everywhere"`},
		{"unknown bearer option", "example.com {\n\tauthgate {\n\t\tbearer_tokens {\n\t\t\tcache 5\n\t\t}\n\t}\n}\n", "unrecognized bearer_tokens subdirective cache"},
		{"repeated bearer option", "example.com {\n\tauthgate {\n\t\tbearer_tokens {\n\t\t\tuserinfo on\n\t\t\tuserinfo off\n\t\t}\n\t}\n}\n", "bearer_tokens userinfo may be given only once"},
		{"bad bearer switch", "example.com {\n\tauthgate {\n\t\tbearer_tokens {\n\t\t\tintrospection maybe\n\t\t}\n\t}\n}\n", `bearer_tokens introspection takes on or off, not "maybe"`},
		{"bad bearer rate", "example.com {\n\tauthgate {\n\t\tbearer_tokens {\n\t\t\trate_limit 0\n\t\t}\n\t}\n}\n", `bearer_tokens rate_limit: "0" is not a number`},
		{"audiences twice", "example.com {\n\tauthgate {\n\t\tbearer_tokens a {\n\t\t\taudiences b\n\t\t}\n\t}\n}\n", "audiences are given on the bearer_tokens line already"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tc.input), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.input)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			if !strings.Contains(msg, "Caddyfile:") {
				t.Errorf("error %q does not name the line", msg)
			}
		})
	}
}

// TestParseProviderDialect checks that every dialect option lands in the
// JSON config, with caddyfile.NewTestDispenser.
func TestParseProviderDialect(t *testing.T) {
	d := caddyfile.NewTestDispenser(`authgate {
		session_keys {env.K}
		provider ntpu {
			authorize_url https://oauth.ntpu.cc/
			token_url https://oauth.ntpu.cc/api/exchange
			client_id {env.ID}
			client_secret {env.SECRET}
			authorize_param rename client_id clientId
			authorize_param omit response_type redirect_uri scope
			callback_param code authorizationCode
			token_request json
			client_auth body
			token_param rename code authorizationCode
			token_param set extra 1
			state off
			pkce off
			refresh off
			default_expires_in 15m
			claim user id
			claim groups person.roles[].role
			require_claim groups
			require_claim department person.id
			allow_unverified_email
			userinfo_refresh_interval 5m
		}
	}`)
	v, err := parseGlobalOption(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	var app App
	if err := json.Unmarshal(v.(httpcaddyfile.App).Value, &app); err != nil {
		t.Fatal(err)
	}
	p := app.Providers["ntpu"]
	if p == nil {
		t.Fatal("provider missing")
	}
	dl := p.Dialect
	if dl.AuthorizeParams.Rename["client_id"] != "clientId" || len(dl.AuthorizeParams.Omit) != 3 ||
		dl.Callback.Code != "authorizationCode" || dl.TokenEncoding != "json" || dl.ClientAuth != "body" ||
		dl.TokenParams.Rename["code"] != "authorizationCode" || dl.TokenParams.Set["extra"] != "1" ||
		!dl.NoState || !dl.NoPKCE || !dl.NoRefresh || p.Claims.User != "id" || p.Claims.Groups != "person.roles[].role" ||
		p.DefaultExpiresIn == 0 || !slices.Equal(p.Claims.Required, []string{"groups", "department", "person.id"}) ||
		!p.Claims.AllowUnverifiedEmail || time.Duration(p.UserinfoRefreshInterval) != 5*time.Minute {
		t.Errorf("dialect not parsed fully: %+v claims %+v, userinfo_refresh_interval %v", dl, p.Claims, p.UserinfoRefreshInterval)
	}
}

// TestParseBearerTokens: the one-line form keeps working and the block
// sets every option.
func TestParseBearerTokens(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        BearerConfig
	}{
		{"bare", "bearer_tokens", BearerConfig{}},
		{"one line", "bearer_tokens api-1 api-2", BearerConfig{Audiences: []string{"api-1", "api-2"}}},
		{"block", `bearer_tokens {
			audiences api-1
			resource_audience https://api.example.com
			introspection off
			userinfo on
			rate_limit 2.5
		}`, BearerConfig{Audiences: []string{"api-1"}, ResourceAudience: "https://api.example.com",
			DisableIntrospection: true, Userinfo: true, RateLimit: 2.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser("authgate {\n" + tc.input + "\npass_access_token forward_auth\n}")
			mh, err := parseHandlerDirective(httpcaddyfile.Helper{Dispenser: d})
			if err != nil {
				t.Fatal(err)
			}
			h := mh.(*Handler)
			got, _ := json.Marshal(h.BearerTokens)
			want, _ := json.Marshal(tc.want)
			if string(got) != string(want) {
				t.Errorf("parsed %s, want %s", got, want)
			}
			if !h.PassAccessToken || !h.ForwardAuthAccessToken {
				t.Errorf("pass_access_token forward_auth: %v %v", h.PassAccessToken, h.ForwardAuthAccessToken)
			}
		})
	}
}

// TestCaddyfileAssertionAndStepUpErrors: the options of assertions, their
// keys, login hints and step-up refuse bad values, naming the line.
func TestCaddyfileAssertionAndStepUpErrors(t *testing.T) {
	site := func(body string) string { return "example.com {\n" + body + "\n}\n" }
	global := func(body string) string {
		return "{\n\tauthgate {\n" + body + "\n\t}\n}\nexample.com {\n\trespond ok\n}\n"
	}
	for _, tc := range []struct {
		name, input, want string
	}{
		{"bad assertion header name", site("\tauthgate {\n\t\tassertion_header X:Bad\n\t}"), `assertion_header: "X:Bad" is not a header name`},
		{"two assertion header names", site("\tauthgate {\n\t\tassertion_header A B\n\t}"), "wrong argument count"},
		{"assertion_header twice", site("\tauthgate {\n\t\tassertion_header\n\t\tassertion_header\n\t}"), "assertion_header may be given only once"},
		{"lifetime out of range", site("\tauthgate {\n\t\tassertion_header\n\t\tassertion_lifetime 30s\n\t}"), "assertion_lifetime: \"30s\" must be a duration from 2m to 1h"},
		{"audience without assertions", site("\tauthgate {\n\t\tassertion_audience app\n\t}"), "assertion_audience and assertion_lifetime need assertion_header"},
		{"silent_login with an argument", site("\tauthgate {\n\t\tsilent_login yes\n\t}"), "wrong argument count"},
		{"unknown key option", global("\t\tassertion_keys {\n\t\t\tfiles a.pem\n\t\t}"), "unrecognized assertion_keys subdirective files"},
		{"key file without a path", global("\t\tassertion_keys {\n\t\t\tfile\n\t\t}"), "assertion_keys file takes one or more PEM files"},
		{"rotation of key files", global("\t\tassertion_keys {\n\t\t\tfile a.pem\n\t\t\trotate 24h\n\t\t}"), "rotate and grace apply to keys in Caddy's storage"},
		{"bad grace", global("\t\tassertion_keys {\n\t\t\tgrace soon\n\t\t}"), `assertion_keys grace: "soon" is not a positive duration`},
		{"require without requirements", site("\tauthgate_require {\n\t}"), "authgate_require needs max_auth_age, acr or amr"},
		{"require with a short age", site("\tauthgate_require {\n\t\tmax_auth_age 10s\n\t}"), `max_auth_age: "10s" must be a duration of at least 1m`},
		{"require with a bad acr", site("\tauthgate_require {\n\t\tacr \"a b\"\n\t}"), "acr: "},
		{"require option twice", site("\tauthgate_require {\n\t\tamr mfa\n\t\tamr otp\n\t}"), "authgate_require amr may be given only once"},
		{"unknown require option", site("\tauthgate_require {\n\t\tmfa\n\t}"), "unrecognized subdirective mfa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tc.input), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.input)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || !strings.Contains(msg, "Caddyfile:") {
				t.Errorf("error %q does not say %q with the line", msg, tc.want)
			}
		})
	}
}

package authgate

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/emulators"
)

func TestNextLink(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{[]string{`<https://api.github.com/user/orgs?page=2>; rel="next", <https://api.github.com/user/orgs?page=5>; rel="last"`}, "https://api.github.com/user/orgs?page=2"},
		{[]string{`<https://x/?page=1>; rel="prev", <https://x/?page=3>; rel="next"`}, "https://x/?page=3"},
		{[]string{`<https://x/?page=1>; rel="first"`, `<https://x/?page=3>; rel="next last"`}, "https://x/?page=3"},
		{[]string{`<https://x/?a=1,2>; rel=next`}, "https://x/?a=1,2"},
		{[]string{`<https://x/?page=2>; title="next"; rel="prev"`}, ""},
		{[]string{`garbage`}, ""},
		{nil, ""},
	} {
		if got := nextLink(tt.in); got != tt.want {
			t.Errorf("nextLink(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestKeepMembers(t *testing.T) {
	item := map[string]any{"slug": "ops", "url": "https://api/x", "organization": map[string]any{"login": "myorg", "id": 1}}
	got := keepMembers(item, []string{"slug", "organization.login", "missing.deeper"})
	want := map[string]any{"slug": "ops", "organization": map[string]any{"login": "myorg"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keepMembers = %v, want %v", got, want)
	}
	if got := keepMembers("scalar", []string{"a"}); got != "scalar" {
		t.Errorf("a scalar changed: %v", got)
	}
	if got := keepMembers(item, nil); !reflect.DeepEqual(got, item) {
		t.Errorf("no keep list changed the item")
	}
}

func TestValidateExtraUserinfo(t *testing.T) {
	for _, tt := range []struct {
		extras []ExtraUserinfo
		want   string
	}{
		{[]ExtraUserinfo{{Claim: "a.b", URL: "https://x/"}}, "must be a plain key"},
		{[]ExtraUserinfo{{Claim: "a", URL: "ftp://x/"}}, "is not an http(s) URL"},
		{[]ExtraUserinfo{{Claim: "a", URL: "https://x/"}, {Claim: "a", URL: "https://y/"}}, "given twice"},
		{[]ExtraUserinfo{{Claim: "a", URL: "https://x/", Keep: []string{"a..b"}}}, "not a dot-separated list"},
	} {
		if err := validateExtraUserinfo(tt.extras); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("validateExtraUserinfo(%+v) = %v, want %q", tt.extras, err, tt.want)
		}
	}
	if err := validateExtraUserinfo([]ExtraUserinfo{{Claim: "a", URL: "https://x/", Keep: []string{"a.b"}, MaxPages: 3}}); err != nil {
		t.Error(err)
	}
}

// githubUser is the test user: two organizations, two teams, a verified
// primary email and a verified secondary one.
func githubUser(orgs ...string) emulators.GitHubUser {
	u := emulators.GitHubUser{
		Login: "mona", ID: 4242, Name: "Mona Lisa",
		Emails: []emulators.GitHubEmail{
			{Email: "mona@old.test", Primary: false, Verified: true},
			{Email: "mona@myorg.test", Primary: true, Verified: true, Visibility: "private"},
		},
		Orgs:  []emulators.GitHubOrg{{Login: "myorg"}, {Login: "acme"}},
		Teams: []emulators.GitHubTeam{{Slug: "ops", Org: "myorg"}, {Slug: "dev", Org: "acme"}},
	}
	for _, o := range orgs {
		u.Orgs = append(u.Orgs, emulators.GitHubOrg{Login: o})
	}
	return u
}

// githubOptions shape a GitHub test site.
type githubOptions struct {
	enterprise  bool
	gh          emulators.GitHubConfig
	provider    func(emu *emulators.Server) string // more lines for the provider block
	caddyGlobal string                             // more Caddy global options
}

// startGitHub runs examples/github (or github-enterprise) against the
// GitHub emulator: unchanged but for the emulator's hosts, the site
// address, the backend and what opts add.
func startGitHub(t *testing.T, opts githubOptions) *exampleSite {
	t.Helper()
	origin := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	gh := opts.gh
	gh.Enterprise = opts.enterprise
	u := githubUser()
	gh.User = &u
	emu := emulators.NewGitHub(emulators.Config{
		ClientID: "gh-client", ClientSecret: "gh-secret-0123456789",
		RedirectURI: origin + "/oauth2/callback", AutoApprove: true, Now: testNow, GitHub: gh,
	})
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	be := newBackend(t)
	dir, env, provider := "github", "GITHUB", "provider github github {"
	if opts.enterprise {
		dir, env, provider = "github-enterprise", "GHES", "provider ghes github {"
	}
	raw, err := os.ReadFile(filepath.Join("examples", dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	replace := [][2]string{{"app.example.com", origin}, {"localhost:8080", be.URL}, {"\n{\n", "\n{\n\t" + globalPrelude + opts.caddyGlobal + "\n"}}
	if opts.enterprise {
		replace = append(replace, [2]string{"https://github.example.com", emu.URL()})
	} else {
		// github.com's two hosts, web and API, are the emulator's two.
		replace = append(replace, [2]string{provider, provider + "\n\t\t\tbase_url " + emu.URL() + "\n\t\t\tapi_url " + emu.APIURL()})
	}
	if opts.provider != nil {
		replace = append(replace, [2]string{provider, provider + "\n" + opts.provider(emu)})
	}
	for _, r := range replace {
		if !strings.Contains(conf, r[0]) {
			t.Fatalf("examples/%s/Caddyfile does not contain %q", dir, r[0])
		}
		if r[0] == "\n{\n" || r[0] == provider {
			conf = strings.Replace(conf, r[0], r[1], 1)
		} else {
			conf = strings.ReplaceAll(conf, r[0], r[1])
		}
	}
	t.Setenv("AUTHGATE_KEY", testKey)
	t.Setenv(env+"_CLIENT_ID", "gh-client")
	t.Setenv(env+"_CLIENT_SECRET", "gh-secret-0123456789")
	startCaddy(t, conf)
	return &exampleSite{emu: emu, origin: origin, backend: be}
}

// logToFile is a Caddy global log option writing JSON lines to a file in
// the test's directory, and the file's path.
func logToFile(t *testing.T) (option, path string) {
	path = filepath.Join(t.TempDir(), "caddy.log")
	return "log {\n\t\toutput file " + path + "\n\t\tformat json\n\t}", path
}

// logged returns the log records with the message msg.
func logged(t *testing.T, path, msg string) []map[string]any {
	t.Helper()
	_, recs := logLines(t, path)
	var out []map[string]any
	for _, r := range recs {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// TestGitHubPreset runs examples/github unchanged (but for the emulator's
// hosts) against the GitHub emulator: login, the identity from /user,
// /user/emails, /user/orgs and /user/teams, the group rule, pagination,
// and the API failing.
func TestGitHubPreset(t *testing.T) {
	s := startGitHub(t, githubOptions{})

	t.Run("login", func(t *testing.T) {
		s.checkLogin(t, "/login/oauth/authorize", "client_id", "code_challenge", "code_challenge_method", "redirect_uri", "response_type", "scope", "state")
		for _, ep := range []string{"emails", "orgs", "teams"} {
			if n := s.emu.Count(ep); n != 1 {
				t.Errorf("%d requests to /user/%s for one login, want 1", n, ep)
			}
		}
	})
	t.Run("headers", func(t *testing.T) {
		s.checkHeaders(t, map[string]string{
			"X-Forwarded-User":               "4242",
			"X-Forwarded-Email":              "mona@myorg.test",
			"X-Forwarded-Preferred-Username": "mona",
			"X-Forwarded-Groups":             "myorg,acme,myorg/ops,acme/dev",
		}, "Mona Lisa")
	})
	t.Run("allow_group", func(t *testing.T) {
		u := githubUser()
		u.Teams = []emulators.GitHubTeam{{Slug: "dev", Org: "acme"}, {Slug: "ops", Org: "acme"}}
		s.emu.SetGitHubUser(u)
		defer s.emu.SetGitHubUser(githubUser())
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/not-in-myorg-ops")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "mona@myorg.test") {
			t.Errorf("a user in acme/ops but not myorg/ops: %d, want the 403 page naming them\n%.300s", resp.StatusCode, body)
		}
	})
	t.Run("pagination", func(t *testing.T) {
		var many []string
		for i := range 150 {
			many = append(many, fmt.Sprintf("org%03d", i))
		}
		s.emu.SetGitHubUser(githubUser(many...))
		defer s.emu.SetGitHubUser(githubUser())
		before := s.emu.Count("orgs")
		b := newBrowser(t)
		saw := s.login(t, b, "/many-orgs")
		groups := strings.Split(saw.Headers.Get("X-Forwarded-Groups"), ",")
		if len(groups) != 154 || groups[0] != "myorg" || groups[151] != "org149" || groups[153] != "acme/dev" {
			t.Errorf("%d groups from 152 organizations and 2 teams: %v...", len(groups), groups[:min(5, len(groups))])
		}
		if n := s.emu.Count("orgs") - before; n != 2 {
			t.Errorf("%d requests to /user/orgs for 152 organizations at 100 a page, want 2", n)
		}
	})
	t.Run("strictness", func(t *testing.T) { s.checkStrictness(t) })
}

// TestGitHubPageCap: a list with more pages than max_pages fails the
// login (a group cut off could slip past a deny rule), and the log says
// why; the user gets a page, no session.
func TestGitHubPageCap(t *testing.T) {
	logOpt, logFile := logToFile(t)
	s := startGitHub(t, githubOptions{caddyGlobal: logOpt, provider: func(emu *emulators.Server) string {
		return "\t\t\tuserinfo_extra github_orgs " + emu.APIURL() + "/user/orgs?per_page=1 {\n\t\t\t\tkeep login\n\t\t\t\tmax_pages 1\n\t\t\t}"
	}})
	b := newBrowser(t)
	resp, body := b.get(s.origin + "/two-orgs-one-page")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "userinfo_failed") {
		t.Errorf("two organizations, one a page, one page allowed: %d, want 502 userinfo_failed\n%.300s", resp.StatusCode, body)
	}
	noSessionCookie(t, b, s.origin)
	recs := logged(t, logFile, "login failed")
	if len(recs) != 1 || recs[0]["reason"] != "userinfo_failed" || !strings.Contains(fmt.Sprint(recs[0]["error"]), "more than 1 pages (max_pages)") {
		t.Errorf("log: %v, want one login failure saying the list has more than 1 pages", recs)
	}
	if n := s.emu.Count("orgs"); n != 1 {
		t.Errorf("%d requests to /user/orgs, want 1 (the second page is never asked for)", n)
	}
}

// TestGitHubAPIFailures: a rate-limited or failing GitHub API gives the
// provider-down page and no session; after it recovers the same browser
// signs in.
func TestGitHubAPIFailures(t *testing.T) {
	s := startGitHub(t, githubOptions{})
	for _, tc := range []struct {
		name  string
		fault func()
	}{
		{"rate_limit_403", func() { s.emu.SetRateLimited(http.StatusForbidden, testNow().Add(time.Hour)) }},
		{"rate_limit_429", func() { s.emu.SetRateLimited(http.StatusTooManyRequests, testNow().Add(time.Hour)) }},
		{"server_error", func() { s.emu.SetServerError(http.StatusBadGateway) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			tc.fault()
			resp, body := b.get(s.origin + "/while-down")
			s.emu.SetRateLimited(0, time.Time{})
			s.emu.SetServerError(0)
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "provider_unavailable") {
				t.Errorf("%s: %d, want the 502 provider_unavailable page\n%.300s", tc.name, resp.StatusCode, body)
			}
			noSessionCookie(t, b, s.origin)
			if resp, _ := b.api("GET", s.origin+"/api/while-down"); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("an API request after the failed login: %d, want 401 (no session)", resp.StatusCode)
			}
			s.login(t, b, "/after-recovery")
		})
	}
}

// TestGitHubEnterprise runs examples/github-enterprise against the
// emulator in GitHub Enterprise Server's layout: one host, the API under
// /api/v3, found from the base URL alone.
func TestGitHubEnterprise(t *testing.T) {
	s := startGitHub(t, githubOptions{enterprise: true})
	t.Run("login", func(t *testing.T) {
		s.checkLogin(t, "/login/oauth/authorize", "client_id", "code_challenge", "code_challenge_method", "redirect_uri", "response_type", "scope", "state")
	})
	t.Run("headers", func(t *testing.T) {
		s.checkHeaders(t, map[string]string{
			"X-Forwarded-User":               "4242",
			"X-Forwarded-Email":              "mona@myorg.test",
			"X-Forwarded-Preferred-Username": "mona",
			"X-Forwarded-Groups":             "myorg,acme,myorg/ops,acme/dev",
		}, "Mona Lisa")
	})
	t.Run("allow_group", func(t *testing.T) {
		u := githubUser()
		u.Orgs, u.Teams = []emulators.GitHubOrg{{Login: "acme"}}, nil
		s.emu.SetGitHubUser(u)
		defer s.emu.SetGitHubUser(githubUser())
		b := newBrowser(t)
		if resp, body := b.get(s.origin + "/outsider"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("a user outside myorg: %d, want 403\n%.300s", resp.StatusCode, body)
		}
	})
	t.Run("strictness", func(t *testing.T) { s.checkStrictness(t) })
}

// TestGitHubAppTokens: a GitHub App's expiring user tokens are refreshed
// with the refresh token it returns (rotated); once the user revokes the
// app, GitHub answers bad_refresh_token (with HTTP 200), which ends the
// session like invalid_grant.
func TestGitHubAppTokens(t *testing.T) {
	s := startGitHub(t, githubOptions{gh: emulators.GitHubConfig{ExpiringTokens: true}})
	// GitHub's 8 hours twice would outlast the 12 h session.
	const ttl = time.Hour
	s.emu.SetAccessTTL(ttl)
	t.Run("refresh", func(t *testing.T) { s.checkRefresh(t, ttl) })
	t.Run("revoked", func(t *testing.T) {
		b := newBrowser(t)
		s.login(t, b, "/before-revocation")
		s.emu.RevokeAuthorization()
		advanceClock(t, ttl+time.Minute)
		resp, body := b.api("GET", s.origin+"/api/after-revocation")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "session_ended") {
			t.Errorf("after the user revoked the app: %d %s, want 401 session_ended", resp.StatusCode, body)
		}
		noSessionCookie(t, b, s.origin)
	})
}

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/emulators"
)

// githubUser is the emulator's user: in the ops team of myorg.
func githubUser(teams ...emulators.GitHubTeam) emulators.GitHubUser {
	return emulators.GitHubUser{
		Login: "mona", ID: 4242, Name: "Mona Lisa",
		Emails: []emulators.GitHubEmail{{Email: "mona@myorg.test", Primary: true, Verified: true}},
		Orgs:   []emulators.GitHubOrg{{Login: "myorg"}},
		Teams:  teams,
	}
}

// TestBrowserGitHub signs in with the github preset (examples/github,
// unchanged but for the hosts) against the GitHub emulator in Chromium:
// GitHub's consent page, the identity and the org/team groups at the
// backend, `allow group myorg/ops` refusing a user who left the team, and
// a rate-limited API answered with the provider-down page.
func TestBrowserGitHub(t *testing.T) {
	b := newBrowser(t)
	port := freePorts(t, 1)[0]
	site := fmt.Sprintf("http://127.0.0.1:%d", port)
	u := githubUser(emulators.GitHubTeam{Slug: "ops", Org: "myorg"})
	secret := randomHex(t, 16)
	emu := emulators.NewGitHub(emulators.Config{
		ClientID: "gh-e2e", ClientSecret: secret, RedirectURI: site + "/oauth2/callback",
		GitHub: emulators.GitHubConfig{User: &u},
	})
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &http.Server{Handler: http.HandlerFunc(ssoBackend), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = backend.Serve(ln) }()
	t.Cleanup(func() { _ = backend.Close() })

	raw, err := os.ReadFile("../examples/github/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for _, r := range [][2]string{
		{"\n{\n", "\n{\n\tadmin off\n\tauto_https off\n\tpersist_config off\n\tdefault_bind 127.0.0.1\n"},
		{"provider github github {", "provider github github {\n\t\t\tbase_url " + emu.URL() + "\n\t\t\tapi_url " + emu.APIURL()},
		{"app.example.com", site},
		{"localhost:8080", ln.Addr().String()},
	} {
		if !strings.Contains(conf, r[0]) {
			t.Fatalf("examples/github/Caddyfile does not contain %q", r[0])
		}
		conf = strings.ReplaceAll(conf, r[0], r[1])
	}
	t.Setenv("AUTHGATE_KEY", randomHex(t, 32))
	t.Setenv("GITHUB_CLIENT_ID", "gh-e2e")
	t.Setenv("GITHUB_CLIENT_SECRET", secret)
	loadCaddyfile(t, conf)

	// GitHub's consent page, then the app.
	b.open(site + "/dashboard")
	b.waitVisible("approve")
	if loc := b.location(); !strings.HasPrefix(loc, emu.URL()+"/login/oauth/authorize") {
		t.Fatalf("the consent page is at %s, want GitHub's /login/oauth/authorize", loc)
	}
	if scope := b.text("scope"); scope != "read:user user:email read:org" && scope != "read:user,user:email,read:org" {
		t.Fatalf("GitHub asks for %q, want read:user user:email read:org", scope)
	}
	b.screenshot("github-consent")
	expectStatus(t, b.clickNav("approve"), 200, "approving at GitHub")
	b.waitVisible("welcome")
	if got := b.text("welcome"); got != "Hello, mona" {
		t.Fatalf("backend greeting %q, want Hello, mona", got)
	}
	for name, want := range map[string]string{
		"X-Forwarded-User": "4242", "X-Forwarded-Email": "mona@myorg.test", "X-Forwarded-Groups": "myorg,myorg/ops",
	} {
		if got := b.text("h-" + name); got != want {
			t.Fatalf("backend received %s = %q, want %q", name, got, want)
		}
	}
	b.screenshot("signed-in-with-github")

	// Mona leaves the ops team: after signing in again (no consent: the
	// app is authorized), the rule refuses her.
	emu.SetGitHubUser(githubUser(emulators.GitHubTeam{Slug: "dev", Org: "myorg"}))
	b.open(site + "/oauth2/logout")
	expectStatus(t, b.open(site+"/dashboard"), 403, "signing in again outside myorg/ops")
	expectErrorPage(t, b, "Access denied", "forbidden")
	b.screenshot("not-in-myorg-ops")

	// The API is rate limited: the provider-down page, no session.
	emu.SetRateLimited(http.StatusForbidden, time.Now().Add(time.Hour))
	b.open(site + "/oauth2/logout")
	expectStatus(t, b.open(site+"/dashboard"), 502, "signing in while GitHub's API is rate limited")
	expectErrorPage(t, b, "Sign-in service unavailable", "provider_unavailable")
	for _, c := range b.cookies(site + "/") {
		if c.Name == "_authgate" {
			t.Fatalf("a session cookie after the failed sign-in")
		}
	}
	b.screenshot("github-rate-limited")
}

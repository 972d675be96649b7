package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the Caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/authgate/caddy-authgate"
	"github.com/authgate/caddy-authgate/internal/testidp"
)

// ssoCaddyfile (text/template: HTML escaping would mangle it) is one Caddy port with three sites under example.test:
// two apps and the auth host that alone is registered at the provider.
const ssoCaddyfile = `{
	admin off
	auto_https off
	persist_config off
	default_bind 127.0.0.1

	authgate {
		session_keys {env.AUTHGATE_E2E_KEY}
		cookie {
			domain example.test
		}
		auth_host auth.example.test:{{.Port}}
		allowed_redirect_domains .example.test
		provider corp {
			issuer {{.Issuer}}
			client_id sso-app
			client_secret {env.AUTHGATE_E2E_SECRET}
		}
	}
}

http://a.example.test:{{.Port}} {
	authgate
	reverse_proxy {{.Backend}} {
		header_up X-E2E-Site a
	}
}

http://b.example.test:{{.Port}} {
	authgate
	reverse_proxy {{.Backend}} {
		header_up X-E2E-Site b
	}
}

http://auth.example.test:{{.Port}} {
	authgate
	reverse_proxy {{.Backend}} {
		header_up X-E2E-Site auth
	}
}
`

// ssoBackend is a legacy app: it shows the identity headers it received.
func ssoBackend(w http.ResponseWriter, r *http.Request) {
	type row struct{ Name, Value string }
	var rows []row
	for name, vals := range r.Header {
		if strings.HasPrefix(name, "X-Forwarded-") || strings.HasPrefix(name, "X-E2e-") {
			rows = append(rows, row{name, strings.Join(vals, ", ")})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = backendPage.Execute(w, map[string]any{
		"Name": r.Header.Get("X-Forwarded-Preferred-Username"), "Host": r.Host,
		"Site": r.Header.Get("X-E2e-Site"), "Rows": rows, "Cookie": r.Header.Get("Cookie"),
	})
}

var backendPage = template.Must(template.New("backend").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Site {{.Site}}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:48rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}</style>
</head><body>
<h1 id="welcome">Hello, {{.Name}}</h1>
<p>Site <strong id="site">{{.Site}}</strong> on host <code id="host">{{.Host}}</code>.</p>
<table><tr><th>Header</th><th>Value</th></tr>
{{range .Rows}}<tr><td><code>{{.Name}}</code></td><td id="h-{{.Name}}">{{.Value}}</td></tr>
{{end}}</table>
<p>Cookies the app received: <code id="cookies">{{if .Cookie}}{{.Cookie}}{{else}}none{{end}}</code></p>
</body></html>
`))

// exampleTestClient reaches *.example.test on loopback and does not
// follow redirects.
func exampleTestClient() *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				if host == "example.test" || strings.HasSuffix(host, ".example.test") {
					addr = net.JoinHostPort("127.0.0.1", port)
				}
				return dialer.DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestBrowserSubdomainSSO signs in once at a.example.test, is signed in at
// b.example.test without a second login, and signs out of both at
// b.example.test.
func TestBrowserSubdomainSSO(t *testing.T) {
	b := newBrowser(t)
	port := freePorts(t, 1)[0]
	origin := func(sub string) string { return fmt.Sprintf("http://%s.example.test:%d", sub, port) }
	siteA, siteB, authSite := origin("a"), origin("b"), origin("auth")

	secret := randomHex(t, 16)
	idp := startTestIDP(t, testidp.Options{
		Users:     testidp.DemoUsers(),
		ShowHints: true,
		Clients: []testidp.Client{{
			ID: "sso-app", Secret: secret,
			RedirectURIs:           []string{authSite + "/oauth2/callback"},
			PostLogoutRedirectURIs: []string{siteA + "/", siteB + "/", authSite + "/"},
		}},
	})

	backendAddr := startSSOBackend(t)

	startCaddyfile(t, secret, ssoCaddyfile, map[string]any{
		"Port": port, "Issuer": idp.Issuer(), "Backend": backendAddr,
	})

	// Without a session, a browser navigation at a site goes to the auth
	// host, and an API call gets 401.
	client := exampleTestClient()
	req, _ := http.NewRequest(http.MethodGet, siteA+"/some/page?x=1", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil || loc.Scheme+"://"+loc.Host != authSite || loc.Path != "/oauth2/start" ||
		loc.Query().Get("rd") != siteA+"/some/page?x=1" {
		t.Fatalf("a browser navigation at %s without a session: %d to %q, want 302 to %s/oauth2/start?rd=%s/some/page?x=1",
			siteA, resp.StatusCode, resp.Header.Get("Location"), authSite, siteA)
	}
	resp, err = client.Get(siteB + "/api")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an API call at %s without a session: %d, want 401", siteB, resp.StatusCode)
	}

	// Sign in at a.
	b.open(siteA + "/")
	b.expectLoginForm(idp.Issuer(), "opening site a")
	if got := idp.Count("authorize"); got != 1 {
		t.Fatalf("the provider saw %d authorization requests, want 1", got)
	}
	if ru := idp.LastAuthorizeQuery().Get("redirect_uri"); ru != authSite+"/oauth2/callback" {
		t.Fatalf("redirect_uri = %q, want the auth host's %s/oauth2/callback", ru, authSite)
	}
	b.screenshot("login-at-a")
	r := b.signIn("alice", "wonderland")
	expectStatus(t, r, 200, "signing in at a")
	expectSSOBackend(t, b, siteA, "a")
	for _, c := range b.cookies(siteA + "/") {
		if c.Name == "_authgate" && strings.TrimPrefix(c.Domain, ".") != "example.test" {
			t.Fatalf("the session cookie's domain is %q, want example.test", c.Domain)
		}
	}
	b.screenshot("signed-in-at-a")

	// b: signed in already, no login form, no new authorization request.
	authorizes := idp.Count("authorize")
	r = b.open(siteB + "/")
	expectStatus(t, r, 200, "opening site b after signing in at a")
	expectSSOBackend(t, b, siteB, "b")
	if got := idp.Count("authorize"); got != authorizes {
		t.Fatalf("site b sent the browser to the provider again (%d authorization requests, want %d)", got, authorizes)
	}
	b.screenshot("signed-in-at-b")

	// Sign out at b: both sites need a login again.
	b.blockedCookies()
	b.open(siteB + "/oauth2/logout")
	for _, c := range b.cookies(siteA+"/", siteB+"/") {
		if c.Name == "_authgate" {
			b.screenshot("signed-out-at-b")
			t.Fatalf("AUTHGATE BUG: after /oauth2/logout at %s the browser still holds the session cookie %s (domain %s), "+
				"so both sites stay signed in. The browser refused authgate's cookie deletions: %v. "+
				"Chromium refuses the Set-Cookie lines of a response that carries Clear-Site-Data: \"cookies\" (reason SyntaxError), "+
				"and on a plain http:// origin, which is not a secure context, it does not apply Clear-Site-Data either, so nothing "+
				"is cleared; serveLogout (login.go) should send Clear-Site-Data only over HTTPS.",
				siteB, c.Name, c.Domain, b.blockedCookies())
		}
	}
	b.expectLoginForm(idp.Issuer(), "signing out at b")
	if got := idp.Count("end_session"); got != 1 {
		t.Fatalf("signing out reached the provider's end-session endpoint %d times, want 1", got)
	}
	b.screenshot("signed-out-at-b")
	for _, site := range []string{siteA, siteB} {
		r = b.open(site + "/oauth2/userinfo")
		expectStatus(t, r, 401, site+"/oauth2/userinfo after signing out at b")
		b.open(site + "/")
		b.expectLoginForm(idp.Issuer(), "opening "+site+" after signing out at b")
		b.screenshot("login-again-at-" + strings.TrimPrefix(strings.Split(site, ".")[0], "http://"))
	}
}

// expectSSOBackend checks that the browser shows the backend of site at
// origin, signed in as alice, without authgate's cookies.
func expectSSOBackend(t *testing.T, b *browser, origin, site string) {
	t.Helper()
	b.waitVisible("welcome")
	if loc := b.location(); !strings.HasPrefix(loc, origin+"/") {
		t.Fatalf("the backend page is at %s, want %s/", loc, origin)
	}
	if got := b.text("welcome"); got != "Hello, alice" {
		t.Fatalf("backend greeting = %q, want %q", got, "Hello, alice")
	}
	if got := b.text("site"); got != site {
		t.Fatalf("backend page of site %q, want %q", got, site)
	}
	for name, want := range aliceHeaders {
		if got := b.text("h-" + name); got != want {
			t.Fatalf("site %s: backend received %s = %q, want %q", site, name, got, want)
		}
	}
	if got := b.text("cookies"); strings.Contains(got, "_authgate") {
		t.Fatalf("site %s: an authgate cookie reached the backend: %q", site, got)
	}
	if b.has("username") {
		t.Fatalf("site %s: the backend page shows a login form", site)
	}
}

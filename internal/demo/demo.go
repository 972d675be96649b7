// Package demo runs authgate end to end on one machine with no account
// anywhere: two local OpenID providers with login forms, a "legacy" backend
// that shows the identity headers it receives, and Caddy with authgate in
// front of it, all in this process and on loopback.
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the Caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/authgate/caddy-authgate" // the module under demonstration
	"github.com/authgate/caddy-authgate/internal/testidp"
)

// Config chooses where everything listens. The zero value is the README's
// demo: http://localhost:8080 and friends.
type Config struct {
	Host        string        // default "localhost"
	AppPort     int           // the protected app, one provider; default 8080
	ChooserPort int           // an app offering two providers; default 8081
	AdminPort   int           // an app only the "admins" group may use; default 8082
	BackendPort int           // the legacy backend; default 9091
	IdPPort     int           // the "corp" provider; default 9090
	PartnerPort int           // the "partner" provider; default 9092
	TokenTTL    time.Duration // access-token lifetime at the providers; default 5m
	RefreshSkew time.Duration // default 30s
	// AdminAPI is Caddy's admin address; default "off".
	AdminAPI string
	// ExtraGlobal is added to Caddy's global options (tests use it for logs).
	ExtraGlobal string
}

func (c *Config) defaults() {
	set := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Host == "" {
		c.Host = "localhost"
	}
	set(&c.AppPort, 8080)
	set(&c.ChooserPort, 8081)
	set(&c.AdminPort, 8082)
	set(&c.BackendPort, 9091)
	set(&c.IdPPort, 9090)
	set(&c.PartnerPort, 9092)
	if c.TokenTTL == 0 {
		c.TokenTTL = 5 * time.Minute
	}
	if c.RefreshSkew == 0 {
		c.RefreshSkew = 30 * time.Second
	}
	if c.AdminAPI == "" {
		c.AdminAPI = "off"
	}
}

// Demo is a running demo.
type Demo struct {
	Config
	AppURL, ChooserURL, AdminURL string
	Corp, Partner                *testidp.Server
	Caddyfile                    string
	servers                      []*http.Server
}

// Users are the demo accounts, shown on the login forms.
func Users() []testidp.User { return testidp.DemoUsers() }

// Start runs everything and returns once Caddy serves the config.
func Start(cfg Config) (*Demo, error) {
	cfg.defaults()
	d := &Demo{Config: cfg}
	origin := func(port int) string { return fmt.Sprintf("http://%s:%d", cfg.Host, port) }
	d.AppURL, d.ChooserURL, d.AdminURL = origin(cfg.AppPort), origin(cfg.ChooserPort), origin(cfg.AdminPort)
	callbacks := []string{d.AppURL + "/oauth2/callback", d.ChooserURL + "/oauth2/callback", d.AdminURL + "/oauth2/callback"}

	secret := randomHex(16)
	var err error
	if d.Corp, err = startIdP(cfg, cfg.IdPPort, "demo-app", secret, callbacks, &d.servers); err != nil {
		d.Stop()
		return nil, err
	}
	if d.Partner, err = startIdP(cfg, cfg.PartnerPort, "demo-app", secret, callbacks, &d.servers); err != nil {
		d.Stop()
		return nil, err
	}
	if err := d.serve(cfg.BackendPort, http.HandlerFunc(legacyApp)); err != nil {
		d.Stop()
		return nil, err
	}

	// The demo's secrets come from the environment, as they should in
	// production; random ones are made when none are set.
	if os.Getenv("AUTHGATE_KEY") == "" {
		os.Setenv("AUTHGATE_KEY", randomHex(32))
	}
	os.Setenv("DEMO_CLIENT_SECRET", secret)
	var buf bytes.Buffer
	if err := caddyfileTemplate.Execute(&buf, map[string]any{
		"C": cfg, "Corp": d.Corp.Issuer(), "Partner": d.Partner.Issuer(),
		"App": d.AppURL, "Chooser": d.ChooserURL, "Admin": d.AdminURL,
		"Backend": fmt.Sprintf("127.0.0.1:%d", cfg.BackendPort),
	}); err != nil {
		d.Stop()
		return nil, err
	}
	d.Caddyfile = buf.String()
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(buf.Bytes(), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		d.Stop()
		return nil, fmt.Errorf("adapting the demo Caddyfile: %w", err)
	}
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "caddyfile warning: %s\n", w.String())
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		d.Stop()
		return nil, fmt.Errorf("starting Caddy: %w", err)
	}
	return d, nil
}

// Stop ends Caddy and the demo's servers.
func (d *Demo) Stop() {
	_ = caddy.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range d.servers {
		_ = s.Shutdown(ctx)
	}
}

func (d *Demo) serve(port int, h http.Handler) error {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("listening on port %d: %w", port, err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	d.servers = append(d.servers, s)
	go func() { _ = s.Serve(ln) }()
	return nil
}

func startIdP(cfg Config, port int, clientID, secret string, callbacks []string, servers *[]*http.Server) (*testidp.Server, error) {
	idp, err := testidp.New(testidp.Options{
		Users:               testidp.DemoUsers(),
		Clients:             []testidp.Client{{ID: clientID, Secret: secret, RedirectURIs: callbacks}},
		ShowHints:           true,
		AccessTokenTTL:      cfg.TokenTTL,
		RotateRefreshTokens: true,
	})
	if err != nil {
		return nil, err
	}
	idp.SetIssuer(fmt.Sprintf("http://%s:%d", cfg.Host, port))
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, fmt.Errorf("listening on port %d: %w", port, err)
	}
	s := &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: 10 * time.Second}
	*servers = append(*servers, s)
	go func() { _ = s.Serve(ln) }()
	return idp, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// caddyfileTemplate is the demo's Caddyfile (text/template: html
// escaping would mangle it); `go run ./examples/demo -print` shows it
// filled in.
var caddyfileTemplate = texttemplate.Must(texttemplate.New("Caddyfile").Parse(`{
	admin {{.C.AdminAPI}}
	auto_https off
	persist_config off
{{- if .C.ExtraGlobal}}
	{{.C.ExtraGlobal}}
{{- end}}

	authgate {
		session_keys {env.AUTHGATE_KEY}
		session_lifetime 8h
		refresh_skew {{.C.RefreshSkew}}
		provider corp {
			issuer {{.Corp}}
			client_id demo-app
			client_secret {env.DEMO_CLIENT_SECRET}
		}
		provider partner {
			issuer {{.Partner}}
			client_id demo-app
			client_secret {env.DEMO_CLIENT_SECRET}
		}
	}
}

# The legacy app, signed in through the corp provider.
{{.App}} {
	authgate corp
	reverse_proxy {{.Backend}} {
		header_up X-Demo-Site app
	}
}

# The same app offering two providers: a sign-in page to choose.
{{.Chooser}} {
	authgate corp partner
	reverse_proxy {{.Backend}} {
		header_up X-Demo-Site chooser
	}
}

# Only the admins group may use this one; others get a 403 page.
{{.Admin}} {
	authgate corp {
		allow group admins
	}
	reverse_proxy {{.Backend}} {
		header_up X-Demo-Site admin-only
	}
}
`))

// legacyApp is an application that knows nothing of OAuth: it shows the
// identity headers it received.
func legacyApp(w http.ResponseWriter, r *http.Request) {
	var rows []headerRow
	for name, vals := range r.Header {
		if strings.HasPrefix(name, "X-Forwarded-") || strings.HasPrefix(name, "X-Demo-") {
			rows = append(rows, headerRow{Name: name, Value: strings.Join(vals, ", ")})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = legacyPage.Execute(w, map[string]any{
		"User": r.Header.Get("X-Forwarded-User"), "Email": r.Header.Get("X-Forwarded-Email"),
		"Name": r.Header.Get("X-Forwarded-Preferred-Username"), "Rows": rows, "Path": r.URL.Path,
		"Cookie": r.Header.Get("Cookie"),
	})
}

type headerRow struct{ Name, Value string }

var legacyPage = template.Must(template.New("legacy").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Legacy app</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:48rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}code{background:#f3f3f3}</style>
</head><body>
<h1 id="welcome">Hello, {{if .Name}}{{.Name}}{{else}}{{.User}}{{end}}</h1>
<p>This application has no login of its own. authgate signed you in and sent these headers:</p>
<table id="headers"><tr><th>Header</th><th>Value</th></tr>
{{range .Rows}}<tr><td><code>{{.Name}}</code></td><td id="h-{{.Name}}">{{.Value}}</td></tr>
{{end}}</table>
<p>Path: <code id="path">{{.Path}}</code>. Cookies the app received: <code id="cookies">{{if .Cookie}}{{.Cookie}}{{else}}none (authgate removed its session cookie){{end}}</code></p>
<p><a id="logout" href="/oauth2/logout">Sign out</a> · <a href="/oauth2/userinfo">/oauth2/userinfo</a></p>
</body></html>
`))

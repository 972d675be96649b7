package authgate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// adaptedProvider adapts examples/<dir>/Caddyfile and returns its one
// provider's configuration.
func adaptedProvider(t *testing.T, dir string) ProviderConfig {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("examples", dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting examples/%s: %v", dir, err)
	}
	var cfg struct {
		Apps struct {
			Authgate App `json:"authgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps.Authgate.Providers) != 1 {
		t.Fatalf("examples/%s: %d providers, want 1", dir, len(cfg.Apps.Authgate.Providers))
	}
	for _, p := range cfg.Apps.Authgate.Providers {
		return *p
	}
	return ProviderConfig{}
}

// TestPresetsAdapt: every preset's example adapts to the provider's
// documented endpoints (discovery issuer, or URLs), scopes and claims,
// all visible in the adapted JSON.
func TestPresetsAdapt(t *testing.T) {
	oidc := []string{"openid", "profile", "email"}
	for _, tt := range []struct {
		dir  string
		want ProviderConfig
	}{
		{"google", ProviderConfig{
			Issuer: "https://accounts.google.com", Scopes: []string{"openid", "email", "profile"},
			Dialect:            Dialect{AuthorizeParams: ParamRewrite{Set: map[string]string{"access_type": "offline", "hd": "example.com"}}},
			RequireClaimValues: []ClaimRequirement{{Path: "hd", Values: []string{"example.com"}}},
		}},
		{"github", ProviderConfig{
			AuthorizeURL: "https://github.com/login/oauth/authorize", TokenURL: "https://github.com/login/oauth/access_token",
			UserinfoURL: "https://api.github.com/user", Scopes: []string{"read:user", "user:email", "read:org"},
		}},
		{"github-enterprise", ProviderConfig{
			AuthorizeURL: "https://github.example.com/login/oauth/authorize", TokenURL: "https://github.example.com/login/oauth/access_token",
			UserinfoURL: "https://github.example.com/api/v3/user", Scopes: []string{"read:user", "user:email", "read:org"},
		}},
		{"gitlab", ProviderConfig{Issuer: "https://gitlab.example.com", Scopes: oidc}},
		{"microsoft", ProviderConfig{
			Issuer:            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0",
			MultiTenantIssuer: "https://login.microsoftonline.com/{tid}/v2.0",
			Scopes:            []string{"openid", "profile", "email", "offline_access"},
		}},
		{"keycloak", ProviderConfig{Issuer: "https://sso.example.com/realms/app", Scopes: oidc}},
		{"okta", ProviderConfig{Issuer: "https://example.okta.com/oauth2/default", Scopes: oidc}},
		{"auth0", ProviderConfig{Issuer: "https://example.eu.auth0.com/", Scopes: oidc, Claims: ClaimMap{Groups: "'https://app.example.com/roles'"}}},
		{"authentik", ProviderConfig{Issuer: "https://authentik.example.com/application/o/app/", Scopes: oidc}},
		{"zitadel", ProviderConfig{Issuer: "https://example.zitadel.cloud", Scopes: oidc, Claims: ClaimMap{Groups: "urn:zitadel:iam:org:project:roles[keys]"}}},
		{"dex", ProviderConfig{Issuer: "https://dex.example.com/dex", Scopes: []string{"openid", "profile", "email", "groups", "offline_access"}}},
	} {
		t.Run(tt.dir, func(t *testing.T) {
			got := adaptedProvider(t, tt.dir)
			for _, f := range []struct {
				name      string
				got, want any
			}{
				{"issuer", got.Issuer, tt.want.Issuer},
				{"authorize_url", got.AuthorizeURL, tt.want.AuthorizeURL},
				{"token_url", got.TokenURL, tt.want.TokenURL},
				{"userinfo_url", got.UserinfoURL, tt.want.UserinfoURL},
				{"multi_tenant_issuer", got.MultiTenantIssuer, tt.want.MultiTenantIssuer},
				{"scopes", got.Scopes, tt.want.Scopes},
			} {
				if !reflect.DeepEqual(f.got, f.want) {
					t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
				}
			}
			if tt.want.Claims.Groups != "" && got.Claims.Groups != tt.want.Claims.Groups {
				t.Errorf("claims groups = %q, want %q", got.Claims.Groups, tt.want.Claims.Groups)
			}
			if tt.want.RequireClaimValues != nil && !reflect.DeepEqual(got.RequireClaimValues, tt.want.RequireClaimValues) {
				t.Errorf("require_claim_values = %+v, want %+v", got.RequireClaimValues, tt.want.RequireClaimValues)
			}
			if tt.want.Dialect.AuthorizeParams.Set != nil && !reflect.DeepEqual(got.Dialect.AuthorizeParams.Set, tt.want.Dialect.AuthorizeParams.Set) {
				t.Errorf("authorize_param set = %v, want %v", got.Dialect.AuthorizeParams.Set, tt.want.Dialect.AuthorizeParams.Set)
			}
			if strings.HasPrefix(tt.dir, "github") {
				api := strings.TrimSuffix(got.UserinfoURL, "/user")
				var urls []string
				for _, e := range got.ExtraUserinfo {
					urls = append(urls, e.Claim+" "+e.URL)
				}
				want := []string{"github_emails " + api + "/user/emails?per_page=100", "github_orgs " + api + "/user/orgs?per_page=100", "github_teams " + api + "/user/teams?per_page=100"}
				if !slices.Equal(urls, want) {
					t.Errorf("userinfo_extra %q, want %q", urls, want)
				}
			}
			if err := got.validate(tt.dir); err != nil {
				t.Errorf("the adapted provider does not validate: %v", err)
			}
		})
	}
}

// TestPresetErrors: a preset missing a required value, given one it does
// not take or a value that cannot be right fails at adapt, naming it and
// the line.
func TestPresetErrors(t *testing.T) {
	global := func(provider string) string {
		return "{\n\tauthgate {\n\t\tsession_keys {env.K}\n\t\tprovider p " + provider + "\n\t}\n}\nexample.com {\n\trespond ok\n}\n"
	}
	for _, tc := range []struct{ name, provider, want string }{
		{"unknown preset", "gooogle {\n\t\t\tclient_id x\n\t\t}", `unknown preset "gooogle" (known: auth0, authentik, dex, github, gitlab, google, keycloak, microsoft, okta, zitadel)`},
		{"microsoft without tenant", "microsoft {\n\t\t\tclient_id x\n\t\t}", "the microsoft preset needs tenant (the directory (tenant) id or domain"},
		{"keycloak without realm", "keycloak {\n\t\t\tbase_url https://sso.example.com\n\t\t\tclient_id x\n\t\t}", "the keycloak preset needs realm"},
		{"keycloak without base_url", "keycloak {\n\t\t\trealm app\n\t\t\tclient_id x\n\t\t}", "the keycloak preset needs base_url"},
		{"okta without domain", "okta {\n\t\t\tclient_id x\n\t\t}", "the okta preset needs domain"},
		{"auth0 without domain", "auth0 {\n\t\t\tclient_id x\n\t\t}", "the auth0 preset needs domain"},
		{"authentik without slug", "authentik {\n\t\t\tbase_url https://a.example.com\n\t\t\tclient_id x\n\t\t}", "the authentik preset needs slug"},
		{"zitadel without domain", "zitadel {\n\t\t\tclient_id x\n\t\t}", "the zitadel preset needs domain"},
		{"dex without issuer", "dex {\n\t\t\tclient_id x\n\t\t}", "provider needs issuer"},
		{"parameter of another preset", "google {\n\t\t\ttenant common\n\t\t\tclient_id x\n\t\t}", "unrecognized subdirective tenant (the google preset's parameters: hosted_domain)"},
		{"parameter twice", "microsoft {\n\t\t\ttenant a\n\t\t\ttenant b\n\t\t\tclient_id x\n\t\t}", "preset parameter tenant may be given only once"},
		{"placeholder in a parameter", "microsoft {\n\t\t\ttenant {env.TENANT}\n\t\t\tclient_id x\n\t\t}", "a placeholder cannot be expanded into URLs at run time; use {$VAR}"},
		{"base_url not a URL", "gitlab {\n\t\t\tbase_url gitlab.example.com\n\t\t\tclient_id x\n\t\t}", `the gitlab preset's base_url: "gitlab.example.com" is not an http(s) URL`},
		{"domain with a scheme", "okta {\n\t\t\tdomain https://example.okta.com\n\t\t\tclient_id x\n\t\t}", `"https://example.okta.com" is not a bare name`},
		{"preset without client_id", "google {\n\t\t}", "provider needs client_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(global(tc.provider)), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("accepted:\n%s", global(tc.provider))
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:") {
				t.Errorf("error %q does not say %q with the line", err, tc.want)
			}
		})
	}
}

// TestPresetOverrides: what the provider block sets wins over the preset,
// maps and lists merge entry by entry, the rest comes from the preset.
func TestPresetOverrides(t *testing.T) {
	d := caddyfile.NewTestDispenser(`authgate {
		session_keys {env.K}
		provider g google {
			hosted_domain example.com
			client_id id
			scopes openid email
			authorize_param set access_type online
			authorize_param set prompt select_account
			require_claim_value email_verified true
			claim user email
		}
		provider gh github {
			client_id id
			userinfo_extra github_orgs https://api.github.com/user/orgs?per_page=10 {
				keep login id
			}
			claim groups github_orgs[].login
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
	g := app.Providers["g"]
	if !slices.Equal(g.Scopes, []string{"openid", "email"}) {
		t.Errorf("scopes %v, want the block's", g.Scopes)
	}
	if want := map[string]string{"access_type": "online", "prompt": "select_account", "hd": "example.com"}; !reflect.DeepEqual(g.Dialect.AuthorizeParams.Set, want) {
		t.Errorf("authorize_param set %v, want %v", g.Dialect.AuthorizeParams.Set, want)
	}
	if want := []ClaimRequirement{{Path: "email_verified", Values: []string{"true"}}, {Path: "hd", Values: []string{"example.com"}}}; !reflect.DeepEqual(g.RequireClaimValues, want) {
		t.Errorf("require_claim_values %+v, want the block's and the preset's hd", g.RequireClaimValues)
	}
	if g.Issuer != "https://accounts.google.com" || g.Claims.User != "email" {
		t.Errorf("issuer %q, claim user %q", g.Issuer, g.Claims.User)
	}
	gh := app.Providers["gh"]
	var claims []string
	for _, e := range gh.ExtraUserinfo {
		claims = append(claims, e.Claim+" "+e.URL+" "+strings.Join(e.Keep, ","))
	}
	want := []string{
		"github_orgs https://api.github.com/user/orgs?per_page=10 login,id",
		"github_emails https://api.github.com/user/emails?per_page=100 email,primary,verified",
		"github_teams https://api.github.com/user/teams?per_page=100 slug,organization.login",
	}
	if !slices.Equal(claims, want) {
		t.Errorf("userinfo_extra %q, want %q", claims, want)
	}
	if gh.Claims.Groups != "github_orgs[].login" || gh.Claims.Email != "github_emails[primary=true,verified=true].email" {
		t.Errorf("claims %+v", gh.Claims)
	}
}

// presetSite runs examples/<dir> against the test provider, which stands
// in for the real one at realBase with the preset's issuer path.
type presetSite struct {
	*testSite
	clientID string
}

type presetExample struct {
	dir, env string // example directory; prefix of its _CLIENT_ID/_CLIENT_SECRET variables
	realBase string // replaced by the test provider's URL
	// ownIssuer puts the test provider's issuer into the block, for
	// presets whose issuer is on a fixed https host (the adapt tests
	// check that one).
	ownIssuer  bool
	issuerPath string // the test provider's IssuerPath: the preset's issuer under realBase
	clientID   string // when the example has it literally
	provider   string // more lines for the provider block
	site       string // replaces the site's authgate line
	edit       func(conf string) string
	opts       testidp.Options
	before     func(idp *testidp.Server)
}

func startPreset(t *testing.T, ex presetExample) *presetSite {
	t.Helper()
	port := freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	clientID := orDefault(ex.clientID, ex.dir+"-client")
	secret := ex.dir + "-secret-0123456789abcdef-0123456789"
	opts := ex.opts
	opts.IssuerPath = ex.issuerPath
	opts.Clients = []testidp.Client{{ID: clientID, Secret: secret, RedirectURIs: []string{origin + "/oauth2/callback"}}}
	idp := newIDP(t, opts)
	if ex.before != nil {
		ex.before(idp)
	}
	be := newBackend(t)
	raw, err := os.ReadFile(filepath.Join("examples", ex.dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.ReplaceAll(string(raw), "app.example.com", origin)
	conf = strings.ReplaceAll(conf, "localhost:8080", be.URL)
	conf = strings.Replace(conf, "\n{\n", "\n{\n\t"+globalPrelude, 1)
	base := strings.TrimSuffix(idp.Issuer(), ex.issuerPath)
	if ex.realBase != "" {
		if !strings.Contains(conf, ex.realBase) {
			t.Fatalf("examples/%s/Caddyfile does not mention %s", ex.dir, ex.realBase)
		}
		conf = strings.ReplaceAll(conf, ex.realBase, base)
	}
	more := strings.ReplaceAll(ex.provider, "{base}", base)
	if ex.ownIssuer {
		more += "\n\t\t\tissuer " + idp.Issuer()
	}
	if more != "" {
		i := strings.Index(conf, "\t\tprovider ")
		j := strings.Index(conf[i:], "{\n") + i + 2
		conf = conf[:j] + more + "\n" + conf[j:]
	}
	if ex.site != "" {
		i := strings.Index(conf, "\tauthgate ")
		j := strings.IndexByte(conf[i:], '\n') + i
		if strings.HasSuffix(conf[i:j], "{") {
			k := strings.Index(conf[j:], "\n\t}") + j + 3
			j = k
		}
		conf = conf[:i] + "\t" + ex.site + conf[j:]
	}
	if ex.edit != nil {
		conf = ex.edit(conf)
	}
	t.Setenv("AUTHGATE_KEY", testKey)
	t.Setenv(ex.env+"_CLIENT_ID", clientID)
	t.Setenv(ex.env+"_CLIENT_SECRET", secret)
	startCaddy(t, conf)
	return &presetSite{testSite: &testSite{port: port, origin: origin, backend: be, idp: idp}, clientID: clientID}
}

// TestPresetLogins signs in through each OpenID Connect preset's example
// against the test provider laid out as the real one (its issuer path):
// discovery from the preset's issuer, the preset's scopes, the identity
// and groups where the provider puts them.
func TestPresetLogins(t *testing.T) {
	alice := func(extra map[string]any) []testidp.User {
		c := map[string]any{"sub": "alice-sub", "email": "alice@example.test", "name": "Alice Example", "preferred_username": "alice", "groups": []any{"admins"}}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return []testidp.User{{Username: "alice", Password: "alice", Claims: c}}
	}
	for _, tt := range []struct {
		ex     presetExample
		scopes string
		groups string
	}{
		{presetExample{dir: "keycloak", env: "KEYCLOAK", realBase: "https://sso.example.com", issuerPath: "/realms/app"}, "openid profile email", "admins,staff"},
		{presetExample{dir: "okta", env: "OKTA", ownIssuer: true, issuerPath: "/oauth2/default"}, "openid profile email", "admins,staff"},
		{presetExample{dir: "dex", env: "DEX", realBase: "https://dex.example.com", issuerPath: "/dex", clientID: "app"}, "openid profile email groups offline_access", "admins,staff"},
		// ZITADEL asserts roles as an object keyed by role.
		{presetExample{dir: "zitadel", env: "ZITADEL", ownIssuer: true, opts: testidp.Options{Users: alice(map[string]any{
			"groups": nil, "urn:zitadel:iam:org:project:roles": map[string]any{"admin": map[string]any{"2881": "acme.zitadel.cloud"}, "viewer": map[string]any{"2881": "acme.zitadel.cloud"}},
		})}}, "openid profile email", "admin,viewer"},
		// GitLab sends groups at userinfo, not in the ID token.
		{presetExample{dir: "gitlab", env: "GITLAB", realBase: "https://gitlab.example.com",
			opts: testidp.Options{Users: alice(map[string]any{"groups": []any{"platform", "platform/infra"}})},
			before: func(idp *testidp.Server) {
				idp.SetFault("token", testidp.Fault{Kind: testidp.FaultIDTokenClaims, Claims: map[string]any{"groups": nil, "groups_direct": []any{"platform/infra"}}})
			}}, "openid profile email", "platform,platform/infra"},
	} {
		t.Run(tt.ex.dir, func(t *testing.T) {
			s := startPreset(t, tt.ex)
			b := newBrowser(t)
			saw := s.login(t, b)
			q := s.idp.LastAuthorizeQuery()
			if q.Get("scope") != tt.scopes || q.Get("client_id") != s.clientID {
				t.Errorf("authorization request scope %q client_id %q, want %q and %q", q.Get("scope"), q.Get("client_id"), tt.scopes, s.clientID)
			}
			if got := saw.Headers.Get("X-Forwarded-User"); got != "alice-sub" {
				t.Errorf("X-Forwarded-User %q", got)
			}
			if got := saw.Headers.Get("X-Forwarded-Groups"); got != tt.groups {
				t.Errorf("X-Forwarded-Groups %q, want %q", got, tt.groups)
			}
			if n := s.idp.Count("discovery"); n < 1 {
				t.Errorf("no discovery at the preset's issuer")
			}
		})
	}
}

// TestPresetGoogleHostedDomain: hosted_domain sends hd and, since hd only
// narrows Google's account chooser, requires the ID token's hd claim.
func TestPresetGoogleHostedDomain(t *testing.T) {
	users := []testidp.User{{Username: "alice", Password: "a", Claims: map[string]any{"sub": "alice-sub", "email": "alice@example.com", "hd": "example.com"}}}
	s := startPreset(t, presetExample{dir: "google", env: "GOOGLE", ownIssuer: true, opts: testidp.Options{Users: users}})
	b := newBrowser(t)
	saw := s.login(t, b)
	q := s.idp.LastAuthorizeQuery()
	if q.Get("hd") != "example.com" || q.Get("access_type") != "offline" || q.Get("scope") != "openid email profile" {
		t.Errorf("authorization request %v, want hd=example.com, access_type=offline and the google scopes", q)
	}
	if got := saw.Headers.Get("X-Forwarded-Email"); got != "alice@example.com" {
		t.Errorf("X-Forwarded-Email %q", got)
	}
	for name, claims := range map[string]map[string]any{
		"other_domain":     {"sub": "alice-sub", "email": "alice@other.test", "hd": "other.test"},
		"consumer_account": {"sub": "alice-sub", "email": "alice@gmail.test", "hd": nil},
	} {
		t.Run(name, func(t *testing.T) {
			s.idp.SetUserClaims("alice", claims)
			defer s.idp.SetUserClaims("alice", users[0].Claims)
			b := newBrowser(t)
			resp, body := b.get(s.origin + "/")
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "account_not_allowed") {
				t.Errorf("%s: %d, want 403 account_not_allowed\n%.300s", name, resp.StatusCode, body)
			}
			noSessionCookie(t, b, s.origin)
		})
	}
}

// TestPresetMicrosoft: Entra ID's issuers. A tenant given by domain
// discovers one tenant's issuer and accepts its tokens only; common (and
// organizations) discover the template https://login.microsoftonline.com/{tenantid}/v2.0,
// and each token's issuer must be its own tenant's (tid), at login and at
// refresh; require_claim_value tid keeps chosen tenants; a groups overage is
// logged.
func TestPresetMicrosoft(t *testing.T) {
	const tenantA, tenantB = "aaaaaaaa-1111-2222-3333-444444444444", "bbbbbbbb-1111-2222-3333-444444444444"
	user := func(tid string, extra map[string]any) []testidp.User {
		c := map[string]any{"sub": "alice-sub", "email": "alice@contoso.test", "name": "Alice", "tid": tid, "groups": []any{"g1"}}
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return []testidp.User{{Username: "alice", Password: "a", Claims: c}}
	}
	// entra lays the test provider out as Entra: discovery under
	// /<tenant>/v2.0 naming docIssuer, tokens issued by tokenIssuer.
	entra := func(tenant, docTenant, tokenTenant, caddyGlobal string, users []testidp.User, more string) *presetSite {
		path := "/" + tenant + "/v2.0"
		return startPreset(t, presetExample{
			dir: "microsoft", env: "ENTRA", issuerPath: path,
			opts:     testidp.Options{Users: users, OmitIssParameter: true},
			provider: "\t\t\tauthority {base}" + more,
			edit: func(conf string) string {
				conf = strings.Replace(conf, "tenant contoso.onmicrosoft.com", "tenant "+tenant, 1)
				return strings.Replace(conf, "\n{\n", "\n{\n"+caddyGlobal+"\n", 1)
			},
			before: func(idp *testidp.Server) {
				base := strings.TrimSuffix(idp.Issuer(), path)
				idp.SetFault("discovery", testidp.Fault{Kind: testidp.FaultDiscoveryWrongIssuer, Value: base + "/" + docTenant + "/v2.0"})
				idp.SetFault("token", testidp.Fault{Kind: testidp.FaultIDTokenWrongIssuer, Value: base + "/" + tokenTenant + "/v2.0"})
			},
		})
	}
	expectRefused := func(t *testing.T, s *presetSite, status int, reason string) {
		t.Helper()
		b := newBrowser(t)
		resp, body := b.get(s.origin + "/")
		if resp.StatusCode != status || !strings.Contains(body, reason) {
			t.Errorf("%d, want %d %s\n%.300s", resp.StatusCode, status, reason, body)
		}
		noSessionCookie(t, b, s.origin)
	}

	t.Run("tenant_domain", func(t *testing.T) {
		s := entra("contoso.onmicrosoft.com", tenantA, tenantA, "", user(tenantA, nil), "")
		saw := s.login(t, newBrowser(t))
		if got := saw.Headers.Get("X-Forwarded-Email"); got != "alice@contoso.test" {
			t.Errorf("X-Forwarded-Email %q", got)
		}
		if q := s.idp.LastAuthorizeQuery(); q.Get("scope") != "openid profile email offline_access" {
			t.Errorf("scope %q", q.Get("scope"))
		}
	})
	t.Run("tenant_domain_other_tenant", func(t *testing.T) {
		// Discovery names tenant A; a token issued by tenant B is no
		// token of this directory, whatever its tid says.
		s := entra("contoso.onmicrosoft.com", tenantA, tenantB, "", user(tenantB, nil), "")
		expectRefused(t, s, http.StatusUnauthorized, "id_token_invalid")
	})
	t.Run("common", func(t *testing.T) {
		s := entra("common", "{tenantid}", tenantB, "", user(tenantB, nil), "")
		b := newBrowser(t)
		s.login(t, b)
		advanceClock(t, 6*time.Minute) // the test provider's tokens live 5 minutes
		if resp, body := b.api("GET", s.origin+"/api/after-refresh"); resp.StatusCode != http.StatusOK {
			t.Errorf("after the access token expired: %d %s, want 200 (refreshed, the new ID token's issuer checked)", resp.StatusCode, body)
		}
		if n := s.idp.Count("token:refresh_token"); n != 1 {
			t.Errorf("%d refreshes, want 1", n)
		}
	})
	t.Run("common_issuer_of_another_tenant", func(t *testing.T) {
		// The token says tenant A issued it, its tid says B.
		s := entra("common", "{tenantid}", tenantA, "", user(tenantB, nil), "")
		expectRefused(t, s, http.StatusUnauthorized, "id_token_invalid")
	})
	t.Run("common_without_tid", func(t *testing.T) {
		s := entra("common", "{tenantid}", tenantA, "", user(tenantA, map[string]any{"tid": nil}), "")
		expectRefused(t, s, http.StatusUnauthorized, "id_token_invalid")
	})
	t.Run("organizations_require_tid", func(t *testing.T) {
		s := entra("organizations", "{tenantid}", tenantB, "", user(tenantB, nil), "\n\t\t\trequire_claim_value tid "+tenantA)
		expectRefused(t, s, http.StatusForbidden, "account_not_allowed")
	})
	t.Run("discovery_of_another_form", func(t *testing.T) {
		s := entra("common", "../evil", tenantA, "", user(tenantA, nil), "")
		expectRefused(t, s, http.StatusBadGateway, "provider_unavailable")
	})
	t.Run("groups_overage", func(t *testing.T) {
		logOpt, logFile := logToFile(t)
		s := entra("contoso.onmicrosoft.com", tenantA, tenantA, "\t"+logOpt, user(tenantA, map[string]any{
			"groups":         nil,
			"_claim_names":   map[string]any{"groups": "src1"},
			"_claim_sources": map[string]any{"src1": map[string]any{"endpoint": "https://graph.microsoft.com/v1.0/users/alice/getMemberObjects"}},
		}), "")
		saw := s.login(t, newBrowser(t))
		if g := saw.Headers.Get("X-Forwarded-Groups"); g != "" {
			t.Errorf("X-Forwarded-Groups %q, want none", g)
		}
		recs := logged(t, logFile, "groups left out by the provider")
		if len(recs) != 1 || recs[0]["claim"] != "groups" || !strings.Contains(fmt.Sprint(recs[0]["why"]), "groups overage") {
			t.Errorf("log %v, want one line about the groups overage", recs)
		}
	})
}

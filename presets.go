package authgate

// Presets: the providers most operators arrive with, as data. A preset is
// a ProviderConfig with {parameter} in its values, expanded when the
// Caddyfile is adapted (so `caddy adapt` shows every endpoint, scope and
// claim it set) and merged under what the provider block sets itself:
// every value stays overridable. The Caddyfile options that presets fill
// beyond the original ones (client authentication, PAR, extra userinfo,
// required claim values) are parsed here too.
//
//	provider <name> <preset> {
//		<parameter> <value>    # tenant, realm, domain, base_url, ...
//		client_id ...
//		...                    # any provider option, overriding the preset
//	}

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// preset describes one provider.
type preset struct {
	// docs are the provider's pages the values come from.
	docs []string
	// params are the values the operator gives, in the order they are
	// expanded (a default may name an earlier parameter).
	params []presetParam
	// config is the provider's configuration, with {param} in strings.
	config ProviderConfig
	// when is added for a parameter the operator gives.
	when map[string]ProviderConfig
}

type presetParam struct {
	name     string
	about    string // what the value is, for error messages
	required bool
	url      bool   // an http(s) URL (a trailing slash is dropped), else a name
	def      string // default, may name earlier parameters: {base_url}/api/v3
	// defNone is the default instead of def when param none is not given
	// either: GitHub's API is on api.github.com, but under /api/v3 of an
	// Enterprise Server's base URL.
	none, defNone string
}

// presets are the known providers. Each comment cites the pages its
// values come from; docs/providers.md says what was tested.
var presets = map[string]preset{
	// Google: "https://accounts.google.com/.well-known/openid-configuration"
	// (Google OpenID Connect reference,
	// https://developers.google.com/identity/openid-connect/reference).
	// Refresh tokens need access_type=offline; hd only narrows Google's
	// account chooser and "you must validate that the returned ID token
	// has an hd claim value that matches", so hosted_domain sets both the
	// parameter and require_claim_value hd (OpenID Connect guide,
	// https://developers.google.com/identity/openid-connect/openid-connect#hd-param).
	"google": {
		docs:   []string{"https://developers.google.com/identity/openid-connect/openid-connect"},
		params: []presetParam{{name: "hosted_domain", about: "the Google Workspace domain whose accounts may sign in"}},
		config: ProviderConfig{
			Issuer:  "https://accounts.google.com",
			Scopes:  []string{"openid", "email", "profile"},
			Dialect: Dialect{AuthorizeParams: ParamRewrite{Set: map[string]string{"access_type": "offline"}}},
		},
		when: map[string]ProviderConfig{"hosted_domain": {
			Dialect:            Dialect{AuthorizeParams: ParamRewrite{Set: map[string]string{"hd": "{hosted_domain}"}}},
			RequireClaimValues: []ClaimRequirement{{Path: "hd", Values: []string{"{hosted_domain}"}}},
		}},
	},

	// GitHub is OAuth 2.0 without OpenID Connect: the user is GET /user,
	// the email the primary verified one of GET /user/emails (/user's
	// may be null), the groups the organizations (GET /user/orgs) and
	// org/team slugs (GET /user/teams), each list paginated by Link
	// headers ("Authorizing OAuth apps",
	// https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps;
	// REST "Users", "Emails", "Organizations", "Teams";
	// "Using pagination in the REST API"). read:user, user:email and
	// read:org grant exactly those ("Scopes for OAuth apps"). The token
	// endpoint reads credentials from the body only and sends errors with
	// HTTP 200 under its own names: bad_verification_code and
	// bad_refresh_token mean invalid_grant. GitHub Enterprise Server
	// serves the same under one host, the API at /api/v3.
	"github": {
		docs: []string{"https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps"},
		params: []presetParam{
			{name: "base_url", about: "GitHub's web address, or a GitHub Enterprise Server's", url: true, def: "https://github.com"},
			{name: "api_url", about: "the REST API's address", url: true, def: "{base_url}/api/v3", none: "base_url", defNone: "https://api.github.com"},
		},
		config: ProviderConfig{
			AuthorizeURL: "{base_url}/login/oauth/authorize",
			TokenURL:     "{base_url}/login/oauth/access_token",
			UserinfoURL:  "{api_url}/user",
			Scopes:       []string{"read:user", "user:email", "read:org"},
			Dialect: Dialect{
				ClientAuth:         "body",
				InvalidGrantErrors: []string{"bad_verification_code", "bad_refresh_token"},
			},
			ExtraUserinfo: []ExtraUserinfo{
				{Claim: "github_emails", URL: "{api_url}/user/emails?per_page=100", Keep: []string{"email", "primary", "verified"}},
				{Claim: "github_orgs", URL: "{api_url}/user/orgs?per_page=100", Keep: []string{"login"}},
				{Claim: "github_teams", URL: "{api_url}/user/teams?per_page=100", Keep: []string{"slug", "organization.login"}},
			},
			Claims: ClaimMap{
				User:              "id", // the login can be renamed; the id stays
				Email:             "github_emails[primary=true,verified=true].email",
				PreferredUsername: "login",
				Name:              "name",
				Groups:            "github_orgs[].login|github_teams[].(organization.login/slug)",
			},
		},
	},

	// GitLab: "https://gitlab.com/.well-known/openid-configuration", or
	// the same under a self-managed instance; groups (full paths,
	// inherited ones too) come from the userinfo endpoint only, the ID
	// token has groups_direct ("GitLab as OpenID Connect identity
	// provider", https://docs.gitlab.com/integration/openid_connect_provider/).
	// authgate reads userinfo at every login, so the default groups claim
	// is the complete list.
	"gitlab": {
		docs:   []string{"https://docs.gitlab.com/integration/openid_connect_provider/"},
		params: []presetParam{{name: "base_url", about: "the GitLab instance", url: true, def: "https://gitlab.com"}},
		config: ProviderConfig{
			Issuer: "{base_url}",
			Scopes: []string{"openid", "profile", "email"},
		},
	},

	// Microsoft Entra ID, v2.0 endpoints: discovery at
	// https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration
	// where tenant is a tenant id or domain, or common, organizations or
	// consumers ("OpenID Connect on the Microsoft identity platform",
	// https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc).
	// The multi-tenant documents name the issuer
	// https://login.microsoftonline.com/{tenantid}/v2.0; a token's issuer
	// is that with the token's tid, which is how authgate checks it
	// (multi_tenant_issuer). offline_access yields refresh tokens. Users
	// in more than 200 groups get no groups claim but _claim_names (the
	// "groups overage", https://learn.microsoft.com/en-us/entra/identity/hybrid/connect/how-to-connect-fed-group-claims):
	// authgate logs it at login.
	"microsoft": {
		docs: []string{"https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc"},
		params: []presetParam{
			{name: "tenant", about: "the directory (tenant) id or domain, or common, organizations or consumers", required: true},
			{name: "authority", about: "the cloud's sign-in address", url: true, def: "https://login.microsoftonline.com"},
		},
		config: ProviderConfig{
			Issuer:            "{authority}/{tenant}/v2.0",
			MultiTenantIssuer: "{authority}/{tid}/v2.0",
			Scopes:            []string{"openid", "profile", "email", "offline_access"},
		},
	},

	// Keycloak: "/realms/{realm-name}/.well-known/openid-configuration"
	// under the server's base URL (Securing applications, "Available
	// endpoints",
	// https://www.keycloak.org/securing-apps/oidc-layers#_oidc_available_endpoints);
	// servers before Keycloak 17 have /auth in their base URL. Groups come
	// from a "Group Membership" mapper with token claim name groups.
	"keycloak": {
		docs: []string{"https://www.keycloak.org/securing-apps/oidc-layers"},
		params: []presetParam{
			{name: "base_url", about: "the Keycloak server's address", url: true, required: true},
			{name: "realm", about: "the realm's name", required: true},
		},
		config: ProviderConfig{
			Issuer: "{base_url}/realms/{realm}",
			Scopes: []string{"openid", "profile", "email"},
		},
	},

	// Okta: a custom authorization server's issuer is
	// https://{yourOktaDomain}/oauth2/{authorizationServerId}, every org
	// having one named default ("Authorization servers",
	// https://developer.okta.com/docs/concepts/auth-servers/). A groups
	// claim is configured at the authorization server
	// (https://developer.okta.com/docs/guides/customize-tokens-groups-claim/).
	"okta": {
		docs: []string{"https://developer.okta.com/docs/concepts/auth-servers/"},
		params: []presetParam{
			{name: "domain", about: "the Okta domain, e.g. example.okta.com", required: true},
			{name: "authorization_server", about: "the custom authorization server's id", def: "default"},
		},
		config: ProviderConfig{
			Issuer: "https://{domain}/oauth2/{authorization_server}",
			Scopes: []string{"openid", "profile", "email"},
		},
	},

	// Auth0: discovery at https://YOUR_AUTH0_DOMAIN/.well-known/openid-configuration,
	// whose issuer ends with a slash ("Locate JSON Web Key Sets",
	// https://auth0.com/docs/secure/tokens/json-web-tokens/locate-json-web-key-sets).
	// Auth0 has no groups claim: an Action adds a namespaced one, read
	// with a quoted claim path: claim groups 'https://example.com/roles'.
	"auth0": {
		docs:   []string{"https://auth0.com/docs/get-started/applications/configure-applications-with-oidc-discovery"},
		params: []presetParam{{name: "domain", about: "the tenant's domain, e.g. example.eu.auth0.com, or a custom domain", required: true}},
		config: ProviderConfig{
			Issuer: "https://{domain}/",
			Scopes: []string{"openid", "profile", "email"},
		},
	},

	// authentik: "OpenID Configuration
	// /application/o/<application slug>/.well-known/openid-configuration",
	// its issuer https://authentik.company/application/o/<slug>/ in the
	// default issuer mode; the default profile scope mapping adds groups
	// (OAuth2 provider, https://docs.goauthentik.io/add-secure-apps/providers/oauth2/).
	"authentik": {
		docs: []string{"https://docs.goauthentik.io/add-secure-apps/providers/oauth2/"},
		params: []presetParam{
			{name: "base_url", about: "the authentik server's address", url: true, required: true},
			{name: "slug", about: "the application's slug", required: true},
		},
		config: ProviderConfig{
			Issuer: "{base_url}/application/o/{slug}/",
			Scopes: []string{"openid", "profile", "email"},
		},
	},

	// ZITADEL: the instance's domain is the issuer. Roles are asserted in
	// urn:zitadel:iam:org:project:roles, an object keyed by role, when the
	// project asserts them ("Claims in ZITADEL",
	// https://zitadel.com/docs/apis/openidoauth/claims; "Scopes in
	// ZITADEL", https://zitadel.com/docs/apis/openidoauth/scopes).
	"zitadel": {
		docs:   []string{"https://zitadel.com/docs/apis/openidoauth/claims"},
		params: []presetParam{{name: "domain", about: "the instance's domain, e.g. example.zitadel.cloud", required: true}},
		config: ProviderConfig{
			Issuer: "https://{domain}",
			Scopes: []string{"openid", "profile", "email"},
			Claims: ClaimMap{Groups: "urn:zitadel:iam:org:project:roles[keys]"},
		},
	},

	// Dex: the issuer is whatever the server's configuration says; the
	// groups scope adds the groups claim, offline_access a refresh token
	// ("Scopes and Claims",
	// https://dexidp.io/docs/configuration/custom-scopes-claims-clients/).
	"dex": {
		docs: []string{"https://dexidp.io/docs/configuration/custom-scopes-claims-clients/"},
		config: ProviderConfig{
			Scopes: []string{"openid", "profile", "email", "groups", "offline_access"},
		},
	},
}

// presetNames lists the presets, sorted, for messages.
func presetNames() string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// param returns the preset's parameter called name.
func (pr preset) param(name string) (presetParam, bool) {
	for _, p := range pr.params {
		if p.name == name {
			return p, true
		}
	}
	return presetParam{}, false
}

// paramNames lists the preset's parameters, for messages.
func (pr preset) paramNames() string {
	if len(pr.params) == 0 {
		return "none"
	}
	names := make([]string, len(pr.params))
	for i, p := range pr.params {
		names[i] = p.name
	}
	return strings.Join(names, ", ")
}

// expand returns the preset's configuration for the given parameters.
func (pr preset) expand(name string, given map[string]string) (ProviderConfig, error) {
	values := map[string]string{}
	replace := func(s string) string {
		for k, v := range values {
			s = strings.ReplaceAll(s, "{"+k+"}", v)
		}
		return s
	}
	for _, p := range pr.params {
		v, ok := given[p.name]
		if !ok {
			if p.required {
				return ProviderConfig{}, fmt.Errorf("the %s preset needs %s (%s)", name, p.name, p.about)
			}
			v = p.def
			if _, other := given[p.none]; p.none != "" && !other {
				v = p.defNone
			}
			v = replace(v)
		} else if err := p.check(v); err != nil {
			return ProviderConfig{}, fmt.Errorf("the %s preset's %s: %w", name, p.name, err)
		}
		if p.url {
			v = strings.TrimRight(v, "/")
		}
		values[p.name] = v
	}
	cfg := pr.config
	for _, p := range pr.params {
		if _, ok := given[p.name]; ok {
			if more, ok := pr.when[p.name]; ok {
				mergeUnder(&cfg, more)
			}
		}
	}
	// The values go into every string of the configuration: through
	// JSON, where each is a string to replace in.
	raw, err := json.Marshal(cfg)
	if err != nil {
		return ProviderConfig{}, err
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return ProviderConfig{}, err
	}
	raw, err = json.Marshal(mapStrings(generic, replace))
	if err != nil {
		return ProviderConfig{}, err
	}
	var out ProviderConfig
	if err := json.Unmarshal(raw, &out); err != nil {
		return ProviderConfig{}, err
	}
	return out, nil
}

// check refuses values that could not be meant.
func (p presetParam) check(v string) error {
	if v == "" {
		return fmt.Errorf("empty value (%s)", p.about)
	}
	if strings.ContainsAny(v, "{}") {
		// {env.X} would land in URLs and stay there: the preset is
		// expanded when the Caddyfile is adapted.
		return fmt.Errorf("%q: a placeholder cannot be expanded into URLs at run time; use {$VAR}, which the Caddyfile reads when it is adapted", v)
	}
	if p.url {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("%q is not an http(s) URL without query (%s)", v, p.about)
		}
		return nil
	}
	if strings.ContainsAny(v, "/?#:@ \t") {
		return fmt.Errorf("%q is not a bare name (%s)", v, p.about)
	}
	return nil
}

// mapStrings applies f to every string in a decoded JSON value.
func mapStrings(v any, f func(string) string) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case []any:
		for i := range x {
			x[i] = mapStrings(x[i], f)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = mapStrings(e, f)
		}
	}
	return v
}

// mergeUnder fills what dst leaves unset from src: structs member by
// member, maps key by key, lists of objects (userinfo_extra,
// require_claim_value) entry by entry keyed by their first field, and any other
// value only when dst has none. What dst sets always wins.
func mergeUnder(dst *ProviderConfig, src ProviderConfig) {
	mergeValue(reflect.ValueOf(dst).Elem(), reflect.ValueOf(src))
}

func mergeValue(dst, src reflect.Value) {
	switch dst.Kind() {
	case reflect.Struct:
		for i := 0; i < dst.NumField(); i++ {
			if dst.Type().Field(i).IsExported() {
				mergeValue(dst.Field(i), src.Field(i))
			}
		}
	case reflect.Map:
		if src.Len() == 0 {
			return
		}
		if dst.IsNil() {
			dst.Set(reflect.MakeMap(dst.Type()))
		}
		for _, k := range src.MapKeys() {
			if !dst.MapIndex(k).IsValid() {
				dst.SetMapIndex(k, src.MapIndex(k))
			}
		}
	case reflect.Slice:
		if dst.Type().Elem().Kind() == reflect.Struct && dst.Len() > 0 {
			for i := 0; i < src.Len(); i++ {
				key := src.Index(i).Field(0).Interface()
				found := false
				for j := 0; j < dst.Len(); j++ {
					if dst.Index(j).Field(0).Interface() == key {
						found = true
					}
				}
				if !found {
					dst.Set(reflect.Append(dst, src.Index(i)))
				}
			}
			return
		}
		if dst.Len() == 0 {
			dst.Set(src)
		}
	default:
		if dst.IsZero() {
			dst.Set(src)
		}
	}
}

// repeatableProviderOptions may be given several times in a provider
// block.
var repeatableProviderOptions = map[string]bool{"userinfo_extra": true, "require_claim_value": true, "invalid_grant_error": true}

// parseProviderMore parses the provider options of presets.go; false when
// name is none of them.
func parseProviderMore(d *caddyfile.Dispenser, pc *ProviderConfig, name string) (bool, error) {
	switch name {
	case "client_auth":
		return true, parseClientAuth(d, pc)
	case "tls_trusted_ca", "par_url", "multi_tenant_issuer":
		dst := map[string]*string{"tls_trusted_ca": &pc.TLSTrustedCA, "par_url": &pc.PARURL, "multi_tenant_issuer": &pc.MultiTenantIssuer}[name]
		if err := oneArg(d, dst); err != nil {
			return true, err
		}
		if name == "multi_tenant_issuer" {
			if _, err := parseIssuerTemplate(pc.MultiTenantIssuer); err != nil {
				return true, d.Errf("multi_tenant_issuer: %v", err)
			}
		}
	case "par":
		if err := oneArg(d, &pc.PAR); err != nil {
			return true, err
		}
		if pc.PAR != "on" && pc.PAR != "auto" && pc.PAR != "off" {
			return true, d.Errf("par must be on, auto or off, not %q", pc.PAR)
		}
	case "require_claim_value":
		args := d.RemainingArgs()
		if len(args) < 2 {
			return true, d.Err("require_claim_value takes a claim path and one or more values (glob patterns)")
		}
		if _, err := parseClaimPath(args[0]); err != nil {
			return true, d.Errf("require_claim_value: %v", err)
		}
		pc.RequireClaimValues = append(pc.RequireClaimValues, ClaimRequirement{Path: args[0], Values: args[1:]})
	case "invalid_grant_error":
		args := d.RemainingArgs()
		if len(args) == 0 {
			return true, d.Err("invalid_grant_error takes one or more of the provider's error codes")
		}
		pc.Dialect.InvalidGrantErrors = append(pc.Dialect.InvalidGrantErrors, args...)
	case "userinfo_extra":
		args := d.RemainingArgs()
		if len(args) != 2 {
			return true, d.Err("userinfo_extra takes a claim name and a URL, and optionally a block with keep and max_pages")
		}
		e := ExtraUserinfo{Claim: args[0], URL: args[1]}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch sub := d.Val(); sub {
			case "keep":
				if e.Keep = d.RemainingArgs(); len(e.Keep) == 0 {
					return true, d.Err("userinfo_extra keep takes one or more members (dot-separated keys)")
				}
			case "max_pages":
				var raw string
				if err := oneArg(d, &raw); err != nil {
					return true, err
				}
				n, err := strconv.Atoi(raw)
				if err != nil || n < 1 {
					return true, d.Errf("userinfo_extra max_pages: %q is not a positive number", raw)
				}
				e.MaxPages = n
			default:
				return true, d.Errf("unrecognized userinfo_extra subdirective %s", sub)
			}
		}
		if err := validateExtraUserinfo(append(slices.Clone(pc.ExtraUserinfo), e)); err != nil {
			return true, d.Err(err.Error())
		}
		pc.ExtraUserinfo = append(pc.ExtraUserinfo, e)
	default:
		return false, nil
	}
	return true, nil
}

// parseClientAuth parses
//
//	client_auth basic|body|client_secret_jwt|private_key_jwt|tls_client_auth [{
//		key             <PEM file>|storage   # private_key_jwt; storage: made and kept in Caddy's storage
//		key_id          <kid>
//		alg             <algorithm>
//		audience        token_endpoint|issuer|<url>
//		certificate     <PEM file>   # tls_client_auth
//		certificate_key <PEM file>
//	}]
func parseClientAuth(d *caddyfile.Dispenser, pc *ProviderConfig) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	method := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	switch method {
	case "basic", "body", authClientSecretJWT, authPrivateKeyJWT, authTLSClientAuth:
	default:
		return d.Errf("client_auth must be basic, body, client_secret_jwt, private_key_jwt or tls_client_auth, not %q", method)
	}
	pc.Dialect.ClientAuth = method
	creds := &ClientCredentials{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("client_auth %s may be given only once", sub)
		}
		seen[sub] = true
		dst, ok := map[string]*string{
			"key": &creds.Key, "key_id": &creds.KeyID, "alg": &creds.Algorithm, "audience": &creds.Audience,
			"certificate": &creds.Certificate, "certificate_key": &creds.CertificateKey,
		}[sub]
		if !ok {
			return d.Errf("unrecognized client_auth subdirective %s", sub)
		}
		if err := oneArg(d, dst); err != nil {
			return err
		}
	}
	if creds.Key == "storage" {
		// A file of that name is ./storage.
		creds.Key, creds.KeyStorage = "", true
	}
	switch {
	case method == authPrivateKeyJWT && creds.Key == "" && !creds.KeyStorage:
		return d.Err("client_auth private_key_jwt needs key <PEM file of the private key>|storage")
	case method == authTLSClientAuth && (creds.Certificate == "" || creds.CertificateKey == ""):
		return d.Err("client_auth tls_client_auth needs certificate <PEM file> and certificate_key <PEM file>")
	case (method == "basic" || method == "body") && len(seen) > 0:
		return d.Errf("client_auth %s takes no block", method)
	}
	if len(seen) > 0 {
		pc.ClientCredentials = creds
	}
	return nil
}

// oneArg reads the one argument of the current subdirective into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

package authgate

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("authgate", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("authgate", parseHandlerDirective)
	// Before the other auth directives and request_header, so that
	// request_header and reverse_proxy's header_up can use the
	// {http.auth.user.*} placeholders; before handle, route, respond,
	// reverse_proxy and file_server.
	httpcaddyfile.RegisterDirectiveOrder("authgate", httpcaddyfile.Before, "basic_auth")
	// Step-up needs the session authgate found: right after it (inserted
	// before basic_auth after authgate was, so between the two).
	httpcaddyfile.RegisterHandlerDirective("authgate_require", parseRequireDirective)
	httpcaddyfile.RegisterDirectiveOrder("authgate_require", httpcaddyfile.Before, "basic_auth")
}

// parseGlobalOption parses the global `authgate` block:
//
//	{
//		authgate {
//			session_keys <key> [<old key>...]
//			cookie {
//				name      <name>
//				domain    <domain>
//				path      <path>
//				same_site lax|strict|none
//			}
//			session_lifetime <duration>
//			refresh_skew     <duration>
//			session_cache_size <size>
//			auth_host        <host>
//			allowed_redirect_domains <domain>...
//			path_prefix      <path>
//			session_store redis {
//				address    <host:port>                   # one server, or:
//				sentinel   <master name> <host:port>...  # a master found through Sentinels, or:
//				cluster    <host:port>...                # seed nodes of a Redis Cluster
//				sentinel_username <user>
//				sentinel_password <password>
//				username   <user>
//				password   <password>
//				db         <n>
//				tls [{
//					ca_file     <pem file>
//					cert_file   <pem file>
//					key_file    <pem file>
//					server_name <name>
//				}]
//				key_prefix <prefix>
//				timeout    <duration>
//			}
//			assertion_keys {
//				file   <pem file>...
//				rotate <duration>
//				grace  <duration>
//			}
//			provider <name> {
//				# see parseProvider
//			}
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the authgate global option may appear only once")
	}
	app := new(App)
	d.Next() // the option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		ok, err := parseSetting(d, &app.Settings, seen)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, d.Errf("unrecognized subdirective %s", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "authgate", Value: caddyconfig.JSON(app, nil)}, nil
}

// parseSetting parses one subdirective shared by the global block and the
// handler. It reports false when the name is not a setting.
func parseSetting(d *caddyfile.Dispenser, s *Settings, seen map[string]bool) (bool, error) {
	name := d.Val()
	once := func() error {
		if seen[name] {
			return d.Errf("%s may be given only once", name)
		}
		seen[name] = true
		return nil
	}
	switch name {
	case "session_keys":
		if err := once(); err != nil {
			return true, err
		}
		s.SessionKeys = d.RemainingArgs()
		if len(s.SessionKeys) == 0 {
			return true, d.Err("session_keys needs at least one key")
		}
	case "cookie":
		if err := once(); err != nil {
			return true, err
		}
		if d.NextArg() {
			return true, d.ArgErr()
		}
		s.Cookie = new(CookieConfig)
		cseen := map[string]bool{}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			sub := d.Val()
			if cseen[sub] {
				return true, d.Errf("cookie %s may be given only once", sub)
			}
			cseen[sub] = true
			var dst *string
			switch sub {
			case "name":
				dst = &s.Cookie.Name
			case "domain":
				dst = &s.Cookie.Domain
			case "path":
				dst = &s.Cookie.Path
			case "same_site":
				dst = &s.Cookie.SameSite
			default:
				return true, d.Errf("unrecognized cookie subdirective %s", sub)
			}
			if err := oneArg(d, dst); err != nil {
				return true, err
			}
		}
		switch strings.ToLower(s.Cookie.SameSite) {
		case "", "lax", "strict", "none":
		default:
			return true, d.Errf("cookie same_site must be lax, strict or none, not %q", s.Cookie.SameSite)
		}
	case "session_lifetime", "refresh_skew":
		if err := once(); err != nil {
			return true, err
		}
		var raw string
		if err := oneArg(d, &raw); err != nil {
			return true, err
		}
		dur, err := caddy.ParseDuration(raw)
		if err != nil || dur <= 0 {
			return true, d.Errf("%s: %q is not a positive duration", name, raw)
		}
		if name == "session_lifetime" {
			s.SessionLifetime = caddy.Duration(dur)
		} else {
			s.RefreshSkew = caddy.Duration(dur)
		}
	case "session_cache_size":
		if err := once(); err != nil {
			return true, err
		}
		var raw string
		if err := oneArg(d, &raw); err != nil {
			return true, err
		}
		size, err := humanize.ParseBytes(raw)
		if err != nil || size < minSessionCacheSize || size > maxSessionCacheSize {
			return true, d.Errf("session_cache_size: %q is not a size from 1MiB to 1TiB (e.g. 64MiB)", raw)
		}
		s.SessionCacheSize = int64(size)
	case "auth_host":
		if err := once(); err != nil {
			return true, err
		}
		if err := oneArg(d, &s.AuthHost); err != nil {
			return true, err
		}
	case "allowed_redirect_domains":
		if err := once(); err != nil {
			return true, err
		}
		s.AllowedRedirectDomains = d.RemainingArgs()
		if len(s.AllowedRedirectDomains) == 0 {
			return true, d.ArgErr()
		}
	case "path_prefix":
		if err := once(); err != nil {
			return true, err
		}
		if err := oneArg(d, &s.PathPrefix); err != nil {
			return true, err
		}
	case "session_store":
		if err := once(); err != nil {
			return true, err
		}
		if !d.NextArg() || d.Val() != "redis" {
			return true, d.Err("session_store takes a type: redis")
		}
		if d.NextArg() {
			return true, d.ArgErr()
		}
		sc := &StoreConfig{Type: "redis"}
		sseen := map[string]bool{}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			sub := d.Val()
			if sseen[sub] {
				return true, d.Errf("session_store %s may be given only once", sub)
			}
			sseen[sub] = true
			switch sub {
			case "address":
				if err := oneArg(d, &sc.Address); err != nil {
					return true, err
				}
			case "username":
				if err := oneArg(d, &sc.Username); err != nil {
					return true, err
				}
			case "password":
				if err := oneArg(d, &sc.Password); err != nil {
					return true, err
				}
			case "key_prefix":
				if err := oneArg(d, &sc.KeyPrefix); err != nil {
					return true, err
				}
			case "db":
				var raw string
				if err := oneArg(d, &raw); err != nil {
					return true, err
				}
				n, err := strconv.Atoi(raw)
				if err != nil || n < 0 {
					return true, d.Errf("session_store db: %q is not a database number", raw)
				}
				sc.DB = n
			case "timeout":
				var raw string
				if err := oneArg(d, &raw); err != nil {
					return true, err
				}
				dur, err := caddy.ParseDuration(raw)
				if err != nil || dur <= 0 {
					return true, d.Errf("session_store timeout: %q is not a positive duration", raw)
				}
				sc.Timeout = caddy.Duration(dur)
			case "sentinel":
				args := d.RemainingArgs()
				if len(args) < 2 {
					return true, d.Err("session_store sentinel takes the master's name and one or more Sentinel addresses")
				}
				if sc.Sentinel == nil {
					sc.Sentinel = &StoreSentinel{}
				}
				sc.Sentinel.MasterName, sc.Sentinel.Addresses = args[0], args[1:]
			case "sentinel_username", "sentinel_password":
				if sc.Sentinel == nil {
					sc.Sentinel = &StoreSentinel{}
				}
				field := &sc.Sentinel.Username
				if sub == "sentinel_password" {
					field = &sc.Sentinel.Password
				}
				if err := oneArg(d, field); err != nil {
					return true, err
				}
			case "cluster":
				if sc.Cluster = d.RemainingArgs(); len(sc.Cluster) == 0 {
					return true, d.Err("session_store cluster takes one or more node addresses")
				}
			case "tls":
				if d.NextArg() {
					return true, d.ArgErr()
				}
				sc.TLS = true
				if err := parseStoreTLS(d, sc); err != nil {
					return true, err
				}
			default:
				return true, d.Errf("unrecognized session_store subdirective %s", sub)
			}
		}
		if sc.Sentinel != nil && sc.Sentinel.MasterName == "" {
			return true, d.Err("session_store sentinel_username and sentinel_password need sentinel <master name> <address>...")
		}
		n := 0
		for _, given := range []bool{sc.Address != "", sc.Sentinel != nil, len(sc.Cluster) > 0} {
			if given {
				n++
			}
		}
		if n > 1 {
			return true, d.Err("session_store takes one of address, sentinel and cluster")
		}
		s.SessionStore = sc
	case "assertion_keys":
		if err := once(); err != nil {
			return true, err
		}
		if d.NextArg() {
			return true, d.ArgErr()
		}
		ak := new(AssertionKeysConfig)
		kseen := map[string]bool{}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			sub := d.Val()
			if kseen[sub] {
				return true, d.Errf("assertion_keys %s may be given only once", sub)
			}
			kseen[sub] = true
			switch sub {
			case "file":
				ak.Files = d.RemainingArgs()
				if len(ak.Files) == 0 {
					return true, d.Err("assertion_keys file takes one or more PEM files (the first signs)")
				}
			case "rotate", "grace":
				var raw string
				if err := oneArg(d, &raw); err != nil {
					return true, err
				}
				dur, err := caddy.ParseDuration(raw)
				if err != nil || dur <= 0 {
					return true, d.Errf("assertion_keys %s: %q is not a positive duration", sub, raw)
				}
				if sub == "rotate" {
					ak.Rotate = caddy.Duration(dur)
				} else {
					ak.Grace = caddy.Duration(dur)
				}
			default:
				return true, d.Errf("unrecognized assertion_keys subdirective %s", sub)
			}
		}
		if len(ak.Files) > 0 && (ak.Rotate != 0 || ak.Grace != 0) {
			return true, d.Err("assertion_keys: rotate and grace apply to keys in Caddy's storage, not to files (list the previous file after the new one)")
		}
		s.AssertionKeys = ak
	case "provider":
		if !d.NextArg() {
			return true, d.Err("provider needs a name")
		}
		pname := d.Val()
		presetName := ""
		if d.NextArg() {
			presetName = d.Val()
			if _, ok := presets[presetName]; !ok {
				return true, d.Errf("provider %s: unknown preset %q (known: %s)", pname, presetName, presetNames())
			}
		}
		if d.NextArg() {
			return true, d.ArgErr()
		}
		if _, dup := s.Providers[pname]; dup {
			return true, d.Errf("provider %s is defined twice", pname)
		}
		pc, err := parseProvider(d, presetName)
		if err != nil {
			return true, err
		}
		if s.Providers == nil {
			s.Providers = map[string]*ProviderConfig{}
		}
		s.Providers[pname] = pc
	default:
		return false, nil
	}
	return true, nil
}

// parseProvider parses a provider block; with a preset (presets.go), its
// parameters too, and the preset's values fill what the block leaves
// unset:
//
//	provider <name> [<preset>] {
//		issuer          <url>          # OpenID Connect (discovery)
//		authorize_url   <url>          # plain OAuth 2.0 ...
//		token_url       <url>
//		userinfo_url    <url>
//		revoke_url      <url>
//		introspection_url <url>
//		end_session_url <url>
//		jwks_url        <url>
//		redirect_url    <url>
//		client_id       <id>
//		client_secret   <secret>
//		scopes          <scope>...
//		timeout         <duration>
//		default_expires_in <duration>
//		token_request   form|json|query
//		client_auth     basic|body|client_secret_jwt|private_key_jwt|tls_client_auth [{ ... }]
//		tls_trusted_ca  <PEM file>
//		par             on|auto|off
//		par_url         <url>
//		userinfo_extra  <claim> <url> [{ keep <member>...; max_pages <n> }]
//		require_claim_value <path> <value>...
//		multi_tenant_issuer <issuer with {claim}>
//		invalid_grant_error <code>...
//		state   off
//		pkce    off
//		refresh off
//		id_token_hint on
//		authorize_param rename <standard> <theirs> | omit <name>... | set <name> <value>
//		token_param     rename <standard> <theirs> | omit <name>... | set <name> <value>
//		callback_param  code|state|error <theirs>
//		claim user|email|preferred_username|name|groups <path>
//		keep_groups <glob>...
//		require_claim <field or path>...
//		allow_unverified_email [on|off]
//		userinfo_refresh_interval <duration>
//	}
func parseProvider(d *caddyfile.Dispenser, presetName string) (*ProviderConfig, error) {
	pc := new(ProviderConfig)
	seen := map[string]bool{}
	pr := presets[presetName]
	params := map[string]string{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if _, ok := pr.param(name); ok {
			if _, dup := params[name]; dup {
				return nil, d.Errf("preset parameter %s may be given only once", name)
			}
			var v string
			if err := oneArg(d, &v); err != nil {
				return nil, err
			}
			params[name] = v
			continue
		}
		repeatable := name == "authorize_param" || name == "token_param" || name == "callback_param" || name == "claim" || name == "keep_groups" || name == "require_claim" ||
			repeatableProviderOptions[name]
		if !repeatable {
			if seen[name] {
				return nil, d.Errf("provider option %s may be given only once", name)
			}
			seen[name] = true
		}
		strField := map[string]*string{
			"issuer": &pc.Issuer, "client_id": &pc.ClientID, "client_secret": &pc.ClientSecret,
			"authorize_url": &pc.AuthorizeURL, "token_url": &pc.TokenURL, "userinfo_url": &pc.UserinfoURL,
			"revoke_url": &pc.RevokeURL, "end_session_url": &pc.EndSessionURL, "jwks_url": &pc.JWKSURL,
			"redirect_url": &pc.RedirectURL, "introspection_url": &pc.IntrospectionURL,
		}
		if dst, ok := strField[name]; ok {
			if err := oneArg(d, dst); err != nil {
				return nil, err
			}
			continue
		}
		switch name {
		case "scopes":
			pc.Scopes = d.RemainingArgs()
			if len(pc.Scopes) == 0 {
				return nil, d.ArgErr()
			}
		case "timeout", "default_expires_in", "userinfo_refresh_interval":
			var raw string
			if err := oneArg(d, &raw); err != nil {
				return nil, err
			}
			dur, err := caddy.ParseDuration(raw)
			if err != nil || dur <= 0 {
				return nil, d.Errf("%s: %q is not a positive duration", name, raw)
			}
			switch name {
			case "timeout":
				pc.Timeout = caddy.Duration(dur)
			case "default_expires_in":
				pc.DefaultExpiresIn = caddy.Duration(dur)
			default:
				pc.UserinfoRefreshInterval = caddy.Duration(dur)
			}
		case "require_claim":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Err("require_claim takes one or more fields (user, email, preferred_username, name, groups) or claim paths")
			}
			for _, a := range args {
				if _, err := parseClaimPath(a); err != nil {
					return nil, d.Errf("require_claim: %v", err)
				}
				if slices.Contains(pc.Claims.Required, a) {
					return nil, d.Errf("require_claim %s is given twice", a)
				}
				pc.Claims.Required = append(pc.Claims.Required, a)
			}
		case "allow_unverified_email":
			switch args := d.RemainingArgs(); {
			case len(args) == 0 || len(args) == 1 && args[0] == "on":
				pc.Claims.AllowUnverifiedEmail = true
			case len(args) == 1 && args[0] == "off":
				pc.Claims.AllowUnverifiedEmail = false
			default:
				return nil, d.Err("allow_unverified_email takes nothing, on or off")
			}
		case "token_request":
			if err := oneArg(d, &pc.Dialect.TokenEncoding); err != nil {
				return nil, err
			}
			switch pc.Dialect.TokenEncoding {
			case "form", "json", "query":
			default:
				return nil, d.Errf("token_request must be form, json or query, not %q", pc.Dialect.TokenEncoding)
			}
		case "state", "pkce", "refresh", "id_token_hint":
			var v string
			if err := oneArg(d, &v); err != nil {
				return nil, err
			}
			if v != "off" && v != "on" {
				return nil, d.Errf("%s takes on or off, not %q", name, v)
			}
			off := v == "off"
			switch name {
			case "state":
				pc.Dialect.NoState = off
			case "pkce":
				pc.Dialect.NoPKCE = off
			case "refresh":
				pc.Dialect.NoRefresh = off
			case "id_token_hint":
				pc.IDTokenHint = !off
			}
		case "authorize_param", "token_param":
			dst := &pc.Dialect.AuthorizeParams
			if name == "token_param" {
				dst = &pc.Dialect.TokenParams
			}
			if err := parseParamRewrite(d, dst); err != nil {
				return nil, err
			}
		case "callback_param":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Err("callback_param takes code|state|error and the provider's name for it")
			}
			switch args[0] {
			case "code":
				pc.Dialect.Callback.Code = args[1]
			case "state":
				pc.Dialect.Callback.State = args[1]
			case "error":
				pc.Dialect.Callback.Error = args[1]
			default:
				return nil, d.Errf("callback_param: unknown parameter %q (code, state or error)", args[0])
			}
		case "claim":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Err("claim takes a field (user, email, preferred_username, name, groups) and a path")
			}
			if _, err := parseClaimPath(args[1]); err != nil {
				return nil, d.Errf("claim %s: %v", args[0], err)
			}
			switch args[0] {
			case "user":
				pc.Claims.User = args[1]
			case "email":
				pc.Claims.Email = args[1]
			case "preferred_username":
				pc.Claims.PreferredUsername = args[1]
			case "name":
				pc.Claims.Name = args[1]
			case "groups":
				pc.Claims.Groups = args[1]
			default:
				return nil, d.Errf("claim: unknown field %q (user, email, preferred_username, name, groups)", args[0])
			}
		case "keep_groups":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.Err("keep_groups takes one or more glob patterns of the groups to keep (app-*, admins)")
			}
			for _, a := range args {
				if a == "" {
					return nil, d.Err("keep_groups: empty pattern")
				}
			}
			pc.Claims.KeepGroups = append(pc.Claims.KeepGroups, args...)
		default:
			ok, err := parseProviderMore(d, pc, name)
			if err != nil {
				return nil, err
			}
			if !ok {
				if presetName != "" {
					return nil, d.Errf("unrecognized subdirective %s (the %s preset's parameters: %s)", name, presetName, pr.paramNames())
				}
				return nil, d.Errf("unrecognized subdirective %s", name)
			}
		}
	}
	if presetName != "" {
		base, err := pr.expand(presetName, params)
		if err != nil {
			return nil, d.Errf("provider: %v", err)
		}
		mergeUnder(pc, base)
	}
	if pc.Issuer == "" && (pc.AuthorizeURL == "" || pc.TokenURL == "") {
		return nil, d.Err("provider needs issuer, or authorize_url and token_url")
	}
	if pc.ClientID == "" {
		return nil, d.Err("provider needs client_id")
	}
	return pc, nil
}

func parseParamRewrite(d *caddyfile.Dispenser, p *ParamRewrite) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s takes rename <standard> <theirs>, omit <name>... or set <name> <value>", name)
	}
	switch args[0] {
	case "rename":
		if len(args) != 3 {
			return d.Errf("%s rename takes the standard name and the provider's name", name)
		}
		if p.Rename == nil {
			p.Rename = map[string]string{}
		}
		p.Rename[args[1]] = args[2]
	case "omit":
		if len(args) < 2 {
			return d.Errf("%s omit takes at least one name", name)
		}
		p.Omit = append(p.Omit, args[1:]...)
	case "set":
		if len(args) != 3 {
			return d.Errf("%s set takes a name and a value", name)
		}
		if p.Set == nil {
			p.Set = map[string]string{}
		}
		p.Set[args[1]] = args[2]
	default:
		return d.Errf("%s: unknown action %q (rename, omit or set)", name, args[0])
	}
	return nil
}

// parseHandlerDirective parses the site directive:
//
//	authgate [<provider>...] {
//		allow|deny email|domain|user|group <pattern>...
//		allow|deny claim <path> <pattern>...
//		header user|email|preferred_username|groups|access_token <Header-Name>
//		claim_header <Header-Name> <claim path>
//		bearer_tokens [<audience>...] {
//			audiences         <audience>...
//			resource_audience <audience>
//			introspection     on|off
//			userinfo          on|off
//			rate_limit        <calls per second>
//		}
//		error_pages builtin|caddy
//		pass_access_token [forward_auth]
//		pass_cookie
//		assertion_header   [<Header-Name>]
//		assertion_audience <audience>
//		assertion_lifetime <duration>
//		silent_login
//		# and, for a single-site setup, any global setting:
//		# session_keys, cookie, session_lifetime, provider, ...
//	}
func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := h.Dispenser
	hd := new(Handler)
	d.Next() // directive name
	hd.ProviderNames = d.RemainingArgs()
	seen := map[string]bool{}
	for d.NextBlock(0) {
		name := d.Val()
		switch name {
		case "allow", "deny":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return nil, d.Errf("%s takes a field (email, domain, user, group, claim) and at least one pattern", name)
			}
			r := Rule{Action: name, Field: args[0]}
			switch args[0] {
			case "email", "domain", "user", "group":
				r.Values = args[1:]
			case "claim":
				if len(args) < 3 {
					return nil, d.Errf("%s claim takes a claim path and at least one pattern", name)
				}
				if _, err := parseClaimPath(args[1]); err != nil {
					return nil, d.Errf("%s claim: %v", name, err)
				}
				r.Claim, r.Values = args[1], args[2:]
			default:
				return nil, d.Errf("%s: unknown field %q (email, domain, user, group or claim)", name, args[0])
			}
			hd.Rules = append(hd.Rules, r)
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Err("header takes a field (user, email, preferred_username, groups, access_token) and a header name")
			}
			var dst *string
			switch args[0] {
			case "user":
				dst = &hd.Headers.User
			case "email":
				dst = &hd.Headers.Email
			case "preferred_username":
				dst = &hd.Headers.PreferredUsername
			case "groups":
				dst = &hd.Headers.Groups
			case "access_token":
				dst = &hd.Headers.AccessToken
			default:
				return nil, d.Errf("header: unknown field %q", args[0])
			}
			if *dst != "" {
				return nil, d.Errf("header %s may be given only once", args[0])
			}
			*dst = args[1]
		case "claim_header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Err("claim_header takes a header name and a claim path")
			}
			if _, err := parseClaimPath(args[1]); err != nil {
				return nil, d.Errf("claim_header: %v", err)
			}
			if hd.ClaimHeaders == nil {
				hd.ClaimHeaders = map[string]string{}
			}
			if _, dup := hd.ClaimHeaders[args[0]]; dup {
				return nil, d.Errf("claim_header %s may be given only once", args[0])
			}
			hd.ClaimHeaders[args[0]] = args[1]
		case "error_pages":
			if seen[name] {
				return nil, d.Errf("%s may be given only once", name)
			}
			seen[name] = true
			if err := oneArg(d, &hd.ErrorPages); err != nil {
				return nil, err
			}
			if hd.ErrorPages != "builtin" && hd.ErrorPages != "caddy" {
				return nil, d.Errf("error_pages must be builtin or caddy, not %q", hd.ErrorPages)
			}
		case "bearer_tokens":
			if hd.BearerTokens != nil {
				return nil, d.Err("bearer_tokens may be given only once")
			}
			bc, err := parseBearerTokens(d)
			if err != nil {
				return nil, err
			}
			hd.BearerTokens = bc
		case "pass_access_token":
			if seen[name] {
				return nil, d.Errf("%s may be given only once", name)
			}
			seen[name] = true
			hd.PassAccessToken = true
			if d.NextArg() {
				if d.Val() != "forward_auth" {
					return nil, d.Errf("pass_access_token takes nothing or forward_auth, not %q", d.Val())
				}
				hd.ForwardAuthAccessToken = true
				if d.NextArg() {
					return nil, d.ArgErr()
				}
			}
		case "pass_cookie", "silent_login":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			if seen[name] {
				return nil, d.Errf("%s may be given only once", name)
			}
			seen[name] = true
			if name == "pass_cookie" {
				hd.PassCookie = true
			} else {
				hd.SilentLogin = true
			}
		case "assertion_header", "assertion_audience", "assertion_lifetime":
			if seen[name] {
				return nil, d.Errf("%s may be given only once", name)
			}
			seen[name] = true
			switch name {
			case "assertion_header":
				args := d.RemainingArgs()
				if len(args) > 1 {
					return nil, d.ArgErr()
				}
				hd.AssertionHeader = defaultAssertionHeader
				if len(args) == 1 {
					if !validHeaderName(args[0]) {
						return nil, d.Errf("assertion_header: %q is not a header name", args[0])
					}
					hd.AssertionHeader = args[0]
				}
			case "assertion_audience":
				if err := oneArg(d, &hd.AssertionAudience); err != nil {
					return nil, err
				}
			default:
				var raw string
				if err := oneArg(d, &raw); err != nil {
					return nil, err
				}
				dur, err := caddy.ParseDuration(raw)
				if err != nil || dur < 2*time.Minute || dur > time.Hour {
					return nil, d.Errf("assertion_lifetime: %q must be a duration from 2m to 1h", raw)
				}
				hd.AssertionLifetime = caddy.Duration(dur)
			}
		default:
			ok, err := parseSetting(d, &hd.Settings, seen)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, d.Errf("unrecognized subdirective %s", name)
			}
		}
	}
	if (hd.AssertionAudience != "" || hd.AssertionLifetime != 0) && hd.AssertionHeader == "" {
		return nil, d.Err("assertion_audience and assertion_lifetime need assertion_header")
	}
	return hd, nil
}

// parseBearerTokens parses bearer_tokens: the one-line form names the
// audiences; the block sets the rest.
//
//	bearer_tokens [<audience>...] {
//		audiences         <audience>...
//		resource_audience <audience>
//		introspection     on|off
//		userinfo          on|off
//		rate_limit        <calls per second>
//	}
func parseBearerTokens(d *caddyfile.Dispenser) (*BearerConfig, error) {
	bc := &BearerConfig{Audiences: d.RemainingArgs()}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return nil, d.Errf("bearer_tokens %s may be given only once", sub)
		}
		seen[sub] = true
		switch sub {
		case "audiences":
			if len(bc.Audiences) > 0 {
				return nil, d.Err("bearer_tokens: audiences are given on the bearer_tokens line already")
			}
			bc.Audiences = d.RemainingArgs()
			if len(bc.Audiences) == 0 {
				return nil, d.ArgErr()
			}
		case "resource_audience":
			if err := oneArg(d, &bc.ResourceAudience); err != nil {
				return nil, err
			}
		case "introspection", "userinfo":
			var v string
			if err := oneArg(d, &v); err != nil {
				return nil, err
			}
			if v != "on" && v != "off" {
				return nil, d.Errf("bearer_tokens %s takes on or off, not %q", sub, v)
			}
			if sub == "introspection" {
				bc.DisableIntrospection = v == "off"
			} else {
				bc.Userinfo = v == "on"
			}
		case "rate_limit":
			var raw string
			if err := oneArg(d, &raw); err != nil {
				return nil, err
			}
			n, err := strconv.ParseFloat(raw, 64)
			if err != nil || !(n > 0) || n > 1e6 {
				return nil, d.Errf("bearer_tokens rate_limit: %q is not a number of calls per second (more than 0)", raw)
			}
			bc.RateLimit = n
		default:
			return nil, d.Errf("unrecognized bearer_tokens subdirective %s", sub)
		}
	}
	return bc, nil
}

// validHeaderName accepts an HTTP field name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// parseRequireDirective parses the step-up directive, which follows
// authgate in a route (or takes a matcher):
//
//	authgate_require [<matcher>] {
//		max_auth_age <duration>    # the sign-in at the provider is at most this old
//		acr <value>...             # the session's acr is one of these
//		amr <value>...             # the session's amr has all of these (mfa, otp, ...)
//	}
func parseRequireDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := h.Dispenser
	q := new(Require)
	d.Next() // directive name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("authgate_require %s may be given only once", name)
		}
		seen[name] = true
		switch name {
		case "max_auth_age":
			var raw string
			if err := oneArg(d, &raw); err != nil {
				return nil, err
			}
			dur, err := caddy.ParseDuration(raw)
			if err != nil || dur < time.Minute {
				return nil, d.Errf("max_auth_age: %q must be a duration of at least 1m", raw)
			}
			q.MaxAuthAge = caddy.Duration(dur)
		case "acr", "amr":
			args := d.RemainingArgs()
			if len(args) == 0 || len(args) > maxAuthValues {
				return nil, d.Errf("%s takes 1 to %d values", name, maxAuthValues)
			}
			for _, a := range args {
				if err := checkAuthValue(a); err != nil {
					return nil, d.Errf("%s: %v", name, err)
				}
			}
			if name == "acr" {
				q.ACR = args
			} else {
				q.AMR = args
			}
		default:
			return nil, d.Errf("unrecognized subdirective %s", name)
		}
	}
	if q.MaxAuthAge == 0 && len(q.ACR) == 0 && len(q.AMR) == 0 {
		return nil, d.Err("authgate_require needs max_auth_age, acr or amr")
	}
	return q, nil
}

// Interface guard
var _ httpcaddyfile.UnmarshalGlobalFunc = parseGlobalOption

// parseStoreTLS parses the optional block of session_store's tls.
func parseStoreTLS(d *caddyfile.Dispenser, sc *StoreConfig) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("session_store tls %s may be given only once", sub)
		}
		seen[sub] = true
		var field *string
		switch sub {
		case "ca_file":
			field = &sc.TLSCAFile
		case "cert_file":
			field = &sc.TLSCertFile
		case "key_file":
			field = &sc.TLSKeyFile
		case "server_name":
			field = &sc.TLSServerName
		default:
			return d.Errf("unrecognized session_store tls subdirective %s", sub)
		}
		if err := oneArg(d, field); err != nil {
			return err
		}
	}
	if (sc.TLSCertFile == "") != (sc.TLSKeyFile == "") {
		return d.Err("session_store tls: cert_file and key_file go together")
	}
	return nil
}

package authgate

import (
	"net/url"
	"slices"
)

// Dialect describes how a provider bends OAuth 2.0. Every field's zero
// value is the standard behaviour, so a textbook provider needs none.
// Provider differences are data here, never code.
type Dialect struct {
	// AuthorizeParams rewrites the authorization request's query.
	// Example: NTPU wants only `clientId`, so client_id is renamed and
	// response_type, redirect_uri and scope are omitted.
	AuthorizeParams ParamRewrite `json:"authorize_params,omitzero"`

	// TokenParams rewrites the token request's parameters (code exchange
	// and refresh), after the client credentials are added.
	TokenParams ParamRewrite `json:"token_params,omitzero"`

	// TokenEncoding is how the token request carries its parameters:
	// "form" (standard x-www-form-urlencoded body), "json" (a JSON object
	// body with Content-Type application/json) or "query" (all parameters
	// in the URL's query string, empty body). Default: form.
	TokenEncoding string `json:"token_encoding,omitempty"`

	// ClientAuth is how the client authenticates at the token,
	// revocation, introspection and PAR endpoints: "basic" (HTTP Basic,
	// RFC 6749 §2.3.1), "body" (client_id and client_secret as
	// parameters), "client_secret_jwt" or "private_key_jwt" (an RFC 7523
	// assertion, HMAC of the secret or signed with the private key of
	// ProviderConfig.ClientCredentials) or "tls_client_auth" (RFC 8705,
	// the client certificate of ClientCredentials). Default: what
	// discovery advertises of basic and body, else basic for OpenID
	// Connect providers and body for plain OAuth 2.0 ones.
	ClientAuth string `json:"client_auth,omitempty"`

	// Callback names the parameters the provider uses when it sends the
	// browser back. Defaults: code, state, error.
	Callback CallbackParams `json:"callback,omitzero"`

	// NoState is for providers that do not echo `state`. The login is then
	// bound to the pending-login cookie alone. Default: false.
	NoState bool `json:"no_state,omitempty"`

	// NoPKCE turns off PKCE for providers that reject its parameters.
	// Default: false (PKCE S256 on every flow).
	NoPKCE bool `json:"no_pkce,omitempty"`

	// NoRefresh is for providers without a refresh grant: when the access
	// token ends, the user signs in again. Default: false.
	NoRefresh bool `json:"no_refresh,omitempty"`

	// InvalidGrantErrors are the provider's error codes that mean what
	// RFC 6749's invalid_grant means: the code or refresh token is spent
	// for good (GitHub: bad_verification_code, bad_refresh_token, sent
	// with HTTP 200). A refresh refused with one ends the session.
	// Default: none besides invalid_grant.
	InvalidGrantErrors []string `json:"invalid_grant_errors,omitempty"`
}

// CallbackParams names the query parameters of the redirect back from the
// provider.
type CallbackParams struct {
	Code  string `json:"code,omitempty"`
	State string `json:"state,omitempty"`
	Error string `json:"error,omitempty"`
}

func (c CallbackParams) code() string  { return orDefault(c.Code, "code") }
func (c CallbackParams) state() string { return orDefault(c.State, "state") }
func (c CallbackParams) errorParam() string {
	return orDefault(c.Error, "error")
}

// isStandard reports whether the dialect leaves the token request alone.
func (d Dialect) isStandard() bool {
	return d.TokenEncoding == "" && d.TokenParams.empty()
}

// ParamRewrite renames, omits and adds parameters of one request.
type ParamRewrite struct {
	// Rename maps a standard parameter name to the provider's name,
	// e.g. {"code": "authorizationCode"}.
	Rename map[string]string `json:"rename,omitempty"`
	// Omit lists standard parameters the provider must not receive.
	Omit []string `json:"omit,omitempty"`
	// Set adds parameters with fixed values (or replaces them).
	Set map[string]string `json:"set,omitempty"`
}

func (p ParamRewrite) empty() bool {
	return len(p.Rename) == 0 && len(p.Omit) == 0 && len(p.Set) == 0
}

// apply rewrites v in place: omissions first, then renames, then, if
// withSet, additions.
func (p ParamRewrite) apply(v url.Values, withSet bool) {
	for _, k := range p.Omit {
		v.Del(k)
	}
	if len(p.Rename) > 0 {
		keys := make([]string, 0, len(p.Rename))
		for k := range p.Rename {
			keys = append(keys, k)
		}
		slices.Sort(keys) // deterministic when renames chain
		moved := url.Values{}
		for _, from := range keys {
			if vals, ok := v[from]; ok {
				delete(v, from)
				moved[p.Rename[from]] = vals
			}
		}
		for k, vals := range moved {
			v[k] = vals
		}
	}
	if withSet {
		for k, val := range p.Set {
			v.Set(k, val)
		}
	}
}

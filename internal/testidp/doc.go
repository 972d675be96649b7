// Package testidp is a small but strict OpenID Connect / OAuth 2.0
// authorization server that runs in-process over loopback. It is meant for
// integration tests of relying parties (auth gateways) and for local demos in
// which a human signs in through a tiny HTML login form.
//
// The server follows the specifications closely (RFC 6749, RFC 6750,
// RFC 7009, RFC 7636 with S256 only, RFC 8414, RFC 9068 style access tokens,
// RFC 9207, OpenID Connect Core / Discovery / RP-Initiated Logout /
// Back-Channel Logout) and is deliberately as picky as Keycloak: exact
// redirect URI matching, single-use codes (reuse revokes every token issued
// from the code), PKCE downgrade protection, form-encoded token requests only,
// one client authentication method per request, duplicate parameters
// rejected, unknown scopes rejected, and so on.
//
// # Quick start
//
//	idp, _ := testidp.New(testidp.Options{
//		Users:     testidp.DemoUsers(),
//		Clients:   []testidp.Client{{ID: "app", Secret: "s3cret", RedirectURIs: []string{cb}}},
//		AutoLogin: "alice",
//	})
//	_ = idp.Start() // listens on 127.0.0.1:0
//	defer idp.Close()
//	issuer := idp.Issuer()
//
// For a fixed port, mount [Server.Handler] on your own listener and call
// [Server.SetIssuer] with the base URL it is reachable at (IssuerPath is
// appended unless the URL already ends with it).
//
// # Endpoints (relative to the issuer)
//
//	/.well-known/openid-configuration  (also /.well-known/oauth-authorization-server)
//	/jwks        JWK set
//	/authorize   GET/POST authorization endpoint, HTML login form
//	/token       POST, application/x-www-form-urlencoded only
//	/userinfo    GET/POST, Bearer access token (RFC 6750 header or form body)
//	/revoke      POST, RFC 7009
//	/introspect  POST, RFC 7662 token introspection (client authentication
//	             required, public clients refused)
//	/par         POST, RFC 9126 pushed authorization requests
//	/logout      GET/POST, RP-initiated logout (end_session_endpoint)
//
// Pushed authorization requests: /par authenticates the client, validates
// the parameters as /authorize would (errors as JSON, e.g. 400
// invalid_request for an unregistered redirect_uri) and answers 201
// {"request_uri":"urn:ietf:params:oauth:request_uri:…","expires_in":60}.
// /authorize?client_id=…&request_uri=… then uses the pushed parameters
// only; other front-channel parameters are ignored (RFC 9101 §5). A
// request_uri is single use, expires after PARLifetime and belongs to the
// client that pushed it; otherwise /authorize shows a 400 error page with
// error code invalid_request_uri (no redirect: the redirect URI is part of
// what cannot be trusted). With Options.RequirePAR discovery says
// require_pushed_authorization_requests and requests without request_uri
// are answered error=invalid_request. [Server.LastAuthorizeQuery] records
// the effective (pushed) parameters plus request_uri;
// [Server.LastPushedRequest] the last /par body without credentials.
//
// Introspection answers {"active":false} (and nothing else) for unknown,
// expired, revoked tokens, tokens of ended sessions and of disabled users;
// otherwise active, scope, client_id, username, token_type, exp, iat, sub,
// aud, iss (and jti, sid). Any authenticated confidential client may
// introspect any token. Refresh tokens can be introspected too (no
// token_type). token_type_hint is ignored: both kinds are searched.
//
// Access tokens are JWTs with header typ "at+jwt" (RFC 9068) and aud =
// Options.AccessTokenAudience, by default the client_id; with
// Options.OpaqueAccessTokens they are random strings known only to the
// server (userinfo, introspection and revocation accept both kinds).
//
// # Login sessions
//
// Unless Options.AutoLogin is set, a successful form login
// creates a provider session (cookie "testidp_sso") so that a second
// authorization request is approved without the form (prompt=login forces the
// form, prompt=none fails with login_required when there is no session).
// /logout ends the session, revokes every token issued in it and sends
// back-channel logout tokens to participating clients that registered a
// BackchannelLogoutURI (logout tokens: header typ "logout+jwt"; iss, aud,
// iat, exp, jti, the back-channel-logout event, sub and sid; never a
// nonce) and renders an iframe for each participating client that
// registered a FrontchannelLogoutURI (OpenID Front-Channel Logout 1.0;
// iss and sid query parameters are added when the client set
// FrontchannelLogoutSessionRequired). With such iframes the logout page is
// a 200 page that moves on to post_logout_redirect_uri by a meta refresh
// after two seconds; without them the redirect is an immediate 302.
// [Server.FrontchannelLogoutURLs] returns the iframe URLs of a session
// (the sid claim of its ID tokens).
//
// With AutoLogin every authorization request creates a fresh session for
// the AutoLogin user, unless Options.AutoLoginSession is set (see below). LastAuthorizeQuery records every parameter, login_hint
// and domain_hint included.
//
// # Authentication context and step-up
//
// ID tokens (and JWT access tokens and introspection answers) carry
// auth_time, the time of the latest authentication in the provider
// session, acr and amr. Options.ACRValues lists the supported levels,
// lowest first (default "1", "2"; advertised as acr_values_supported). A
// fresh authentication for a request with acr_values gets the first
// supported requested value as acr, with amr ["pwd","mfa"] when it is not
// the lowest level; otherwise acr is the lowest level and amr ["pwd"].
// An existing session is reused unless prompt=login, max_age is exceeded
// (max_age=0 always is) or acr_values asks for a level above the
// session's; then the user authenticates again (the form, or with
// AutoLogin an automatic authentication) and the session, keeping its
// sid, gets the new auth_time, acr and amr. prompt=none in that situation
// is login_required. Refreshed ID tokens keep the auth_time, acr and amr of
// the original grant. Options.AutoLoginSession gives AutoLogin a reusable
// session (without it every AutoLogin request is a fresh authentication).
// Options.IgnoreMaxAge and Options.IgnoreACRValues make the server
// disregard those parameters, like broken providers do.
//
// # Client authentication
//
// The token, revocation, introspection and PAR endpoints authenticate
// clients identically, with exactly one method per request:
//
//	client_secret_basic  Basic header (form-urlencoded id and secret)
//	client_secret_post   client_id and client_secret in the body
//	client_secret_jwt    RFC 7523 assertion, HS256 keyed with Client.Secret
//	private_key_jwt      RFC 7523 assertion, RS256 or ES256 with a key of
//	                     Client.JWKS (the header kid selects it)
//	tls_client_auth      RFC 8705 §2.1 (PKI): a client certificate chaining
//	                     to a trusted CA whose subject DN is
//	                     Client.TLSClientAuthSubjectDN; needs StartTLS
//	none                 client_id only, public clients (no credentials),
//	                     which must use PKCE; refused at introspection
//
// Client.AuthMethod restricts a client to one method; without it every
// method its credentials allow is accepted. A client assertion (parameter
// client_assertion_type = urn:ietf:params:oauth:client-assertion-type:jwt-bearer)
// must have iss = sub = client_id; aud the issuer, the token endpoint URL
// or the URL it is sent to (Options.AssertionAudience "issuer" or
// "token_endpoint" requires one); exp, no more than MaxAssertionLifetime
// (5 minutes) away; and a jti, which is never accepted twice (a replay is
// invalid_client). Failures are 401 invalid_client; malformed requests
// (two methods, missing assertion, client_id not matching) are 400
// invalid_request. [GenerateClientKey], [ClientKey.Sign], [SignHS256] and
// [Server.ClientAssertionClaims] build assertions.
//
// [Server.StartTLS] serves the same endpoints over TLS on another loopback
// port with a certificate of the server's own test CA ([Server.RootCAs]),
// requesting client certificates (tls.VerifyClientCertIfGiven): they must
// chain to that CA ([Server.IssueClientCertificate]) or one of
// Options.TLSClientCAs, else the handshake fails. After Start the TLS
// listener is an alias: discovery lists it in mtls_endpoint_aliases and
// tls_client_auth in token_endpoint_auth_methods_supported, and tokens
// carry the plain issuer. [Server.TLSClient] returns a client for it;
// [Server.CACertificatePEM] the CA as PEM, for relying parties that read
// their trusted CAs from a file.
// self_signed_tls_client_auth (RFC 8705 §2.2) is not supported.
//
// # Accounts and keys
//
// [Server.DisableUser] disables an account: no sign-in (login form refused,
// AutoLogin and provider sessions answer access_denied), its access tokens
// get 401 error="invalid_token" at userinfo and are inactive at
// introspection, refresh and code exchange get invalid_grant.
// [Server.EnableUser] undoes it.
//
// [Server.RotateKey] publishes the new key at once (first in the JWKS) and
// signs every token issued afterwards, refreshed ones included, with it.
// Options.ExtraJWKs appends raw keys (unknown kty or alg, symmetric keys,
// ...) to the JWKS document; relying parties must skip them.
//
// # Counters
//
// [Server.Count] keys: "discovery", "jwks", "authorize" (every request to the
// authorization endpoint, GET or POST), "login" (login form submissions),
// "token", "token:authorization_code", "token:refresh_token",
// "token:unsupported", "userinfo", "revoke", "introspect", "par",
// "end_session",
// "backchannel_logout" (logout tokens sent), "frontchannel_logout" (logout
// iframes rendered).
//
// # Faults
//
// [Server.SetFault] installs one [Fault] per endpoint key. Keys are the
// counter names: "discovery", "jwks", "authorize", "token",
// "token:authorization_code", "token:refresh_token", "userinfo", "revoke",
// "introspect", "par", "end_session". The token endpoint looks at
// "token:<grant_type>" first and falls back to "token". Fault.Times > 0 makes the fault apply to that many
// requests only, after which it clears itself; 0 means until ClearFaults.
// Fault.Every > 0 makes it apply to every Every-th request of its key only
// (deterministic: the Every-th, 2·Every-th, ...; the requests in between
// are served normally and do not fall back to "token"); Times then counts
// the requests the fault applied to. For example
//
//	idp.SetFault("token:refresh_token", testidp.Fault{Kind: testidp.FaultRaw, Status: 503, Every: 10})
//
// answers 503 to exactly one refresh in ten.
//
// Generic kinds, usable on every endpoint; nothing is processed (no side
// effects such as consuming a code) unless noted:
//
//	FaultStatus500HTML   500 with an HTML body
//	FaultHTML200         200 with an HTML body (Content-Type text/html)
//	FaultRaw             Fault.Status / Fault.ContentType / Fault.Body verbatim
//	FaultStall           sleep Fault.Delay and then serve normally; with Delay 0
//	                     block until the client gives up or the server closes
//	FaultCloseConnection hijack the connection and close it (FIN, no response)
//	FaultResetConnection hijack and close with SO_LINGER 0 (TCP RST)
//
// Response-shaping kinds: the request IS processed normally (a code is
// consumed, tokens are issued) and only the response is altered:
//
//	FaultTextPlain       real body, Content-Type text/plain
//	FaultTruncatedJSON   real body cut in half (malformed JSON)
//
// Token endpoint:
//
//	FaultInvalidGrant        400 {"error":"invalid_grant"} without processing
//	FaultMissingAccessToken  "access_token" removed from the response
//	FaultExpiresInString     "expires_in" sent as a JSON string ("300")
//	FaultMissingIDToken      "id_token" removed from the response
//
// ID token mutations (token endpoint keys; applied to the id_token it issues):
//
//	FaultIDTokenBadSignature       signature does not verify (kid of the real key)
//	FaultIDTokenAlgNone            alg "none", empty signature
//	FaultIDTokenWrongIssuer        iss = Fault.Value or "https://wrong-issuer.example"
//	FaultIDTokenIssuerTrailingSlash iss = issuer + "/"
//	FaultIDTokenWrongAudience      aud = Fault.Value or "some-other-client"
//	FaultIDTokenMissingAudience    no aud
//	FaultIDTokenMissingSub         no sub
//	FaultIDTokenWrongNonce         nonce = Fault.Value or "wrong-nonce"
//	FaultIDTokenMissingNonce       no nonce
//	FaultIDTokenExpired            exp (and iat) one hour in the past
//	FaultIDTokenNotYetValid        nbf (and iat) one hour in the future
//	FaultIDTokenUnknownKID         valid signature by a key absent from the JWKS
//	FaultIDTokenClaims             merge Fault.Claims into the ID token (nil value deletes);
//	                               on "token:refresh_token" it changes the identity
//	                               (sub, iss, aud, azp, ...) of refreshed ID tokens only
//	FaultIDTokenWrongATHash        at_hash = Fault.Value or the hash of another token
//
// ID tokens carry at_hash (OIDC Core 3.1.3.6: base64url of the left half of
// the SHA-256 of the access token) on code exchange and on refresh.
//
// Discovery:
//
//	FaultDiscoveryWrongIssuer  "issuer" = Fault.Value or "https://wrong-issuer.example"
//
// Userinfo (200 responses only):
//
//	FaultUserinfoExtraClaims    merge Fault.Claims (default {"unexpected_claim":"surprise"})
//	FaultUserinfoMissingClaims  drop the comma separated claims in Fault.Value
//	                            (default "email,name,preferred_username,groups")
//	FaultUserinfoWrongSub       sub = Fault.Value or "wrong-subject"
//
// Authorization response (applied when the server redirects back to the
// client, after login or on deny):
//
//	FaultAuthorizeIss        add iss = Fault.Value, or the real issuer when empty
//	                         (forces it even with Options.OmitIssParameter)
//	FaultAuthorizeNoIss      omit iss
//	FaultAuthorizeNoState    omit state
//	FaultAuthorizeWrongState state = Fault.Value or "tampered-state"
//	FaultAuthorizeError      error = Fault.Value or "server_error" instead of a code
//
// By default the authorization response carries iss (RFC 9207) and discovery
// advertises authorization_response_iss_parameter_supported; set
// Options.OmitIssParameter to turn both off.
//
// # Token lifetimes
//
// Access tokens (and ID tokens) live Options.AccessTokenTTL.
// [Server.SetAccessTokenExpiry] makes every access token issued from then on
// expire at one instant (exp = that instant, expires_in = the seconds left,
// at least 1) until it is called with the zero time; load tests use it to
// make thousands of sessions refresh at once.
//
// Token requests are signed outside the server's lock, so the token
// endpoint scales with cores. Signing dominates its cost: with RS256 (RSA
// 2048, two signatures per response) expect a few hundred refreshes per
// second per core, with SigningAlg "ES256" several thousand.
//
// # Minting tokens
//
// [Server.SignJWT] signs arbitrary claims with the current key; [SignOpt]
// variants: [SignAlgNone], [SignWrongKey], [SignES256], [SignKID],
// [SignUnpublishedKey], [SignNoKID], [SignHeader].
//
// Note for expiry tests with an injected clock: go-oidc's verifier uses its own
// clock (oidc.Config.Now), so set both.
package testidp

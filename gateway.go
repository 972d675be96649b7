package authgate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// Settings are the options a site can take from the global `authgate` block
// or set itself, for a single-site configuration.
type Settings struct {
	// SessionKeys encrypt and authenticate cookies. The first key encodes;
	// every key decodes, so a new key goes first and the old one stays
	// until its sessions have expired. Each key must be at least 32
	// bytes. Use {env.*} or {file.*} placeholders. Required.
	SessionKeys []string `json:"session_keys,omitempty"`

	// Cookie sets the session cookie's name and attributes.
	Cookie *CookieConfig `json:"cookie,omitempty"`

	// SessionLifetime is the absolute lifetime of a session; the user signs
	// in again after it, whatever refreshes happened. Default: 12h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// RefreshSkew is how long before its expiry an access token is
	// refreshed. Default: 30s.
	RefreshSkew caddy.Duration `json:"refresh_skew,omitempty"`

	// AuthHost is one host that serves the callback for every site (for
	// single sign-on across subdomains): sites send browsers there to log
	// in, and it returns them to the original URL. The host must be a site
	// with the authgate handler. Default: every site is its own callback
	// host.
	AuthHost string `json:"auth_host,omitempty"`

	// AllowedRedirectDomains are where a browser may be sent after login
	// or logout, besides the request's own host. ".example.com" allows the
	// domain and all its subdomains. Default: same host only.
	AllowedRedirectDomains []string `json:"allowed_redirect_domains,omitempty"`

	// PathPrefix is where the endpoints live (start, callback, logout,
	// userinfo, auth). Default: /oauth2/.
	PathPrefix string `json:"path_prefix,omitempty"`

	// Providers are the identity providers, by name.
	Providers map[string]*ProviderConfig `json:"providers,omitempty"`

	// SessionStore keeps sessions server-side (Redis); the cookie then
	// holds only an encrypted session id. Default: sessions live in
	// cookies.
	SessionStore *StoreConfig `json:"session_store,omitempty"`

	// SessionCacheSize is the memory, in bytes, that the cache of decoded
	// sessions may take. A session in the cache costs a comparison per
	// request; one that is not costs decoding its cookie (HMAC, AES,
	// inflate, JSON: 5 to 80 times a hit, by its size). A small session
	// takes about 2 KB of it, one with 300 groups about 34 KB: the default
	// holds up to 16,000 small sessions. Raise it when more users than that
	// are active within a few minutes, and the memory is there. At least
	// 1 MiB. Default: 33554432 (32 MiB).
	SessionCacheSize int64 `json:"session_cache_size,omitempty"`

	// AssertionKeys says where the keys that sign identity assertions
	// (a site's assertion_header) come from. Default: a key generated in
	// Caddy's storage, rotated every 30 days.
	AssertionKeys *AssertionKeysConfig `json:"assertion_keys,omitempty"`
}

func (s Settings) empty() bool {
	return len(s.SessionKeys) == 0 && s.Cookie == nil && s.SessionLifetime == 0 && s.RefreshSkew == 0 &&
		s.AuthHost == "" && len(s.AllowedRedirectDomains) == 0 && s.PathPrefix == "" && len(s.Providers) == 0 &&
		s.SessionStore == nil && s.SessionCacheSize == 0 && s.AssertionKeys == nil
}

// merge returns s with every field that o sets replaced by o's; providers
// are merged by name.
func (s Settings) merge(o Settings) Settings {
	out := s
	if len(o.SessionKeys) > 0 {
		out.SessionKeys = o.SessionKeys
	}
	if o.Cookie != nil {
		out.Cookie = o.Cookie
	}
	if o.SessionLifetime != 0 {
		out.SessionLifetime = o.SessionLifetime
	}
	if o.RefreshSkew != 0 {
		out.RefreshSkew = o.RefreshSkew
	}
	if o.AuthHost != "" {
		out.AuthHost = o.AuthHost
	}
	if len(o.AllowedRedirectDomains) > 0 {
		out.AllowedRedirectDomains = o.AllowedRedirectDomains
	}
	if o.PathPrefix != "" {
		out.PathPrefix = o.PathPrefix
	}
	if o.SessionStore != nil {
		out.SessionStore = o.SessionStore
	}
	if o.SessionCacheSize != 0 {
		out.SessionCacheSize = o.SessionCacheSize
	}
	if o.AssertionKeys != nil {
		out.AssertionKeys = o.AssertionKeys
	}
	if len(o.Providers) > 0 {
		out.Providers = make(map[string]*ProviderConfig, len(s.Providers)+len(o.Providers))
		for k, v := range s.Providers {
			out.Providers[k] = v
		}
		for k, v := range o.Providers {
			out.Providers[k] = v
		}
	}
	return out
}

// gateway is the run-time form of a Settings: the providers, the sessions
// kept with the keys and cookie, and their refresher. The app has one; a
// handler with settings of its own builds another.
type gateway struct {
	providers map[string]*provider
	names     []string // provider names, sorted
	sessions  *sessionManager
	refresher *refresher
	// revalidator re-reads userinfo for providers without refresh.
	revalidator revalidator
	authHost    string
	prefix      string
	redirects   redirectPolicy
	log         eventLog
	logger      *zap.Logger
	// keys sign identity assertions, once a site sends them.
	keys keyRingSlot
	// clientJWKS publishes the providers' private_key_jwt public keys;
	// nil when none has one.
	clientJWKS []byte
}

// newGateway resolves placeholders, checks the settings and starts
// discovery of OpenID Connect providers in the background. storage is
// Caddy's, for private_key_jwt keys kept there.
func newGateway(ctx context.Context, storage certmagic.Storage, s Settings, logger *zap.Logger) (*gateway, error) {
	repl := caddy.NewReplacer()
	keys := make([]string, 0, len(s.SessionKeys))
	for i, k := range s.SessionKeys {
		v := repl.ReplaceKnown(k, "")
		if v == "" {
			return nil, fmt.Errorf("session_keys: key %d is empty (is its environment variable or file set?)", i+1)
		}
		if !strings.Contains(k, "{") {
			logger.Warn("a session key is written literally in the configuration; prefer {env.*} or {file.*}", zap.Int("key", i+1))
		}
		keys = append(keys, v)
	}
	if len(keys) == 0 {
		return nil, errors.New("session_keys: at least one key is required (32 bytes or more; e.g. from {env.AUTHGATE_KEY})")
	}
	lifetime := time.Duration(s.SessionLifetime)
	if lifetime == 0 {
		lifetime = 12 * time.Hour
	}
	if lifetime < time.Minute {
		return nil, fmt.Errorf("session_lifetime %s is too short (at least 1m)", lifetime)
	}
	cacheSize := int(s.SessionCacheSize)
	switch {
	case s.SessionCacheSize == 0:
		cacheSize = sessionCacheSize
	case s.SessionCacheSize < minSessionCacheSize || s.SessionCacheSize > maxSessionCacheSize:
		return nil, fmt.Errorf("session_cache_size %d is out of range (1 MiB to 1 TiB)", s.SessionCacheSize)
	}
	codec, err := newCookieCodec(keys, lifetime+time.Minute)
	if err != nil {
		return nil, fmt.Errorf("session_keys: %w", err)
	}
	cs, err := newCookieSettings(s.Cookie)
	if err != nil {
		return nil, err
	}
	skew := time.Duration(s.RefreshSkew)
	if skew == 0 {
		skew = 30 * time.Second
	}
	prefix := orDefault(s.PathPrefix, "/oauth2/")
	if !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	gw := &gateway{
		providers: map[string]*provider{},
		authHost:  strings.ToLower(s.AuthHost),
		prefix:    prefix,
		log:       eventLog{logger},
		logger:    logger,
	}
	gw.keys.cfg = s.AssertionKeys
	var store *redisStore
	if s.SessionStore != nil {
		if store, err = newRedisStore(*s.SessionStore, logger); err != nil {
			return nil, err
		}
	}
	for _, d := range s.AllowedRedirectDomains {
		gw.redirects.domains = append(gw.redirects.domains, strings.ToLower(d))
	}
	if len(s.Providers) == 0 {
		return nil, errors.New("no provider is configured")
	}
	transport := newTransport()
	for name, pc := range s.Providers {
		if pc == nil {
			return nil, fmt.Errorf("provider %s: empty configuration", name)
		}
		cfg := *pc
		if cfg.ClientSecret != "" && !strings.Contains(cfg.ClientSecret, "{") {
			logger.Warn("client_secret is written literally in the configuration; prefer {env.*} or {file.*}", zap.String("provider", name))
		}
		cfg.ClientID = repl.ReplaceKnown(cfg.ClientID, "")
		cfg.ClientSecret = repl.ReplaceKnown(cfg.ClientSecret, "")
		if cfg.ClientCredentials, err = withStoredKey(ctx, storage, name, cfg.Dialect.ClientAuth, cfg.ClientCredentials, logger); err != nil {
			return nil, fmt.Errorf("provider %s: %w", name, err)
		}
		p, err := newProvider(name, cfg, logger, transport)
		if err != nil {
			return nil, err
		}
		gw.providers[name] = p
		gw.names = append(gw.names, name)
	}
	slices.Sort(gw.names)
	var clientKeys []jose.JSONWebKey
	for _, name := range gw.names {
		if k := gw.providers[name].clientKey; k != nil {
			clientKeys = append(clientKeys, *k)
		}
	}
	if len(clientKeys) > 0 {
		if gw.clientJWKS, err = encodeClientJWKS(clientKeys); err != nil {
			return nil, err
		}
	}
	gw.sessions = newSessionManager(codec, cs, lifetime, gw.providers, store, cacheSize)
	gw.sessions.log = gw.log
	gw.refresher = newRefresher(gw.sessions, skew, gw.log)
	gw.revalidator = revalidator{rf: gw.refresher}
	for _, name := range gw.names {
		p := gw.providers[name]
		if p.ready.Load() != nil {
			continue
		}
		// Discover in the background: a provider behind this same Caddy
		// must not deadlock start-up, and an unreachable one must not stop
		// other sites from serving.
		go func() {
			if _, err := p.state(ctx); err != nil && ctx.Err() == nil {
				logger.Error("identity provider not reachable at start; logins through it fail until it is", zap.String("provider", p.name), zap.Error(err))
			}
		}()
	}
	return gw, nil
}

// close ends what the gateway holds open: the session store's connections.
func (gw *gateway) close() {
	if st := gw.sessions.store; st != nil {
		_ = st.close()
	}
}

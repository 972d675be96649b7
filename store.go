package authgate

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// StoreConfig moves sessions server-side. The cookie then holds only an
// encrypted, authenticated session id; tokens and claims live in the store,
// encrypted with the session keys, with TTLs matching the session lifetime.
// Logout deletes the session everywhere at once, refreshes are de-duplicated
// across instances, and OpenID Connect back-channel logout works.
//
// One of Address (one server), Sentinel (a master that Sentinels watch
// and fail over) and Cluster (a Redis Cluster) says where Redis is. Every
// string may be an {env.*} or {file.*} placeholder, resolved at start.
type StoreConfig struct {
	// Type of store. Only "redis".
	Type string `json:"type"`
	// Address of one Redis server, host:port. Default: 127.0.0.1:6379.
	Address string `json:"address,omitempty"`
	// Sentinel finds the master through Redis Sentinel and follows its
	// failovers.
	Sentinel *StoreSentinel `json:"sentinel,omitempty"`
	// Cluster lists seed nodes (host:port) of a Redis Cluster.
	Cluster []string `json:"cluster,omitempty"`
	// Username for Redis ACLs. Default: none (the default user).
	Username string `json:"username,omitempty"`
	// Password; use an {env.*} or {file.*} placeholder.
	Password string `json:"password,omitempty"`
	// DB is the Redis database number (0 with Cluster). Default: 0.
	DB int `json:"db,omitempty"`
	// TLS connects with TLS, verifying the server against the system's
	// roots or TLSCAFile. Any TLS* setting below turns it on. Default: off.
	TLS bool `json:"tls,omitempty"`
	// TLSCAFile is a PEM file of the CAs that sign the servers'
	// certificates. Default: the system's roots.
	TLSCAFile string `json:"tls_ca_file,omitempty"`
	// TLSCertFile and TLSKeyFile are a client certificate and its key
	// (PEM), for servers that require one (tls-auth-clients).
	TLSCertFile string `json:"tls_cert_file,omitempty"`
	TLSKeyFile  string `json:"tls_key_file,omitempty"`
	// TLSServerName is the name the servers' certificates must carry.
	// Default: the host of the address dialled.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// KeyPrefix starts every key authgate writes. Default: "authgate:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Timeout bounds each Redis command. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// StoreSentinel is a master that Redis Sentinels watch.
type StoreSentinel struct {
	// MasterName is the name the Sentinels know the master by.
	MasterName string `json:"master_name"`
	// Addresses of Sentinels, host:port.
	Addresses []string `json:"addresses"`
	// Username and Password authenticate to the Sentinels (Sentinel's
	// own requirepass or ACL), when they need it. The master and its
	// replicas take Username and Password of the store.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// errStoreDown: the session store could not be reached. Requests get 503;
// nothing is half-written.
var errStoreDown = errors.New("session store unavailable")

// redisStore keeps sessions in Redis, as the values it is given: the
// sessions write them encrypted and authenticated (bound to their key), so
// Redis never sees a token in clear and a value cannot be moved to another
// key.
type redisStore struct {
	client  redis.UniversalClient
	cluster bool // keys of one command set may sit on different nodes
	prefix  string
	timeout time.Duration
}

// redisLog takes go-redis's own messages (a dial that failed, a Sentinel
// that announced a new master) into Caddy's log at debug level: a request
// that fails logs its one line with the reason, and an outage does not
// also flood stderr with the pool's retries.
// go-redis has one logger per process, so this one asks Caddy for its
// current default logger at each message (a reload may replace it).
type redisLog struct{}

func (redisLog) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("authgate.redis").Debug(fmt.Sprintf(format, v...))
}

var redisLogOnce sync.Once

func newRedisStore(cfg StoreConfig, logger *zap.Logger) (*redisStore, error) {
	if cfg.Type != "" && cfg.Type != "redis" {
		return nil, fmt.Errorf("session_store: unknown type %q (redis)", cfg.Type)
	}
	redisLogOnce.Do(func() { redis.SetLogger(redisLog{}) })
	opts, err := redisOptions(cfg, logger)
	if err != nil {
		return nil, err
	}
	return &redisStore{
		client:  redis.NewUniversalClient(opts),
		cluster: opts.IsClusterMode,
		prefix:  orDefault(cfg.KeyPrefix, "authgate:"),
		timeout: opts.ReadTimeout,
	}, nil
}

// redisOptions resolves cfg's placeholders and checks it: one place to
// find Redis, secrets that are set, TLS files that load.
func redisOptions(cfg StoreConfig, logger *zap.Logger) (*redis.UniversalOptions, error) {
	repl := caddy.NewReplacer()
	// secret resolves a password: a placeholder that resolves to nothing
	// is an error (an unset variable would otherwise connect without
	// one), a literal one works with a warning.
	secret := func(name, v string) (string, error) {
		if v == "" {
			return "", nil
		}
		if !strings.Contains(v, "{") {
			logger.Warn("session_store: a password is written literally in the configuration; prefer {env.*} or {file.*}", zap.String("option", name))
			return v, nil
		}
		out := repl.ReplaceKnown(v, "")
		if out == "" {
			return "", fmt.Errorf("session_store %s: %q is empty (is its environment variable or file set?)", name, v)
		}
		return out, nil
	}
	addrs := func(name string, in []string) ([]string, error) {
		out := make([]string, 0, len(in))
		for _, a := range in {
			a = repl.ReplaceKnown(a, "")
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("session_store %s: %q is not host:port", name, a)
			}
			out = append(out, a)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("session_store %s: at least one host:port is required", name)
		}
		return out, nil
	}
	timeout := time.Duration(cfg.Timeout)
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	opts := &redis.UniversalOptions{
		Username:     repl.ReplaceKnown(cfg.Username, ""),
		DB:           cfg.DB,
		DialTimeout:  timeout,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		PoolTimeout:  timeout,
		// The command's context deadline bounds the network reads too:
		// a Redis that stopped answering costs a request at most the
		// timeout, then a 503.
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
	}
	var err error
	if opts.Password, err = secret("password", cfg.Password); err != nil {
		return nil, err
	}
	where := 0
	if cfg.Address != "" {
		where++
	}
	if cfg.Sentinel != nil {
		where++
	}
	if len(cfg.Cluster) > 0 {
		where++
	}
	switch {
	case where > 1:
		return nil, errors.New("session_store: give one of address, sentinel and cluster")
	case cfg.Sentinel != nil:
		sn := cfg.Sentinel
		if opts.MasterName = repl.ReplaceKnown(sn.MasterName, ""); opts.MasterName == "" {
			return nil, errors.New("session_store sentinel: the master's name is required")
		}
		if opts.Addrs, err = addrs("sentinel", sn.Addresses); err != nil {
			return nil, err
		}
		opts.SentinelUsername = repl.ReplaceKnown(sn.Username, "")
		if opts.SentinelPassword, err = secret("sentinel_password", sn.Password); err != nil {
			return nil, err
		}
	case len(cfg.Cluster) > 0:
		if cfg.DB != 0 {
			return nil, errors.New("session_store: a Redis Cluster has only database 0")
		}
		if opts.Addrs, err = addrs("cluster", cfg.Cluster); err != nil {
			return nil, err
		}
		opts.IsClusterMode = true
		opts.MaxRedirects = 3
	default:
		if opts.Addrs, err = addrs("address", []string{orDefault(cfg.Address, "127.0.0.1:6379")}); err != nil {
			return nil, err
		}
	}
	if opts.TLSConfig, err = storeTLS(cfg, repl); err != nil {
		return nil, err
	}
	return opts, nil
}

// storeTLS is the TLS configuration for Redis, or nil without TLS.
func storeTLS(cfg StoreConfig, repl *caddy.Replacer) (*tls.Config, error) {
	caFile := repl.ReplaceKnown(cfg.TLSCAFile, "")
	certFile := repl.ReplaceKnown(cfg.TLSCertFile, "")
	keyFile := repl.ReplaceKnown(cfg.TLSKeyFile, "")
	serverName := repl.ReplaceKnown(cfg.TLSServerName, "")
	if !cfg.TLS && caFile == "" && certFile == "" && keyFile == "" && serverName == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("session_store tls ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("session_store tls ca_file %s: no PEM certificate in it", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("session_store tls: cert_file and key_file go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("session_store tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (s *redisStore) key(parts ...string) string { return s.prefix + strings.Join(parts, ":") }

func (s *redisStore) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
}

func storeErr(op string, err error) error {
	return fmt.Errorf("%s: %w: %v", op, errStoreDown, err)
}

// indexKey names the set of session ids of one subject or one provider
// session (sid), for back-channel logout. Values are hashed: no user id in
// clear in key names.
func (s *redisStore) indexKey(kind, provider, value string) string {
	h := sha256.Sum256([]byte(provider + "\x00" + value))
	return s.key(kind, hex.EncodeToString(h[:16]))
}

// storeIndex names a set of session ids: those of one subject, or of one
// provider session (sid), for back-channel logout.
type storeIndex struct{ kind, provider, value string }

// save writes a session's value with a TTL and adds its id to indexes.
func (s *redisStore) save(ctx context.Context, id, value string, indexes []storeIndex, ttl time.Duration) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if s.cluster {
		// The session and its indexes hash to different slots, where a
		// transaction is refused: indexes first, then the session, so
		// a failure leaves at most an index naming no session (which
		// back-channel logout passes over), never a session that it
		// cannot find.
		if len(indexes) > 0 {
			pipe := s.client.Pipeline()
			s.addIndexes(ctx, pipe, id, indexes, ttl)
			if _, err := pipe.Exec(ctx); err != nil {
				return storeErr("saving session index", err)
			}
		}
		if err := s.client.Set(ctx, s.key("session", id), value, ttl).Err(); err != nil {
			return storeErr("saving session", err)
		}
		return nil
	}
	pipe := s.client.TxPipeline()
	pipe.Set(ctx, s.key("session", id), value, ttl)
	s.addIndexes(ctx, pipe, id, indexes, ttl)
	if _, err := pipe.Exec(ctx); err != nil {
		return storeErr("saving session", err)
	}
	return nil
}

func (s *redisStore) addIndexes(ctx context.Context, pipe redis.Pipeliner, id string, indexes []storeIndex, ttl time.Duration) {
	for _, ix := range indexes {
		k := s.indexKey(ix.kind, ix.provider, ix.value)
		pipe.SAdd(ctx, k, id)
		pipe.Expire(ctx, k, ttl+time.Minute)
	}
}

// load reads a session's value; found is false when there is none.
func (s *redisStore) load(ctx context.Context, id string) (value string, found bool, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	val, err := s.client.Get(ctx, s.key("session", id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, storeErr("loading session", err)
	}
	return val, true, nil
}

// swapResult is what a compare-and-swap of a session found.
type swapResult int

const (
	swapDone    swapResult = iota // replaced
	swapGone                      // no session any more: nothing written
	swapChanged                   // another value: nothing written
)

// swapScript replaces a session's value only if it is still the one the
// caller read: one key, atomic, so a logout's delete between the read
// and the write wins.
var swapScript = redis.NewScript(`local cur = redis.call("GET", KEYS[1])
if cur == false then return 1 end
if cur ~= ARGV[1] then return 2 end
redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
return 0`)

// swap replaces a session's value prev by value, keeping its TTL fresh.
// The session keeps its indexes (they were written with it and its id
// does not change).
func (s *redisStore) swap(ctx context.Context, id, prev, value string, ttl time.Duration) (swapResult, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	res, err := swapScript.Run(ctx, s.client, []string{s.key("session", id)}, prev, value, max(1, ttl.Milliseconds())).Int()
	if err != nil {
		return 0, storeErr("replacing session", err)
	}
	return swapResult(res), nil
}

var deleteIfScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)

// deleteIf removes a session only if its value is still value: a refresh
// token refused by the provider ends that session, not a newer one that
// another instance wrote meanwhile.
func (s *redisStore) deleteIf(ctx context.Context, id, value string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := deleteIfScript.Run(ctx, s.client, []string{s.key("session", id)}, value).Err(); err != nil {
		return storeErr("deleting session", err)
	}
	return nil
}

// delete removes a session.
func (s *redisStore) delete(ctx context.Context, id string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.client.Del(ctx, s.key("session", id)).Err(); err != nil {
		return storeErr("deleting session", err)
	}
	return nil
}

// deleteLoggedOut ends the sessions a back-channel logout token names:
// with sid and sub, those indexed under both; with one of them, those
// indexed under it (a provider that puts sid in logout tokens puts it in
// ID tokens too, §2.1). It returns how many it ended. The two sets are read apart and intersected here, not with
// SINTER: their keys may live on different Cluster slots.
func (s *redisStore) deleteLoggedOut(ctx context.Context, provider, sid, sub string) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	members := func(kind, value string) ([]string, error) {
		if value == "" {
			return nil, nil
		}
		ids, err := s.client.SMembers(ctx, s.indexKey(kind, provider, value)).Result()
		if err != nil {
			return nil, storeErr("reading session index", err)
		}
		return ids, nil
	}
	bySID, err := members("sid", sid)
	if err != nil {
		return 0, err
	}
	bySub, err := members("sub", sub)
	if err != nil {
		return 0, err
	}
	ids := bySID
	switch {
	case sid == "":
		ids = bySub
	case sub != "":
		ids = slices.DeleteFunc(bySID, func(id string) bool { return !slices.Contains(bySub, id) })
	}
	// One command per key, pipelined: keys of a Cluster may sit on
	// different slots, where a multi-key DEL is refused.
	pipe := s.client.Pipeline()
	for _, id := range ids {
		pipe.Del(ctx, s.key("session", id))
	}
	switch {
	case sid != "" && sub != "":
		for _, id := range ids {
			pipe.SRem(ctx, s.indexKey("sid", provider, sid), id)
			pipe.SRem(ctx, s.indexKey("sub", provider, sub), id)
		}
	case sid != "":
		pipe.Del(ctx, s.indexKey("sid", provider, sid))
	default:
		pipe.Del(ctx, s.indexKey("sub", provider, sub))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, storeErr("deleting sessions", err)
	}
	return len(ids), nil
}

// lock takes a short lock for refreshing one session. The token proves
// ownership at unlock, so an expired lock taken over by another instance
// is not released by the first.
func (s *redisStore) lock(ctx context.Context, id string, ttl time.Duration) (token string, ok bool, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	token = randomString(16)
	ok, err = s.client.SetNX(ctx, s.key("lock", id), token, ttl).Result()
	if err != nil {
		return "", false, storeErr("taking refresh lock", err)
	}
	return token, ok, nil
}

// locked reports whether some instance holds the refresh lock of a session:
// a waiting instance asks this, which costs Redis one key lookup, rather
// than reading and decoding the session until it changes.
func (s *redisStore) locked(ctx context.Context, id string) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := s.client.Exists(ctx, s.key("lock", id)).Result()
	if err != nil {
		return false, storeErr("reading refresh lock", err)
	}
	return n > 0, nil
}

var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)

func (s *redisStore) unlock(ctx context.Context, id, token string) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_ = unlockScript.Run(ctx, s.client, []string{s.key("lock", id)}, token).Err()
}

// endLoggedOut ends the sessions a back-channel logout token names
// (deleteLoggedOut), once per token id: fresh is false, and nothing is
// ended, when jti was recorded before (a replay). The id is recorded only
// once the sessions are deleted, so that a failure part-way (503) leaves
// the provider's retry of the same token free to finish the logout, not
// refused as a replay. Two deliveries of one token at the same moment may
// both end its sessions; a later replay is refused.
func (s *redisStore) endLoggedOut(ctx context.Context, jti string, ttl time.Duration, provider, sid, sub string) (n int, fresh bool, err error) {
	h := sha256.Sum256([]byte(jti))
	key := s.key("jti", hex.EncodeToString(h[:16]))
	cctx, cancel := s.ctx(ctx)
	seen, err := s.client.Exists(cctx, key).Result()
	cancel()
	if err != nil {
		return 0, false, storeErr("reading logout token ids", err)
	}
	if seen > 0 {
		return 0, false, nil
	}
	if n, err = s.deleteLoggedOut(ctx, provider, sid, sub); err != nil {
		return 0, false, err
	}
	cctx, cancel = s.ctx(ctx)
	defer cancel()
	if err := s.client.SetNX(cctx, key, 1, ttl).Err(); err != nil {
		return 0, false, storeErr("recording logout token", err)
	}
	return n, true, nil
}

func (s *redisStore) close() error { return s.client.Close() }

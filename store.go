package authgate

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

// StoreConfig moves sessions server-side. The cookie then holds only an
// encrypted, authenticated session id; tokens and claims live in the store,
// encrypted with the session keys, with TTLs matching the session lifetime.
// Logout deletes the session everywhere at once, refreshes are de-duplicated
// across instances, and OpenID Connect back-channel logout works.
type StoreConfig struct {
	// Type of store. Only "redis".
	Type string `json:"type"`
	// Address of the Redis server, host:port. Default: 127.0.0.1:6379.
	Address string `json:"address,omitempty"`
	// Username for Redis ACLs. Default: none.
	Username string `json:"username,omitempty"`
	// Password; use an {env.*} or {file.*} placeholder.
	Password string `json:"password,omitempty"`
	// DB is the Redis database number. Default: 0.
	DB int `json:"db,omitempty"`
	// TLS connects with TLS. Default: off.
	TLS bool `json:"tls,omitempty"`
	// KeyPrefix starts every key authgate writes. Default: "authgate:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Timeout bounds each Redis command. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// errStoreDown: the session store could not be reached. Requests get 503;
// nothing is half-written.
var errStoreDown = errors.New("session store unavailable")

// redisStore keeps sessions in Redis, as the values it is given: the
// sessions write them encrypted and authenticated (bound to their key), so
// Redis never sees a token in clear and a value cannot be moved to another
// key.
type redisStore struct {
	client  *redis.Client
	prefix  string
	timeout time.Duration
}

func newRedisStore(cfg StoreConfig) (*redisStore, error) {
	if cfg.Type != "" && cfg.Type != "redis" {
		return nil, fmt.Errorf("session_store: unknown type %q (redis)", cfg.Type)
	}
	repl := caddy.NewReplacer()
	timeout := time.Duration(cfg.Timeout)
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	opts := &redis.Options{
		Addr:         orDefault(repl.ReplaceKnown(cfg.Address, ""), "127.0.0.1:6379"),
		Username:     repl.ReplaceKnown(cfg.Username, ""),
		Password:     repl.ReplaceKnown(cfg.Password, ""),
		DB:           cfg.DB,
		DialTimeout:  timeout,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		PoolTimeout:  timeout,
		MaxRetries:   1,
	}
	if cfg.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &redisStore{
		client:  redis.NewClient(opts),
		prefix:  orDefault(cfg.KeyPrefix, "authgate:"),
		timeout: timeout,
	}, nil
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
	pipe := s.client.TxPipeline()
	pipe.Set(ctx, s.key("session", id), value, ttl)
	for _, ix := range indexes {
		k := s.indexKey(ix.kind, ix.provider, ix.value)
		pipe.SAdd(ctx, k, id)
		pipe.Expire(ctx, k, ttl+time.Minute)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return storeErr("saving session", err)
	}
	return nil
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

// seen records a back-channel logout token id; it reports false when the
// id was seen before (a replay).
func (s *redisStore) seen(ctx context.Context, jti string, ttl time.Duration) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	h := sha256.Sum256([]byte(jti))
	ok, err := s.client.SetNX(ctx, s.key("jti", hex.EncodeToString(h[:16])), 1, ttl).Result()
	if err != nil {
		return false, storeErr("recording logout token", err)
	}
	return ok, nil
}

func (s *redisStore) close() error { return s.client.Close() }

package authgate

import (
	"bytes"
	"compress/flate"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/securecookie"
	kflate "github.com/klauspost/compress/flate"
)

// Limits on what a client can make us read. A request over them is treated
// as carrying no session at all.
const (
	// maxCookieChunks bounds how many numbered chunks one session may use.
	maxCookieChunks = 16
	// cookieBudget is the size one Set-Cookie header may reach, name,
	// value and attributes together: browsers accept about 4096 bytes.
	cookieBudget = 4000
)

// errBadSession: a cookie (or stored session) that does not decode, was
// tampered with, or is not a session of this gateway.
var errBadSession = errors.New("session cookie invalid or tampered")

// minKeyLength is the shortest session key accepted, in bytes.
const minKeyLength = 32

func validCookieName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// cookieCodec encrypts and authenticates cookie values with every
// configured key: the first encodes, all decode, so keys rotate without
// logging anybody out.
type cookieCodec struct {
	codecs     []securecookie.Codec
	serializer jsonSerializer
}

// jsonSerializer encodes cookie payloads as JSON, deflated when that pays
// off: tokens and group lists compress well, and every byte saved is a
// byte of every request. A one-byte tag says which form follows. The
// payload is encrypted after compression; an attacker cannot mix chosen
// text into a victim's session, so compression leaks nothing useful.
// Any deflate level reads the same: level is only how hard encoding
// tries (0: cookieDeflateLevel).
type jsonSerializer struct{ level int }

const (
	tagJSON    = 'j'
	tagDeflate = 'z'
	// compressAbove is the payload size from which deflating is tried.
	compressAbove = 512
	// maxInflated bounds a decompressed payload (a deflate bomb in a
	// forged cookie would fail the MAC first; this is defence in depth).
	maxInflated = 256 << 10
	// cookieDeflateLevel is how hard session payloads are compressed.
	// A cookie's bytes are carried by every request, its encoding is paid
	// once per login or refresh; measured on real sessions
	// (BenchmarkCookieDeflateLevel, docs/performance.md), the default
	// level makes cookies within 4 bytes of the best level's at half to
	// two thirds of its CPU, and best speed makes them 2-4 % larger.
	cookieDeflateLevel = flate.DefaultCompression
)

// inflaters reuses flate readers: each holds a 32 KiB window. They are
// klauspost/compress's (already in the build through Caddy), which
// inflated a 300-group session in 28-45 µs where compress/flate took
// 42-70 µs: inflating was 40 % of what a cache miss of such a session
// cost. Any DEFLATE stream reads the same with either; writing stays with
// compress/flate, whose default level makes the smaller cookie.
var inflaters = sync.Pool{New: func() any { return kflate.NewReader(bytes.NewReader(nil)) }}

// deflaters reuses flate writers with their output buffers, one pool
// per level (flate.HuffmanOnly is -2): a writer holds up to a megabyte of
// tables, and allocating one per encode was most of what writing a cookie
// cost.
var deflaters [flate.BestCompression + 3]sync.Pool

type deflater struct {
	zw   *flate.Writer
	out  bytes.Buffer
	used bool // zw was closed and needs a Reset
}

// payloads reuses the buffers payloads are serialized and inflated into.
var payloads = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledPayload is the largest buffer put back into payloads; a rare
// huge payload is left to the garbage collector.
const maxPooledPayload = 64 << 10

func getPayload() *bytes.Buffer {
	b := payloads.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putPayload(b *bytes.Buffer) {
	if b.Cap() <= maxPooledPayload {
		payloads.Put(b)
	}
}

// serialized is a payload serialize already wrote, handed through
// securecookie as it is (see cookieCodec.encode).
type serialized []byte

// serialize writes the tagged payload of src into dst.
func (z jsonSerializer) serialize(dst *bytes.Buffer, src any) error {
	dst.Reset()
	dst.WriteByte(tagJSON)
	if err := json.NewEncoder(dst).Encode(src); err != nil {
		return err
	}
	dst.Truncate(dst.Len() - 1) // Encode's newline
	if dst.Len()-1 < compressAbove {
		return nil
	}
	level := z.level
	if level == 0 {
		level = cookieDeflateLevel
	}
	pool := &deflaters[level+2]
	d, _ := pool.Get().(*deflater)
	if d == nil {
		d = &deflater{}
		d.zw, _ = flate.NewWriter(&d.out, level)
	}
	d.out.Reset()
	d.out.WriteByte(tagDeflate)
	if d.used {
		d.zw.Reset(&d.out) // for levels 2 to 9 this clears 640 KB of tables
	}
	_, _ = d.zw.Write(dst.Bytes()[1:])
	_ = d.zw.Close()
	d.used = true
	if d.out.Len() < dst.Len() {
		dst.Reset()
		dst.Write(d.out.Bytes())
	}
	if d.out.Cap() <= maxPooledPayload {
		pool.Put(d)
	}
	return nil
}

// Serialize is securecookie's way in: a payload serialize wrote passes
// through, anything else is serialized here.
func (z jsonSerializer) Serialize(src any) ([]byte, error) {
	if p, ok := src.(serialized); ok {
		return p, nil
	}
	var buf bytes.Buffer
	if err := z.serialize(&buf, src); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// fastDecoder is a payload type with a faster way to read its JSON than
// encoding/json (Session: see jsonReader). decodeJSON reports false when
// it did not take the input, and leaves the value unchanged then.
type fastDecoder interface {
	decodeJSON(body []byte) bool
}

// Deserialize reads a payload that securecookie has verified the MAC of.
func (jsonSerializer) Deserialize(src []byte, dst any) error {
	if len(src) == 0 {
		return errBadSession
	}
	body := src[1:]
	switch src[0] {
	case tagJSON:
	case tagDeflate:
		zr := inflaters.Get().(io.ReadCloser)
		defer inflaters.Put(zr)
		if err := zr.(kflate.Resetter).Reset(bytes.NewReader(body), nil); err != nil {
			return errBadSession
		}
		buf := getPayload()
		defer putPayload(buf)
		n, err := buf.ReadFrom(io.LimitReader(zr, maxInflated+1))
		if err != nil || n > maxInflated {
			return errBadSession
		}
		body = buf.Bytes()
	default:
		return errBadSession
	}
	if f, ok := dst.(fastDecoder); ok && f.decodeJSON(body) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	return dec.Decode(dst)
}

// newCookieCodec derives an HMAC and an AES-256 key from each session key
// with HKDF, so that one secret of any length yields two independent keys.
func newCookieCodec(keys []string, maxAge time.Duration) (*cookieCodec, error) {
	if len(keys) == 0 {
		return nil, errors.New("no session keys")
	}
	c := &cookieCodec{}
	for i, k := range keys {
		if len(k) < minKeyLength {
			return nil, fmt.Errorf("session key %d is %d bytes; at least %d are needed", i+1, len(k), minKeyLength)
		}
		hashKey, err := hkdf.Key(sha256.New, []byte(k), nil, "authgate cookie hmac", 32)
		if err != nil {
			return nil, err
		}
		blockKey, err := hkdf.Key(sha256.New, []byte(k), nil, "authgate cookie aes", 32)
		if err != nil {
			return nil, err
		}
		sc := securecookie.New(hashKey, blockKey)
		sc.MaxAge(int(maxAge / time.Second))
		sc.MaxLength(0) // chunking, not truncation, handles size
		sc.SetSerializer(c.serializer)
		c.codecs = append(c.codecs, sc)
	}
	return c, nil
}

// encode seals v into a cookie value. The payload is serialized here,
// into a pooled buffer that securecookie encrypts from and is done with
// when Encode returns, rather than in a buffer per encode.
func (c *cookieCodec) encode(name string, v any) (string, error) {
	buf := getPayload()
	defer putPayload(buf)
	if err := c.serializer.serialize(buf, v); err != nil {
		return "", err
	}
	return c.codecs[0].Encode(name, serialized(buf.Bytes()))
}

// decode reports, besides the error, whether a key other than the first
// one opened the value, so that the caller can re-encode it.
func (c *cookieCodec) decode(name, value string, dst any) (oldKey bool, err error) {
	if err := c.codecs[0].Decode(name, value, dst); err == nil {
		return false, nil
	}
	if len(c.codecs) > 1 {
		if err := securecookie.DecodeMulti(name, value, dst, c.codecs[1:]...); err == nil {
			return true, nil
		}
	}
	return false, errBadSession
}

// newCookieSettings checks a cookie configuration and fills in defaults.
func newCookieSettings(c *CookieConfig) (cookieSettings, error) {
	cs := cookieSettings{Name: "_authgate", Path: "/", SameSite: http.SameSiteLaxMode, hostName: hostPrefix + "_authgate"}
	if c == nil {
		return cs, nil
	}
	cs.hostName = ""
	cs.Name = orDefault(c.Name, cs.Name)
	cs.Domain = strings.TrimPrefix(c.Domain, ".")
	cs.Path = orDefault(c.Path, cs.Path)
	switch strings.ToLower(c.SameSite) {
	case "", "lax":
	case "strict":
		cs.SameSite = http.SameSiteStrictMode
	case "none":
		cs.SameSite = http.SameSiteNoneMode
	default:
		return cs, fmt.Errorf("cookie same_site must be lax, strict or none, not %q", c.SameSite)
	}
	if !validCookieName(cs.Name) {
		return cs, fmt.Errorf("cookie name %q is not a valid cookie name", cs.Name)
	}
	switch {
	case hasPrefixFold(cs.Name, hostPrefix):
		if cs.Domain != "" || cs.Path != "/" {
			return cs, fmt.Errorf("cookie name %q: a %s cookie has no domain and path /, which browsers check", cs.Name, hostPrefix)
		}
	case hasPrefixFold(cs.Name, "__Secure-"):
	case cs.Domain == "" && cs.Path == "/":
		cs.hostName = hostPrefix + cs.Name
	}
	return cs, nil
}

// hostPrefix marks a cookie that only its host can set (RFC 6265bis): the
// browser takes it only with Secure, Path=/ and no Domain, so a sibling
// subdomain cannot plant one of its name (cookie tossing).
const hostPrefix = "__Host-"

// hasPrefixFold is strings.HasPrefix ignoring case, as browsers compare
// cookie prefixes.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// cookieSettings are the attributes every cookie authgate writes carries.
type cookieSettings struct {
	Name     string
	Domain   string
	Path     string
	SameSite http.SameSite
	// Secure is decided per request: off only for plain-http sites.

	// hostName is Name with the __Host- prefix, the name of the cookies
	// on https requests; "" where the prefix cannot apply (a domain, a
	// path other than /, a name with a prefix of its own).
	hostName string
	// legacy, in the settings of an https request (forRequest), is the
	// name before the prefix: a session under it is read, once, and
	// rewritten under Name.
	legacy string
}

func isHTTPS(r *http.Request) bool { return r.TLS != nil }

// forRequest is cs with the names of r's cookies: prefixed on https.
func (cs cookieSettings) forRequest(r *http.Request) cookieSettings {
	if cs.hostName != "" && isHTTPS(r) {
		cs.Name, cs.legacy, cs.hostName = cs.hostName, cs.Name, ""
	}
	return cs
}

func (cs cookieSettings) pendingPrefix() string { return cs.Name + "_login_" }

// pendingRest is what follows the pending-login prefix in name, with or
// without the __Host- prefix; "" for another name.
func (cs cookieSettings) pendingRest(name string) string {
	if cs.hostName != "" {
		name = strings.TrimPrefix(name, hostPrefix)
	}
	rest, _ := strings.CutPrefix(name, cs.pendingPrefix())
	return rest
}

// attrOverhead is the most bytes that attributes add to a Set-Cookie. It
// counts the longest SameSite value: with "Lax" here, strict cookies came
// out 2 to 3 bytes over the budget.
func (cs cookieSettings) attrOverhead() int {
	return len("; Path=; Domain=; Max-Age=2147483647; HttpOnly; Secure; SameSite=Strict") +
		len(cs.Path) + len(cs.Domain)
}

func (cs cookieSettings) cookie(name, value string, maxAge int, secure bool) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     cs.Path,
		Domain:   cs.Domain,
		MaxAge:   maxAge,
		Secure:   secure,
		HttpOnly: true,
		SameSite: cs.SameSite,
	}
}

// expire appends a Set-Cookie that deletes name.
func (cs cookieSettings) expire(w http.ResponseWriter, name string, secure bool) {
	http.SetCookie(w, cs.cookie(name, "", -1, secure))
}

func chunkName(base string, i int) string { return base + "_" + strconv.Itoa(i) }

// splitValue cuts an encoded value into pieces that each fit a Set-Cookie
// header within cookieBudget.
func splitValue(cs cookieSettings, value string) ([]string, error) {
	room := cookieBudget - cs.attrOverhead() - len(cs.Name) - len("=")
	if len(value) <= room {
		return []string{value}, nil
	}
	room -= len("_15") // chunk names are longer by a suffix
	n := (len(value) + room - 1) / room
	if n > maxCookieChunks {
		return nil, fmt.Errorf("session needs %d cookies, more than the %d allowed", n, maxCookieChunks)
	}
	out := make([]string, 0, n)
	for len(value) > 0 {
		k := min(room, len(value))
		out = append(out, value[:k])
		value = value[k:]
	}
	return out, nil
}

// writeChunked sets the session value on w, as one cookie or as numbered
// chunks, and deletes any session cookie in present that it did not write.
func writeChunked(w http.ResponseWriter, cs cookieSettings, value string, maxAge int, secure bool, present []string) error {
	parts, err := splitValue(cs, value)
	if err != nil {
		return err
	}
	written := make([]string, 0, len(parts))
	if len(parts) == 1 {
		http.SetCookie(w, cs.cookie(cs.Name, parts[0], maxAge, secure))
		written = append(written, cs.Name)
	} else {
		for i, p := range parts {
			name := chunkName(cs.Name, i)
			http.SetCookie(w, cs.cookie(name, p, maxAge, secure))
			written = append(written, name)
		}
	}
	for _, name := range present {
		if !slices.Contains(written, name) {
			cs.expire(w, name, secure)
		}
	}
	return nil
}

// CookieConfig sets the session cookie. Secure and HttpOnly are always on
// (Secure is left off only on plain-http sites, where a browser would drop
// the cookie).
type CookieConfig struct {
	// Name of the session cookie; chunks are Name_0, Name_1, and pending
	// logins Name_login_<id>. Default: _authgate.
	Name string `json:"name,omitempty"`
	// Domain shares the session with subdomains. Default: host-only.
	Domain string `json:"domain,omitempty"`
	// Path of the cookies. Default: /.
	Path string `json:"path,omitempty"`
	// SameSite is lax, strict or none. Default: lax. The pending-login
	// cookie is always lax, since the provider's redirect back is a
	// cross-site navigation.
	SameSite string `json:"same_site,omitempty"`
}

package authgate

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"time"
)

// jwksMinInterval is the least time between two JWKS fetches of one
// provider. go-oidc refetches the key set whenever a token names a key id
// it does not know; without a floor, anybody could make us fetch on every
// request by sending tokens with made-up key ids.
const jwksMinInterval = 10 * time.Second

// jwksLimiter is a RoundTripper that answers a JWKS fetch from the last
// response when the previous fetch was less than interval ago.
type jwksLimiter struct {
	base     http.RoundTripper
	interval time.Duration

	mu      sync.Mutex
	fetched map[string]jwksCached
}

type jwksCached struct {
	at     time.Time
	status int
	header http.Header
	body   []byte
}

func newJWKSLimiter(base http.RoundTripper, interval time.Duration) *jwksLimiter {
	return &jwksLimiter{base: base, interval: interval, fetched: map[string]jwksCached{}}
}

func (l *jwksLimiter) RoundTrip(req *http.Request) (*http.Response, error) {
	key := req.URL.String()
	l.mu.Lock()
	defer l.mu.Unlock() // one fetch at a time per provider: concurrent misses share it
	if c, ok := l.fetched[key]; ok && timeNow().Sub(c.at) < l.interval {
		return c.response(req), nil
	}
	resp, err := l.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody))
	if err != nil {
		return nil, err
	}
	c := jwksCached{at: timeNow(), status: resp.StatusCode, header: resp.Header.Clone(), body: body}
	if resp.StatusCode == http.StatusOK {
		l.fetched[key] = c
	}
	return c.response(req), nil
}

func (c jwksCached) response(req *http.Request) *http.Response {
	return &http.Response{
		StatusCode:    c.status,
		Status:        http.StatusText(c.status),
		Header:        c.header.Clone(),
		Body:          io.NopCloser(bytes.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
		Request:       req,
		Proto:         "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
}

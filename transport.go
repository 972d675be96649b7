package authgate

// The HTTP transport under every provider call: a dialect's rewrites of
// requests and answers, and a bound on every body a provider sends.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// maxProviderBody bounds every response body read from a provider.
const maxProviderBody = 1 << 20

// newTransport is a dedicated transport with bounded timeouts, never
// http.DefaultTransport, so that a slow provider cannot hold connections
// of unrelated code.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
}

// dialectTransport rewrites requests to the token endpoint into the
// provider's dialect: renamed, omitted or added parameters and the
// encoding the provider wants. x/oauth2 always sends a standard form body;
// rewriting it here lets x/oauth2 keep doing the exchange and parsing.
type dialectTransport struct {
	base     http.RoundTripper
	tokenURL string
	params   ParamRewrite
	encoding string
}

func (t *dialectTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isFormPost(req) {
		return t.base.RoundTrip(req)
	}
	isToken := req.URL.String() == t.tokenURL
	if !isToken && t.encoding == "" && t.params.empty() {
		return t.base.RoundTrip(req)
	}
	form, err := readForm(req)
	if err != nil {
		return nil, err
	}
	if isToken {
		t.params.apply(form, true)
	} else {
		t.params.apply(form, false) // revocation: renames and omissions only
	}
	out := req.Clone(req.Context())
	out.Header.Set("Accept", "application/json")
	switch t.encoding {
	case "json":
		obj := make(map[string]string, len(form))
		for k := range form {
			obj[k] = form.Get(k)
		}
		b, _ := json.Marshal(obj)
		setBody(out, b)
		out.Header.Set("Content-Type", "application/json")
	case "query":
		q := out.URL.Query()
		for k, v := range form {
			q[k] = v
		}
		out.URL.RawQuery = q.Encode()
		setBody(out, nil)
		out.Header.Del("Content-Type")
	default:
		setBody(out, []byte(form.Encode()))
	}
	return t.base.RoundTrip(out)
}

// maxFormBody bounds the form of a request to a provider that a transport
// rewrites; authgate's own forms are a few hundred bytes.
const maxFormBody = 64 << 10

// isFormPost reports whether req carries a form a transport may rewrite.
func isFormPost(req *http.Request) bool {
	return req.Method == http.MethodPost && req.Body != nil && req.Header.Get("Content-Type") == "application/x-www-form-urlencoded"
}

// readForm reads and closes req's form body. A body over maxFormBody is
// an error, not a truncated form.
func readForm(req *http.Request) (url.Values, error) {
	body, err := io.ReadAll(io.LimitReader(req.Body, maxFormBody+1))
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(body) > maxFormBody {
		return nil, fmt.Errorf("a form of over %d bytes to the provider", maxFormBody)
	}
	return url.ParseQuery(string(body))
}

func setBody(r *http.Request, b []byte) {
	r.ContentLength = int64(len(b))
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// limitedTransport bounds every response body a provider sends. go-oidc
// reads discovery documents whole; a provider (or whoever answers in its
// place) must not make us buffer more than maxProviderBody.
type limitedTransport struct {
	base http.RoundTripper
}

func (t limitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxProviderBody}
	return resp, nil
}

// errBodyTooLarge is what reading past the limit returns.
var errBodyTooLarge = fmt.Errorf("%w: response body over %d bytes", errProviderBadResponse, maxProviderBody)

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

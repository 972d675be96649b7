package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// providerLimit is the provider's token endpoint driven alone: refresh
// grants with real refresh tokens, from real authorization-code grants,
// at the storm's concurrency. It is the most refreshes per second any
// gateway could get from this provider in this process.
type providerLimit struct {
	n        int
	grants   time.Duration // getting the n grants (not measured further)
	elapsed  time.Duration // the n refreshes
	rps      float64
	lat      round // latencies of the refreshes (lat sorted)
	errors   int
	firstErr string
	counted  int // the provider's token:refresh_token counter over the refreshes
}

// providerClient talks to a provider's endpoints as a confidential client.
type providerClient struct {
	idp         *testidp.Server
	clientID    string
	secret      string
	redirectURI string
	client      *http.Client
}

func newProviderClient(idp *testidp.Server, clientID, secret, redirectURI string, concurrency int) *providerClient {
	return &providerClient{
		idp: idp, clientID: clientID, secret: secret, redirectURI: redirectURI,
		client: &http.Client{
			Transport:     newTransport(concurrency),
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// grant runs the authorization-code flow straight against the provider
// (AutoLogin approves at once) and returns the refresh token.
func (c *providerClient) grant() (string, error) {
	q := url.Values{
		"response_type": {"code"},
		"client_id":     {c.clientID},
		"redirect_uri":  {c.redirectURI},
		"scope":         {"openid profile email"}, // authgate's default scopes
		"state":         {randomHex(8)},
		"nonce":         {randomHex(8)},
	}
	resp, err := c.client.Get(c.idp.Issuer() + "/authorize?" + q.Encode())
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		return "", fmt.Errorf("authorize: status %d, no redirect", resp.StatusCode)
	}
	code := loc.Query().Get("code")
	if code == "" {
		return "", fmt.Errorf("authorize: no code in %s", loc.Redacted())
	}
	tok, err := c.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {c.redirectURI}})
	if err != nil {
		return "", err
	}
	return tok.RefreshToken, nil
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

// token posts a token request with client_secret_basic, as authgate does
// with this provider.
func (c *providerClient) token(form url.Values) (tokenResponse, error) {
	req, _ := http.NewRequest(http.MethodPost, c.idp.Issuer()+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.clientID), url.QueryEscape(c.secret))
	resp, err := c.client.Do(req)
	if err != nil {
		return tokenResponse{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return tokenResponse{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return tokenResponse{}, fmt.Errorf("token (%s): status %d: %.200s", form.Get("grant_type"), resp.StatusCode, body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return tokenResponse{}, fmt.Errorf("token (%s): %w", form.Get("grant_type"), err)
	}
	if tr.AccessToken == "" || tr.RefreshToken == "" {
		return tokenResponse{}, fmt.Errorf("token (%s): no access or refresh token", form.Get("grant_type"))
	}
	return tr, nil
}

// parallel runs f(i) for i in [0, n) from concurrency goroutines labelled
// role=loadgen; it stops handing out work at the first error or after
// limit, and returns that error.
func parallel(n, concurrency int, limit time.Duration, f func(i int) error) error {
	var (
		next    atomic.Int64
		failed  atomic.Bool
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	deadline := time.Now().Add(limit)
	for range min(concurrency, n) {
		wg.Add(1)
		go pprof.Do(context.Background(), pprof.Labels("role", "loadgen"), func(context.Context) {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				err := f(i)
				if err == nil && time.Now().After(deadline) {
					err = fmt.Errorf("not done within %s (%d of %d)", limit, i+1, n)
				}
				if err != nil {
					errOnce.Do(func() { first = err })
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// measureProviderLimit gets n grants from the provider, then refreshes
// each once, concurrency at a time, and times the refreshes alone.
func measureProviderLimit(c *providerClient, n, concurrency int) (providerLimit, error) {
	lim := providerLimit{n: n}
	tokens := make([]string, n)
	t0 := time.Now()
	err := parallel(n, concurrency, 2*time.Minute, func(i int) error {
		rt, err := c.grant()
		tokens[i] = rt
		return err
	})
	lim.grants = time.Since(t0)
	if err != nil {
		return lim, fmt.Errorf("getting grants: %w", err)
	}
	lats := make([]time.Duration, n)
	var errs atomic.Int64
	var errOnce sync.Once
	before := c.idp.Count("token:refresh_token")
	t0 = time.Now()
	err = parallel(n, concurrency, 2*time.Minute, func(i int) error {
		s := time.Now()
		_, err := c.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens[i]}})
		lats[i] = time.Since(s)
		if err != nil {
			errs.Add(1)
			errOnce.Do(func() { lim.firstErr = err.Error() })
		}
		return nil
	})
	lim.elapsed = time.Since(t0)
	lim.counted = c.idp.Count("token:refresh_token") - before
	lim.errors = int(errs.Load())
	slices.Sort(lats)
	lim.lat = round{requests: n, elapsed: lim.elapsed, lat: lats}
	lim.rps = float64(n) / lim.elapsed.Seconds()
	if err != nil {
		return lim, fmt.Errorf("refreshing at the provider: %w", err)
	}
	if lim.errors > 0 {
		return lim, errors.New("refreshing at the provider: " + lim.firstErr)
	}
	return lim, nil
}

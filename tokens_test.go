package authgate

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// dialectTestRequest is what the fake provider saw of one request.
type dialectTestRequest struct {
	Method      string
	Path        string
	Query       url.Values
	ContentType string
	Accept      string
	User, Pass  string
	HasBasic    bool
	Auth        string
	Body        []byte
}

// dialectTestProvider is a loopback provider that records every request
// and answers with respond.
type dialectTestProvider struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []dialectTestRequest
	respond http.HandlerFunc
}

func newDialectTestProvider(t *testing.T, respond http.HandlerFunc) *dialectTestProvider {
	t.Helper()
	p := &dialectTestProvider{respond: respond}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := dialectTestRequest{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(),
			ContentType: r.Header.Get("Content-Type"), Accept: r.Header.Get("Accept"),
			Auth: r.Header.Get("Authorization"), Body: body,
		}
		rec.User, rec.Pass, rec.HasBasic = r.BasicAuth()
		p.mu.Lock()
		p.reqs = append(p.reqs, rec)
		p.mu.Unlock()
		p.respond(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func dialectTestJSON(status int, body string) http.HandlerFunc {
	return dialectTestReply(status, "application/json", body)
}

func dialectTestReply(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

const dialectTestTokenBody = `{"access_token":"at-1","token_type":"Bearer","expires_in":300,"refresh_token":"rt-1","id_token":"idt-1"}`

// dialectTestJWT builds an unsigned token whose payload is payload.
func dialectTestJWT(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(payload)) + ".sig"
}

// dialectTestFixClock pins the package clock for one test.
func dialectTestFixClock(t *testing.T, at time.Time) {
	t.Helper()
	old := timeNow
	timeNow = func() time.Time { return at }
	t.Cleanup(func() { timeNow = old })
}

// TestDialectTokenRequest sends a code exchange through each dialect to a
// recording provider and checks what arrived.
func TestDialectTokenRequest(t *testing.T) {
	tests := []struct {
		name    string
		dialect Dialect
		check   func(t *testing.T, r dialectTestRequest, params url.Values)
	}{
		{
			name:    "form, basic auth",
			dialect: Dialect{ClientAuth: "basic"},
			check: func(t *testing.T, r dialectTestRequest, params url.Values) {
				if r.ContentType != "application/x-www-form-urlencoded" {
					t.Errorf("Content-Type = %q", r.ContentType)
				}
				if !r.HasBasic || r.User != "the-client" || r.Pass != "the-secret" {
					t.Errorf("basic auth = %v %q %q", r.HasBasic, r.User, r.Pass)
				}
				if params.Has("client_secret") {
					t.Error("secret in the body as well as in the header")
				}
				if len(r.Query) != 0 {
					t.Errorf("query = %v", r.Query)
				}
			},
		},
		{
			name:    "form, body auth",
			dialect: Dialect{ClientAuth: "body"},
			check: func(t *testing.T, r dialectTestRequest, params url.Values) {
				if r.HasBasic {
					t.Error("basic auth sent")
				}
				if params.Get("client_id") != "the-client" || params.Get("client_secret") != "the-secret" {
					t.Errorf("credentials = %v", params)
				}
			},
		},
		{
			name:    "json",
			dialect: Dialect{ClientAuth: "body", TokenEncoding: "json"},
			check: func(t *testing.T, r dialectTestRequest, params url.Values) {
				if r.ContentType != "application/json" {
					t.Errorf("Content-Type = %q", r.ContentType)
				}
				var obj map[string]any
				if err := json.Unmarshal(r.Body, &obj); err != nil {
					t.Fatalf("body is not a JSON object: %q", r.Body)
				}
				for k, v := range obj {
					if _, ok := v.(string); !ok {
						t.Errorf("%s is %T, want a string", k, v)
					}
				}
				if params.Get("client_secret") != "the-secret" {
					t.Errorf("params = %v", params)
				}
				if len(r.Query) != 0 {
					t.Errorf("query = %v", r.Query)
				}
			},
		},
		{
			name:    "query",
			dialect: Dialect{ClientAuth: "basic", TokenEncoding: "query"},
			check: func(t *testing.T, r dialectTestRequest, params url.Values) {
				if len(r.Body) != 0 || r.ContentType != "" {
					t.Errorf("body %q with Content-Type %q, want none", r.Body, r.ContentType)
				}
				if r.Query.Get("code") != "the-code" || r.Query.Get("grant_type") != "authorization_code" {
					t.Errorf("query = %v", r.Query)
				}
				if !r.HasBasic {
					t.Error("basic auth lost")
				}
			},
		},
		{
			name: "NTPU: renames, omissions, JSON",
			dialect: Dialect{ClientAuth: "body", TokenEncoding: "json", TokenParams: ParamRewrite{
				Rename: map[string]string{"code": "authorizationCode", "client_id": "clientId", "client_secret": "clientSecret"},
				Omit:   []string{"grant_type", "redirect_uri", "code_verifier"},
			}},
			check: func(t *testing.T, r dialectTestRequest, params url.Values) {
				want := url.Values{"authorizationCode": {"the-code"}, "clientId": {"the-client"}, "clientSecret": {"the-secret"}}
				if !reflect.DeepEqual(params, want) {
					t.Errorf("params = %v, want %v", params, want)
				}
			},
		},
		{
			name:    "set adds and replaces",
			dialect: Dialect{ClientAuth: "basic", TokenParams: ParamRewrite{Set: map[string]string{"audience": "api", "grant_type": "code"}}},
			check: func(t *testing.T, r dialectTestRequest, params url.Values) {
				if params.Get("audience") != "api" || params.Get("grant_type") != "code" {
					t.Errorf("params = %v", params)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newDialectTestProvider(t, dialectTestJSON(200, dialectTestTokenBody))
			c := p.client(oauthClientConfig{Dialect: tt.dialect})
			ts, err := c.exchange(context.Background(), "the-code", "the-verifier", "https://app.example.test/oauth2/callback")
			if err != nil {
				t.Fatal(err)
			}
			if ts.AccessToken != "at-1" {
				t.Errorf("access token = %q", ts.AccessToken)
			}
			r := p.only(t)
			if r.Method != http.MethodPost || r.Path != "/token" {
				t.Errorf("%s %s", r.Method, r.Path)
			}
			if r.Accept != "application/json" && !tt.dialect.isStandard() {
				t.Errorf("Accept = %q", r.Accept)
			}
			params := r.form(t)
			if tt.dialect.TokenEncoding == "query" {
				params = r.Query
			}
			if tt.dialect.TokenParams.empty() {
				for k, want := range map[string]string{
					"grant_type": "authorization_code", "code": "the-code",
					"redirect_uri": "https://app.example.test/oauth2/callback", "code_verifier": "the-verifier",
				} {
					if got := params.Get(k); got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
			}
			tt.check(t, r, params)
		})
	}
}

// TestDialectRevocationRequest: revocation requests get the dialect's
// renames, omissions and encoding, but not its additions, which are meant
// for the token endpoint.
func TestDialectRevocationRequest(t *testing.T) {
	rw := ParamRewrite{
		Rename: map[string]string{"client_id": "clientId", "token": "accessToken"},
		Omit:   []string{"token_type_hint"},
		Set:    map[string]string{"grant_type": "code"},
	}
	tests := []struct {
		name    string
		dialect Dialect
		want    url.Values
		ct      string
	}{
		{name: "form", dialect: Dialect{ClientAuth: "body", TokenParams: rw}, ct: "application/x-www-form-urlencoded",
			want: url.Values{"accessToken": {"tok"}, "clientId": {"the-client"}, "client_secret": {"the-secret"}}},
		{name: "json", dialect: Dialect{ClientAuth: "body", TokenParams: rw, TokenEncoding: "json"}, ct: "application/json",
			want: url.Values{"accessToken": {"tok"}, "clientId": {"the-client"}, "client_secret": {"the-secret"}}},
		{name: "standard", dialect: Dialect{ClientAuth: "body"}, ct: "application/x-www-form-urlencoded",
			want: url.Values{"token": {"tok"}, "token_type_hint": {"access_token"}, "client_id": {"the-client"}, "client_secret": {"the-secret"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newDialectTestProvider(t, dialectTestReply(200, "", ""))
			c := p.client(oauthClientConfig{Dialect: tt.dialect})
			if err := c.revoke(context.Background(), "tok", "access_token"); err != nil {
				t.Fatal(err)
			}
			r := p.only(t)
			if r.Path != "/revoke" || r.ContentType != tt.ct {
				t.Errorf("%s with Content-Type %q", r.Path, r.ContentType)
			}
			if got := r.form(t); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("params = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDialectTransportPassThrough: requests that are not form POSTs, and
// form POSTs elsewhere under a standard dialect, are not touched.
func TestDialectTransportPassThrough(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		tr          dialectTransport
		wantBody    string
		wantCT      string
	}{
		{name: "GET", method: http.MethodGet, path: "/token", tr: dialectTransport{encoding: "json"}},
		{name: "POST JSON", method: http.MethodPost, path: "/token", contentType: "application/json", body: `{"a":"b"}`,
			tr: dialectTransport{encoding: "query", params: ParamRewrite{Omit: []string{"a"}}}, wantBody: `{"a":"b"}`, wantCT: "application/json"},
		{name: "form elsewhere, standard dialect", method: http.MethodPost, path: "/other", contentType: "application/x-www-form-urlencoded", body: "b=2&a=1",
			tr: dialectTransport{}, wantBody: "b=2&a=1", wantCT: "application/x-www-form-urlencoded"},
		{name: "form to the token URL is re-encoded", method: http.MethodPost, path: "/token", contentType: "application/x-www-form-urlencoded", body: "b=2&a=1",
			tr: dialectTransport{params: ParamRewrite{Set: map[string]string{"c": "3"}}}, wantBody: "a=1&b=2&c=3", wantCT: "application/x-www-form-urlencoded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newDialectTestProvider(t, dialectTestReply(204, "", ""))
			tr := tt.tr
			tr.base = p.srv.Client().Transport
			tr.tokenURL = p.url("/token")
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequest(tt.method, p.url(tt.path), body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			r := p.only(t)
			if string(r.Body) != tt.wantBody || r.ContentType != tt.wantCT {
				t.Errorf("body %q with Content-Type %q, want %q with %q", r.Body, r.ContentType, tt.wantBody, tt.wantCT)
			}
		})
	}
}

func TestAuthCodeURLDialect(t *testing.T) {
	p := newDialectTestProvider(t, dialectTestReply(204, "", ""))
	tests := []struct {
		name    string
		dialect Dialect
		check   func(t *testing.T, q url.Values)
	}{
		{name: "standard", check: func(t *testing.T, q url.Values) {
			for k, want := range map[string]string{
				"client_id": "the-client", "response_type": "code", "state": "st", "redirect_uri": "https://app/cb",
				"code_challenge_method": "S256", "nonce": "n", "scope": "openid email",
			} {
				if got := q.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if q.Get("code_challenge") == "" {
				t.Error("no code_challenge")
			}
		}},
		{name: "NTPU", dialect: Dialect{AuthorizeParams: ParamRewrite{
			Rename: map[string]string{"client_id": "clientId"},
			Omit:   []string{"response_type", "redirect_uri", "scope"},
			Set:    map[string]string{"lang": "en"},
		}}, check: func(t *testing.T, q url.Values) {
			if q.Get("clientId") != "the-client" || q.Has("client_id") || q.Has("response_type") || q.Has("redirect_uri") || q.Has("scope") || q.Get("lang") != "en" {
				t.Errorf("query = %v", q)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := p.client(oauthClientConfig{Dialect: tt.dialect, Scopes: []string{"openid", "email"}})
			raw := c.authCodeURL("https://app/cb", "st", "verifier-verifier-verifier-verifier-0123", "n")
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if u.Path != "/authorize" {
				t.Errorf("path = %q", u.Path)
			}
			tt.check(t, u.Query())
		})
	}
}

func TestTokensClientAuthStyle(t *testing.T) {
	tests := []struct {
		name string
		cfg  oauthClientConfig
		want oauth2.AuthStyle
	}{
		{name: "standard dialect defaults to basic", want: oauth2.AuthStyleInHeader},
		{name: "non-standard dialect defaults to body", cfg: oauthClientConfig{Dialect: Dialect{TokenEncoding: "json"}}, want: oauth2.AuthStyleInParams},
		{name: "explicit basic", cfg: oauthClientConfig{Dialect: Dialect{ClientAuth: "basic", TokenEncoding: "json"}}, want: oauth2.AuthStyleInHeader},
		{name: "explicit body", cfg: oauthClientConfig{Dialect: Dialect{ClientAuth: "body"}}, want: oauth2.AuthStyleInParams},
		{name: "discovery lists only post", cfg: oauthClientConfig{AuthStyleFromDiscoveryKnown: true, AuthStyleFromDiscoveryPostOK: true}, want: oauth2.AuthStyleInParams},
		{name: "discovery lists both", cfg: oauthClientConfig{AuthStyleFromDiscoveryKnown: true, AuthStyleFromDiscoveryBasic: true, AuthStyleFromDiscoveryPostOK: true}, want: oauth2.AuthStyleInHeader},
		{name: "discovery lists basic, dialect non-standard", cfg: oauthClientConfig{AuthStyleFromDiscoveryKnown: true, AuthStyleFromDiscoveryBasic: true, Dialect: Dialect{TokenEncoding: "json"}}, want: oauth2.AuthStyleInHeader},
		{name: "explicit body beats discovery", cfg: oauthClientConfig{AuthStyleFromDiscoveryKnown: true, AuthStyleFromDiscoveryBasic: true, Dialect: Dialect{ClientAuth: "body"}}, want: oauth2.AuthStyleInParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newOAuthClient(tt.cfg)
			if got := c.config.Endpoint.AuthStyle; got != tt.want {
				t.Errorf("AuthStyle = %v, want %v", got, tt.want)
			}
			if c.httpClient.Timeout <= 0 {
				t.Error("no client timeout")
			}
			if c.httpClient.Transport == http.DefaultTransport {
				t.Error("uses http.DefaultTransport")
			}
		})
	}
}

// TestOAuthClientExchange covers how token responses are read and how
// failures are classified.
func TestTokensExchangeOutcomes(t *testing.T) {
	fixed := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	jwtExp := time.Date(2031, 6, 1, 0, 0, 0, 0, time.UTC)
	jwtAT := dialectTestJWT(`{"sub":"x","exp":` + dialectTestInt(jwtExp.Unix()) + `}`)
	tests := []struct {
		name           string
		respond        http.HandlerFunc
		defaultExpires time.Duration
		fixClock       bool // timeNow is fixed at `fixed`
		wantErr        error
		check          func(t *testing.T, ts *tokenSet, start time.Time)
	}{
		{
			name:    "success",
			respond: dialectTestJSON(200, dialectTestTokenBody),
			check: func(t *testing.T, ts *tokenSet, start time.Time) {
				if ts.AccessToken != "at-1" || ts.RefreshToken != "rt-1" || ts.IDToken != "idt-1" {
					t.Errorf("tokens = %+v", ts)
				}
				dialectTestExpiryNear(t, ts.Expiry, start, 300*time.Second)
				if got := ts.Expiry.Sub(ts.Issued); got != 300*time.Second {
					t.Errorf("lifetime Expiry-Issued = %s, want expires_in's 300s", got)
				}
			},
		},
		{
			name:    "expires_in as a string",
			respond: dialectTestJSON(200, `{"access_token":"at","expires_in":"300"}`),
			check: func(t *testing.T, ts *tokenSet, start time.Time) {
				dialectTestExpiryNear(t, ts.Expiry, start, 300*time.Second)
			},
		},
		{
			name:    "token_type in any case, extra fields ignored",
			respond: dialectTestJSON(200, `{"access_token":"at","token_type":"BEARER","expires_in":60,"extra":{"deep":[1,2]},"scope":"a b"}`),
			check: func(t *testing.T, ts *tokenSet, start time.Time) {
				if ts.AccessToken != "at" {
					t.Errorf("access token = %q", ts.AccessToken)
				}
			},
		},
		{
			name:           "no expires_in: JWT exp",
			respond:        dialectTestJSON(200, `{"access_token":"`+jwtAT+`"}`),
			defaultExpires: time.Hour,
			check: func(t *testing.T, ts *tokenSet, _ time.Time) {
				if !ts.Expiry.Equal(jwtExp) {
					t.Errorf("expiry = %v, want %v", ts.Expiry, jwtExp)
				}
				if !ts.Issued.IsZero() {
					t.Errorf("issued = %v without expires_in, want zero (the configured refresh skew applies)", ts.Issued)
				}
			},
		},
		{
			name:           "no expires_in, opaque token: default",
			respond:        dialectTestJSON(200, `{"access_token":"opaque"}`),
			defaultExpires: 90 * time.Minute,
			fixClock:       true,
			check: func(t *testing.T, ts *tokenSet, _ time.Time) {
				if want := fixed.Add(90 * time.Minute); !ts.Expiry.Equal(want) {
					t.Errorf("expiry = %v, want %v", ts.Expiry, want)
				}
			},
		},
		{
			name:    "no expiry anywhere and no default: unknown",
			respond: dialectTestJSON(200, `{"access_token":"opaque"}`),
			check: func(t *testing.T, ts *tokenSet, _ time.Time) {
				if !ts.Expiry.IsZero() {
					t.Errorf("expiry = %v, want zero", ts.Expiry)
				}
			},
		},
		{
			name:           "expires_in beats JWT exp",
			respond:        dialectTestJSON(200, `{"access_token":"`+jwtAT+`","expires_in":60}`),
			defaultExpires: time.Hour,
			check: func(t *testing.T, ts *tokenSet, start time.Time) {
				dialectTestExpiryNear(t, ts.Expiry, start, 60*time.Second)
			},
		},
		{
			name:    "form-encoded response",
			respond: dialectTestReply(200, "application/x-www-form-urlencoded", "access_token=at-f&refresh_token=rt-f&expires_in=120"),
			check: func(t *testing.T, ts *tokenSet, start time.Time) {
				if ts.AccessToken != "at-f" || ts.RefreshToken != "rt-f" {
					t.Errorf("tokens = %+v", ts)
				}
				dialectTestExpiryNear(t, ts.Expiry, start, 120*time.Second)
			},
		},
		{
			name:    "text/plain query string (GitHub style)",
			respond: dialectTestReply(200, "text/plain; charset=utf-8", "access_token=at-t&token_type=bearer"),
			check: func(t *testing.T, ts *tokenSet, _ time.Time) {
				if ts.AccessToken != "at-t" {
					t.Errorf("access token = %q", ts.AccessToken)
				}
			},
		},
		{name: "400 invalid_grant", respond: dialectTestJSON(400, `{"error":"invalid_grant","error_description":"code used"}`), wantErr: errInvalidGrant},
		{name: "400 invalid_grant form-encoded", respond: dialectTestReply(400, "application/x-www-form-urlencoded", "error=invalid_grant"), wantErr: errInvalidGrant},
		{name: "200 with an error field", respond: dialectTestJSON(200, `{"error":"invalid_grant"}`), wantErr: errInvalidGrant},
		{name: "200 with another error field", respond: dialectTestJSON(200, `{"error":"server_error"}`), wantErr: errProviderBadResponse},
		{name: "400 invalid_client", respond: dialectTestJSON(400, `{"error":"invalid_client"}`), wantErr: errProviderRejected},
		{name: "401 without body", respond: dialectTestReply(401, "", ""), wantErr: errProviderRejected},
		{name: "500 HTML", respond: dialectTestReply(500, "text/html", "<html><body>Internal Server Error</body></html>"), wantErr: errProviderDown},
		{name: "502 empty", respond: dialectTestReply(502, "", ""), wantErr: errProviderDown},
		{name: "503 JSON", respond: dialectTestJSON(503, `{"error":"temporarily_unavailable"}`), wantErr: errProviderDown},
		{name: "200 HTML", respond: dialectTestReply(200, "text/html; charset=utf-8", "<!doctype html><title>Login</title>"), wantErr: errProviderBadResponse},
		{name: "200 text/plain JSON", respond: dialectTestReply(200, "text/plain", `{"access_token":"at"}`), wantErr: errProviderBadResponse},
		{name: "200 text/plain bad escape", respond: dialectTestReply(200, "text/plain", "access_token=%zz"), wantErr: errProviderBadResponse},
		{name: "truncated JSON", respond: dialectTestJSON(200, `{"access_token":"at","expi`), wantErr: errProviderBadResponse},
		{name: "empty body", respond: dialectTestJSON(200, ""), wantErr: errProviderBadResponse},
		{name: "JSON array", respond: dialectTestJSON(200, `["at"]`), wantErr: errProviderBadResponse},
		{name: "missing access_token", respond: dialectTestJSON(200, `{"token_type":"Bearer","expires_in":300}`), wantErr: errProviderBadResponse},
		{name: "empty access_token", respond: dialectTestJSON(200, `{"access_token":""}`), wantErr: errProviderBadResponse},
		{name: "access_token not a string", respond: dialectTestJSON(200, `{"access_token":42}`), wantErr: errProviderBadResponse},
		{name: "expires_in not a number", respond: dialectTestJSON(200, `{"access_token":"at","expires_in":"soon"}`), wantErr: errProviderBadResponse},
		{name: "oversized body", respond: dialectTestJSON(200, `{"access_token":"`+strings.Repeat("a", maxProviderBody)+`"}`), wantErr: errProviderBadResponse},
		{name: "redirect is not followed", respond: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, wantErr: errProviderRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fixClock {
				dialectTestFixClock(t, fixed)
			}
			p := newDialectTestProvider(t, tt.respond)
			c := p.client(oauthClientConfig{DefaultExpiresIn: tt.defaultExpires})
			start := timeNow()
			ts, err := c.exchange(context.Background(), "code", "", "https://app/cb")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("exchange = %+v, %v; want %v", ts, err, tt.wantErr)
				}
				if ts != nil {
					t.Errorf("a token set came with the error: %+v", ts)
				}
				if !strings.HasPrefix(err.Error(), "exchanging code: ") {
					t.Errorf("error %q lacks its context", err)
				}
				if len(p.requests()) != 1 {
					t.Errorf("provider saw %d requests, want 1", len(p.requests()))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, ts, start)
		})
	}
}

func TestTokensNetworkFailures(t *testing.T) {
	t.Run("stall beyond the timeout", func(t *testing.T) {
		release := make(chan struct{})
		p := newDialectTestProvider(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		// Registered after the server's Close, so it runs before it.
		t.Cleanup(func() { close(release) })
		c := p.client(oauthClientConfig{Timeout: 150 * time.Millisecond})
		_, err := c.exchange(context.Background(), "code", "", "https://app/cb")
		if !errors.Is(err, errProviderTimeout) {
			t.Fatalf("exchange = %v, want %v", err, errProviderTimeout)
		}
		_, err = c.refresh(context.Background(), "rt")
		if !errors.Is(err, errProviderTimeout) {
			t.Fatalf("refresh = %v, want %v", err, errProviderTimeout)
		}
		_, err = c.userinfo(context.Background(), "at")
		if !errors.Is(err, errProviderTimeout) {
			t.Fatalf("userinfo = %v, want %v", err, errProviderTimeout)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		release := make(chan struct{})
		p := newDialectTestProvider(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		t.Cleanup(func() { close(release) })
		c := p.client(oauthClientConfig{Timeout: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := c.exchange(ctx, "code", "", "https://app/cb"); !errors.Is(err, errProviderTimeout) {
			t.Fatalf("exchange = %v, want %v", err, errProviderTimeout)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := "http://" + l.Addr().String()
		l.Close()
		c := newOAuthClient(oauthClientConfig{
			ClientID: "c", TokenURL: addr + "/token", UserinfoURL: addr + "/userinfo", RevokeURL: addr + "/revoke",
			Transport: newTransport(),
		})
		if _, err := c.exchange(context.Background(), "code", "", "https://app/cb"); !errors.Is(err, errProviderDown) {
			t.Errorf("exchange = %v, want %v", err, errProviderDown)
		}
		if _, err := c.refresh(context.Background(), "rt"); !errors.Is(err, errProviderDown) {
			t.Errorf("refresh = %v, want %v", err, errProviderDown)
		}
		if _, err := c.userinfo(context.Background(), "at"); !errors.Is(err, errProviderDown) {
			t.Errorf("userinfo = %v, want %v", err, errProviderDown)
		}
		if err := c.revoke(context.Background(), "at", "access_token"); !errors.Is(err, errProviderDown) {
			t.Errorf("revoke = %v, want %v", err, errProviderDown)
		}
	})
}

func TestTokensRefreshOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		respond http.HandlerFunc
		dialect Dialect
		wantRT  string
		wantErr error
	}{
		{name: "rotated refresh token", respond: dialectTestJSON(200, `{"access_token":"at-2","refresh_token":"rt-2","expires_in":60}`), wantRT: "rt-2"},
		{name: "no rotation keeps the old one", respond: dialectTestJSON(200, `{"access_token":"at-2","expires_in":60}`), wantRT: "rt-old"},
		{name: "renamed parameters", respond: dialectTestJSON(200, `{"access_token":"at-2"}`), wantRT: "rt-old",
			dialect: Dialect{TokenEncoding: "json", TokenParams: ParamRewrite{Rename: map[string]string{"refresh_token": "refreshToken"}}}},
		{name: "invalid_grant", respond: dialectTestJSON(400, `{"error":"invalid_grant"}`), wantErr: errInvalidGrant},
		{name: "provider down", respond: dialectTestReply(500, "text/html", "<h1>down</h1>"), wantErr: errProviderDown},
		{name: "bad answer", respond: dialectTestJSON(200, `{"refresh_token":"rt-2"}`), wantErr: errProviderBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newDialectTestProvider(t, tt.respond)
			c := p.client(oauthClientConfig{Dialect: tt.dialect})
			ts, err := c.refresh(context.Background(), "rt-old")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.HasPrefix(err.Error(), "refreshing token: ") {
					t.Fatalf("refresh = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ts.AccessToken != "at-2" || ts.RefreshToken != tt.wantRT {
				t.Errorf("tokens = %+v, want refresh token %q", ts, tt.wantRT)
			}
			r := p.only(t)
			params := r.form(t)
			name := "refresh_token"
			if tt.dialect.TokenParams.Rename != nil {
				name = "refreshToken"
			}
			if params.Get("grant_type") != "refresh_token" || params.Get(name) != "rt-old" {
				t.Errorf("params = %v", params)
			}
		})
	}
}

func TestTokensUserinfoOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		respond http.HandlerFunc
		want    map[string]any
		wantErr error
	}{
		{name: "object", respond: dialectTestJSON(200, `{"sub":"u","n":12,"person":{"roles":[{"role":"a"}]}}`),
			want: map[string]any{"sub": "u", "n": json.Number("12"), "person": map[string]any{"roles": []any{map[string]any{"role": "a"}}}}},
		{name: "object without content type", respond: dialectTestReply(200, "", `{"sub":"u"}`), want: map[string]any{"sub": "u"}},
		{name: "HTML", respond: dialectTestReply(200, "text/html", "<html></html>"), wantErr: errProviderBadResponse},
		{name: "JWT", respond: dialectTestReply(200, "application/jwt", dialectTestJWT(`{"sub":"u"}`)), wantErr: errProviderBadResponse},
		{name: "array", respond: dialectTestJSON(200, `[{"sub":"u"}]`), wantErr: errProviderBadResponse},
		{name: "null", respond: dialectTestJSON(200, `null`), wantErr: errProviderBadResponse},
		{name: "string", respond: dialectTestJSON(200, `"u"`), wantErr: errProviderBadResponse},
		{name: "truncated", respond: dialectTestJSON(200, `{"sub":`), wantErr: errProviderBadResponse},
		{name: "empty", respond: dialectTestJSON(200, ``), wantErr: errProviderBadResponse},
		{name: "oversized", respond: dialectTestJSON(200, `{"sub":"`+strings.Repeat("u", maxProviderBody)+`"}`), wantErr: errProviderBadResponse},
		{name: "401", respond: dialectTestJSON(401, `{"error":"invalid_token"}`), wantErr: errInvalidGrant},
		{name: "403", respond: dialectTestReply(403, "", ""), wantErr: errInvalidGrant},
		{name: "404", respond: dialectTestReply(404, "text/html", "nope"), wantErr: errProviderRejected},
		{name: "500", respond: dialectTestReply(500, "text/html", "<h1>oops</h1>"), wantErr: errProviderDown},
		{name: "redirect", respond: func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/login", http.StatusFound) }, wantErr: errProviderRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newDialectTestProvider(t, tt.respond)
			c := p.client(oauthClientConfig{})
			got, err := c.userinfo(context.Background(), "the-access-token")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("userinfo = %v, %v; want %v", got, err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("claims came with the error: %v", got)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("userinfo = %#v, want %#v", got, tt.want)
				}
			}
			r := p.only(t)
			if r.Method != http.MethodGet || r.Path != "/userinfo" || r.Auth != "Bearer the-access-token" || r.Accept != "application/json" {
				t.Errorf("request = %s %s, Authorization %q, Accept %q", r.Method, r.Path, r.Auth, r.Accept)
			}
		})
	}
	t.Run("no endpoint", func(t *testing.T) {
		c := newOAuthClient(oauthClientConfig{TokenURL: "http://127.0.0.1:1/token"})
		if got, err := c.userinfo(context.Background(), "at"); got != nil || err != nil {
			t.Errorf("userinfo = %v, %v; want nothing", got, err)
		}
	})
}

func TestTokensRevokeRequests(t *testing.T) {
	tests := []struct {
		name       string
		clientAuth string
		status     int
		wantErr    error
	}{
		{name: "basic", clientAuth: "basic", status: 200},
		{name: "body", clientAuth: "body", status: 200},
		{name: "rejected", clientAuth: "basic", status: 400, wantErr: errProviderRejected},
		{name: "unavailable", clientAuth: "body", status: 503, wantErr: errProviderRejected}, // or errProviderDown, see below
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newDialectTestProvider(t, dialectTestReply(tt.status, "", ""))
			c := p.client(oauthClientConfig{ClientID: "id with space", ClientSecret: "s&cret:", Dialect: Dialect{ClientAuth: tt.clientAuth}})
			err := c.revoke(context.Background(), "the-token", "refresh_token")
			// Revocation failures are only logged; a 5xx may fairly be
			// reported as either sentinel.
			downOK := tt.status >= 500 && errors.Is(err, errProviderDown)
			if !downOK && (!errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil)) {
				t.Fatalf("revoke = %v, want %v", err, tt.wantErr)
			}
			r := p.only(t)
			params := r.form(t)
			if r.Method != http.MethodPost || r.Path != "/revoke" || r.ContentType != "application/x-www-form-urlencoded" {
				t.Errorf("request = %s %s %q", r.Method, r.Path, r.ContentType)
			}
			if params.Get("token") != "the-token" || params.Get("token_type_hint") != "refresh_token" {
				t.Errorf("params = %v", params)
			}
			switch tt.clientAuth {
			case "basic":
				// RFC 6749 §2.3.1: form-encoded before Base64.
				if !r.HasBasic || r.User != url.QueryEscape("id with space") || r.Pass != url.QueryEscape("s&cret:") {
					t.Errorf("basic auth = %v %q %q", r.HasBasic, r.User, r.Pass)
				}
				if params.Has("client_secret") {
					t.Error("secret in the body too")
				}
			case "body":
				if r.HasBasic || params.Get("client_id") != "id with space" || params.Get("client_secret") != "s&cret:" {
					t.Errorf("credentials: basic %v, params %v", r.HasBasic, params)
				}
			}
		})
	}
	t.Run("nothing to do", func(t *testing.T) {
		p := newDialectTestProvider(t, dialectTestReply(500, "", ""))
		c := p.client(oauthClientConfig{})
		if err := c.revoke(context.Background(), "", "access_token"); err != nil {
			t.Errorf("revoke of no token = %v", err)
		}
		noURL := newOAuthClient(oauthClientConfig{TokenURL: p.url("/token"), Transport: p.srv.Client().Transport})
		if err := noURL.revoke(context.Background(), "tok", "access_token"); err != nil {
			t.Errorf("revoke without endpoint = %v", err)
		}
		if n := len(p.requests()); n != 0 {
			t.Errorf("provider saw %d requests", n)
		}
	})
}

func TestTokensJWTExpiryEdges(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name  string
		token string
		want  time.Time
		ok    bool
	}{
		{name: "integer exp", token: dialectTestJWT(`{"exp":1900000000}`), want: time.Unix(1900000000, 0), ok: true},
		{name: "fractional exp", token: dialectTestJWT(`{"exp":1900000000.75}`), want: time.Unix(1900000000, 0), ok: true},
		{name: "exponent exp", token: dialectTestJWT(`{"exp":1.9e9}`), want: time.Unix(1900000000, 0), ok: true},
		{name: "string exp", token: dialectTestJWT(`{"exp":"1900000000"}`), want: time.Unix(1900000000, 0), ok: true},
		{name: "padded payload", token: "h." + base64.URLEncoding.EncodeToString([]byte(`{"exp":1900000000,"a":"b"}`)) + ".s", want: time.Unix(1900000000, 0), ok: true},
		{name: "zero exp", token: dialectTestJWT(`{"exp":0}`)},
		{name: "negative exp", token: dialectTestJWT(`{"exp":-5}`)},
		{name: "no exp", token: dialectTestJWT(`{"sub":"x"}`)},
		{name: "null exp", token: dialectTestJWT(`{"exp":null}`)},
		{name: "bool exp", token: dialectTestJWT(`{"exp":true}`)},
		{name: "non-numeric string exp", token: dialectTestJWT(`{"exp":"tomorrow"}`)},
		{name: "payload not JSON", token: "h." + enc([]byte("not json")) + ".s"},
		{name: "payload JSON array", token: "h." + enc([]byte("[1]")) + ".s"},
		{name: "bad base64", token: "h.!!!.s"},
		{name: "standard base64 alphabet", token: "h." + base64.StdEncoding.EncodeToString([]byte(`{"exp":1900000000,"x":"??>>"}`)) + ".s"},
		{name: "two parts", token: "h." + enc([]byte(`{"exp":1900000000}`))},
		{name: "four parts", token: "h." + enc([]byte(`{"exp":1900000000}`)) + ".s.x"},
		{name: "opaque", token: "2YotnFZFEjr1zCsicMWpAA"},
		{name: "empty", token: ""},
		{name: "JWE (five parts)", token: "a.b.c.d.e"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := jwtExpiry(tt.token)
			if ok != tt.ok || !got.Equal(tt.want) {
				t.Errorf("jwtExpiry = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestTokensClassifyErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"retrieve invalid_grant", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant"}, errInvalidGrant},
		{"retrieve 500", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 500}}, errProviderDown},
		{"retrieve 200", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 200}, ErrorCode: "weird"}, errProviderBadResponse},
		{"retrieve without response", &oauth2.RetrieveError{}, errProviderBadResponse},
		{"retrieve 403", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 403}, ErrorCode: "access_denied"}, errProviderRejected},
		{"deadline", context.DeadlineExceeded, errProviderTimeout},
		{"url error", &url.Error{Op: "Post", URL: "http://x", Err: errors.New("connection refused")}, errProviderDown},
		{"already classified", errProviderRejected, errProviderRejected},
		{"plain error", errors.New("oauth2: server response missing access_token"), errProviderBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); !errors.Is(got, tt.want) {
				t.Errorf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func dialectTestInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// dialectTestExpiryNear checks an expiry dated from expires_in. x/oauth2
// dates it with the wall clock and tokens.go with timeNow; in these tests
// the two agree (timeNow is not fixed for them).
func dialectTestExpiryNear(t *testing.T, got, start time.Time, d time.Duration) {
	t.Helper()
	if got.Before(start.Add(d).Add(-time.Second)) || got.After(timeNow().Add(d).Add(time.Second)) {
		t.Errorf("expiry = %v, want about %v from %v", got, d, start)
	}
}

// fuzzTokenReply is what the fuzzed token endpoint answers next.
type fuzzTokenReply struct {
	status      int
	contentType string
	body        []byte
}

func FuzzTokenResponse(f *testing.F) {
	jwt := dialectTestJWT(`{"exp":1900000000}`)
	for _, seed := range []fuzzTokenReply{
		{200, "application/json", []byte(dialectTestTokenBody)},
		{200, "application/json", []byte(`{"access_token":"` + jwt + `"}`)},
		{200, "application/json", []byte(`{"access_token":"a","expires_in":"300"}`)},
		{200, "application/json", []byte(`{"access_token":"a","expires_in":-1}`)},
		{200, "application/json", []byte(`{"access_token":"a","expires_in":1e99}`)},
		{200, "application/json", []byte(`{"access_token":"a","id_token":42,"refresh_token":null}`)},
		{200, "application/json", []byte(`{"access_token":"a"`)},
		{200, "application/json", []byte(`{"error":"invalid_grant"}`)},
		{200, "application/x-www-form-urlencoded", []byte("access_token=a&expires_in=x")},
		{200, "text/plain", []byte(`{"access_token":"a"}`)},
		{200, "text/html", []byte("<html>")},
		{200, "", nil},
		{400, "application/json", []byte(`{"error":"invalid_grant"}`)},
		{401, "text/plain", []byte("error=invalid_client")},
		{500, "text/html", []byte("<h1>down</h1>")},
		{302, "", nil},
		{200, "application/json; charset=\"", []byte(`{"access_token":"a"}`)},
	} {
		f.Add(seed.status, seed.contentType, seed.body)
	}
	var mu sync.Mutex
	var next fuzzTokenReply
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reply := next
		mu.Unlock()
		if reply.contentType != "" {
			w.Header()["Content-Type"] = []string{reply.contentType}
		}
		if reply.status >= 300 && reply.status < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(reply.status)
		_, _ = w.Write(reply.body)
	}))
	f.Cleanup(srv.Close)
	client := newOAuthClient(oauthClientConfig{
		ClientID: "c", ClientSecret: "s", TokenURL: srv.URL + "/token",
		Timeout: 5 * time.Second, DefaultExpiresIn: time.Hour, Transport: srv.Client().Transport,
	})
	sentinels := []error{errInvalidGrant, errProviderRejected, errProviderDown, errProviderTimeout, errProviderBadResponse}
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		// A status the server can send with a body: 200–599, no 204/304.
		if status < 0 {
			status = -status
		}
		status = 200 + status%400
		if status == http.StatusNoContent || status == http.StatusNotModified {
			status = http.StatusOK
		}
		mu.Lock()
		next = fuzzTokenReply{status, contentType, body}
		mu.Unlock()
		ts, err := client.exchange(context.Background(), "code", "verifier", "https://app/cb")
		if err != nil {
			if ts != nil {
				t.Fatalf("tokens and an error: %+v, %v", ts, err)
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v wraps no sentinel", err)
		}
		if ts == nil || ts.AccessToken == "" {
			t.Fatalf("success without an access token: %+v", ts)
		}
		if status < 200 || status > 299 {
			t.Fatalf("status %d accepted", status)
		}
	})
}

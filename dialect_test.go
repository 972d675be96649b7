package authgate

import (
	"encoding/json"
	"net/url"
	"reflect"
	"testing"
)

// form returns the request's body parameters, whatever their encoding.
func (r dialectTestRequest) form(t *testing.T) url.Values {
	t.Helper()
	switch {
	case len(r.Body) == 0:
		return url.Values{}
	case r.ContentType == "application/json":
		var obj map[string]string
		if err := json.Unmarshal(r.Body, &obj); err != nil {
			t.Fatalf("JSON body %q: %v", r.Body, err)
		}
		v := url.Values{}
		for k, s := range obj {
			v.Set(k, s)
		}
		return v
	default:
		v, err := url.ParseQuery(string(r.Body))
		if err != nil {
			t.Fatalf("form body %q: %v", r.Body, err)
		}
		return v
	}
}

func (p *dialectTestProvider) url(path string) string { return p.srv.URL + path }

func (p *dialectTestProvider) requests() []dialectTestRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]dialectTestRequest(nil), p.reqs...)
}

func (p *dialectTestProvider) only(t *testing.T) dialectTestRequest {
	t.Helper()
	reqs := p.requests()
	if len(reqs) != 1 {
		t.Fatalf("provider saw %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

// client builds an oauthClient for this provider; cfg's URLs default to
// the provider's /token, /userinfo and /revoke.
func (p *dialectTestProvider) client(cfg oauthClientConfig) *oauthClient {
	if cfg.ClientID == "" {
		cfg.ClientID = "the-client"
		cfg.ClientSecret = "the-secret"
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = p.url("/token")
	}
	if cfg.AuthorizeURL == "" {
		cfg.AuthorizeURL = p.url("/authorize")
	}
	if cfg.UserinfoURL == "" {
		cfg.UserinfoURL = p.url("/userinfo")
	}
	if cfg.RevokeURL == "" {
		cfg.RevokeURL = p.url("/revoke")
	}
	if cfg.Transport == nil {
		cfg.Transport = p.srv.Client().Transport
	}
	return newOAuthClient(cfg)
}

func TestParamRewriteApply(t *testing.T) {
	base := func() url.Values {
		return url.Values{"code": {"c"}, "client_id": {"id"}, "redirect_uri": {"r"}, "grant_type": {"authorization_code"}}
	}
	tests := []struct {
		name    string
		rw      ParamRewrite
		withSet bool
		want    url.Values
	}{
		{name: "empty", want: base()},
		{name: "omit", rw: ParamRewrite{Omit: []string{"redirect_uri", "absent"}}, want: url.Values{"code": {"c"}, "client_id": {"id"}, "grant_type": {"authorization_code"}}},
		{name: "rename", rw: ParamRewrite{Rename: map[string]string{"code": "authorizationCode", "client_id": "clientId", "absent": "x"}},
			want: url.Values{"authorizationCode": {"c"}, "clientId": {"id"}, "redirect_uri": {"r"}, "grant_type": {"authorization_code"}}},
		{name: "renames do not chain", rw: ParamRewrite{Rename: map[string]string{"code": "client_id", "client_id": "clientId"}},
			want: url.Values{"client_id": {"c"}, "clientId": {"id"}, "redirect_uri": {"r"}, "grant_type": {"authorization_code"}}},
		{name: "swap", rw: ParamRewrite{Rename: map[string]string{"code": "client_id", "client_id": "code"}},
			want: url.Values{"client_id": {"c"}, "code": {"id"}, "redirect_uri": {"r"}, "grant_type": {"authorization_code"}}},
		{name: "omit happens before rename", rw: ParamRewrite{Omit: []string{"code"}, Rename: map[string]string{"code": "authorizationCode"}},
			want: url.Values{"client_id": {"id"}, "redirect_uri": {"r"}, "grant_type": {"authorization_code"}}},
		{name: "set ignored without withSet", rw: ParamRewrite{Set: map[string]string{"extra": "1"}}, want: base()},
		{name: "set adds", rw: ParamRewrite{Set: map[string]string{"extra": "1"}}, withSet: true,
			want: url.Values{"code": {"c"}, "client_id": {"id"}, "redirect_uri": {"r"}, "grant_type": {"authorization_code"}, "extra": {"1"}}},
		{name: "set replaces after rename", rw: ParamRewrite{Rename: map[string]string{"grant_type": "grantType"}, Set: map[string]string{"grantType": "code"}}, withSet: true,
			want: url.Values{"code": {"c"}, "client_id": {"id"}, "redirect_uri": {"r"}, "grantType": {"code"}}},
		{name: "everything", rw: ParamRewrite{
			Omit:   []string{"redirect_uri", "grant_type"},
			Rename: map[string]string{"code": "authorizationCode"},
			Set:    map[string]string{"client_id": "fixed"},
		}, withSet: true, want: url.Values{"authorizationCode": {"c"}, "client_id": {"fixed"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := base()
			tt.rw.apply(v, tt.withSet)
			if !reflect.DeepEqual(v, tt.want) {
				t.Errorf("apply = %v, want %v", v, tt.want)
			}
		})
	}
}

func TestDialectIsStandard(t *testing.T) {
	tests := []struct {
		d    Dialect
		want bool
	}{
		{Dialect{}, true},
		{Dialect{NoState: true, NoPKCE: true, ClientAuth: "body", AuthorizeParams: ParamRewrite{Omit: []string{"scope"}}}, true},
		{Dialect{TokenEncoding: "json"}, false},
		{Dialect{TokenParams: ParamRewrite{Omit: []string{"x"}}}, false},
		{Dialect{TokenParams: ParamRewrite{Set: map[string]string{"x": "y"}}}, false},
	}
	for i, tt := range tests {
		if got := tt.d.isStandard(); got != tt.want {
			t.Errorf("case %d: isStandard = %v, want %v", i, got, tt.want)
		}
	}
}

func TestCallbackParamsDefaults(t *testing.T) {
	var def CallbackParams
	if def.code() != "code" || def.state() != "state" || def.errorParam() != "error" {
		t.Errorf("defaults = %q %q %q", def.code(), def.state(), def.errorParam())
	}
	c := CallbackParams{Code: "authorizationCode", State: "s", Error: "err"}
	if c.code() != "authorizationCode" || c.state() != "s" || c.errorParam() != "err" {
		t.Errorf("custom = %q %q %q", c.code(), c.state(), c.errorParam())
	}
}

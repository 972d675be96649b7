package authgate

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestHandleErrorsReplacesPages(t *testing.T) {
	s := setupSiteWith(t, siteConfig{
		handler:   "error_pages caddy\n\t\tallow group nobody-has-this",
		siteExtra: "handle_errors {\n\t\trespond \"custom page: {http.auth.authgate.reason} ({err.status_code}) ref {http.auth.authgate.request_id}\"\n\t}",
	})
	b := newBrowser(t)
	resp, body := b.get(s.origin + "/")
	if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(body, "custom page: forbidden (403) ref ") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	u, _ := url.Parse(s.origin)
	resp, body = newBrowser(t).api("GET", u.String()+"/oauth2/callback?code=x&state=y")
	if resp.StatusCode != 400 || !strings.HasPrefix(body, "custom page: login_expired (400)") {
		t.Errorf("callback without login: %d %q", resp.StatusCode, body)
	}
}

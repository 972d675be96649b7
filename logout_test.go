package authgate

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// Headers of a top-level navigation that another site started (a link or
// a script's location change on evil.example).
var crossSiteNav = []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}

var confirmFormRE = regexp.MustCompile(`<form id="logout-form" method="post" action="([^"]*)">\s*<input type="hidden" name="rd" value="([^"]*)">`)

// confirmForm finds the confirmation page's form: where it posts and the
// return URL it carries.
func confirmForm(t *testing.T, body string) (action, rd string) {
	t.Helper()
	m := confirmFormRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the answer has no sign-out confirmation form: %.600s", body)
	}
	return html.UnescapeString(m[1]), html.UnescapeString(m[2])
}

// postLogout POSTs a form to u as a browser would, without following
// redirects; headers replace the defaults.
func postLogout(t *testing.T, b *browser, u string, form url.Values, headers ...string) (*http.Response, string) {
	t.Helper()
	return sendLogout(t, b, http.MethodPost, u, form, headers...)
}

// sendLogout sends one request with b's cookies, without following
// redirects. Accept is text/html unless headers say otherwise; headers
// replace, never add to, the defaults.
func sendLogout(t *testing.T, b *browser, method, u string, form url.Values, headers ...string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	return resp, string(got)
}

// assertSignedIn fails unless b is still signed in at s and nothing was
// revoked or ended at the provider.
func assertSignedIn(t *testing.T, s *testSite, b *browser, when string) {
	t.Helper()
	if resp, body := b.api("GET", s.origin+"/api/still"); resp.StatusCode != http.StatusOK {
		t.Errorf("%s: the user was signed out: /api answered %d: %.200s", when, resp.StatusCode, body)
	}
	if n, m := s.idp.Count("revoke"), s.idp.Count("end_session"); n+m != 0 {
		t.Errorf("%s: %d revocations and %d end-session visits, want none", when, n, m)
	}
}

// assertSignedOut fails unless the logout answer sends the browser to the
// provider's end-session endpoint and the browser holds no session.
func assertSignedOut(t *testing.T, s *testSite, b *browser, resp *http.Response, body, when string) {
	t.Helper()
	if ep, _, ok := endSessionRequest(resp, body); !ok || !strings.HasPrefix(ep.String(), s.idp.Issuer()) {
		t.Errorf("%s: logout answered %d without sending the browser to the provider: %.300s", when, resp.StatusCode, body)
	}
	for _, c := range b.cookies(s.origin) {
		if isSessionCookieName(c.Name) {
			t.Errorf("%s: session cookie %s survived", when, c.Name)
		}
	}
	if resp, _ := b.api("GET", s.origin+"/api/after"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("%s: /api answered %d after logout, want 401", when, resp.StatusCode)
	}
}

// TestLogoutCrossSiteClassifies: which requests count as started by
// another site.
func TestLogoutCrossSiteClassifies(t *testing.T) {
	const host = "app.example.com"
	for _, tc := range []struct {
		name    string
		headers []string
		foreign bool
	}{
		{"no headers (curl, old clients)", nil, false},
		{"same-origin", []string{"Sec-Fetch-Site", "same-origin"}, false},
		{"none: typed or bookmarked", []string{"Sec-Fetch-Site", "none"}, false},
		{"cross-site", []string{"Sec-Fetch-Site", "cross-site"}, true},
		{"same-site sibling subdomain", []string{"Sec-Fetch-Site", "same-site", "Referer", "https://blog.example.com/post"}, true},
		{"same-site without Referer", []string{"Sec-Fetch-Site", "same-site"}, true},
		{"same-site from this host by http", []string{"Sec-Fetch-Site", "same-site", "Referer", "http://app.example.com/x"}, false},
		{"an unknown Sec-Fetch-Site", []string{"Sec-Fetch-Site", "weird"}, true},
		{"Sec-Fetch-Site wins over a foreign Referer", []string{"Sec-Fetch-Site", "same-origin", "Referer", "https://evil.example/"}, false},
		{"foreign Origin", []string{"Origin", "https://evil.example"}, true},
		{"Origin null", []string{"Origin", "null"}, true},
		{"own Origin", []string{"Origin", "https://app.example.com"}, false},
		{"own Origin, foreign Referer", []string{"Origin", "https://app.example.com", "Referer", "https://evil.example/"}, false},
		{"another port is another host", []string{"Origin", "https://app.example.com:8443"}, true},
		{"foreign Referer", []string{"Referer", "https://evil.example/page"}, true},
		{"suffix confusion", []string{"Referer", "https://app.example.com.evil.example/"}, true},
		{"userinfo trick", []string{"Referer", "https://app.example.com@evil.example/"}, true},
		{"own Referer", []string{"Referer", "https://APP.example.com/settings"}, false},
		{"unparsable Referer", []string{"Referer", "::"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "https://"+host+"/oauth2/logout", nil)
			for i := 0; i+1 < len(tc.headers); i += 2 {
				r.Header.Set(tc.headers[i], tc.headers[i+1])
			}
			if got, why := crossSiteLogout(r); got != tc.foreign {
				t.Errorf("crossSiteLogout = %v (%s), want %v", got, why, tc.foreign)
			}
		})
	}
}

// TestLogoutCrossSiteGetAsksToConfirm: a sign-out another site started by
// GET shows a page with a POST form (carrying the checked return URL, no
// token), and the user stays signed in.
func TestLogoutCrossSiteGetAsksToConfirm(t *testing.T) {
	s := setupSiteWith(t, siteConfig{provider: "id_token_hint on"})
	for _, tc := range []struct {
		name    string
		rd      string
		wantRD  string
		headers []string
	}{
		{"Sec-Fetch-Site cross-site", "/bye?x=1", "/bye?x=1", crossSiteNav},
		{"Sec-Fetch-Site same-site from a sibling", "/bye", "/bye",
			[]string{"Sec-Fetch-Site", "same-site", "Sec-Fetch-Mode", "navigate", "Referer", "http://blog.127.0.0.1.nip.test/"}},
		{"foreign Referer without Sec-Fetch-Site", "/bye", "/bye", []string{"Referer", "http://evil.example/page"}},
		{"foreign Origin without Sec-Fetch-Site", "/bye", "/bye", []string{"Origin", "http://evil.example"}},
		{"a foreign return URL falls back to /", "https://evil.example/", "/", crossSiteNav},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			s.login(t, b)
			s.idp.ResetCounts()
			resp, body := b.get(s.origin+"/oauth2/logout?rd="+url.QueryEscape(tc.rd), tc.headers...)
			if resp.StatusCode != http.StatusOK || len(b.hops) != 0 {
				t.Fatalf("status %d after %v, want the confirmation page (200, no redirect): %.300s", resp.StatusCode, b.hops, body)
			}
			action, rd := confirmForm(t, body)
			if action != "/oauth2/logout" || rd != tc.wantRD {
				t.Errorf("the form posts to %q with rd %q, want /oauth2/logout with %q", action, rd, tc.wantRD)
			}
			if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("the page may be framed or cached: CSP %q, Cache-Control %q", resp.Header.Get("Content-Security-Policy"), resp.Header.Get("Cache-Control"))
			}
			if m := requestIDInPage.FindStringSubmatch(body); m == nil || m[1] != "logout_confirm" {
				t.Errorf("the page shows no request id with reason logout_confirm")
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("the confirmation page sets cookies: %v", setCookieHeaders(resp))
			}
			if sess := jarSession(t, b, s.origin); strings.Contains(body, sess) || strings.Contains(body, "eyJ") {
				t.Errorf("the page carries a cookie value or a token")
			}
			assertSignedIn(t, s.testSite, b, "after the cross-site GET")
		})
	}
}

// TestLogoutCrossSiteConfirmSignsOut: the confirmation form, submitted
// from the page (a same-origin POST), signs out and keeps the return URL.
func TestLogoutCrossSiteConfirmSignsOut(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	b := newBrowser(t)
	s.login(t, b)
	_, body := b.get(s.origin+"/oauth2/logout?rd=/bye", crossSiteNav...)
	action, rd := confirmForm(t, body)
	resp, body := postLogout(t, b, s.origin+action, url.Values{"rd": {rd}},
		"Sec-Fetch-Site", "same-origin", "Sec-Fetch-Mode", "navigate", "Origin", s.origin)
	assertSignedOut(t, s, b, resp, body, "after confirming")
	if _, params, _ := endSessionRequest(resp, body); params.Get("post_logout_redirect_uri") != s.origin+"/bye" {
		t.Errorf("post_logout_redirect_uri %q, want %s/bye: rd was lost on the way", params.Get("post_logout_redirect_uri"), s.origin)
	}
	// Without Sec-Fetch-Site (a plain http site seen by a browser that
	// sends none), the form's own Origin is enough.
	s.login(t, b)
	resp, body = postLogout(t, b, s.origin+action, url.Values{"rd": {rd}}, "Origin", s.origin, "Referer", s.origin+"/oauth2/logout?rd=/bye")
	assertSignedOut(t, s, b, resp, body, "after confirming without Sec-Fetch-Site")
}

// TestLogoutCrossSiteSameOriginGetSignsOut: the site's own sign-out link,
// a typed or bookmarked URL, and clients that send no hint at all keep
// signing out by GET.
func TestLogoutCrossSiteSameOriginGetSignsOut(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	for _, tc := range []struct {
		name    string
		headers func() []string
	}{
		{"Sec-Fetch-Site same-origin", func() []string { return []string{"Sec-Fetch-Site", "same-origin", "Referer", s.origin + "/dashboard"} }},
		{"Sec-Fetch-Site none", func() []string { return []string{"Sec-Fetch-Site", "none"} }},
		{"own Referer without Sec-Fetch-Site", func() []string { return []string{"Referer", s.origin + "/dashboard"} }},
		{"no hints at all (curl)", func() []string { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			s.login(t, b)
			resp, body := sendLogout(t, b, http.MethodGet, s.origin+"/oauth2/logout?rd=/bye", nil, append([]string{"Sec-Fetch-Mode", "navigate"}, tc.headers()...)...)
			assertSignedOut(t, s, b, resp, body, tc.name)
		})
	}
}

// TestLogoutCrossSitePostRefused: a POST another site's form sends is
// refused (403, with the page for people and JSON for programs) and signs
// nobody out, whatever cookies it carries.
func TestLogoutCrossSitePostRefused(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	for _, tc := range []struct {
		name    string
		headers []string
		json    bool
	}{
		{"Sec-Fetch-Site cross-site", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Origin", "http://evil.example"}, false},
		{"foreign Origin without Sec-Fetch-Site", []string{"Origin", "http://evil.example"}, false},
		{"Origin null", []string{"Origin", "null"}, false},
		{"fetch from another site", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors", "Accept", "application/json", "Origin", "http://evil.example"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			s.login(t, b)
			s.idp.ResetCounts()
			resp, body := postLogout(t, b, s.origin+"/oauth2/logout", url.Values{"rd": {"/bye"}}, tc.headers...)
			if tc.json {
				assertJSONError(t, resp, body, http.StatusForbidden, "logout_cross_site")
			} else {
				assertHTMLError(t, resp, body, http.StatusForbidden, "logout_cross_site")
				if _, rd := confirmForm(t, body); rd != "/bye" {
					t.Errorf("the refusal's form carries rd %q, want /bye", rd)
				}
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("the refusal sets cookies: %v", setCookieHeaders(resp))
			}
			assertSignedIn(t, s, b, "after the cross-site POST")
		})
	}
	t.Run("the form at its size limit and one past it", func(t *testing.T) {
		for _, tc := range []struct {
			size   int
			status int
		}{{maxLogoutBody, http.StatusFound}, {maxLogoutBody + 1, http.StatusBadRequest}} {
			b := newBrowser(t)
			s.login(t, b)
			form := "rd=%2Fbye&pad="
			form += strings.Repeat("p", tc.size-len(form))
			req, _ := http.NewRequest(http.MethodPost, s.origin+"/oauth2/logout", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			c := *b.client
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.status == http.StatusBadRequest {
				assertHTMLError(t, resp, string(body), tc.status, "invalid_request")
				if resp, _ := b.api("GET", s.origin+"/api/still"); resp.StatusCode != http.StatusOK {
					t.Errorf("a refused oversized form signed out: /api answered %d", resp.StatusCode)
				}
				continue
			}
			assertSignedOut(t, s, b, resp, string(body), fmt.Sprintf("a %d-byte form", tc.size))
		}
	})
}

// TestLogoutCrossSiteSubresourceGetsJSON: an image or a fetch of the
// logout URL from another site is no navigation: a JSON 403 and the
// session kept.
func TestLogoutCrossSiteSubresourceGetsJSON(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "")
	for _, tc := range []struct {
		name    string
		headers []string
	}{
		{"img src", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "image", "Accept", "image/avif,image/webp,*/*"}},
		{"fetch", []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors", "Accept", "application/json", "Origin", "http://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			s.login(t, b)
			s.idp.ResetCounts()
			resp, body := sendLogout(t, b, http.MethodGet, s.origin+"/oauth2/logout", nil, tc.headers...)
			assertJSONError(t, resp, body, http.StatusForbidden, "logout_cross_site")
			assertSignedIn(t, s, b, "after "+tc.name)
		})
	}
}

// TestLogoutCrossSiteRPInitiatedLogout: confirmed on the page, the sign-out
// still ends the provider session: the ID token goes to the end-session
// endpoint by POST, and the provider sends the browser back to rd.
func TestLogoutCrossSiteRPInitiatedLogout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		provider string
		hint     bool
	}{
		{"id_token_hint by POST", "id_token_hint on", true},
		{"client_id by redirect", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := setupSiteWith(t, siteConfig{provider: tc.provider})
			b := newBrowser(t)
			s.login(t, b)
			s.idp.ResetCounts()
			_, body := b.get(s.origin+"/oauth2/logout?rd=/bye", crossSiteNav...)
			action, rd := confirmForm(t, body)
			req, _ := http.NewRequest(http.MethodPost, s.origin+action, strings.NewReader(url.Values{"rd": {rd}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			req.Header.Set("Origin", s.origin)
			resp, body := b.do(req)
			if tc.hint {
				_, fields, ok := autoPostForm(body)
				if !ok || fields.Get("id_token_hint") == "" || fields.Get("post_logout_redirect_uri") != s.origin+"/bye" {
					t.Fatalf("the confirmed logout answered %d without the end-session form with the hint and rd: %.300s", resp.StatusCode, body)
				}
				resp, _, _ = b.submitAutoPost(body)
			}
			if n := s.idp.Count("end_session"); n != 1 {
				t.Errorf("end-session endpoint visited %d times, want 1", n)
			}
			if n := s.idp.Count("revoke"); n != 1 {
				t.Errorf("%d revocations, want 1", n)
			}
			// Back at /bye, where AutoLogin signs the browser straight in.
			if resp.Request.URL.Path != "/bye" {
				t.Errorf("ended at %s, want /bye", resp.Request.URL)
			}
		})
	}
}

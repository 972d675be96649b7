package authgate

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func FuzzPendingCookie(f *testing.F) {
	cs := cookieSettings{Name: "_authgate", Path: "/", SameSite: http.SameSiteLaxMode}
	pl := &pendingLogin{State: "st", Verifier: "v", Nonce: "n", ReturnURL: "/x", Provider: "corp", Issued: 1700000000, RedirectURI: "https://app/cb"}
	value, _ := fuzzSeedCookies(f, cs.pendingPrefix()+"abc", pl)
	for _, seed := range []string{
		"",
		cs.pendingPrefix() + "abc=" + value,
		cs.pendingPrefix() + "other=" + value,
		"_authgate_login_=x; _authgate_login_a=y; _authgate_login_b=z; _authgate_login_c=; _authgate_login_d=1; _authgate_login_e=2",
		strings.Repeat("_authgate_login_x=1; ", 40),
		"_authgate=" + value,
	} {
		f.Add(seed)
	}
	codec, err := newCookieCodec([]string{fuzzCookieKey}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	gw := &gateway{sessions: &sessionManager{codec: codec, cookie: cs}}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "https://app.self.test/oauth2/callback", nil)
		r.Header.Set("Cookie", header)
		found, names := pendingLogins(gw, r)
		if len(found) != 0 {
			t.Fatalf("a pending login without the key: %+v", found[0].login)
		}
		if len(names) > len(r.Cookies()) {
			t.Fatalf("%d names from %d cookies", len(names), len(r.Cookies()))
		}
		for _, c := range r.Cookies() {
			var l pendingLogin
			if _, err := codec.decode(c.Name, c.Value, &l); err == nil {
				t.Fatalf("cookie %s opened without the key", c.Name)
			}
		}
	})
}

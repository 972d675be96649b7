package authgate

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// sessionTestManager is a cookie-session manager with two providers, corp
// and other, encrypting with sessionTestKey and opening sessionTestOtherKey
// too (a retired key).
func sessionTestManager(t *testing.T) *sessionManager {
	t.Helper()
	providers := map[string]*provider{}
	for _, name := range []string{"corp", "other"} {
		p, err := newProvider(name, ProviderConfig{
			ClientID: "app", AuthorizeURL: "http://127.0.0.1:9/authorize", TokenURL: "http://127.0.0.1:9/token",
		}, zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		providers[name] = p
	}
	cs, err := newCookieSettings(nil)
	if err != nil {
		t.Fatal(err)
	}
	return newSessionManager(sessionTestCodec(t, sessionTestKey, sessionTestOtherKey), cs, time.Hour, providers, nil, sessionCacheSize)
}

// sessionTestCookies is the request a browser sends back after rec.
func sessionTestCookies(rec *httptest.ResponseRecorder) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://app.test/", nil)
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge >= 0 {
			r.AddCookie(c)
		}
	}
	return r
}

func newSessionTestSession(provider string, created time.Time) *Session {
	return &Session{
		Version: sessionVersion, ID: randomString(16), Provider: provider, Created: created.Unix(),
		RefreshToken: "rt", Claims: map[string]any{"sub": "u-1", "email": "u@example.test", "groups": []any{"a"}},
	}
}

// TestSessionManager: what writeSession writes, sessionFor reads back as
// the same user; everything else is no session, and the cookies that can
// never work are cleared on the way.
func TestSessionManager(t *testing.T) {
	m := sessionTestManager(t)
	corp := []*provider{m.providers["corp"]}

	t.Run("written then read", func(t *testing.T) {
		rec := httptest.NewRecorder()
		s := newSessionTestSession("corp", timeNow())
		if err := m.writeSession(rec, httptest.NewRequest(http.MethodGet, "http://app.test/", nil), s); err != nil {
			t.Fatal(err)
		}
		r := sessionTestCookies(rec)
		sc := scanSessionCookie(r, m.cookie.Name)
		w := httptest.NewRecorder()
		e, err := m.sessionFor(w, r, &sc, corp)
		if err != nil {
			t.Fatal(err)
		}
		if e.identity.ID != "u-1" || e.identity.Email != "u@example.test" || e.provider != m.providers["corp"] || e.oldKey {
			t.Errorf("read back %+v with provider %v, oldKey %v", e.identity, e.provider.name, e.oldKey)
		}
		if len(w.Result().Cookies()) != 0 {
			t.Error("reading a good session wrote cookies")
		}
	})

	t.Run("another provider's session is left for its site", func(t *testing.T) {
		rec := httptest.NewRecorder()
		if err := m.writeSession(rec, httptest.NewRequest(http.MethodGet, "http://app.test/", nil), newSessionTestSession("other", timeNow())); err != nil {
			t.Fatal(err)
		}
		r := sessionTestCookies(rec)
		sc := scanSessionCookie(r, m.cookie.Name)
		w := httptest.NewRecorder()
		if _, err := m.sessionFor(w, r, &sc, corp); !errors.Is(err, errNoSession) {
			t.Fatalf("sessionFor = %v, want errNoSession", err)
		}
		if len(w.Result().Cookies()) != 0 {
			t.Error("the other site's session cookie was cleared")
		}
	})

	for _, tt := range []struct {
		name   string
		cookie func(t *testing.T) string
		want   error
	}{
		{"past the session lifetime", func(t *testing.T) string {
			v, err := m.codec.encode(m.cookie.Name, newSessionTestSession("corp", timeNow().Add(-2*time.Hour)))
			if err != nil {
				t.Fatal(err)
			}
			return m.cookie.Name + "=" + v
		}, errSessionExpired},
		{"tampered", func(t *testing.T) string {
			v, err := m.codec.encode(m.cookie.Name, newSessionTestSession("corp", timeNow()))
			if err != nil {
				t.Fatal(err)
			}
			return m.cookie.Name + "=" + v[:len(v)-4] + "AAAA"
		}, errBadSession},
		{"a chunk without chunk 0", func(*testing.T) string { return m.cookie.Name + "_1=abc" }, errNoSession},
		{"an unknown provider", func(t *testing.T) string {
			v, err := m.codec.encode(m.cookie.Name, newSessionTestSession("gone", timeNow()))
			if err != nil {
				t.Fatal(err)
			}
			return m.cookie.Name + "=" + v
		}, errBadSession},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://app.test/", nil)
			r.Header.Set("Cookie", tt.cookie(t)+"; theme=dark")
			sc := scanSessionCookie(r, m.cookie.Name)
			w := httptest.NewRecorder()
			if _, err := m.sessionFor(w, r, &sc, corp); !errors.Is(err, tt.want) {
				t.Fatalf("sessionFor = %v, want %v", err, tt.want)
			}
			var cleared []string
			for _, c := range w.Result().Cookies() {
				if c.MaxAge < 0 {
					cleared = append(cleared, c.Name)
				}
			}
			if len(cleared) != 1 || !strings.HasPrefix(cleared[0], m.cookie.Name) {
				t.Errorf("cleared %v, want the one session cookie (and never theme)", cleared)
			}
		})
	}

	t.Run("a retired key's cookie is read and marked for re-encoding", func(t *testing.T) {
		old := sessionTestCodec(t, sessionTestOtherKey)
		v, err := old.encode(m.cookie.Name, newSessionTestSession("corp", timeNow()))
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "http://app.test/", nil)
		r.Header.Set("Cookie", m.cookie.Name+"="+v)
		sc := scanSessionCookie(r, m.cookie.Name)
		e, err := m.sessionFor(httptest.NewRecorder(), r, &sc, corp)
		if err != nil || !e.oldKey {
			t.Fatalf("sessionFor = %v, oldKey %v; want the session, marked", err, e != nil && e.oldKey)
		}
	})
}

// TestSealedSession: a sealed session writes the value it was sealed
// with on every response, resolves to one entry, and that value is a
// cache hit; a copy of it (what a refresh starts from) is not sealed.
func TestSealedSession(t *testing.T) {
	m := sessionTestManager(t)
	s := newSessionTestSession("corp", timeNow())
	m.seal(s, httptest.NewRequest(http.MethodGet, "http://app.test/", nil))
	if s.sealedFor() == nil {
		t.Fatal("not sealed")
	}
	var values []string
	var entries []*sessionEntry
	for range 3 {
		rec := httptest.NewRecorder()
		if err := m.writeCookie(rec, httptest.NewRequest(http.MethodGet, "http://app.test/", nil), s); err != nil {
			t.Fatal(err)
		}
		c := rec.Result().Cookies()
		if len(c) != 1 {
			t.Fatalf("cookies %v", c)
		}
		values = append(values, c[0].Value)
		e, err := m.resolve(s, false)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	if values[0] != values[1] || values[1] != values[2] || entries[0] != entries[1] || entries[1] != entries[2] {
		t.Error("the responses sharing one sealed session wrote different cookies or entries")
	}
	if e, ok := m.cache.get(kindCookie, values[0]); !ok || e != entries[0] {
		t.Error("the sealed cookie is not a cache hit")
	}
	if e, err := m.resolve(s, true); err != nil || e == entries[0] || !e.oldKey {
		t.Errorf("a cookie of a retired key must get its own entry: %v", err)
	}
	cp := *s
	cp.RefreshToken = "another"
	if cp.sealedFor() != nil {
		t.Error("a copy of a sealed session took its seal")
	}
	if v, err := m.cookieValue(&cp, m.cookie.Name); err != nil || v == values[0] {
		t.Errorf("the copy wrote the original's cookie (%v)", err)
	}
}

// TestRefreshWaitersShareOneCookie: the requests that share one refresh
// (concurrent ones, by single flight, and later ones with the old cookie,
// by the grace table) are answered with the same cookie, encoded once,
// and it works on the next request.
func TestRefreshWaitersShareOneCookie(t *testing.T) {
	s := setupSite(t, testidp.Options{RotateRefreshTokens: true, AccessTokenTTL: 5 * time.Minute}, "", "")
	b := newBrowser(t)
	s.login(t, b)
	old := b.cookieHeader(s.origin)
	advanceClock(t, 5*time.Minute)
	s.idp.ResetCounts()

	sessionCookie := func(resp *http.Response) string {
		for _, c := range resp.Cookies() {
			if c.Name == "_authgate" && c.MaxAge > 0 {
				return c.Value
			}
		}
		return ""
	}
	values := map[string]int{}
	for i, r := range burst(t, s.origin+"/page", old, 6) {
		if r.status != http.StatusOK {
			t.Fatalf("request %d: status %d", i, r.status)
		}
		values[sessionCookie(r.resp)]++
	}
	late, _ := http.NewRequest(http.MethodGet, s.origin+"/late", nil)
	late.Header.Set("Cookie", old)
	resp, err := http.DefaultTransport.RoundTrip(late)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	values[sessionCookie(resp)]++
	if n := s.idp.Count("token:refresh_token"); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	if len(values) != 1 || values[""] != 0 {
		t.Fatalf("the 7 requests sharing one refresh got %d different cookies (%d without one)", len(values), values[""])
	}
	var fresh string
	for v := range values {
		fresh = v
	}
	next, _ := http.NewRequest(http.MethodGet, s.origin+"/next", nil)
	next.Header.Set("Cookie", "_authgate="+fresh)
	next.Header.Set("Accept", "application/json")
	resp, err = http.DefaultTransport.RoundTrip(next)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 0 {
		t.Errorf("the shared cookie: status %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
}

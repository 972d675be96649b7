package authgate

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// TestBackchannelLogout: with a session store, a logout token typed
// logout+jwt, with the event, no nonce, a fresh iat, an unseen jti and a
// matching sid or sub ends the sessions it names and no other; everything
// else is 400 with a log line saying why.
func TestBackchannelLogout(t *testing.T) {
	rs := startRedis(t)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	s := setupSiteWith(t, siteConfig{
		caddyGlobal: jsonLogTo(logFile),
		global:      fmt.Sprintf("session_store redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t\tkey_prefix bcl:\n\t\t}", rs.port),
		handler:     "claim_header X-Sid sid",
	})
	b1, b2 := newBrowser(t), newBrowser(t)
	sid1 := s.login(t, b1).Headers.Get("X-Sid")
	sid2 := s.login(t, b2).Headers.Get("X-Sid")
	if sid1 == "" || sid2 == "" || sid1 == sid2 {
		t.Fatalf("sids %q %q", sid1, sid2)
	}
	typed := testidp.SignHeader("typ", "logout+jwt")
	post := func(form url.Values) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, s.origin+"/oauth2/backchannel-logout", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return newBrowser(t).do(req)
	}
	token := func(sub, sid string, mut func(map[string]any), opts ...testidp.SignOpt) string {
		c := s.idp.LogoutTokenClaims("app", sub, sid)
		if mut != nil {
			mut(c)
		}
		return s.idp.SignJWT(c, append([]testidp.SignOpt{typed}, opts...)...)
	}
	signedIn := func(b *browser) bool {
		t.Helper()
		resp, _ := b.api("GET", s.origin+"/api")
		return resp.StatusCode == 200
	}
	advance := func() { advanceClock(t, 2*storeCacheTTL) } // local copies expire

	now := testNow()
	for _, tc := range []struct {
		name, token, why string
	}{
		{"typ JWT", s.idp.SignJWT(s.idp.LogoutTokenClaims("app", "alice-sub", "")), "not logout+jwt"},
		{"typ at+jwt", token("alice-sub", "", nil, testidp.SignHeader("typ", "at+jwt")), "not logout+jwt"},
		{"no events", token("alice-sub", "", func(c map[string]any) { delete(c, "events") }), "no events object"},
		{"events not an object", token("alice-sub", "", func(c map[string]any) { c["events"] = []any{backchannelEvent} }), "no events object"},
		{"another event", token("alice-sub", "", func(c map[string]any) {
			c["events"] = map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}
		}), "lacks the back-channel logout event"},
		{"event not an object", token("alice-sub", "", func(c map[string]any) { c["events"] = map[string]any{backchannelEvent: "yes"} }), "lacks the back-channel logout event"},
		{"nonce", token("alice-sub", "", func(c map[string]any) { c["nonce"] = "n" }), "carries a nonce"},
		{"no jti", token("alice-sub", "", func(c map[string]any) { delete(c, "jti") }), "has no jti"},
		{"jti a number", token("alice-sub", "", func(c map[string]any) { c["jti"] = 5 }), "jti is not a string"},
		{"neither sub nor sid", token("", "", nil), "neither sub nor sid"},
		// The exact edges are TestParseLogoutToken's; here a few seconds
		// past them, as requests take their time.
		{"iat too old", token("nobody", "", func(c map[string]any) {
			c["iat"] = now.Add(-maxLogoutTokenAge - 5*time.Second).Unix()
		}), "old"},
		{"iat too far ahead", token("nobody", "", func(c map[string]any) {
			c["iat"] = now.Add(logoutTokenLeeway + 5*time.Second).Unix()
		}), "ahead"},
		{"no iat", token("nobody", "", func(c map[string]any) { delete(c, "iat") }), "iat is missing"},
		{"bad signature", token("alice-sub", "", nil, testidp.SignWrongKey()), "verifying logout token"},
		{"another client's", token("alice-sub", "", func(c map[string]any) { c["aud"] = "someone-else" }), "verifying logout token"},
		{"expired", token("alice-sub", "", func(c map[string]any) { c["exp"] = now.Add(-time.Second).Unix() }), "verifying logout token"},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			resp, body := post(url.Values{"logout_token": {tc.token}})
			assertJSONError(t, resp, body, 400, "invalid_logout_token")
			if !logHas(t, logFile, "backchannel logout refused", tc.why) {
				t.Errorf("no log line saying %q", tc.why)
			}
		})
	}
	t.Run("refused: logout_token twice", func(t *testing.T) {
		tok := token("alice-sub", "", nil)
		resp, body := post(url.Values{"logout_token": {tok, tok}})
		assertJSONError(t, resp, body, 400, "invalid_logout_token")
	})
	t.Run("refused: a body over 64 KiB", func(t *testing.T) {
		resp, body := post(url.Values{"logout_token": {token("alice-sub", "", nil)}, "pad": {strings.Repeat("x", maxLogoutBody)}})
		assertJSONError(t, resp, body, 400, "invalid_request")
	})
	advance()
	if !signedIn(b1) || !signedIn(b2) {
		t.Fatal("a refused logout token ended a session")
	}

	t.Run("iat near the window's edges is accepted", func(t *testing.T) {
		now := testNow()
		for _, iat := range []time.Time{now.Add(-maxLogoutTokenAge + 5*time.Second), now.Add(logoutTokenLeeway - 5*time.Second)} {
			resp, body := post(url.Values{"logout_token": {token("nobody", "", func(c map[string]any) { c["iat"] = iat.Unix() })}})
			if resp.StatusCode != 200 {
				t.Errorf("iat %s: %d %s", iat.Sub(now), resp.StatusCode, body)
			}
		}
	})
	t.Run("sid with another sub ends nothing", func(t *testing.T) {
		if resp, body := post(url.Values{"logout_token": {token("bob-sub", sid1, nil)}}); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		advance()
		if !signedIn(b1) {
			t.Error("a token for another subject ended alice's session")
		}
	})
	t.Run("sid and sub end that session only; a replay is refused", func(t *testing.T) {
		tok := token("alice-sub", sid1, nil)
		if resp, body := post(url.Values{"logout_token": {tok}}); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		advance()
		if signedIn(b1) {
			t.Error("the session named by sid survived")
		}
		if !signedIn(b2) {
			t.Error("the other session was ended too")
		}
		resp, body := post(url.Values{"logout_token": {tok}})
		assertJSONError(t, resp, body, 400, "invalid_logout_token")
		if !logHas(t, logFile, "backchannel logout refused", "replayed") {
			t.Error("no log line for the replay")
		}
	})
	t.Run("sub alone ends every session of the subject", func(t *testing.T) {
		if resp, body := post(url.Values{"logout_token": {token("alice-sub", "", nil)}}); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		advance()
		if signedIn(b2) {
			t.Error("the subject's session survived")
		}
	})
	t.Run("without a session store: 501", func(t *testing.T) {
		plain := setupSite(t, testidp.Options{}, "", "")
		req, _ := http.NewRequest(http.MethodPost, plain.origin+"/oauth2/backchannel-logout",
			strings.NewReader(url.Values{"logout_token": {"x"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, body := newBrowser(t).do(req)
		assertJSONError(t, resp, body, http.StatusNotImplemented, "no_session_store")
	})
}

// unsignedJWT builds a compact JWS with the given header and claims and a
// junk signature, for the checks that come before the signature's.
func unsignedJWT(header, claims any) string {
	enc := func(v any) string {
		var b []byte
		if s, ok := v.(string); ok {
			b = []byte(s)
		} else {
			b, _ = json.Marshal(v)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(claims) + ".c2ln"
}

func TestParseLogoutToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	good := func(mut func(map[string]any)) map[string]any {
		c := map[string]any{"iss": "https://op", "aud": "app", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
			"jti": "j1", "sub": "alice", "events": map[string]any{backchannelEvent: map[string]any{}}}
		if mut != nil {
			mut(c)
		}
		return c
	}
	typed := map[string]any{"alg": "RS256", "typ": "logout+jwt"}
	for _, tc := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"typed", unsignedJWT(typed, good(nil)), true},
		{"no typ: accepted (required only when present)", unsignedJWT(map[string]any{"alg": "RS256"}, good(nil)), true},
		{"typ application/logout+jwt", unsignedJWT(map[string]any{"typ": "application/logout+jwt"}, good(nil)), true},
		{"typ JWT", unsignedJWT(map[string]any{"typ": "JWT"}, good(nil)), false},
		{"typ null", unsignedJWT(`{"typ":null}`, good(nil)), false},
		{"typ a number", unsignedJWT(`{"typ":1}`, good(nil)), false},
		{"header not JSON", unsignedJWT(`nope`, good(nil)), false},
		{"header an array", unsignedJWT(`[]`, good(nil)), false},
		{"claims an array", unsignedJWT(typed, `[]`), false},
		{"claims with trailing data", unsignedJWT(typed, `{"jti":"x"} {}`), false},
		{"sid only", unsignedJWT(typed, good(func(c map[string]any) { delete(c, "sub"); c["sid"] = "s" })), true},
		{"sub a number", unsignedJWT(typed, good(func(c map[string]any) { c["sub"] = 5 })), false},
		{"empty event object", unsignedJWT(typed, good(nil)), true},
		{"event null", unsignedJWT(typed, good(func(c map[string]any) { c["events"] = map[string]any{backchannelEvent: nil} })), false},
		{"nonce null", unsignedJWT(typed, good(func(c map[string]any) { c["nonce"] = nil })), false},
		{"iat a string", unsignedJWT(typed, good(func(c map[string]any) { c["iat"] = "1800000000" })), false},
		{"iat exactly the window old", unsignedJWT(typed, good(func(c map[string]any) { c["iat"] = now.Add(-maxLogoutTokenAge).Unix() })), true},
		{"iat one second more", unsignedJWT(typed, good(func(c map[string]any) { c["iat"] = now.Add(-maxLogoutTokenAge - time.Second).Unix() })), false},
		{"iat exactly the leeway ahead", unsignedJWT(typed, good(func(c map[string]any) { c["iat"] = now.Add(logoutTokenLeeway).Unix() })), true},
		{"iat one second more ahead", unsignedJWT(typed, good(func(c map[string]any) { c["iat"] = now.Add(logoutTokenLeeway + time.Second).Unix() })), false},
		{"jti at its limit", unsignedJWT(typed, good(func(c map[string]any) { c["jti"] = strings.Repeat("j", maxLogoutJTI) })), true},
		{"jti one byte over", unsignedJWT(typed, good(func(c map[string]any) { c["jti"] = strings.Repeat("j", maxLogoutJTI+1) })), false},
		{"two parts", "a.b", false},
		{"four parts", "a.b.c.d", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lt, err := parseLogoutToken(tc.token, now)
			if tc.ok != (err == nil) || (err == nil) != (lt != nil) {
				t.Fatalf("ok=%v, error %v", tc.ok, err)
			}
		})
	}
}

// FuzzLogoutToken: any string is parsed without a panic, and an accepted
// token has a jti, sub or sid, and an iat inside the window.
func FuzzLogoutToken(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	ev := map[string]any{backchannelEvent: map[string]any{}}
	for _, tok := range []string{
		unsignedJWT(map[string]any{"typ": "logout+jwt"}, map[string]any{"jti": "j", "sub": "s", "iat": now.Unix(), "events": ev}),
		unsignedJWT(map[string]any{"alg": "none"}, map[string]any{"jti": "j", "sid": "s", "iat": 1.8e9, "events": ev}),
		unsignedJWT(map[string]any{"typ": "JWT"}, map[string]any{"jti": "j", "sub": "s", "iat": now.Unix(), "events": ev, "nonce": "n"}),
		"a.b.c", "..", "", "e30.e30.e30",
	} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		lt, err := parseLogoutToken(raw, now)
		if err != nil {
			return
		}
		if lt.JTI == "" || len(lt.JTI) > maxLogoutJTI || (lt.Sub == "" && lt.SID == "") {
			t.Fatalf("accepted %+v", lt)
		}
		if now.Sub(lt.IAT) > maxLogoutTokenAge || lt.IAT.Sub(now) > logoutTokenLeeway {
			t.Fatalf("accepted iat %s", lt.IAT)
		}
	})
}

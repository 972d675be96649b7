package authgate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// logLines reads a JSON log file into records.
func logLines(t *testing.T, path string) (raw string, recs []map[string]any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			recs = append(recs, m)
		}
	}
	return string(b), recs
}

func TestLogsCarryEventsButNeverSecrets(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	port := freePort(t)
	origin := fmt.Sprintf("http://127.0.0.1:%d", port)
	idp := newIDP(t, testidp.Options{RotateRefreshTokens: true, Clients: []testidp.Client{{
		ID: "app", Secret: "app-secret-value-xyz", RedirectURIs: []string{origin + "/oauth2/callback"},
	}}})
	be := newBackend(t)
	startCaddy(t, fmt.Sprintf(`{
	%s
	log {
		output file %s
		format json
		level DEBUG
	}
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret-value-xyz
		}
	}
}
%s {
	authgate {
		deny email bob@*
	}
	reverse_proxy %s
}
# A site that passes the access token on: sessions then carry it, and
# the scan below can look for it.
http://127.0.0.1:%d {
	authgate {
		pass_access_token
	}
	respond "token passer"
}
`, globalPrelude, logFile, testKey, idp.Issuer(), origin, be.URL, freePort(t)))

	secrets := map[string]string{"session key": testKey, "client secret": "app-secret-value-xyz"}
	b := newBrowser(t)
	var code string
	b.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/oauth2/callback" {
			code = r.URL.Query().Get("code")
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	resp, body := b.get(origin + "/")
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s %v", resp.StatusCode, body, b.hops)
	}
	secrets["authorization code"] = code
	if ref := backendSaw(t, body).Headers.Get("Referer"); strings.Contains(ref, "code=") {
		t.Errorf("the backend got the callback URL as Referer: %s", ref)
	}
	for _, c := range b.cookies(origin) {
		secrets["cookie "+c.Name] = c.Value
		var sess Session
		codec, _ := newCookieCodec([]string{testKey}, time.Hour)
		if _, err := codec.decode(c.Name, c.Value, &sess); err == nil {
			secrets["refresh token"] = sess.RefreshToken
			secrets["access token"] = sess.AccessToken
			if sess.IDToken != "" {
				secrets["id token"] = sess.IDToken
			}
		}
	}
	// Refresh, a failed callback, a denial, a bearer attempt and logout.
	advanceClock(t, 6*time.Minute)
	if resp, _ := b.api("GET", origin+"/after"); resp.StatusCode != 200 {
		t.Fatalf("refresh: %d", resp.StatusCode)
	}
	for _, c := range b.cookies(origin) {
		secrets["refreshed cookie "+c.Name] = c.Value
	}
	newBrowser(t).api("GET", origin+"/oauth2/callback?code=stolen-code-123456&state=forged-state-123456")
	idp.SetUserClaims("alice", map[string]any{"email": "bob@other.test"})
	bob := newBrowser(t)
	if resp, _ := bob.get(origin + "/"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("denied user: %d", resp.StatusCode)
	}
	b.get(origin + "/oauth2/logout")

	raw, recs := logLines(t, logFile)
	for what, v := range secrets {
		if len(v) < 8 {
			t.Fatalf("test setup: %s not captured (%q)", what, v)
		}
		if strings.Contains(raw, v) {
			for _, line := range strings.Split(raw, "\n") {
				if strings.Contains(line, v) {
					t.Errorf("the log contains the %s: %.300s", what, line)
					break
				}
			}
		}
	}
	if strings.Contains(raw, "stolen-code-123456") || strings.Contains(raw, "forged-state-123456") {
		t.Error("the log contains a callback's code or state")
	}
	events := map[string]map[string]any{}
	for _, r := range recs {
		if msg, _ := r["msg"].(string); msg != "" {
			if _, seen := events[msg]; !seen {
				events[msg] = r
			}
		}
	}
	for msg, fields := range map[string][]string{
		"login started": {"provider", "request_id"},
		"login":         {"provider", "user_id", "request_id"},
		"refresh":       {"provider", "user_id", "result", "request_id"},
		"login failed":  {"reason", "request_id"},
		"denied":        {"provider", "user_id", "request_id"},
		"logout":        {"provider", "user_id", "result", "request_id"},
	} {
		rec, ok := events[msg]
		if !ok {
			t.Errorf("no %q log line", msg)
			continue
		}
		for _, f := range fields {
			if v, _ := rec[f].(string); v == "" {
				t.Errorf("%q log line lacks %s: %v", msg, f, rec)
			}
		}
	}
	if !strings.Contains(raw, "client_secret is written literally") {
		t.Error("no warning about the literal client secret")
	}
}

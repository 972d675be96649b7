package authgate

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

// health fetches /oauth2/health as a probe would.
func health(t *testing.T, origin string) (int, healthJSON, string) {
	t.Helper()
	resp, err := http.Get(origin + "/oauth2/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var h healthJSON
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("health is not JSON: %v %s", err, raw)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers: %v", resp.Header)
	}
	return resp.StatusCode, h, string(raw)
}

func TestHealthProvidersAndSecrets(t *testing.T) {
	appPort, bothPort := freePort(t), freePort(t)
	appOrigin := fmt.Sprintf("http://127.0.0.1:%d", appPort)
	bothOrigin := fmt.Sprintf("http://127.0.0.1:%d", bothPort)
	idp := newIDP(t, testidp.Options{Clients: []testidp.Client{{ID: "app", Secret: "app-secret-health",
		RedirectURIs: []string{appOrigin + "/oauth2/callback", bothOrigin + "/oauth2/callback"}}}})
	deadIssuer := fmt.Sprintf("http://127.0.0.1:%d/realms/gone", freePort(t))
	startCaddy(t, fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret-health
		}
		provider gone {
			issuer %s
			client_id app
			client_secret app-secret-health
			timeout 2s
		}
	}
}
%s {
	authgate corp
	respond "app"
}
%s {
	authgate corp gone
	respond "both"
}
`, globalPrelude, testKey, idp.Issuer(), deadIssuer, appOrigin, bothOrigin))
	// A sign-in waits for discovery, so the probes below see its result.
	if resp, body := newBrowser(t).get(appOrigin + "/"); resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	newBrowser(t).get(bothOrigin + "/oauth2/start?provider=gone")

	status, h, raw := health(t, appOrigin)
	if status != 200 || len(h.Providers) != 1 || h.Providers["corp"] != "ready" || h.Store != "ok" {
		t.Errorf("site with a ready provider: %d %s", status, raw)
	}
	status, h, raw = health(t, bothOrigin)
	if status != http.StatusServiceUnavailable || h.Providers["corp"] != "ready" || h.Providers["gone"] != "unready: not reachable" {
		t.Errorf("site needing an unreachable provider: %d %s", status, raw)
	}
	for _, secret := range []string{"app-secret-health", testKey, idp.Issuer(), deadIssuer, "alice"} {
		if strings.Contains(raw, secret) {
			t.Errorf("health shows %q: %s", secret, raw)
		}
	}
	resp, err := http.Post(appOrigin+"/oauth2/health", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func TestHealthProviderRecovers(t *testing.T) {
	s := setupSiteWith(t, siteConfig{beforeStart: func(idp *testidp.Server) {
		idp.SetFault("discovery", testidp.Fault{Kind: testidp.FaultStatus500HTML})
	}})
	if resp, _ := newBrowser(t).get(s.origin + "/"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("login while discovery fails: %d", resp.StatusCode)
	}
	if status, h, raw := health(t, s.origin); status != 503 || !strings.HasPrefix(h.Providers["corp"], "unready: ") {
		t.Fatalf("%d %s", status, raw)
	}
	s.idp.ClearFaults()
	advanceClock(t, discoveryRetry+time.Second)
	if resp, body := newBrowser(t).get(s.origin + "/"); resp.StatusCode != 200 {
		t.Fatalf("login after recovery: %d %s", resp.StatusCode, body)
	}
	if status, _, raw := health(t, s.origin); status != 200 {
		t.Errorf("after recovery: %d %s", status, raw)
	}
}

func TestHealthStoreDown(t *testing.T) {
	rs := startRedis(t)
	s := setupSiteWith(t, siteConfig{global: fmt.Sprintf("session_store redis {\n\t\t\taddress 127.0.0.1:%d\n\t\t\ttimeout 500ms\n\t\t}", rs.port)})
	newBrowser(t).get(s.origin + "/")
	if status, h, raw := health(t, s.origin); status != 200 || h.Store != "ok" {
		t.Fatalf("%d %s", status, raw)
	}
	rs.proc.stop()
	status, h, raw := health(t, s.origin)
	if status != http.StatusServiceUnavailable || h.Store != "unavailable" || h.Providers["corp"] != "ready" {
		t.Errorf("Redis down: %d %s", status, raw)
	}
	if strings.Contains(raw, fmt.Sprint(rs.port)) {
		t.Errorf("health names the store's address: %s", raw)
	}
}

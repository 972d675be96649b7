package authgate

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testidp"
)

func TestHeaderOff(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "header groups off\n\t\theader user X-Remote-User")
	b := newBrowser(t)
	resp, body := b.get(s.origin+"/", "X-Forwarded-Groups", "forged", "X-Forwarded-User", "forged")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	saw := backendSaw(t, body)
	if v := saw.Headers.Values("X-Forwarded-Groups"); len(v) != 0 {
		t.Errorf("groups header sent or forged copy kept: %q", v)
	}
	if saw.Headers.Get("X-Remote-User") != "alice-sub" || saw.Headers.Get("X-Forwarded-User") != "" {
		t.Errorf("renamed user header: X-Remote-User %q, X-Forwarded-User %q", saw.Headers.Get("X-Remote-User"), saw.Headers.Get("X-Forwarded-User"))
	}
	if saw.Headers.Get("X-Placeholder-User") != "alice-sub" {
		t.Error("placeholders must not depend on the headers")
	}
}

// TestHopByHopIdentityHeaders: a proxy drops every header the Connection
// header names, and Caddy's reverse_proxy does so after authgate set the
// identity headers. A client listing them must not take them away from
// the backend (which would see no groups, and a deny rule on a group fail
// open); the other tokens it lists stay hop-by-hop.
func TestHopByHopIdentityHeaders(t *testing.T) {
	s := setupSite(t, testidp.Options{}, "", "claim_header X-Forwarded-Name name\n\t\theader email X-Remote-Email")
	b := newBrowser(t)
	s.login(t, b)
	want := map[string]string{
		"X-Forwarded-User":               "alice-sub",
		"X-Remote-Email":                 "alice@example.test",
		"X-Forwarded-Preferred-Username": "alice",
		"X-Forwarded-Groups":             "admins,staff",
		"X-Forwarded-Name":               "Alice Example",
		"X-Placeholder-User":             "alice-sub", // header_up: set after the drop
	}
	for _, tc := range []struct {
		name string
		conn []string
	}{
		{"the groups header", []string{"X-Forwarded-Groups"}},
		{"lower case", []string{"x-forwarded-groups, x-hop"}},
		{"every identity header", []string{"X-Forwarded-User, X-FORWARDED-GROUPS,X-Forwarded-Preferred-Username,x-remote-email, X-Forwarded-Name"}},
		{"among other tokens", []string{"keep-alive, X-Forwarded-Groups, X-Hop"}},
		{"separated by spaces", []string{"X-Forwarded-Groups X-Forwarded-User\tX-Hop"}},
		{"in several lines", []string{"X-Hop", "X-Forwarded-Groups"}},
		{"a header_up header", []string{"X-Placeholder-User, X-Forwarded-Groups"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := []string{"X-Hop", "hop-by-hop", "X-Forwarded-Groups", "forged"}
			for _, line := range tc.conn {
				headers = append(headers, "Connection", line)
			}
			resp, body := b.get(s.origin+"/x", headers...)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			saw := backendSaw(t, body)
			for h, v := range want {
				if got := saw.Headers.Values(h); len(got) != 1 || got[0] != v {
					t.Errorf("Connection: %s: the backend got %s %q, want %q", tc.conn, h, got, v)
				}
			}
			if strings.Contains(strings.ToLower(strings.Join(tc.conn, ",")), "x-hop") && saw.Headers.Get("X-Hop") != "" {
				t.Errorf("Connection: %s: X-Hop reached the backend: the other tokens must stay", tc.conn)
			}
		})
	}
}

// TestHopByHopAssertionHeader: the site's own assertion header is not
// stripped on the way in (it is replaced), but listing it in Connection
// must not take it away either.
func TestHopByHopAssertionHeader(t *testing.T) {
	s := setupSiteWith(t, siteConfig{
		caddyGlobal: "storage file_system " + t.TempDir(),
		handler:     "assertion_header X-App-Assertion",
	})
	b := newBrowser(t)
	s.login(t, b)
	resp, body := b.get(s.origin+"/x", "Connection", "X-App-Assertion, close")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := backendSaw(t, body).Headers.Values("X-App-Assertion"); len(got) != 1 || strings.Count(got[0], ".") != 2 {
		t.Errorf("the backend got X-App-Assertion %q, want the signed assertion", got)
	}
}

// TestHopByHopThroughForwardAuth: behind forward_auth the request to the
// backend never passes authgate, so the identity headers copy_headers set
// go the same way unless the app site takes them out of the client's
// Connection header with the README's request_header line.
func TestHopByHopThroughForwardAuth(t *testing.T) {
	authPort, appPort := freePort(t), freePort(t)
	authOrigin := fmt.Sprintf("http://127.0.0.1:%d", authPort)
	appOrigin := fmt.Sprintf("http://127.0.0.1:%d", appPort)
	idp := newIDP(t, testidp.Options{}, authOrigin+"/oauth2/callback")
	be := newBackend(t)
	config := func(guard string) string {
		return fmt.Sprintf(`{
	%s
	authgate {
		session_keys %s
		auth_host 127.0.0.1:%d
		allowed_redirect_domains 127.0.0.1
		provider corp {
			issuer %s
			client_id app
			client_secret app-secret
		}
	}
}
%s {
	authgate
	respond "auth service" 404
}
%s {
	%s
	forward_auth 127.0.0.1:%d {
		uri /oauth2/auth
		copy_headers X-Forwarded-User X-Forwarded-Email X-Forwarded-Preferred-Username X-Forwarded-Groups
	}
	reverse_proxy %s
}
`, globalPrelude, testKey, authPort, idp.Issuer(), authOrigin, appOrigin, guard, authPort, be.URL)
	}
	groupsSeen := func(b *browser, conn string) []string {
		t.Helper()
		resp, body := b.get(appOrigin+"/x", "Connection", conn, "X-Hop", "hop-by-hop")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		saw := backendSaw(t, body)
		if strings.Contains(strings.ToLower(conn), "x-hop") && saw.Headers.Get("X-Hop") != "" {
			t.Errorf("Connection: %s: X-Hop reached the backend: the other tokens must stay", conn)
		}
		return saw.Headers.Values("X-Forwarded-Groups")
	}

	startCaddy(t, config(""))
	b := newBrowser(t)
	mustGet(t, b, appOrigin+"/")
	if got := groupsSeen(b, "X-Forwarded-Groups, X-Hop"); len(got) != 0 {
		t.Logf("Caddy no longer drops the copied headers a client names in Connection (%q): the README's request_header line may go", got)
	}

	startCaddy(t, config(forwardAuthConnectionGuard))
	for _, conn := range []string{"X-Forwarded-Groups", "x-forwarded-groups, X-Hop", "X-Hop,X-FORWARDED-GROUPS , x-forwarded-user", "keep-alive, X-Forwarded-Groups"} {
		if got := groupsSeen(b, conn); len(got) != 1 || got[0] != "admins,staff" {
			t.Errorf("Connection: %s: the backend got X-Forwarded-Groups %q, want admins,staff", conn, got)
		}
	}
}

// forwardAuthConnectionGuard is the README's line for an app site behind
// forward_auth.
const forwardAuthConnectionGuard = `request_header Connection "(?i)x-(forwarded|authgate)-[^,]*" ""`

// TestHopByHopCostsNothing: on the hot path a request without a
// Connection header, or with one naming no identity header, is left alone
// without allocating.
func TestHopByHopCostsNothing(t *testing.T) {
	f, err := newForwarder(HeaderNames{}, map[string]string{"X-Dept": "department"}, false, false, "_authgate", "/oauth2/")
	if err != nil {
		t.Fatal(err)
	}
	for _, conn := range [][]string{nil, {"keep-alive"}, {"Upgrade", "X-Hop, close"}} {
		r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		if conn != nil {
			r.Header["Connection"] = conn
		}
		before := slices.Clone(conn)
		if n := testing.AllocsPerRun(100, func() { f.stripSpoofed(r) }); n != 0 {
			t.Errorf("Connection %q: %v allocations, want 0", conn, n)
		}
		if !slices.Equal(r.Header["Connection"], before) {
			t.Errorf("Connection %q became %q", before, r.Header["Connection"])
		}
	}
	r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	r.Header["Connection"] = []string{"Upgrade, x-dept", "X-Forwarded-Groups"}
	f.stripSpoofed(r)
	if got := r.Header["Connection"]; !slices.Equal(got, []string{"Upgrade"}) {
		t.Errorf("Connection became %q, want [Upgrade]", got)
	}
	r.Header["Connection"] = []string{"X-Forwarded-User"}
	f.stripSpoofed(r)
	if got, ok := r.Header["Connection"]; ok {
		t.Errorf("Connection %q left with no token", got)
	}
}

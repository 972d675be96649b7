package authgate

import (
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

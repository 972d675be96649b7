package testidp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestSetAccessTokenExpiry(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := NewClock(t0)
	f := setup(t, Options{AutoLogin: "alice", Now: clock.Now})
	deadline := t0.Add(90 * time.Second)
	f.idp.SetAccessTokenExpiry(deadline)
	tok := f.login()
	refresh := func() map[string]any {
		t.Helper()
		st, m := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
		if st != 200 {
			t.Fatalf("refresh: %d %v", st, m)
		}
		return m
	}
	cases := []struct {
		name          string
		at            time.Time
		wantExpiresIn float64
		wantExp       time.Time
	}{
		{"90 s before", t0, 90, deadline},
		{"60 s before", t0.Add(30 * time.Second), 60, deadline},
		{"rounded down", t0.Add(30*time.Second + 500*time.Millisecond), 59, deadline},
		{"at least one second", t0.Add(89*time.Second + 500*time.Millisecond), 1, t0.Add(90*time.Second + 500*time.Millisecond)},
		{"past", t0.Add(100 * time.Second), 1, t0.Add(101 * time.Second)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock.Set(c.at)
			m := refresh()
			if m["expires_in"] != c.wantExpiresIn {
				t.Errorf("expires_in = %v, want %v", m["expires_in"], c.wantExpiresIn)
			}
			at := claimsOf(t, m["access_token"].(string))
			if at["exp"] != float64(c.wantExp.Unix()) {
				t.Errorf("exp = %v, want %d", at["exp"], c.wantExp.Unix())
			}
			id := claimsOf(t, m["id_token"].(string))
			if id["exp"] != float64(c.at.Add(5*time.Minute).Unix()) {
				t.Errorf("ID token exp = %v, want the normal lifetime", id["exp"])
			}
		})
	}

	// The token works at userinfo until the instant and not at it.
	clock.Set(t0)
	access := refresh()["access_token"].(string)
	userinfo := func() int {
		req, _ := http.NewRequest(http.MethodGet, f.idp.Issuer()+PathUserinfo, nil)
		req.Header.Set("Authorization", "Bearer "+access)
		st, _ := doJSON(t, req)
		return st
	}
	clock.Set(deadline.Add(-time.Second))
	if st := userinfo(); st != 200 {
		t.Fatalf("userinfo a second before the instant: %d", st)
	}
	clock.Set(deadline)
	if st := userinfo(); st != 401 {
		t.Fatalf("userinfo at the instant: %d", st)
	}

	// The zero time restores the normal lifetime.
	f.idp.SetAccessTokenExpiry(time.Time{})
	if m := refresh(); m["expires_in"] != float64(300) {
		t.Fatalf("after reset: expires_in %v", m["expires_in"])
	}
}

func TestFaultEvery(t *testing.T) {
	f := setup(t, Options{AutoLogin: "alice"})
	tok := f.login()
	refresh := func() int {
		st, _ := f.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
		return st
	}
	cases := []struct {
		name  string
		fault Fault
		want  string // status of consecutive refreshes, "." = 200, "x" = 503
	}{
		{"every third", Fault{Kind: FaultRaw, Status: 503, Every: 3}, "..x..x..x..x"},
		{"every third, twice", Fault{Kind: FaultRaw, Status: 503, Every: 3, Times: 2}, "..x..x......"},
		{"every request", Fault{Kind: FaultRaw, Status: 503, Every: 1, Times: 2}, "xx.........."},
		{"without Every", Fault{Kind: FaultRaw, Status: 503, Times: 2}, "xx.........."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.idp.ClearFaults()
			f.idp.SetFault("token:refresh_token", c.fault)
			var got strings.Builder
			for i := range len(c.want) {
				if i == 1 {
					// Other grant types do not count towards Every.
					f.login()
				}
				switch st := refresh(); st {
				case 200:
					got.WriteByte('.')
				case 503:
					got.WriteByte('x')
				default:
					t.Fatalf("status %d", st)
				}
			}
			if got.String() != c.want {
				t.Fatalf("got %s, want %s", got.String(), c.want)
			}
		})
	}

	// A skipped request does not fall back to the generic "token" fault.
	f.idp.ClearFaults()
	f.idp.SetFault("token", Fault{Kind: FaultRaw, Status: 500})
	f.idp.SetFault("token:refresh_token", Fault{Kind: FaultRaw, Status: 503, Every: 2})
	if st := refresh(); st != 200 {
		t.Fatalf("skipped request: %d", st)
	}
	if st := refresh(); st != 503 {
		t.Fatalf("second request: %d", st)
	}
}

package emulators

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// Identity changes at the provider, as relying-party tests need them: a
// user whose data (groups, roles, name) changes is seen at the next
// userinfo call or refresh; a user without optional claims; a short access
// lifetime; an administrator revoking every grant.

func jsonEqual(t *testing.T, got []byte, want any) bool {
	t.Helper()
	var g any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("not JSON: %v: %s", err, got)
	}
	a, _ := json.Marshal(g)
	b, _ := json.Marshal(want)
	return string(a) == string(b)
}

// changedUser is the provider's default user with one documented (or
// emulator-chosen, see each provider's comment) field changed.
func changedUser(name string) map[string]any {
	u := DefaultUser(name)
	switch name {
	case "ntpu":
		u["department"] = "電機工程學系"
	case "omniport":
		person := u["person"].(map[string]any)
		person["roles"] = []any{map[string]any{"role": "Faculty", "activeStatus": "ActiveStatus.IS_ACTIVE"}}
	case "proto":
		u["is_member"] = false
	case "chaster":
		u["name"] = "Alex Renamed"
		u["preferred_username"] = "alexrenamed"
	case "citesphere":
		u["roles"] = []any{"ROLE_USER", "ROLE_ADMIN"}
	}
	return u
}

func TestSetUserSeenAtNextUserinfo(t *testing.T) {
	for _, sp := range allSpecs() {
		t.Run(sp.name, func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			at := str(e.tokens(sp), "access_token")
			if r := e.get(sp.userPath, nil, bearerTok(at)); !jsonEqual(t, r.body, DefaultUser(sp.name)) {
				t.Fatalf("before SetUser: %s", r.body)
			}
			want, given := changedUser(sp.name), changedUser(sp.name)
			e.s.SetUser(given)
			given["mutated after SetUser"] = true // SetUser keeps its own copy
			r := e.get(sp.userPath, nil, bearerTok(at))
			if r.status != http.StatusOK || !jsonEqual(t, r.body, want) {
				t.Fatalf("same token after SetUser: %s", r)
			}
			if got := e.s.Config().User; !jsonEqual(t, mustJSON(t, got), want) {
				t.Errorf("Config().User %v", got)
			}
			e.s.SetUser(nil)
			if r := e.get(sp.userPath, nil, bearerTok(at)); !jsonEqual(t, r.body, DefaultUser(sp.name)) {
				t.Errorf("SetUser(nil) must restore the default user: %s", r.body)
			}
			if e.s.Count("rejected") != 0 {
				t.Errorf("rejections: %s", e.s.LastRejection())
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSetUserSeenOnRefresh: providers with a documented refresh grant
// answer the refreshed token's userinfo with the new data; Chaster's
// refreshed JWTs carry the new claims while the old ones keep theirs.
func TestSetUserSeenOnRefresh(t *testing.T) {
	for _, sp := range allSpecs() {
		if sp.refresh == nil {
			continue
		}
		t.Run(sp.name, func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			tok := e.tokens(sp)
			want := changedUser(sp.name)
			e.s.SetUser(want)
			r := sp.refresh(e, str(tok, "refresh_token"))
			if r.status != http.StatusOK {
				t.Fatalf("refresh: %s (%s)", r, e.s.LastRejection())
			}
			tok2 := r.json(t)
			if u := e.get(sp.userPath, nil, bearerTok(str(tok2, "access_token"))); !jsonEqual(t, u.body, want) {
				t.Errorf("userinfo after refresh: %s", u.body)
			}
			if sp.name == "chaster" {
				old := jwtClaims(t, str(tok, "id_token"))
				nw := jwtClaims(t, str(tok2, "id_token"))
				at := jwtClaims(t, str(tok2, "access_token"))
				if old["name"] != "Alex Keyholder" || nw["name"] != "Alex Renamed" || at["preferred_username"] != "alexrenamed" {
					t.Errorf("claims: old id %v, new id %v, new access %v", old["name"], nw["name"], at["preferred_username"])
				}
			}
		})
	}
}

// TestNTPUNewLoginAfterSetUser: NTPU documents no refresh grant, so a
// changed user is seen at userinfo (re-validation) and by a new login,
// whose access token names the new id.
func TestNTPUNewLoginAfterSetUser(t *testing.T) {
	sp := ntpuSpec()
	e := newEnv(t, sp.ctor)
	first := jwtClaims(t, str(e.tokens(sp), "access_token"))
	u := DefaultUser("ntpu")
	u["id"] = "410999999"
	e.s.SetUser(u)
	second := jwtClaims(t, str(e.tokens(sp), "access_token"))
	if first["sub"] != "410123456" || second["sub"] != "410999999" {
		t.Errorf("sub: first %v, second %v", first["sub"], second["sub"])
	}
}

// TestUserWithoutOptionalClaims: a user map without the optional keys is
// served as it is; Chaster's tokens then lack the claims too.
func TestUserWithoutOptionalClaims(t *testing.T) {
	t.Run("chaster", func(t *testing.T) {
		sp := chasterSpec()
		e := newEnv(t, sp.ctor, func(c *Config) {
			c.User = map[string]any{"sub": "0b7e1c2a-0000-4000-8000-000000000001", "preferred_username": "minimal"}
		})
		tok := e.tokens(sp)
		for _, k := range []string{"id_token", "access_token"} {
			c := jwtClaims(t, str(tok, k))
			for _, absent := range []string{"email", "email_verified", "name", "given_name", "family_name"} {
				if _, ok := c[absent]; ok {
					t.Errorf("%s carries %s although the user has none", k, absent)
				}
			}
			if c["preferred_username"] != "minimal" {
				t.Errorf("%s preferred_username %v", k, c["preferred_username"])
			}
		}
		u := e.get(sp.userPath, nil, bearerTok(str(tok, "access_token")))
		if !jsonEqual(t, u.body, map[string]any{"sub": "0b7e1c2a-0000-4000-8000-000000000001", "preferred_username": "minimal"}) {
			t.Errorf("userinfo %s", u.body)
		}
	})
	for _, sp := range []spec{ntpuSpec(), omniportSpec(), protoSpec(), citesphereSpec()} {
		t.Run(sp.name, func(t *testing.T) {
			u := DefaultUser(sp.name)
			for _, k := range []string{"email", "department", "contactInformation", "student", "calling_name", "firstName", "lastName"} {
				delete(u, k)
			}
			e := newEnv(t, sp.ctor, func(c *Config) { c.User = u })
			at := str(e.tokens(sp), "access_token")
			if r := e.get(sp.userPath, nil, bearerTok(at)); r.status != http.StatusOK || !jsonEqual(t, r.body, u) {
				t.Errorf("userinfo %s", r)
			}
		})
	}
}

func TestSetAccessTTL(t *testing.T) {
	for _, sp := range allSpecs() {
		t.Run(sp.name, func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			long := str(e.tokens(sp), "access_token")
			e.s.SetAccessTTL(30 * time.Second)
			tok := e.tokens(sp)
			if v, ok := tok["expires_in"]; ok && v != 30.0 {
				t.Errorf("expires_in %v, want 30", v)
			}
			if sp.name == "ntpu" {
				c := jwtClaims(t, str(tok, "access_token"))
				if c["exp"].(float64)-c["iat"].(float64) != 30 {
					t.Errorf("NTPU exp-iat %v", c["exp"].(float64)-c["iat"].(float64))
				}
			}
			short := str(tok, "access_token")
			e.clk.Advance(29 * time.Second)
			if r := e.get(sp.userPath, nil, bearerTok(short)); r.status != http.StatusOK {
				t.Fatalf("before expiry: %s", r)
			}
			e.clk.Advance(time.Second)
			before := e.s.Count("rejected")
			expectRejected(t, e, before, e.get(sp.userPath, nil, bearerTok(short)), http.StatusUnauthorized)
			if r := e.get(sp.userPath, nil, bearerTok(long)); r.status != http.StatusOK {
				t.Errorf("a token issued before SetAccessTTL keeps its lifetime: %s", r)
			}
			if sp.refresh != nil {
				r := sp.refresh(e, str(tok, "refresh_token"))
				if r.status != http.StatusOK {
					t.Fatalf("refresh after expiry: %s (%s)", r, e.s.LastRejection())
				}
				if v, ok := r.json(t)["expires_in"]; ok && v != 30.0 {
					t.Errorf("refreshed expires_in %v", v)
				}
			}
			e.s.SetAccessTTL(0)
			if v, ok := e.tokens(sp)["expires_in"]; ok && v == 30.0 {
				t.Errorf("SetAccessTTL(0) must restore the provider default")
			}
		})
	}
}

func TestRevokeAll(t *testing.T) {
	for _, sp := range allSpecs() {
		t.Run(sp.name, func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			tok := e.tokens(sp)
			pending := e.code(sp)
			e.s.RevokeAll()
			at, rt := str(tok, "access_token"), str(tok, "refresh_token")
			before := e.s.Count("rejected")
			expectRejected(t, e, before, e.get(sp.userPath, nil, bearerTok(at)), http.StatusUnauthorized)
			if !e.s.IsRevoked(at) || !e.s.IsRevoked(rt) {
				t.Errorf("IsRevoked false after RevokeAll")
			}
			if sp.refresh != nil {
				before = e.s.Count("rejected")
				if r := sp.refresh(e, rt); r.status == http.StatusOK || e.s.Count("rejected") != before+1 {
					t.Errorf("refresh after RevokeAll: %s", r)
				}
			}
			before = e.s.Count("rejected")
			if r := sp.exchange(e, pending); r.status == http.StatusOK || e.s.Count("rejected") != before+1 {
				t.Errorf("a code issued before RevokeAll was exchanged: %s", r)
			}
			// The user can sign in again.
			at2 := str(e.tokens(sp), "access_token")
			if r := e.get(sp.userPath, nil, bearerTok(at2)); r.status != http.StatusOK {
				t.Errorf("new login after RevokeAll: %s", r)
			}
		})
	}
}

func TestRevokeOne(t *testing.T) {
	for _, sp := range allSpecs() {
		t.Run(sp.name, func(t *testing.T) {
			e := newEnv(t, sp.ctor)
			tok := e.tokens(sp)
			at := str(tok, "access_token")
			if e.s.Revoke("no-such-token") {
				t.Error("Revoke of an unknown token reported true")
			}
			if !e.s.Revoke(at) || !e.s.IsRevoked(at) {
				t.Fatal("Revoke of an issued token")
			}
			before := e.s.Count("rejected")
			expectRejected(t, e, before, e.get(sp.userPath, nil, bearerTok(at)), http.StatusUnauthorized)
			if sp.refresh != nil {
				if r := sp.refresh(e, str(tok, "refresh_token")); r.status != http.StatusOK {
					t.Errorf("the refresh token survives the revocation of its access token: %s (%s)", r, e.s.LastRejection())
				}
			}
		})
	}
}

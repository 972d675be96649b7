package authgate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseIntrospection(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name string
		body string
		want error // nil: accepted
	}{
		{"active bearer", `{"active":true,"token_type":"Bearer","sub":"a","aud":"app","exp":1800000060}`, nil},
		{"aud as array", `{"active":true,"token_type":"bearer","sub":"a","aud":["x","app"]}`, nil},
		{"Keycloak typ", `{"active":true,"typ":"Bearer","sub":"a"}`, nil},
		{"Hydra token_use", `{"active":true,"token_use":"access_token","sub":"a"}`, nil},
		{"inactive", `{"active":false}`, errTokenInactive},
		{"active missing", `{"sub":"a"}`, errProviderBadResponse},
		{"active a string", `{"active":"true","token_type":"Bearer"}`, errProviderBadResponse},
		{"active a number", `{"active":1,"token_type":"Bearer"}`, errProviderBadResponse},
		{"no kind", `{"active":true,"sub":"a"}`, errTokenNotAccess},
		{"refresh token", `{"active":true,"token_type":"refresh_token"}`, errTokenNotAccess},
		{"Keycloak refresh", `{"active":true,"token_type":"Bearer","typ":"Refresh"}`, errTokenNotAccess},
		{"DPoP", `{"active":true,"token_type":"DPoP"}`, errTokenNotAccess},
		{"token_type a number", `{"active":true,"token_type":1}`, errProviderBadResponse},
		{"exp now", `{"active":true,"token_type":"Bearer","exp":1800000000}`, errTokenTime},
		{"exp a second ahead", `{"active":true,"token_type":"Bearer","exp":1800000001}`, nil},
		{"exp a string", `{"active":true,"token_type":"Bearer","exp":"1800000060"}`, errProviderBadResponse},
		{"exp huge", `{"active":true,"token_type":"Bearer","exp":1e300}`, nil},
		{"exp negative", `{"active":true,"token_type":"Bearer","exp":-5}`, errTokenTime},
		{"nbf within the leeway", `{"active":true,"token_type":"Bearer","nbf":1800000060}`, nil},
		{"nbf past the leeway", `{"active":true,"token_type":"Bearer","nbf":1800000061}`, errTokenTime},
		{"aud a number", `{"active":true,"token_type":"Bearer","aud":5}`, errProviderBadResponse},
		{"aud null", `{"active":true,"token_type":"Bearer","aud":null}`, errProviderBadResponse},
		{"aud with a number", `{"active":true,"token_type":"Bearer","aud":["a",5]}`, errProviderBadResponse},
		{"client_id a number", `{"active":true,"token_type":"Bearer","client_id":5}`, errProviderBadResponse},
		{"not JSON", `<html>`, errProviderBadResponse},
		{"an array", `[{"active":true}]`, errProviderBadResponse},
		{"null", `null`, errProviderBadResponse},
		{"two objects", `{"active":true,"token_type":"Bearer"}{"active":false}`, errProviderBadResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := parseIntrospection([]byte(tc.body), now)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == nil && in == nil:
				t.Fatal("nil answer")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
	in, err := parseIntrospection([]byte(`{"active":true,"token_type":"Bearer","aud":["x","app"],"client_id":"c","iss":"i","exp":1800000060}`), now)
	if err != nil || fmt.Sprint(in.Audience) != "[x app]" || in.ClientID != "c" || in.Issuer != "i" || !in.Expiry.Equal(now.Add(time.Minute)) {
		t.Errorf("parsed %+v, %v", in, err)
	}
}

// FuzzIntrospectionResponse: any answer is parsed without a panic, and an
// accepted one is active, says it is an access token, and holds at now.
func FuzzIntrospectionResponse(f *testing.F) {
	for _, s := range []string{
		`{"active":true,"token_type":"Bearer","sub":"a","aud":"app","exp":1800000060}`,
		`{"active":true,"typ":"Bearer","aud":["a","b"],"nbf":1799999999,"client_id":"c","iss":"https://i"}`,
		`{"active":false}`, `{"active":"true"}`, `{"active":true,"exp":1e308}`, `[]`, `null`, `{"active":true,"token_use":"access_token","exp":-1}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := parseIntrospection(body, now)
		if err != nil {
			if in != nil {
				t.Fatal("an answer with an error")
			}
			return
		}
		var raw map[string]any
		if json.Unmarshal(body, &raw) != nil || raw["active"] != true {
			t.Fatalf("accepted an answer that is not active: %q", body)
		}
		if !in.Expiry.IsZero() && !now.Before(in.Expiry) {
			t.Fatalf("accepted an expired answer: %q", body)
		}
		if tt, ok := raw["token_type"].(string); ok && !strings.EqualFold(tt, "bearer") && !strings.EqualFold(tt, "access_token") {
			t.Fatalf("accepted token_type %q", tt)
		}
	})
}

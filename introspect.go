package authgate

// RFC 7662 introspection answers: what an active token must show before a
// bearer token is accepted on it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Refusals of a token by introspection: the token's fault, not the
// provider's.
var (
	// errTokenInactive: the provider says the token is not active
	// (unknown, expired, revoked, or of a disabled account).
	errTokenInactive = errors.New("token is not active")
	// errTokenNotAccess: active, but not an access token (a refresh
	// token, say), or it does not say what it is.
	errTokenNotAccess = errors.New("token is not an access token")
	// errTokenTime: exp passed or nbf still ahead.
	errTokenTime = errors.New("token is expired or not yet valid")
)

// introspection is a provider's RFC 7662 answer about an active access
// token, with the members authgate checks parsed out.
type introspection struct {
	// Claims are all members of the answer, for the claim mapping.
	Claims    map[string]any
	Audience  []string
	ClientID  string
	Issuer    string
	Expiry    time.Time // zero: the answer gives none
	NotBefore time.Time
}

// parseIntrospection reads an RFC 7662 answer. Only a JSON object whose
// active member is the boolean true, that says it is about an access token
// (token_type Bearer; or Keycloak's typ Bearer, or token_use access_token)
// and whose exp and nbf, when given, hold at now, is an active access
// token.
func parseIntrospection(body []byte, now time.Time) (*introspection, error) {
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, fmt.Errorf("introspection: not a JSON object: %w", errProviderBadResponse)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("introspection: data after the JSON object: %w", errProviderBadResponse)
	}
	active, ok := claims["active"].(bool)
	if !ok {
		return nil, fmt.Errorf("introspection: active is missing or not a boolean: %w", errProviderBadResponse)
	}
	if !active {
		return nil, errTokenInactive
	}
	in := &introspection{Claims: claims}
	var err error
	str := func(name string) string {
		v, present := claims[name]
		if !present || err != nil {
			return ""
		}
		s, ok := v.(string)
		if !ok {
			err = fmt.Errorf("introspection: %s is not a string: %w", name, errProviderBadResponse)
		}
		return s
	}
	in.ClientID = str("client_id")
	in.Issuer = str("iss")
	kinds := 0
	for _, k := range []string{"token_type", "typ", "token_use"} {
		v := str(k)
		if _, present := claims[k]; !present || err != nil {
			continue
		}
		switch strings.ToLower(v) {
		case "bearer", "access_token":
			kinds++
		default:
			// A refresh token, a DPoP-bound token (whose proof authgate
			// cannot check), an ID token: no bearer credential.
			return nil, fmt.Errorf("%w: %s is %q", errTokenNotAccess, k, v)
		}
	}
	if err != nil {
		return nil, err
	}
	if kinds == 0 {
		return nil, fmt.Errorf("%w: the answer has no token_type", errTokenNotAccess)
	}
	switch aud := claims["aud"].(type) {
	case nil:
		if _, present := claims["aud"]; present {
			return nil, fmt.Errorf("introspection: aud is null: %w", errProviderBadResponse)
		}
	case string:
		in.Audience = []string{aud}
	case []any:
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return nil, fmt.Errorf("introspection: aud holds a non-string: %w", errProviderBadResponse)
			}
			in.Audience = append(in.Audience, s)
		}
	default:
		return nil, fmt.Errorf("introspection: aud is neither a string nor an array: %w", errProviderBadResponse)
	}
	if in.Expiry, err = numericDate(claims, "exp", now); err != nil {
		return nil, err
	}
	if in.NotBefore, err = numericDate(claims, "nbf", now); err != nil {
		return nil, err
	}
	switch {
	case !in.Expiry.IsZero() && !now.Before(in.Expiry):
		return nil, fmt.Errorf("%w: exp %s is past", errTokenTime, in.Expiry.UTC().Format(time.RFC3339))
	case !in.NotBefore.IsZero() && now.Add(introspectionLeeway).Before(in.NotBefore):
		return nil, fmt.Errorf("%w: nbf %s is ahead", errTokenTime, in.NotBefore.UTC().Format(time.RFC3339))
	}
	return in, nil
}

// introspectionLeeway tolerates clocks a little apart for nbf.
const introspectionLeeway = time.Minute

// numericDate reads a NumericDate member (seconds since the epoch); zero
// when absent. Values beyond maxTokenLifetimeSecs from now are capped
// rather than overflowing.
func numericDate(claims map[string]any, name string, now time.Time) (time.Time, error) {
	v, present := claims[name]
	if !present {
		return time.Time{}, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, fmt.Errorf("introspection: %s is not a number: %w", name, errProviderBadResponse)
	}
	secs, err := n.Float64()
	if err != nil || secs != secs {
		return time.Time{}, fmt.Errorf("introspection: %s is not a number: %w", name, errProviderBadResponse)
	}
	limit := float64(now.Unix() + maxTokenLifetimeSecs)
	switch {
	case secs > limit:
		secs = limit
	case secs < 1:
		secs = 1 // before the epoch: long past
	}
	return time.Unix(int64(secs), 0), nil
}

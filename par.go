package authgate

// Pushed authorization requests (RFC 9126): the authorization request's
// parameters go to the provider in a POST that authenticates the client,
// and the browser carries only client_id and the request_uri it returns.
// Nothing of the request can then be read or changed in the browser, and
// providers that require it (FAPI profiles, some Keycloak realms) accept
// the login at all.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// parError is the provider's refusal of a pushed request (RFC 9126
// §2.3), with its OAuth error code.
type parError struct {
	status      int
	code        string
	description string
}

func (e *parError) Error() string {
	return fmt.Sprintf("pushed authorization request refused: status %d, error %q (%s)", e.status, e.code, e.description)
}

func (e *parError) Unwrap() error { return errProviderRejected }

// pushAuthorization pushes the parameters of authURL (the authorization
// request as authCodeURL builds it) to parURL and returns the URL to send
// the browser to.
func pushAuthorization(ctx context.Context, c *oauthClient, parURL, authURL string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("pushed authorization request: %w", err)
	}
	params := u.Query()
	clientIDName := "client_id"
	if n := c.dialect.AuthorizeParams.Rename["client_id"]; n != "" {
		clientIDName = n
	}
	resp, err := c.postForm(ctx, parURL, params)
	if err != nil {
		return "", fmt.Errorf("pushed authorization request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody))
	if err != nil {
		return "", fmt.Errorf("pushed authorization request: reading the answer: %w", errProviderDown)
	}
	if resp.StatusCode >= 500 {
		return "", fmt.Errorf("pushed authorization request: status %d: %w", resp.StatusCode, errProviderDown)
	}
	var answer struct {
		RequestURI  string          `json:"request_uri"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Error       string          `json:"error"`
		Description string          `json:"error_description"`
	}
	jsonErr := json.Unmarshal(body, &answer)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		code := answer.Error
		if jsonErr != nil || code == "" {
			code = "unknown"
		}
		return "", &parError{status: resp.StatusCode, code: oauthErrorCode(code), description: safeHeader(answer.Description)}
	}
	if jsonErr != nil || answer.RequestURI == "" || len(answer.RequestURI) > 2048 {
		return "", fmt.Errorf("pushed authorization request: no request_uri in the answer: %w", errProviderBadResponse)
	}
	front := url.Values{clientIDName: {params.Get(clientIDName)}, "request_uri": {answer.RequestURI}}
	base := c.config.Endpoint.AuthURL
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + front.Encode(), nil
}

// parErrorCode is the provider's error code of a refused pushed request,
// or "" when err is another failure.
func parErrorCode(err error) string {
	var pe *parError
	if errors.As(err, &pe) {
		return pe.code
	}
	return ""
}

// oauthErrorCode keeps a provider's error code to RFC 6749's characters
// for an error code, without spaces, and short: it goes into a log line
// and a page.
func oauthErrorCode(s string) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= 64 {
			break
		}
		if c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

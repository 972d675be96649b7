package authgate

// More of the identity from a provider's API: endpoints read after
// userinfo with the access token, their JSON merged into the claims under
// a key, for providers whose userinfo lacks what a site needs (GitHub: the
// verified email, the organizations and the teams). Plain data, so the
// same blocks serve any OAuth 2.0 API that paginates with Link headers.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
)

// ExtraUserinfo is one more endpoint of the provider's API, read at login
// with the access token. Its JSON answer is stored in the claims under
// Claim, where claim paths read it: `github_emails[primary=true,verified=true].email`.
type ExtraUserinfo struct {
	// Claim is the top-level claim the answer is stored under. It must not
	// be one the provider sends itself. Required.
	Claim string `json:"claim"`

	// URL is read with GET and `Authorization: Bearer <access token>`.
	// Required.
	URL string `json:"url"`

	// Keep lists the members kept of each object of the answer
	// (dot-separated keys, e.g. `slug` and `organization.login`); the
	// rest is dropped, so that sessions stay small: API answers carry
	// dozens of URLs per item. Default: everything is kept.
	Keep []string `json:"keep,omitempty"`

	// MaxPages bounds how many pages are read: a list answer with a
	// `Link: <…>; rel="next"` header (RFC 8288, as GitHub paginates) is
	// followed on the same origin, the pages' items concatenated. A list
	// with more pages fails the login rather than being cut short, since a
	// group missing from it could slip past a deny rule. Default: 10.
	MaxPages int `json:"max_pages,omitempty"`
}

const defaultExtraPages = 10

func (e ExtraUserinfo) maxPages() int {
	if e.MaxPages > 0 {
		return e.MaxPages
	}
	return defaultExtraPages
}

// validateExtraUserinfo checks the configuration of the extra endpoints.
func validateExtraUserinfo(extras []ExtraUserinfo) error {
	seen := map[string]bool{}
	for _, e := range extras {
		if e.Claim == "" || strings.ContainsAny(e.Claim, claimKeyStops) {
			return fmt.Errorf("userinfo_extra: claim name %q must be a plain key", e.Claim)
		}
		if seen[e.Claim] {
			return fmt.Errorf("userinfo_extra: claim %s is given twice", e.Claim)
		}
		seen[e.Claim] = true
		u, err := url.Parse(e.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("userinfo_extra %s: %q is not an http(s) URL", e.Claim, e.URL)
		}
		for _, k := range e.Keep {
			if k == "" || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
				return fmt.Errorf("userinfo_extra %s: keep %q is not a dot-separated list of keys", e.Claim, k)
			}
		}
		if e.MaxPages < 0 {
			return fmt.Errorf("userinfo_extra %s: max_pages must be positive", e.Claim)
		}
	}
	return nil
}

// addExtraUserinfo reads every extra endpoint and returns userinfo with
// their answers added under their claims (userinfo itself is not changed).
// Any failure fails the whole: an identity with half its groups is worse
// than none.
func addExtraUserinfo(ctx context.Context, hc *http.Client, extras []ExtraUserinfo, accessToken string, userinfo map[string]any) (map[string]any, error) {
	if len(extras) == 0 {
		return userinfo, nil
	}
	out := maps.Clone(userinfo)
	if out == nil {
		out = map[string]any{}
	}
	for _, e := range extras {
		v, err := fetchExtra(ctx, hc, e, accessToken)
		if err != nil {
			return nil, err
		}
		out[e.Claim] = v
	}
	return out, nil
}

// fetchExtra reads one endpoint, following its pages.
func fetchExtra(ctx context.Context, hc *http.Client, e ExtraUserinfo, accessToken string) (any, error) {
	what := "userinfo_extra " + e.Claim
	origin, err := url.Parse(e.URL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	next := origin
	var items []any
	for page := 1; ; page++ {
		if page > e.maxPages() {
			return nil, fmt.Errorf("%s: the list has more than %d pages (max_pages): %w", what, e.maxPages(), errProviderBadResponse)
		}
		v, link, err := fetchExtraPage(ctx, hc, what, next.String(), accessToken)
		if err != nil {
			return nil, err
		}
		arr, isList := v.([]any)
		if !isList {
			if page > 1 {
				return nil, fmt.Errorf("%s: page %d is not a list: %w", what, page, errProviderBadResponse)
			}
			return keepMembers(v, e.Keep), nil
		}
		for _, item := range arr {
			items = append(items, keepMembers(item, e.Keep))
		}
		if link == "" {
			return items, nil
		}
		u, err := next.Parse(link)
		if err != nil || u.Scheme != origin.Scheme || u.Host != origin.Host {
			// The access token goes only where it was configured to go.
			return nil, fmt.Errorf("%s: the next page %q is not on %s: %w", what, link, origin.Host, errProviderBadResponse)
		}
		next = u
	}
}

// fetchExtraPage reads one page: its JSON value and the Link header's
// rel="next" target, if any.
func fetchExtraPage(ctx context.Context, hc *http.Client, what, u, accessToken string) (any, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "authgate")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, classify(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody+1))
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			return nil, "", fmt.Errorf("%s: %w", what, err)
		}
		return nil, "", fmt.Errorf("%s: reading the answer: %w", what, errProviderDown)
	}
	if err := apiStatusError(what, resp); err != nil {
		return nil, "", err
	}
	if len(body) > maxProviderBody {
		return nil, "", fmt.Errorf("%s: body over %d bytes: %w", what, maxProviderBody, errProviderBadResponse)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, "", fmt.Errorf("%s: not JSON: %w", what, errProviderBadResponse)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, "", fmt.Errorf("%s: data after the JSON value: %w", what, errProviderBadResponse)
	}
	switch v.(type) {
	case []any, map[string]any:
	default:
		return nil, "", fmt.Errorf("%s: neither a list nor an object: %w", what, errProviderBadResponse)
	}
	return v, nextLink(resp.Header.Values("Link")), nil
}

// nextLink returns the target of the rel="next" link of Link header
// values (RFC 8288 §3), or "".
func nextLink(values []string) string {
	for _, h := range values {
		for h != "" {
			start := strings.IndexByte(h, '<')
			end := strings.IndexByte(h, '>')
			if start < 0 || end < start {
				break
			}
			target := h[start+1 : end]
			rest := h[end+1:]
			params := rest
			if i := strings.IndexByte(rest, '<'); i >= 0 {
				params, rest = rest[:i], rest[i:]
			} else {
				rest = ""
			}
			for p := range strings.SplitSeq(params, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
					continue
				}
				for rel := range strings.FieldsSeq(strings.Trim(strings.TrimRight(strings.TrimSpace(v), ","), `"`)) {
					if strings.EqualFold(rel, "next") {
						return target
					}
				}
			}
			h = rest
		}
	}
	return ""
}

// keepMembers returns v with only the kept members of an object (each a
// dot-separated list of keys); anything but an object, or no list, is
// returned as it is.
func keepMembers(v any, keep []string) any {
	obj, ok := v.(map[string]any)
	if !ok || len(keep) == 0 {
		return v
	}
	out := map[string]any{}
	for _, k := range keep {
		copyMember(out, obj, strings.Split(k, "."))
	}
	return out
}

func copyMember(dst, src map[string]any, path []string) {
	v, ok := src[path[0]]
	if !ok {
		return
	}
	if len(path) == 1 {
		dst[path[0]] = v
		return
	}
	sub, ok := v.(map[string]any)
	if !ok {
		return
	}
	d, _ := dst[path[0]].(map[string]any)
	if d == nil {
		d = map[string]any{}
		dst[path[0]] = d
	}
	copyMember(d, sub, path[1:])
}

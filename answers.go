package authgate

// How a provider's answers are judged: the errors a conversation with a
// provider ends in, their classification for callers and logs, and bounds
// on what an answer may claim.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"
)

// Sentinel errors of a conversation with a provider. Callers map them to
// HTTP statuses; their text is for logs only.
var (
	// errInvalidGrant: the provider refused a code or refresh token for
	// good (RFC 6749 invalid_grant); the session must end.
	errInvalidGrant = errors.New("provider rejected the grant")
	// errProviderRejected: the provider answered with another 4xx.
	errProviderRejected = errors.New("provider rejected the request")
	// errProviderDown: no answer, a 5xx, or a refused connection.
	errProviderDown = errors.New("provider unavailable")
	// errProviderTimeout: the provider did not answer in time.
	errProviderTimeout = errors.New("provider timed out")
	// errProviderBadResponse: an answer we cannot use (malformed JSON,
	// no access token, HTML where JSON was due).
	errProviderBadResponse = errors.New("provider sent an unusable response")
)

// The other half of the classification: the provider answered, and what it
// said about the user cannot be accepted (an ID token whose signature, iss,
// aud, azp, sub, at_hash or c_hash does not verify; a userinfo sub that is
// not the ID token's; a claim the site requires that is absent; an address
// not verified where it decides). Such an answer is the user's 401 or 403
// and ends the session, if any: it is never a 5xx and never retried. The
// provider failures above (unreachable, slow, 5xx, garbage) are 502/504 and
// keep what the user has. pages.go maps both to answers.
var (
	// errIdentityRefused: the provider's statement of the identity does not
	// verify or does not satisfy the site; see identityRefusal.
	errIdentityRefused = errors.New("identity refused")
	// errIdentityChanged: a later answer (refresh, userinfo re-read) is
	// about another user, issuer or client than the session's. Every
	// errIdentityChanged is an errIdentityRefused.
	errIdentityChanged = errors.New("identity at the provider changed")
)

// identityRefusal is an errIdentityRefused with the reason people and logs
// see: id_token_invalid, userinfo_mismatch, identity_changed,
// claims_missing or email_unverified. err says exactly what, for the log.
type identityRefusal struct {
	reason string
	err    error
}

func refuseIdentity(reason string, err error) error {
	return &identityRefusal{reason: reason, err: err}
}

func (e *identityRefusal) Error() string { return e.reason + ": " + e.err.Error() }

func (e *identityRefusal) Unwrap() error { return e.err }

func (e *identityRefusal) Is(target error) bool {
	return target == errIdentityRefused || target == errIdentityChanged && e.reason == "identity_changed"
}

// reasoned gives a provider failure the reason its page and log line name
// (userinfo_failed, id_token_missing, ...); it stays a provider failure.
type reasoned struct {
	reason string
	err    error
}

func withReason(reason string, err error) error { return &reasoned{reason: reason, err: err} }

func (e *reasoned) Error() string { return e.err.Error() }

func (e *reasoned) Unwrap() error { return e.err }

// reasonOf is the reason an identity refusal or a reasoned provider
// failure carries; "" for other errors.
func reasonOf(err error) string {
	var ir *identityRefusal
	if errors.As(err, &ir) {
		return ir.reason
	}
	var re *reasoned
	if errors.As(err, &re) {
		return re.reason
	}
	return ""
}

// maxTokenLifetimeSecs caps the lifetime a provider may claim for a token
// (ten years), so that huge values cannot overflow.
const maxTokenLifetimeSecs = 10 * 365 * 24 * 3600

// classify maps x/oauth2 and net/http errors onto our sentinels, keeping
// the original for the log.
func classify(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		switch {
		case re.ErrorCode == "invalid_grant":
			return fmt.Errorf("%w (status %d)", errInvalidGrant, status)
		case status >= 500:
			return fmt.Errorf("%w (status %d)", errProviderDown, status)
		case status == http.StatusOK || status == 0:
			return fmt.Errorf("%w: %v", errProviderBadResponse, err)
		default:
			return fmt.Errorf("%w (status %d, error %q)", errProviderRejected, status, re.ErrorCode)
		}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %v", errProviderTimeout, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%w: %v", errProviderDown, err)
	}
	if errors.Is(err, errInvalidGrant) || errors.Is(err, errProviderDown) || errors.Is(err, errProviderRejected) ||
		errors.Is(err, errProviderBadResponse) || errors.Is(err, errProviderTimeout) {
		return err
	}
	// x/oauth2 reports unparsable bodies and a missing access_token as
	// plain errors.
	return fmt.Errorf("%w: %v", errProviderBadResponse, err)
}

func isProviderFailure(err error) bool {
	return errors.Is(err, errProviderDown) || errors.Is(err, errProviderTimeout) ||
		errors.Is(err, errProviderBadResponse) || errors.Is(err, errProviderRejected)
}

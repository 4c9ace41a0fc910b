package matrix

import (
	"errors"
	"net/http"

	"maunium.net/go/mautrix"
)

// IsNotFound reports the homeserver's M_NOT_FOUND: no such room state,
// account data, media or event.
func IsNotFound(err error) bool { return errors.Is(err, mautrix.MNotFound) }

// IsGone reports a refusal that means a membership or invite no longer
// exists: the user already left, was kicked, or the room is gone. For a
// leave or a decline that is what was wanted anyway. Dendrite answers some
// of these with a bare 403 or 404 and no error code, so the status counts
// as much as the code.
func IsGone(err error) bool {
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) && httpErr.Response != nil {
		code := httpErr.Response.StatusCode
		return code == http.StatusForbidden || code == http.StatusNotFound
	}
	return errors.Is(err, mautrix.MForbidden) || IsNotFound(err)
}

// IsForbidden reports a 403 refusal, with or without Dendrite's M_FORBIDDEN
// code.
func IsForbidden(err error) bool {
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) && httpErr.Response != nil && httpErr.Response.StatusCode == http.StatusForbidden {
		return true
	}
	return errors.Is(err, mautrix.MForbidden)
}

// IsRefusal reports an answer from the homeserver that refuses the request
// itself: a 4xx other than 408 (timeout) and 429 (rate limit). Sending it
// again unchanged gets the same answer, unlike a network failure or a 5xx.
func IsRefusal(err error) bool {
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || httpErr.Response == nil {
		return false
	}
	code := httpErr.Response.StatusCode
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

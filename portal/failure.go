package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"maunium.net/go/mautrix"
)

// errPermanent marks failures that no retry can fix (bad stored data, an
// event the homeserver refuses as it is).
var errPermanent = errors.New("permanent failure")

// permanentCodes are homeserver error codes that say the request itself is
// wrong: sending it again gets the same answer.
var permanentCodes = map[string]bool{
	mautrix.MTooLarge.ErrCode:     true,
	mautrix.MBadJSON.ErrCode:      true,
	mautrix.MNotJSON.ErrCode:      true,
	mautrix.MForbidden.ErrCode:    true,
	mautrix.MInvalidParam.ErrCode: true,
}

// isPermanent reports whether a failure ends its event at once. Everything
// the homeserver refuses with a 4xx other than 429 (and 408, a timeout) is
// permanent; connection failures, timeouts, 5xx and rate limits are not, nor
// is anything else (a database error, say): those are retried until they
// pass, since giving up on them would lose an event to a passing outage.
func isPermanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errPermanent) {
		return true
	}
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) {
		return false
	}
	if httpErr.RespError != nil && permanentCodes[httpErr.RespError.ErrCode] {
		return true
	}
	if httpErr.Response == nil {
		// No answer at all: the connection failed.
		return false
	}
	status := httpErr.Response.StatusCode
	return status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout
}

// panicError is a panic caught while handling an event. One panic may be a
// race with something passing; the same event panicking maxPanics times in a
// row is a bug that would otherwise stop its chat for good.
type panicError struct{ value any }

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// maxPanics is how many panics in a row park an event.
const maxPanics = 3

func safely(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r}
		}
	}()
	return fn(ctx)
}

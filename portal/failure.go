package portal

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/mattn/go-sqlite3"
	"maunium.net/go/mautrix"

	"github.com/dmbridge/dmbridge/config"
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
// permanent, as is anything marked with errPermanent.
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

// isOutage reports whether a failure that is not permanent comes from the
// homeserver or the database being unreachable, overloaded or restarting.
// Such failures are retried for as long as they last: giving up on them
// would lose an event to an outage. Other failures (a file server of the
// network that does not answer, a bug) are retried maxOtherTries times
// before the event is parked, so that they cannot stop a chat for good.
func isOutage(err error) bool {
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) {
		return !isPermanent(err)
	}
	var sqlState interface{ SQLState() string }
	if errors.As(err, &sqlState) {
		switch class := (sqlState.SQLState() + "  ")[:2]; class {
		case "08", "40", "53", "57", "58":
			// Connection exception, rollback (serialization, deadlock),
			// insufficient resources, operator intervention (shutdown),
			// system error.
			return true
		}
		return false
	}
	var lite sqlite3.Error
	if errors.As(err, &lite) {
		return lite.Code == sqlite3.ErrBusy || lite.Code == sqlite3.ErrLocked || lite.Code == sqlite3.ErrIoErr
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)
}

// maxOtherTries is how often a failure that is neither permanent nor an
// outage is tried before its event is parked.
const maxOtherTries = 5

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

// outsideCause names the kind of a failure that comes from below the
// bridge: the homeserver, a network request or the database. Their texts
// carry internal addresses, request URLs with user ids, and SQL, none of
// which is for the user's room (or a provisioning client); the log has the
// whole error. "" for a failure of the bridge's own making, whose text is
// written for the user.
func outsideCause(err error) string {
	var fetch *fetchFailed
	if errors.As(err, &fetch) {
		return "" // its text already leaves out the URL and address
	}
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) {
		switch {
		case httpErr.RespError != nil && httpErr.RespError.ErrCode != "":
			return "the homeserver refused it (" + config.TruncateRunes(httpErr.RespError.ErrCode, 64) + ")"
		case httpErr.Response != nil:
			return fmt.Sprintf("the homeserver failed (HTTP %d)", httpErr.Response.StatusCode)
		}
		return "the bridge could not reach the homeserver"
	}
	var urlErr *url.Error
	var opErr *net.OpError
	if errors.As(err, &urlErr) || errors.As(err, &opErr) {
		return "a network request of the bridge failed"
	}
	var sqlState interface{ SQLState() string }
	var lite sqlite3.Error
	if errors.As(err, &sqlState) || errors.As(err, &lite) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, sql.ErrTxDone) {
		return "the bridge's database failed"
	}
	return ""
}

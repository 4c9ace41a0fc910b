package portal

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/mattn/go-sqlite3"
	"maunium.net/go/mautrix"
)

func httpErr(status int, code string) error {
	e := mautrix.HTTPError{Response: &http.Response{StatusCode: status}}
	if code != "" {
		e.RespError = &mautrix.RespError{ErrCode: code, StatusCode: status}
	}
	return fmt.Errorf("send message x part 0: %w", e)
}

// TestFailureKinds: every failure is of one kind, which decides its event's
// fate (dispatch.go): permanent ends the event at once (isPermanent), an
// outage is retried for as long as it lasts (isOutage), any other failure
// is retried maxOtherTries times.
func TestFailureKinds(t *testing.T) {
	const permanent, outage, other = "permanent", "outage", "other"
	refused := fmt.Errorf("x: %w", mautrix.HTTPError{Message: "request error", WrappedError: syscall.ECONNREFUSED})
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"413 M_TOO_LARGE", httpErr(413, "M_TOO_LARGE"), permanent},
		{"400 M_BAD_JSON", httpErr(400, "M_BAD_JSON"), permanent},
		{"400 M_NOT_JSON", httpErr(400, "M_NOT_JSON"), permanent},
		{"403 M_FORBIDDEN", httpErr(403, "M_FORBIDDEN"), permanent},
		{"404 without a code", httpErr(404, ""), permanent},
		{"bad stored data", fmt.Errorf("%w: stored event does not parse", errPermanent), permanent},
		{"429 M_LIMIT_EXCEEDED", httpErr(429, "M_LIMIT_EXCEEDED"), outage},
		{"408", httpErr(408, ""), outage},
		{"502", httpErr(502, ""), outage},
		{"500 M_UNKNOWN", httpErr(500, "M_UNKNOWN"), outage},
		{"homeserver connection refused", refused, outage},
		{"postgres shutting down", fmt.Errorf("load: %w", &pq.Error{Code: "57P01"}), outage},
		{"postgres connection failure", fmt.Errorf("load: %w", &pq.Error{Code: "08006"}), outage},
		{"sqlite busy", fmt.Errorf("load: %w", sqlite3.Error{Code: sqlite3.ErrBusy}), outage},
		{"bad connection", fmt.Errorf("load: %w", driver.ErrBadConn), outage},
		{"postgres constraint", fmt.Errorf("load: %w", &pq.Error{Code: "23505"}), other},
		{"database error", errors.New("database is locked"), other},
		{"file server refuses", fmt.Errorf("fetch: %w", &url.Error{Op: "Get", URL: "http://x", Err: syscall.ECONNREFUSED}), other},
		{"file server times out", fmt.Errorf("fetch: %w", &url.Error{Op: "Get", URL: "http://x", Err: context.DeadlineExceeded}), other},
		{"something else", errors.New("avatar has no url"), other},
	}
	for _, c := range cases {
		p, o := isPermanent(c.err), isOutage(c.err)
		got := other
		switch {
		case p && o:
			t.Errorf("%s: both permanent and an outage", c.name)
			continue
		case p:
			got = permanent
		case o:
			got = outage
		}
		if got != c.want {
			t.Errorf("%s: %s (isPermanent %v, isOutage %v), want %s", c.name, got, p, o, c.want)
		}
	}
}

func TestBackoffIsCapped(t *testing.T) {
	if d := backoff(firstRetry, 1, time.Minute); d != 500*time.Millisecond {
		t.Errorf("first wait %s, want 500ms", d)
	}
	if d := backoff(firstRetry, 4, time.Minute); d != 4*time.Second {
		t.Errorf("fourth wait %s, want 4s", d)
	}
	for _, attempt := range []int{10, 100, 1 << 20} {
		if d := backoff(firstRetry, attempt, 30*time.Second); d != 30*time.Second {
			t.Errorf("wait after %d attempts %s, want the 30s cap", attempt, d)
		}
	}
}

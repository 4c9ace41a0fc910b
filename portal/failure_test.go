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

func TestIsPermanent(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"413 M_TOO_LARGE", httpErr(413, "M_TOO_LARGE"), true},
		{"400 M_BAD_JSON", httpErr(400, "M_BAD_JSON"), true},
		{"400 M_NOT_JSON", httpErr(400, "M_NOT_JSON"), true},
		{"403 M_FORBIDDEN", httpErr(403, "M_FORBIDDEN"), true},
		{"404 without a code", httpErr(404, ""), true},
		{"429 M_LIMIT_EXCEEDED", httpErr(429, "M_LIMIT_EXCEEDED"), false},
		{"408", httpErr(408, ""), false},
		{"502", httpErr(502, ""), false},
		{"500 M_UNKNOWN", httpErr(500, "M_UNKNOWN"), false},
		{"connection refused", fmt.Errorf("x: %w", mautrix.HTTPError{Message: "request error", WrappedError: syscall.ECONNREFUSED}), false},
		{"database error", errors.New("database is locked"), false},
		{"bad stored data", fmt.Errorf("%w: stored event does not parse", errPermanent), true},
	}
	for _, c := range cases {
		if got := isPermanent(c.err); got != c.want {
			t.Errorf("%s: isPermanent = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestIsOutage(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"homeserver 502", httpErr(502, ""), true},
		{"homeserver 429", httpErr(429, "M_LIMIT_EXCEEDED"), true},
		{"homeserver connection refused", fmt.Errorf("x: %w", mautrix.HTTPError{Message: "request error", WrappedError: syscall.ECONNREFUSED}), true},
		{"homeserver 403", httpErr(403, "M_FORBIDDEN"), false},
		{"postgres shutting down", fmt.Errorf("load: %w", &pq.Error{Code: "57P01"}), true},
		{"postgres connection failure", fmt.Errorf("load: %w", &pq.Error{Code: "08006"}), true},
		{"postgres constraint", fmt.Errorf("load: %w", &pq.Error{Code: "23505"}), false},
		{"sqlite busy", fmt.Errorf("load: %w", sqlite3.Error{Code: sqlite3.ErrBusy}), true},
		{"bad connection", fmt.Errorf("load: %w", driver.ErrBadConn), true},
		{"file server refuses", fmt.Errorf("fetch: %w", &url.Error{Op: "Get", URL: "http://x", Err: syscall.ECONNREFUSED}), false},
		{"file server times out", fmt.Errorf("fetch: %w", &url.Error{Op: "Get", URL: "http://x", Err: context.DeadlineExceeded}), false},
		{"something else", errors.New("avatar has no url"), false},
	}
	for _, c := range cases {
		if got := isOutage(c.err); got != c.want {
			t.Errorf("%s: isOutage = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestBackoffIsCapped(t *testing.T) {
	if d := backoff(1, time.Minute); d != 500*time.Millisecond {
		t.Errorf("first wait %s, want 500ms", d)
	}
	if d := backoff(4, time.Minute); d != 4*time.Second {
		t.Errorf("fourth wait %s, want 4s", d)
	}
	for _, attempt := range []int{10, 100, 1 << 20} {
		if d := backoff(attempt, 30*time.Second); d != 30*time.Second {
			t.Errorf("wait after %d attempts %s, want the 30s cap", attempt, d)
		}
	}
}

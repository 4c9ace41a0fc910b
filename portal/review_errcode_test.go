package portal

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mattn/go-sqlite3"
	"maunium.net/go/mautrix"

	"github.com/dmbridge/dmbridge/connector"
)

// TestReviewConnectorErrorCodeIsBounded: the connector's reason (message)
// is cut to maxReasonRunes, but an error with a code and no message is
// shown as err.Error(), code included and unbounded. A hostile connector
// that refuses the user's message with a 200,000-character code and no
// message makes the "not delivered" notice 200 kB, which a homeserver
// refuses (65,536-byte event limit): the user is not told. The same text is
// the bot's start-chat answer and the provisioning API's error.
func TestReviewConnectorErrorCodeIsBounded(t *testing.T) {
	huge := strings.Repeat("X", 200_000)
	if got := UserMessage(&connector.Error{Code: huge}); len(got) > 4096 {
		t.Errorf("UserMessage of an error with a %d-byte code and no message is %d bytes", len(huge), len(got))
	}

	u, p := newUnitPortal(t)
	ctx := context.Background()
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if op == connector.OpSendMessage {
			return nil, &connector.Error{Code: huge}
		}
		return &connector.Result{}, nil
	}
	if err := u.m.handleMatrix(ctx, u.userMessage(t, p.RoomID, "$refused", "refused")); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, raw := range u.hs.Timeline(p.RoomID) {
		var evt struct {
			Content map[string]any `json:"content"`
		}
		_ = json.Unmarshal(raw, &evt)
		if evt.Content["msgtype"] != "m.notice" {
			continue
		}
		found = true
		if n := len(raw); n > 65536 {
			t.Errorf("the not-delivered notice is a %d-byte event; homeservers refuse events over 65,536 bytes", n)
		}
	}
	if !found {
		t.Error("no notice for the refused message")
	}
}

// TestDescribeErrorHidesWhatIsBelowTheBridge: what the user reads for each
// class of failure. Failures from the homeserver, a request or the
// database are named by kind; the bridge's own words and a fetch's
// already-cleaned text stay as they are.
func TestDescribeErrorHidesWhatIsBelowTheBridge(t *testing.T) {
	hsURL := &url.Error{Op: "Put", URL: "http://10.1.2.3:8008/_matrix/client/v3/rooms/!r/send?user_id=%40a%3Ax",
		Err: errors.New("dial tcp 10.1.2.3:8008: connect: connection refused")}
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("send: %w", mautrix.HTTPError{Message: "request error", WrappedError: hsURL}), "the bridge could not reach the homeserver"},
		{fmt.Errorf("send: %w", mautrix.HTTPError{Response: &http.Response{StatusCode: 502}, Message: "<html>10.1.2.3</html>"}), "the homeserver failed (HTTP 502)"},
		{fmt.Errorf("send: %w", mautrix.HTTPError{Response: &http.Response{StatusCode: 413},
			RespError: &mautrix.RespError{ErrCode: "M_TOO_LARGE", Err: "event at 10.1.2.3 too large"}}), "the homeserver refused it (M_TOO_LARGE)"},
		{fmt.Errorf("upload: %w", hsURL), "a network request of the bridge failed"},
		{fmt.Errorf("load portal !r: %w", sqlite3.Error{Code: sqlite3.ErrCorrupt}), "the bridge's database failed"},
		{fmt.Errorf("load portal !r: %w", sql.ErrConnDone), "the bridge's database failed"},
		{&fetchFailed{cause: hsURL}, "fetch: the file's server could not be reached"},
		{fmt.Errorf("%w: bad attachment url", errPermanent), "bad attachment url"},
		{&connector.Error{Code: "M_FORBIDDEN"}, "the network refused it"},
	}
	for _, c := range cases {
		if got := describeError(c.err); got != c.want {
			t.Errorf("describeError(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

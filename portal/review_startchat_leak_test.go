package portal

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
)

// TestReviewStartChatFailureHidesInternals: a start-chat that fails on the
// homeserver's side (here: the homeserver is unreachable when the room is
// created) is answered with UserMessage(err), which the bot posts in the
// user's room and the provisioning API returns in its body. The answer must
// not carry the homeserver's internal address and request URL, the way
// openAttachment already hides a failed fetch's URL.
func TestReviewStartChatFailureHidesInternals(t *testing.T) {
	u := newUnit(t, false)
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		return &connector.Result{Contact: &connector.Contact{ID: "carol", Name: "Carol"},
			Chat: &connector.Chat{ID: "carol", Type: connector.ChatTypeDM, With: "carol"}}, nil
	}
	// What mautrix returns when the request does not reach the homeserver.
	u.hs.Fail = func(c fakematrix.Call) error {
		if c.Method != "CreateRoom" {
			return nil
		}
		return mautrix.HTTPError{Message: "request error", WrappedError: &url.Error{Op: "Post",
			URL: "http://10.20.30.40:8008/_matrix/client/v3/createRoom?user_id=%40dm_carol%3Ax",
			Err: errors.New("dial tcp 10.20.30.40:8008: connect: connection refused")}}
	}
	_, err := u.m.StartChat(context.Background(), unitUser, "", "carol")
	if err == nil {
		t.Fatal("start-chat succeeded with the homeserver unreachable")
	}
	msg := UserMessage(err)
	t.Logf("the user reads: %s", msg)
	for _, internal := range []string{"10.20.30.40", "_matrix/client", "user_id="} {
		if strings.Contains(msg, internal) {
			t.Errorf("the answer to the user carries %q: %s", internal, msg)
		}
	}
}

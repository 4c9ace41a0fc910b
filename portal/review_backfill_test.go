package portal

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
)

// backfillUnit is a unit whose connector can backfill and answers the
// backfill command with history (oldest first).
func backfillUnit(t *testing.T, history func(cmd *connector.Command) *connector.Result) *unit {
	t.Helper()
	u := newUnit(t, false)
	u.m.cfg.Bridge.Backfill.InitialLimit = 50
	u.m.cfg.Bridge.RetryMaxDelay = config.Duration(time.Millisecond)
	u.conn.caps.Backfill = true
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if op == connector.OpBackfill {
			return history(cmd), nil
		}
		return &connector.Result{}, nil
	}
	return u
}

// sentBodies is the bodies of the message events posted, in order.
func (u *unit) sentBodies() []string {
	var out []string
	for _, c := range u.sends() {
		b, _ := c.Content["body"].(string)
		out = append(out, b)
	}
	return out
}

// TestBackfillFailureDoesNotBlockLiveMessages: one old history message
// carries an attachment whose file server answers 503. The design says the
// live message must never be held back or parked for the history; instead
// the backfill error is returned from remoteMessage, so the live message is
// retried maxOtherTries times and parked (the user gets "could not be
// bridged"), and since backfill_pending stays, every later live message of
// the chat meets the same fate.
func TestBackfillFailureDoesNotBlockLiveMessages(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	u := backfillUnit(t, func(cmd *connector.Command) *connector.Result {
		return &connector.Result{Messages: []connector.Event{
			{ID: "h1", TS: 500, Sender: &connector.Sender{ID: "bob"}, Text: "old text"},
			{ID: "h2", TS: 600, Sender: &connector.Sender{ID: "bob"},
				Attachments: []connector.Attachment{{Name: "old.png", MimeType: "image/png", URL: srv.URL + "/old.png"}}},
		}}
	})
	u.m.mediaHTTP = srv.Client() // the guard refuses loopback; the real network is not loopback

	for _, live := range []string{"m1", "m2"} {
		var parked error
		u.m.retry(context.Background(), 0, func(ctx context.Context) error {
			return u.tryRemote(fromBob(live, "live "+live))
		}, func(context.Context, error, int) error { return nil }, func(_ context.Context, err error) { parked = err })
		if parked != nil {
			t.Errorf("live message %s was parked because of an old history message: %v", live, parked)
		}
	}
	bodies := strings.Join(u.sentBodies(), "|")
	if !strings.Contains(bodies, "live m1") || !strings.Contains(bodies, "live m2") {
		t.Errorf("posted %q; want both live messages in the room", bodies)
	}
}

// archive answers backfill commands from msgs (oldest first) as a
// consistent network would: the newest limit messages before cmd.Before.
func archive(msgs ...connector.Event) func(cmd *connector.Command) *connector.Result {
	return func(cmd *connector.Command) *connector.Result {
		end := len(msgs)
		if cmd.Before != nil {
			for i := range msgs {
				if msgs[i].ID == *cmd.Before {
					end = i
				}
			}
		}
		start := max(0, end-cmd.Limit)
		return &connector.Result{Messages: append([]connector.Event(nil), msgs[start:end]...), HasMore: start > 0}
	}
}

func bobAt(id, text string, ts int64) connector.Event {
	return connector.Event{Kind: connector.KindMessage, ID: id, TS: ts, Text: text, Sender: &connector.Sender{ID: "bob"}}
}

// TestBackfillNewerThanLiveMessage: the first message of a new chat, m1, is
// applied while the network already has more than initial_limit messages
// after it (the bridge was away and the connector's events wait in the
// inbox). The newest page does not contain m1, so nothing is cut: m2 and
// m3, which are newer than m1, are posted as "history" before it (and
// marked read by the double puppet), and m1 lands below them.
func TestBackfillNewerThanLiveMessage(t *testing.T) {
	msgs := []connector.Event{bobAt("h0", "h0", 500), bobAt("m1", "m1", 1000), bobAt("m2", "m2", 2000), bobAt("m3", "m3", 3000)}
	u := backfillUnit(t, archive(msgs...))
	u.m.cfg.Bridge.Backfill.InitialLimit = 2
	for _, ev := range msgs[1:] { // the live events, in the inbox's order
		ev := ev
		u.remote(t, &ev)
	}
	got := strings.Join(u.sentBodies(), " ")
	if !strings.HasSuffix(got, "m1 m2 m3") {
		t.Errorf("room shows %q; want the live messages in their order, ending \"m1 m2 m3\"", got)
	}
}

// TestBackfillMessageOfAnotherChatIsNotRehomed: a backfill answer for the
// chat with bob carries the user's message to eve (chat eve). usableHistory
// overwrites its chat with bob's and posts it in bob's room, as if the user
// had written it to bob; when the same message reaches eve's portal live it
// is bridged a second time there (another portal key).
func TestBackfillMessageOfAnotherChatIsNotRehomed(t *testing.T) {
	eve := &connector.Chat{ID: "eve", Type: connector.ChatTypeDM, With: "eve"}
	u := backfillUnit(t, func(cmd *connector.Command) *connector.Result {
		return &connector.Result{Messages: []connector.Event{
			{Kind: connector.KindMessage, ID: "e1", TS: 500, Chat: eve, Sender: &connector.Sender{ID: unitLoginID, IsMe: true}, Text: "for eve only"},
		}}
	})
	u.remote(t, fromBob("m1", "hello"))
	if got := strings.Join(u.sentBodies(), "|"); strings.Contains(got, "for eve only") {
		t.Errorf("bob's room shows %q: a message of the chat with eve was posted as history of the chat with bob", got)
	}
}

// TestRetriedBackfillDoesNotRepostUsersPendingSend: the first backfill of a
// new portal fails for a passing reason (the portal and its room exist, the
// backfill_pending row stays: "the next message into the chat tries
// again"). Meanwhile the user writes "mine" in the room; the connector
// answers M_NETWORK (retryable; the stanza went out), so the command stays queued (Handed) without a mapping,
// although the network has it. The retried backfill gets the network's
// copy, an is_me message carrying txn "$mine"; unlike a live event it is
// not checked as an echo (recogniseEcho), so the double puppet posts the
// user's own message a second time.
func TestRetriedBackfillDoesNotRepostUsersPendingSend(t *testing.T) {
	mine := connector.Event{Kind: connector.KindMessage, ID: "net-mine", TS: 800, Txn: "$mine",
		Sender: &connector.Sender{ID: unitLoginID, IsMe: true}, Text: "mine"}
	withMine := false
	u := backfillUnit(t, func(cmd *connector.Command) *connector.Result {
		msgs := []connector.Event{bobAt("h1", "old", 500)}
		if withMine {
			msgs = append(msgs, mine)
		}
		return &connector.Result{Messages: msgs}
	})
	u.m.cfg.Bridge.RetryMaxDelay = config.Duration(time.Minute) // the command stays queued
	u.m.cfg.Bridge.InDoubtGrace = config.Duration(time.Millisecond)
	answer := u.conn.answer
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if op == connector.OpSendMessage {
			return nil, &connector.Error{Code: connector.ErrNetwork, Message: "stream broke after the stanza went out", Retryable: true}
		}
		return answer(op, cmd)
	}
	// The first try of bob's m1 fails in the history (a passing error).
	u.hs.Fail = func(c fakematrix.Call) error {
		if c.Content["body"] == "old" {
			return mautrix.HTTPError{Response: &http.Response{StatusCode: http.StatusBadGateway}, Message: "homeserver restarting"}
		}
		return nil
	}
	if err := u.tryRemote(fromBob("m1", "hello")); err == nil {
		t.Fatal("want the first backfill to fail")
	}
	u.hs.Fail = nil
	room := u.portal(t).RoomID
	u.handle(t, room, "$mine", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "mine"}})
	withMine = true
	u.remote(t, fromBob("m1", "hello")) // the retry of m1
	n := 0
	for _, b := range u.sentBodies() {
		if strings.Contains(b, "mine") {
			n++
		}
	}
	if pcs, err := u.db.PendingCm.ByRoom(context.Background(), room); err != nil || len(pcs) != 1 {
		t.Errorf("queued commands %d, %v; want $mine still queued", len(pcs), err)
	}
	if n != 0 {
		t.Errorf("room got %q: the user's own message, already in the room as $mine, was posted again by the bridge", u.sentBodies())
	}
}

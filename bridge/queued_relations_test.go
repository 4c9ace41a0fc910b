package bridge_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestEditWhileAwayReachesNetwork: while bob's network is away, alice sends
// a message, corrects it and reacts to it in Element. All three wait for
// the connector; when it is back bob gets the message, then the correction
// and the reaction, both naming the message's network id. Before, the edit
// and the reaction pointed at a message with no network id yet and were
// skipped without a word.
func TestEditWhileAwayReachesNetwork(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s, f, roomID, _ := newFidPortal(t, target, "m1", "hello alice")
		ctx := context.Background()
		f.stop()
		queued := func(eventID string) {
			t.Helper()
			tesths.WaitFor(t, 20*time.Second, "command queued for "+eventID, func() (bool, error) {
				return s.countRows("SELECT COUNT(*) FROM pending_command WHERE txn = $1", eventID) == 1, nil
			})
		}
		sent, err := s.alice.SendText(ctx, roomID, "pay 1000 EUR")
		if err != nil {
			t.Fatal(err)
		}
		queued(string(sent.EventID))
		edit, err := s.alice.SendMessageEvent(ctx, roomID, event.EventMessage, &event.MessageEventContent{
			MsgType: event.MsgText, Body: "* pay 10 EUR",
			NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "pay 10 EUR"},
			RelatesTo:  (&event.RelatesTo{}).SetReplace(sent.EventID),
		})
		if err != nil {
			t.Fatal(err)
		}
		queued(string(edit.EventID))
		react, err := s.alice.SendReaction(ctx, roomID, sent.EventID, "👍")
		if err != nil {
			t.Fatal(err)
		}
		queued(string(react.EventID))

		f = s.fidConnect(fakeSetup{store: f.store})
		msg := f.fidWaitCommand(connector.OpSendMessage, func(c *connector.Command) bool { return c.Txn == string(sent.EventID) })
		remote := f.answeredID(connector.OpSendMessage, msg.Txn)
		ed := f.fidWaitCommand(connector.OpEditMessage, func(c *connector.Command) bool { return c.Txn == string(edit.EventID) })
		if remote == "" || ed.Target != remote || ed.Text != "pay 10 EUR" {
			t.Errorf("edit_message = %+v; want the text of the correction, of %q", ed, remote)
		}
		re := f.fidWaitCommand(connector.OpReact, func(c *connector.Command) bool { return c.Txn == string(react.EventID) })
		if re.Target != remote || re.Key != "👍" {
			t.Errorf("react = %+v; want 👍 on %q", re, remote)
		}
		tesths.WaitFor(t, 20*time.Second, "the queue empty", func() (bool, error) {
			return s.countRows("SELECT COUNT(*) FROM pending_command") == 0, nil
		})
	})
}

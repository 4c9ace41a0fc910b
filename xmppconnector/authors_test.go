package xmppconnector

import (
	"testing"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// TestContactCannotRetractOrCorrectTheUsersMessages: on real Prosody, bob
// retracts and corrects a message alice sent through the bridge, naming its
// id. Only a message's sender may do either (XEP-0424, XEP-0308), so neither
// reaches the bridge; bob's retraction and correction of his own message do.
func TestContactCannotRetractOrCorrectTheUsersMessages(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	chat := e.bobChat()
	if _, err := e.bridge.command(t, connector.OpSendMessage, &connector.Command{Login: e.alice, Chat: chat, Txn: "$alices", Text: "alice wrote this"}); err != nil {
		t.Fatal(err)
	}
	sent := bob.Next(t, waitLong, testxmpp.WithBody)

	bob.Retract(t, e.alice, sent.ID)
	bob.Correct(t, e.alice, sent.ID, "bob rewrote alice")
	x := bob.SendChat(t, e.alice, "bob wrote this", "")
	own := e.bridge.waitEvent(t, "bob's message", isMessage("bob wrote this"))
	bob.Correct(t, e.alice, x, "bob fixed his")
	bob.Retract(t, e.alice, x)
	e.bridge.waitEvent(t, "bob's own retraction", kind(connector.KindDelete))

	for _, ev := range append(e.bridge.matching(kind(connector.KindDelete)), e.bridge.matching(kind(connector.KindEdit))...) {
		if ev.Target != own.ID {
			t.Errorf("bridged %s of %s, want only changes of bob's %s", ev.Kind, ev.Target, own.ID)
		}
	}
	if n := len(e.bridge.matching(kind(connector.KindEdit))); n != 1 {
		t.Errorf("%d edits bridged, want bob's one:\n%s", n, e.bridge.dump())
	}
}

package bridge_test

import (
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// TestXMPPContactCannotRetractTheUsersMessage: on real Prosody, bob
// retracts and corrects a message alice sent from Matrix, naming its XMPP
// id. Only a message's sender may do either, so alice's message stays as it
// is in the room, and bob's next message arrives as usual.
func TestXMPPContactCannotRetractTheUsersMessage(t *testing.T) {
	x, room := newXMPPChat(t, "hi")

	sent := x.aliceSays(room, "alice's words")
	got := x.bobGets(func(m *testxmpp.Message) bool { return m.Body == "alice's words" })
	for _, ref := range []string{got.ID, got.OriginID} {
		x.bob.Retract(t, x.login, ref)
		x.bob.Correct(t, x.login, ref, "bob rewrote alice")
	}
	x.bobSays("after")
	x.waitMessage(room, "after")

	x.wantNotRedacted(room, sent, "alice's message")
	for _, e := range x.sync.Events(room) {
		if e.Type == event.EventRedaction {
			t.Errorf("redaction in the room: %s", e.ID)
		}
		if e.Type == event.EventMessage {
			_ = e.Content.ParseRaw(e.Type)
			if e.Content.AsMessage().RelatesTo.GetReplaceID() == sent {
				t.Errorf("alice's message was edited: %s", e.Content.VeryRaw)
			}
		}
	}
}

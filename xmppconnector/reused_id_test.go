package xmppconnector

import (
	"testing"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// isEdit matches the edit event with text.
func isEdit(text string) func(*connector.Event) bool {
	return func(ev *connector.Event) bool { return ev.Kind == connector.KindEdit && ev.Text == text }
}

// On real Prosody: bob (a bot, say) sends two messages with the same id,
// then a XEP-0308 correction naming that id. XMPP clients correct the most
// recent message with that id from that sender, and so must the bridge;
// it corrected the first. Then bob reuses the id of a message alice sent
// and corrects "it": that is his own message, not hers (which he may not
// correct, so the correction was dropped).
func TestCorrectionOfReusedIDEditsTheSendersLatest(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	bob.SendChat(t, e.alice, "bot says one", "bot-1")
	first := e.bridge.waitEvent(t, "the first message", isMessage("bot says one"))
	bob.SendChat(t, e.alice, "bot says two", "bot-1")
	second := e.bridge.waitEvent(t, "the second message", isMessage("bot says two"))
	if first.ID == second.ID {
		t.Fatalf("two archived messages with one client id bridged under one id %s", first.ID)
	}
	bob.Correct(t, e.alice, "bot-1", "bot says two, corrected")
	edit := e.bridge.waitEvent(t, "the correction", isEdit("bot says two, corrected"))
	if edit.Target != second.ID {
		t.Errorf("the correction edits %s, want the latest message with its id, %s (the first is %s)", edit.Target, second.ID, first.ID)
	}

	if _, err := e.bridge.command(t, connector.OpSendMessage, &connector.Command{Login: e.alice, Chat: e.bobChat(), Txn: "$alices", Text: "alice wrote this"}); err != nil {
		t.Fatal(err)
	}
	sent := bob.Next(t, waitLong, testxmpp.WithBody)
	bob.SendChat(t, e.alice, "bob reuses alice's id", sent.ID)
	reused := e.bridge.waitEvent(t, "bob's message with alice's id", isMessage("bob reuses alice's id"))
	bob.Correct(t, e.alice, sent.ID, "bob corrects his own")
	edit = e.bridge.waitEvent(t, "bob's correction", isEdit("bob corrects his own"))
	if edit.Target != reused.ID {
		t.Errorf("bob's correction edits %s, want his message %s", edit.Target, reused.ID)
	}
}

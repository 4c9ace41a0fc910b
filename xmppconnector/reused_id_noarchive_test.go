package xmppconnector

import (
	"testing"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// On real Prosody without a message archive, so that live messages carry
// no stanza-id: bob sends a message under the id of one alice sent from
// Matrix. The connector no longer takes it for a repeat of hers, but named
// it by that id, which is the bridge id of alice's message: the bridge,
// which deduplicates by (login, chat, id), dropped bob's message as a
// replay of hers, and his correction of it edited nothing of his.
func TestReusedIDWithoutArchiveIsANewMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testxmpp.WithoutArchive())
	e.start(t)
	bob := e.xmpp.Dial(t, "bob", bobPW)
	res, err := e.bridge.command(t, connector.OpSendMessage, &connector.Command{Login: e.alice, Chat: e.bobChat(), Txn: "$alices", Text: "alice wrote this"})
	if err != nil {
		t.Fatal(err)
	}
	sent := bob.Next(t, waitLong, testxmpp.WithBody)
	bob.SendChat(t, e.alice, "bob reuses alice's id", sent.ID)
	reused := e.bridge.waitEvent(t, "bob's message with alice's id", isMessage("bob reuses alice's id"))
	if reused.ID == res.ID {
		t.Fatalf("bob's message went to the bridge under the id of alice's message, %s", res.ID)
	}
	bob.Correct(t, e.alice, sent.ID, "bob corrects his own")
	edit := e.bridge.waitEvent(t, "bob's correction", isEdit("bob corrects his own"))
	if edit.Target != reused.ID {
		t.Errorf("bob's correction edits %s, want his message %s", edit.Target, reused.ID)
	}
}

package xmppconnector

import (
	"testing"
)

// Two different messages that the server archived under two different
// stanza-ids but whose client reused one id attribute (bots, scripts and
// some clients do; XMPP does not require unique ids): the second is taken
// for a repeat of the first (BridgeID by xmpp id) and silently dropped,
// though its own archive id proves it is new.
func TestReusedClientIDKeepsNewMessage(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, sink, conn := caughtUpAccount(t)
	for i, text := range []string{"server is down", "server is up again"} {
		a.do(ctx, work{conn: conn, msg: &message{From: bob + "/monitor", To: me, ID: "1", Type: "chat", Body: text,
			StanzaIDs: []stanzaIDEl{{ID: []string{"arch-a", "arch-b"}[i], By: me}}}})
	}
	if len(sink.sent) != 2 {
		t.Fatalf("bridged %d of 2 distinct archived messages", len(sink.sent))
	}
}

// A message the server did not archive (a <no-store/> hint, or archive
// preferences that leave the sender out) has no stanza-id; if its client
// also gave it no id (the id attribute is only RECOMMENDED), bridge() finds
// no id for the event and skips it: the text never reaches Matrix, and no
// catch-up can bring it back since it is not in the archive.
func TestUnarchivedMessageWithoutIDIsBridged(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, sink, conn := caughtUpAccount(t)
	a.do(ctx, work{conn: conn, msg: &message{From: bob + "/x", To: me, Type: "chat", Body: "no id, not archived"}})
	if len(sink.sent) != 1 {
		t.Fatalf("bridged %d events; a message with a body but no id and no stanza-id was dropped", len(sink.sent))
	}
}

// The other side of the client-id check: a message bridged live without a
// stanza-id (under its client id) and then met again in the archive, with
// one, is still recognised as the same message.
func TestArchiveCopyOfMessageBridgedWithoutStanzaID(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, _, sink := offlineAccount(t)
	conn := &xmppConn{done: make(chan struct{})}
	a.do(ctx, work{conn: conn, msg: &message{From: bob + "/x", To: me, ID: "c1", Type: "chat", Body: "once"}})
	item := &mamItem{id: "arch-c1", msg: &message{From: bob + "/x", To: me, ID: "c1", Type: "chat", Body: "once"}}
	if err := a.handleArchived(ctx, conn, item); err != nil {
		t.Fatal(err)
	}
	if len(sink.sent) != 1 || sink.sent[0].ID != "c1" {
		t.Fatalf("bridged %+v; want the message once, under its client id", sink.sent)
	}
}

// The archive copy of a caption the bridge sent with a file carries a
// derived origin-id (txn-text), mapped to the send's txn: it is the
// bridge's own send coming back, not a new message, though its archive id
// differs from the id it was bridged under.
func TestArchiveCopyOfDerivedSendIsNotNew(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, store, sink := offlineAccount(t)
	if err := store.Apply(ctx, &effects{login: me, refs: []msgRef{{chat: bob, bridgeID: "$f", xmppID: "$f", aliases: []string{"$f-text"}, author: me}}}); err != nil {
		t.Fatal(err)
	}
	conn := &xmppConn{done: make(chan struct{})}
	item := &mamItem{id: "arch-cap", msg: &message{From: me + "/bridge", To: bob, ID: "$f-text", Type: "chat", Body: "look",
		OriginID: &idEl{ID: "$f-text"}}}
	if err := a.handleArchived(ctx, conn, item); err != nil {
		t.Fatal(err)
	}
	if len(sink.sent) != 0 {
		t.Fatalf("bridged %+v; the caption's archive copy came back as a new message", sink.sent)
	}
}

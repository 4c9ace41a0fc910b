package xmppconnector

import (
	"fmt"
	"testing"
)

// A message that reaches the archive but not this client live (the sender
// marked it <private xmlns="urn:xmpp:carbons:2"/> and addressed another of
// the user's resources, so the server neither delivers nor carbon-copies it
// to the bridge's resource) is lost for good once a later live message
// moves the cursor past it: the next catch-up pages only after the cursor.
func TestPrivateMessageToOtherResourceIsNotLost(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, store, sink := offlineAccount(t)
	arch := &fakeArchive{}
	arch.add("arch-1", `<message xmlns="jabber:client" from="bob@example.org/x" to="alice@example.org" type="chat" id="m1"><body>old</body></message>`)
	if err := store.SetCursor(ctx, me, "arch-1"); err != nil {
		t.Fatal(err)
	}
	conn, _ := newFakeConn(t, me, a, arch.answer)

	// Connect: catch-up finds nothing new.
	a.do(ctx, work{conn: conn, catchUp: true})
	if !conn.caughtUp.Load() {
		t.Fatal("catch-up failed")
	}
	// bob's private message to alice's phone: archived, not seen here.
	arch.add("arch-2", `<message xmlns="jabber:client" from="bob@example.org/x" to="alice@example.org/phone" type="chat" id="m2"><private xmlns="urn:xmpp:carbons:2"/><body>private one</body></message>`)
	// Then an ordinary message, delivered live.
	live := &message{From: bob + "/x", To: me, ID: "m3", Type: "chat", Body: "ordinary",
		StanzaIDs: []stanzaIDEl{{ID: "arch-3", By: me}}}
	arch.add("arch-3", `<message xmlns="jabber:client" from="bob@example.org/x" to="alice@example.org" type="chat" id="m3"><body>ordinary</body></message>`)
	a.do(ctx, work{conn: conn, msg: live})

	// Reconnect: a new catch-up.
	conn2, _ := newFakeConn(t, me, a, arch.answer)
	a.do(ctx, work{conn: conn2, catchUp: true})

	var texts []string
	for _, ev := range sink.sent {
		texts = append(texts, ev.Text)
	}
	if fmt.Sprint(texts) != "[ordinary private one]" && fmt.Sprint(texts) != "[private one ordinary]" {
		c, _ := store.Cursor(ctx, me)
		t.Fatalf("bridged %q (cursor %s); the archived message \"private one\" never reached the bridge", texts, c)
	}
}

// A new account whose archive is still empty gets no cursor on its first
// connection. A message that arrives while the connector is away is then
// taken for "history before the first start" by the next catch-up, which
// only sets the cursor to it: it never reaches the bridge.
func TestFirstStartOnEmptyArchiveKeepsOfflineMessage(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, store, sink := offlineAccount(t)
	arch := &fakeArchive{}
	conn, _ := newFakeConn(t, me, a, arch.answer)
	a.do(ctx, work{conn: conn, catchUp: true}) // first start, nothing archived yet
	if !conn.caughtUp.Load() {
		t.Fatal("catch-up failed")
	}
	// The connector is away (restart, network); bob writes.
	arch.add("arch-1", `<message xmlns="jabber:client" from="bob@example.org/x" to="alice@example.org" type="chat" id="m1"><body>while you were away</body></message>`)
	conn2, _ := newFakeConn(t, me, a, arch.answer)
	a.do(ctx, work{conn: conn2, catchUp: true})
	if len(sink.sent) != 1 || sink.sent[0].Text != "while you were away" {
		c, _ := store.Cursor(ctx, me)
		t.Fatalf("bridged %d events (cursor %q); bob's message from while the connector was away is lost", len(sink.sent), c)
	}
}

package xmppconnector

// Found by a review of the archive-cursor, sweep and id changes: each test
// here failed on the defect its comment describes (as it was), and passes
// since the fix.

import (
	"fmt"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// kindsOf lists events for a failure message.
func kindsOf(evs []connector.Event) string {
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%s(id=%s txn=%s)", ev.Kind, ev.ID, ev.Txn))
	}
	return fmt.Sprint(out)
}

// The user corrects a message from another client. The server sends the
// correction to the bridge as a sent carbon, which (Prosody, like most
// servers) carries no stanza-id by the account, so it is bridged under its
// client id and nothing is marked seen. Since live stanzas no longer move
// the cursor, the next archive sweep pages over the archive copy of the
// correction; the dedup by client id only exists for plain messages, so the
// correction reaches the bridge a second time, under its archive id. (Before
// the change, the live message with a stanza-id that followed moved the
// cursor past it on a caught-up connection, so no catch-up saw it.)
func TestSweepDoesNotRebridgeOwnCarbonCorrection(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, _, sink, arch, conn := caughtUpOnArchive(t)
	sent := func(inner *message) *message {
		return &message{Type: "chat", Sent: &carbonEl{Forwarded: forwardedEl{Message: inner}}}
	}

	// From alice's phone: a message, then its correction (sent carbons).
	arch.add("arch-1", `<message xmlns="jabber:client" from="alice@example.org/phone" to="bob@example.org" type="chat" id="m1"><body>helo</body></message>`)
	a.do(ctx, work{conn: conn, msg: sent(&message{From: me + "/phone", To: bob, ID: "m1", Type: "chat", Body: "helo"})})
	arch.add("arch-2", `<message xmlns="jabber:client" from="alice@example.org/phone" to="bob@example.org" type="chat" id="e1"><body>hello</body><replace xmlns="urn:xmpp:message-correct:0" id="m1"/></message>`)
	a.do(ctx, work{conn: conn, msg: sent(&message{From: me + "/phone", To: bob, ID: "e1", Type: "chat", Body: "hello", Replace: &idEl{ID: "m1"}})})
	// bob answers, live, with a stanza-id.
	arch.add("arch-3", `<message xmlns="jabber:client" from="bob@example.org/x" to="alice@example.org" type="chat" id="b1"><body>hi</body></message>`)
	a.do(ctx, work{conn: conn, msg: &message{From: bob + "/x", To: me, ID: "b1", Type: "chat", Body: "hi", StanzaIDs: []stanzaIDEl{{ID: "arch-3", By: me}}}})
	if len(sink.sent) != 3 {
		t.Fatalf("live: sent %s, want message, edit, message", kindsOf(sink.sent))
	}

	// The periodic archive sweep.
	a.do(ctx, work{conn: conn, catchUp: true})
	if len(sink.sent) != 3 {
		t.Fatalf("after the sweep: sent %s; the archive copy of the user's own correction was bridged a second time", kindsOf(sink.sent))
	}
}

// A message the user sends from another client (a script on the user's
// account, say) without an id attribute: its sent carbon has neither a
// stanza-id nor a client id, and now gets a fresh random id instead of
// being skipped, on the claim that "no other copy of it can come". But the
// server archived it (outgoing messages are archived; the carbon just is
// not stamped), and the archive sweep bridges that copy too, under its
// archive id: the message shows twice.
func TestIDlessOwnCarbonIsBridgedOnce(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, _, sink, arch, conn := caughtUpOnArchive(t)
	arch.add("arch-1", `<message xmlns="jabber:client" from="alice@example.org/script" to="bob@example.org" type="chat"><body>backup done</body></message>`)
	a.do(ctx, work{conn: conn, msg: &message{Type: "chat", Sent: &carbonEl{Forwarded: forwardedEl{
		Message: &message{From: me + "/script", To: bob, Type: "chat", Body: "backup done"}}}}})
	a.do(ctx, work{conn: conn, catchUp: true})
	if len(sink.sent) != 1 {
		t.Fatalf("sent %s; the user's id-less message went to the bridge twice (carbon + archive copy)", kindsOf(sink.sent))
	}
}

// Live messages are only marked seen now; the cursor waits for the next
// sweep. Seen ids are pruned after keepFor at start-up (Prune), before the
// first catch-up. A message bridged live shortly before the connector
// stopped (within one archive_sweep) and a start-up more than keepFor later
// finds the cursor still before it and no seen id: it is bridged again.
// Before the change the caught-up live message had moved the cursor.
func TestPruneKeepsSeenIDTheCursorHasNotPassed(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, store, sink, arch, conn := caughtUpOnArchive(t)
	arch.add("arch-1", `<message xmlns="jabber:client" from="bob@example.org/x" to="alice@example.org" type="chat" id="b1"><body>see you next month</body></message>`)
	a.do(ctx, work{conn: conn, msg: &message{From: bob + "/x", To: me, ID: "b1", Type: "chat", Body: "see you next month",
		StanzaIDs: []stanzaIDEl{{ID: "arch-1", By: me}}}})
	// The connector stops before the next sweep, and is started again
	// after keepFor: New prunes, then the first catch-up runs.
	if _, err := store.db.ExecContext(ctx, `UPDATE seen SET at = ?`, time.Now().Add(-keepFor-time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if err := store.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	conn2, _ := newFakeConn(t, me, a, arch.answer)
	a.do(ctx, work{conn: conn2, catchUp: true})
	if len(sink.sent) != 1 {
		c, _ := store.Cursor(ctx, me)
		t.Fatalf("sent %s (cursor %s); the message bridged live was bridged again after the restart", kindsOf(sink.sent), c)
	}
}

// caughtUpOnArchive is an offline account whose connection is caught up
// on a fake archive that holds one old message of bob's, the cursor on it.
func caughtUpOnArchive(t *testing.T) (*account, *Store, *storingSink, *fakeArchive, *xmppConn) {
	t.Helper()
	a, store, sink := offlineAccount(t)
	arch := &fakeArchive{}
	arch.add("arch-0", `<message xmlns="jabber:client" from="bob@example.org/x" to="alice@example.org" type="chat" id="old"><body>old</body></message>`)
	if err := store.SetCursor(t.Context(), "alice@example.org", "arch-0"); err != nil {
		t.Fatal(err)
	}
	conn, _ := newFakeConn(t, "alice@example.org", a, arch.answer)
	conn.caughtUp.Store(true)
	return a, store, sink, arch, conn
}

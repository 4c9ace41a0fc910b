package xmppconnector

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// An archived message with more markup than xmpp.max_stanza_size ends the
// connection, and one with more text is dropped from the stream: before,
// the first ended every catch-up at it, so what the archive held after it
// never arrived, and the second was dropped without a word (the cursor
// moved over it). Now both are bridged as a stand-in that says a message
// was not bridged, in the archive's order, and the catch-up after the
// connection the first one ended goes on after it.
func TestOversizedArchiveItemsBecomeStandIns(t *testing.T) {
	ctx := t.Context()
	const me = "alice@example.org"
	a, store, sink := offlineAccount(t)
	arch := &fakeArchive{}
	msg := func(id, extra, body string) string {
		return `<message xmlns="jabber:client" from="bob@example.org/x" to="alice@example.org" type="chat" id="` + id + `">` +
			extra + `<body>` + body + `</body></message>`
	}
	arch.add("arch-0", msg("m0", "", "before the cursor"))
	arch.add("arch-1", msg("m1", "", "one"))
	arch.add("arch-2", msg("m2", `<x xmlns="urn:example:big" a="`+strings.Repeat("a", defaultMaxStanza+1)+`"/>`, "markup"))
	arch.add("arch-3", msg("m3", "", strings.Repeat("t", defaultMaxStanza+1)))
	arch.add("arch-4", msg("m4", "", "four"))
	if err := store.SetCursor(ctx, me, "arch-0"); err != nil {
		t.Fatal(err)
	}

	conn, _ := newFakeConn(t, me, a, arch.answer)
	a.do(ctx, work{conn: conn, catchUp: true})
	<-conn.done
	if !errors.Is(conn.err, errXMLTooLarge) {
		t.Fatalf("the connection ended with %v, want it ended by the oversized markup", conn.err)
	}
	if cursor, _ := store.Cursor(ctx, me); cursor != "arch-2" {
		t.Fatalf("cursor %q after the catch-up the oversized item cut short, want arch-2 (past it)", cursor)
	}
	if !conn.skippedOversized.Load() {
		t.Fatal("the connection does not say that its catch-up moved past the oversized item")
	}
	conn2, _ := newFakeConn(t, me, a, arch.answer)
	a.do(ctx, work{conn: conn2, catchUp: true})
	if !conn2.caughtUp.Load() || !conn2.alive() {
		t.Fatalf("second catch-up: caught up %v, connection alive %v (%v)", conn2.caughtUp.Load(), conn2.alive(), conn2.err)
	}
	conn3, _ := newFakeConn(t, me, a, arch.answer)
	a.do(ctx, work{conn: conn3, catchUp: true})

	var got []string
	for _, ev := range sink.sent {
		text := ev.Text
		if strings.HasPrefix(text, standInPrefix) {
			text = "stand-in"
		}
		if ev.Sender == nil || ev.Sender.ID != "bob@example.org" || ev.Chat == nil || ev.Chat.ID != "bob@example.org" {
			t.Errorf("event %q (%s) is not bob's in bob's chat: %+v %+v", text, ev.ID, ev.Sender, ev.Chat)
		}
		got = append(got, text+"@"+ev.ID)
	}
	want := "one@arch-1 stand-in@arch-2 stand-in@arch-3 four@arch-4"
	if strings.Join(got, " ") != want {
		t.Fatalf("bridged %q, want %q", strings.Join(got, " "), want)
	}
	if text := sink.sent[1].Text; !strings.Contains(text, "1024 KiB") {
		t.Errorf("the stand-in does not say the limit: %q", text)
	}
}

// A live message with more text than the limit is not decoded; the read
// loop passes on its addresses only, marked too large, and the stream goes
// on.
func TestConnPassesOnOversizedMessageAddresses(t *testing.T) {
	sink := &recordingSink{}
	conn, fs := newFakeConn(t, "alice@example.org", sink, nil)
	fs.write(`<message from='eve@evil.example/r' to='alice@example.org' type='chat' id='big'><body>` + strings.Repeat("b", defaultMaxStanza+1) + `</body></message>`)
	fs.write(`<message from='bob@example.org/r' type='chat' id='small'><body>after</body></message>`)
	waitReceived(t, sink, "small")
	got := sink.received()
	if len(got) != 2 || got[0].ID != "big" || !got[0].tooLarge || got[0].From != "eve@evil.example/r" || got[0].Type != "chat" || got[0].Body != "" {
		t.Fatalf("passed on %+v, want the oversized message's addresses only, marked too large, then the next", got)
	}
	if !conn.alive() {
		t.Fatalf("the stream ended: %v", conn.err)
	}
}

// A live oversized message is bridged as a stand-in at once when the
// server keeps no archive (no catch-up could bring it), and otherwise by a
// catch-up run at once, under its archive id, and once only.
func TestLiveOversizedMessageStandIn(t *testing.T) {
	ctx := t.Context()
	const me = "alice@example.org"
	head := &message{From: "bob@example.org/x", To: me, ID: "big", Type: "chat", tooLarge: true}

	t.Run("no archive", func(t *testing.T) {
		a, sink, conn := caughtUpAccount(t)
		conn.maxText = defaultMaxStanza
		conn.noArchive.Store(true)
		a.do(ctx, work{conn: conn, msg: head})
		if len(sink.sent) != 1 || !strings.HasPrefix(sink.sent[0].Text, standInPrefix) || sink.sent[0].Sender.ID != "bob@example.org" || sink.sent[0].ID != "big" {
			t.Fatalf("bridged %+v, want one stand-in from bob under the message's id", sink.sent)
		}
	})
	t.Run("archive", func(t *testing.T) {
		a, store, sink := offlineAccount(t)
		arch := &fakeArchive{}
		arch.add("arch-1", `<message xmlns="jabber:client" from="bob@example.org/x" to="alice@example.org" type="chat" id="big"><body>`+
			strings.Repeat("b", defaultMaxStanza+1)+`</body></message>`)
		if err := store.SetCursor(ctx, me, cursorArchiveStart); err != nil {
			t.Fatal(err)
		}
		conn, _ := newFakeConn(t, me, a, arch.answer)
		a.do(ctx, work{conn: conn, msg: head})
		a.do(ctx, work{conn: conn, catchUp: true})
		if len(sink.sent) != 1 || !strings.HasPrefix(sink.sent[0].Text, standInPrefix) || sink.sent[0].ID != "arch-1" {
			t.Fatalf("bridged %+v, want one stand-in under the archive id", sink.sent)
		}
	})
}

// waitReceived waits until sink has a message with id.
func waitReceived(t *testing.T, sink *recordingSink, id string) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !hasID(sink.received(), id) {
		if time.Now().After(deadline) {
			t.Fatalf("message %q never arrived", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

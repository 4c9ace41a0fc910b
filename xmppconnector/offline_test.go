package xmppconnector

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// A <delay/> naming the user's own server, written by a contact into a
// live message, used to date it (years back, here); only a message the
// server stored while the connector was offline is dated by its delay.
// The server has no archive, so offline storage is the only way the
// stored message reaches the connector: its delay is all that tells when
// it was sent.
func TestForgedDelayDatesNothingStoredDelayDoes(t *testing.T) {
	e := newEnv(t, testxmpp.WithoutArchive())
	stop := e.start(t)
	bob := e.xmpp.Dial(t, "bob", bobPW)
	forged := `<delay xmlns='urn:xmpp:delay' from='` + testxmpp.Domain + `' stamp='2001-01-01T00:00:00Z'/>`
	send := func(id, body string) {
		bob.SendRaw(t, fmt.Sprintf(`<message to='%s' type='chat' id='%s'><body>%s</body>%s</message>`, e.alice, id, body, forged))
	}

	sent := time.Now()
	send("live-1", "live, with a forged delay")
	ev := e.bridge.waitEvent(t, "the live message", isMessage("live, with a forged delay"))
	if ts := time.UnixMilli(ev.TS); ts.Before(sent.Add(-time.Second)) {
		t.Fatalf("a live message with a delay its sender wrote is dated %s, not at receipt (%s)", ts.UTC(), sent.UTC())
	}

	stop()
	stored := time.Now()
	send("offline-1", "sent while the connector was away")
	bob.Ping(t)
	routed := time.Now()
	// Not a wait for anything: the server stamps to the second, so the
	// clock must move on for the receive time to differ from the stamp.
	time.Sleep(2 * time.Second)
	e.start(t)
	ev = e.bridge.waitEvent(t, "the stored message", isMessage("sent while the connector was away"))
	ts := time.UnixMilli(ev.TS)
	if ts.Before(stored.Truncate(time.Second)) || ts.After(routed) {
		t.Fatalf("a message stored while the connector was away is dated %s, not when it was sent (%s to %s)",
			ts.UTC(), stored.UTC(), routed.UTC())
	}
	if n := countMatching(e.bridge.matching(func(*connector.Event) bool { return true }), isMessage("sent while the connector was away")); n != 1 {
		t.Fatalf("the stored message was bridged %d times", n)
	}
}

// Only the ping's answer from the server ends the flood: an answer with
// another id, or "from" a contact, does not; one without from (the
// account's server) does, once.
func TestOfflineFloodEndsOnlyOnTheServersAnswer(t *testing.T) {
	f := newOfflineFlood()
	ended := f.begin("p1", "example.org")
	for _, c := range []struct{ id, from string }{{"p2", "example.org"}, {"p1", "bob@example.org"}, {"p1", "evil.example"}} {
		if f.answered(c.id, c.from) || !f.isOpen() {
			t.Fatalf("answer %+v ended the flood", c)
		}
	}
	if !f.answered("p1", "") || f.isOpen() {
		t.Fatal("the server's answer without from did not end the flood")
	}
	select {
	case <-ended:
	default:
		t.Fatal("the flood's end was not announced")
	}
	if f.answered("p1", "example.org") {
		t.Fatal("a second answer ended the flood again")
	}
	f.end() // idempotent
}

// A server that never answers the ping after the initial presence: the
// connection is still used, and the flood ends when the wait does, so
// that no later message is taken for a stored one.
func TestUnansweredFloodPingEndsTheFlood(t *testing.T) {
	ctx := t.Context()
	conn, fs := newFakeConn(t, "alice@example.org", nopSink{}, func(s *fakeStanza) []string { return nil })
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := conn.sendInitialPresence(wctx, presenceOut{}, "example.org"); err != nil {
		t.Fatalf("an unanswered ping failed the connection: %v", err)
	}
	if conn.flood.isOpen() {
		t.Fatal("the flood stayed open after the wait for the ping ended")
	}
	var got []fakeStanza
	for deadline := time.Now().Add(waitLong); len(got) < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		fs.mu.Lock()
		got = slices.Clone(fs.got)
		fs.mu.Unlock()
	}
	if len(got) != 2 || got[0].XMLName.Local != "presence" || got[1].XMLName.Local != "iq" {
		t.Fatalf("the server got %+v, want the presence and then the ping", got)
	}
}

// nopSink drops what a connection reads.
type nopSink struct{}

func (nopSink) onMessage(*xmppConn, *message)   {}
func (nopSink) onPresence(*xmppConn, *presence) {}

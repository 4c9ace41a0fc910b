package xmppconnector

import (
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
)

// A client may give a message an id of any length, and a server without an
// archive adds no stanza-id of its own. An id past the protocol's bound
// used to be refused by the SDK and the message dropped; now it is bridged
// under a digest, and a correction, a reply and a reaction that name the
// long id find it. A reaction key that is no emoji but kilobytes of text
// is left out, the rest of the set kept, and a stand-in in reply to the
// message says so.
func TestLongClientIDIsBridged(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, _, sink := offlineAccount(t)
	conn := &xmppConn{done: make(chan struct{})}
	longID := strings.Repeat("k", 2*connector.MaxIDBytes)
	send := func(m *message) {
		t.Helper()
		m.From, m.To, m.Type = bob+"/phone", me, "chat"
		a.do(ctx, work{conn: conn, msg: m})
	}

	send(&message{ID: longID, Body: "hello"})
	send(&message{ID: "c1", Body: "hello!", Replace: &idEl{ID: longID}})
	send(&message{ID: "r1", Body: "quoting", Reply: &replyEl{ID: longID, To: bob}})
	send(&message{ID: "x1", Reactions: &reactionsEl{ID: longID, Reactions: []string{strings.Repeat("z", 600), "👍"}}})
	send(&message{ID: longID, Body: "hello"}) // the same stanza again

	if len(sink.sent) != 5 {
		var kinds []string
		for _, ev := range sink.sent {
			kinds = append(kinds, ev.Kind)
		}
		t.Fatalf("sent %v, want message, edit, message (the reply), message (the stand-in), one reaction", kinds)
	}
	msg, edit, reply, standIn, react := sink.sent[0], sink.sent[1], sink.sent[2], sink.sent[3], sink.sent[4]
	if msg.Kind != connector.KindMessage || msg.Text != "hello" || len(msg.ID) > maxOwnIDBytes {
		t.Fatalf("message = %+v", msg)
	}
	if edit.Kind != connector.KindEdit || edit.Target != msg.ID {
		t.Fatalf("edit target = %q, want %q", edit.Target, msg.ID)
	}
	if reply.ReplyTo != msg.ID {
		t.Fatalf("reply_to = %q, want %q", reply.ReplyTo, msg.ID)
	}
	if standIn.Kind != connector.KindMessage || standIn.ReplyTo != msg.ID || !strings.HasPrefix(standIn.Text, reactionStandInPrefix) {
		t.Fatalf("stand-in = %+v", standIn)
	}
	if react.Kind != connector.KindReaction || react.Key != "👍" || react.Target != msg.ID {
		t.Fatalf("reaction = %+v", react)
	}
	for _, ev := range sink.sent {
		if err := ev.Validate(); err != nil {
			t.Fatalf("event %s would be refused: %v", ev.Kind, err)
		}
	}
}

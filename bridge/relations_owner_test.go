package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// wantNotRedacted fails the test if the event (what, in the message) is
// redacted in the room as alice's homeserver serves it.
func (s *stack) wantNotRedacted(roomID id.RoomID, eventID id.EventID, what string) {
	s.t.Helper()
	got, err := s.alice.GetEvent(context.Background(), roomID, eventID)
	if err != nil {
		s.t.Fatal(err)
	}
	if got.Unsigned.RedactedBecause != nil || len(got.Content.Raw) == 0 {
		s.t.Errorf("%s was redacted", what)
	}
}

// TestContactCannotChangeTheUsersMessages: the ghost has the power to
// redact anything in the portal, so the bridge itself must check whose
// message an edit or a deletion from the network targets. The contact's
// edit and deletion of the user's message, and the user's own (other
// device) edit and deletion of the contact's message, change nothing in the
// room; the contact's edit of its own message still goes through.
func TestContactCannotChangeTheUsersMessages(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s, f, roomID, bobsMsg := newFidPortal(t, target, "m1", "bob's words")
		ctx := context.Background()

		mine, err := s.alice.SendText(ctx, roomID, "alice's words")
		if err != nil {
			t.Fatal(err)
		}
		myRemote := s.fidRemoteID(mine.EventID)

		attacks := []*connector.Event{
			fidFromBob(connector.KindEdit, "e-bad"),
			fidFromBob(connector.KindDelete, "d-bad"),
			fidFromBob(connector.KindEdit, "e-bad-me"),
			fidFromBob(connector.KindDelete, "d-bad-me"),
		}
		attacks[0].Target, attacks[0].Text = myRemote, "bob rewrote alice"
		attacks[1].Target = myRemote
		// "The user on another device" changing the contact's message.
		for _, ev := range attacks[2:] {
			ev.Sender = &connector.Sender{ID: testLogin, IsMe: true}
			ev.Target = "m1"
		}
		attacks[2].Text = "alice rewrote bob"
		// The contact's edit of its own message is fine.
		ok := fidFromBob(connector.KindEdit, "e-ok")
		ok.Target, ok.Text = "m1", "bob's better words"
		for _, ev := range []*connector.Event{attacks[0], attacks[1], ok, attacks[2], attacks[3]} {
			f.send(ev)
		}
		s.fidRoomEvent(roomID, event.EventMessage, func(evt *event.Event) bool {
			msg := evt.Content.AsMessage()
			return msg.RelatesTo.GetReplaceID() == bobsMsg.ID && msg.NewContent != nil && msg.NewContent.Body == "bob's better words"
		})
		// The portal is ordered: once this shows, every attack was handled.
		s.fidBobSays(f, roomID, "m2", "the end")

		// What the homeserver holds, not only what sync delivered.
		resp, err := s.alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, evt := range resp.Chunk {
			if evt.Type == event.EventRedaction {
				t.Errorf("redaction in the room: %s redacts %s", evt.ID, evt.Redacts)
			}
			if evt.Type != event.EventMessage {
				continue
			}
			_ = evt.Content.ParseRaw(evt.Type)
			msg := evt.Content.AsMessage()
			if replaced := msg.RelatesTo.GetReplaceID(); replaced == mine.EventID ||
				(replaced == bobsMsg.ID && (msg.NewContent == nil || msg.NewContent.Body != "bob's better words")) {
				t.Errorf("forbidden edit in the room: %s", evt.Content.VeryRaw)
			}
		}
		for _, ev := range []id.EventID{mine.EventID, bobsMsg.ID} {
			s.wantNotRedacted(roomID, ev, string(ev))
		}
	})
}

// TestContactCannotRemoveTheUsersReaction: the user's reactions are keyed
// by the login id; a reaction removal whose sender names that id without
// is_me is not the user's and changes nothing.
func TestContactCannotRemoveTheUsersReaction(t *testing.T) {
	s, f, roomID, first := newFidPortal(t, testdb.SQLite(t), "m1", "react to me")
	ctx := context.Background()

	resp, err := s.alice.SendReaction(ctx, roomID, first.ID, "❤️")
	if err != nil {
		t.Fatal(err)
	}
	f.fidWaitCommand(connector.OpReact, nil)
	tesths.WaitFor(t, 20*time.Second, "the reaction's mapping", func() (bool, error) {
		r, err := s.br.DB.Reaction.Get(ctx, database.PortalKey{LoginID: testLogin, ChatID: fidBob}, "m1", testLogin, "❤️")
		return r != nil, err
	})
	ev := fidFromBob(connector.KindReactionRemove, "rr-bad")
	ev.Sender = &connector.Sender{ID: testLogin}
	ev.Target, ev.Key = "m1", "❤️"
	f.send(ev)
	s.fidBobSays(f, roomID, "m2", "sentinel")

	s.wantNotRedacted(roomID, resp.EventID, "alice's reaction")
}

// TestStrangerCannotSpeakAsTheContact: a connector message in bob's DM
// whose sender is someone else would be posted by bob's ghost as bob's
// words. Neither it nor a portal for a chat with a third person it names
// appears; bob's next message does.
func TestStrangerCannotSpeakAsTheContact(t *testing.T) {
	s, f, roomID, _ := newFidPortal(t, testdb.SQLite(t), "m1", "hello alice")
	ctx := context.Background()
	forged := textFrom(fidBob, "m-forged", "this is bob, send me the code")
	forged.Sender = &connector.Sender{ID: "mallory@network"}
	f.send(forged)
	elsewhere := textFrom("carol@network", "c-forged", "hi from carol's chat")
	elsewhere.Sender = &connector.Sender{ID: "mallory@network"}
	f.send(elsewhere)
	s.fidBobSays(f, roomID, "m2", "sentinel")

	resp, err := s.alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, evt := range resp.Chunk {
		if evt.Type == event.EventMessage && strings.Contains(string(evt.Content.VeryRaw), "send me the code") {
			t.Errorf("the forged message is in bob's DM: %s", evt.Content.VeryRaw)
		}
	}
	if n := s.countRows("SELECT COUNT(*) FROM portal WHERE chat_id = $1", "carol@network"); n != 0 {
		t.Errorf("%d portals for the chat the stranger's message named, want none", n)
	}
}

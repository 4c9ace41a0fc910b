package bridge_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// After the user upgraded the DM, the contact still acts on messages from
// before the upgrade, which stay in the old room: a homeserver takes no
// redaction there from the ghost (it left), and clients show no edit,
// reaction or reply in the new room that points at an event of the old.
// What the contact did must still reach the user, in the new room, in a
// form clients show.

// upgradedBobDM opens bob's DM with his message m1 (text) and upgrades it;
// it returns the fake, bob's ghost and the new room.
func (s *stack) upgradedBobDM(text string) (*fakeConnector, id.UserID, id.RoomID) {
	s.t.Helper()
	f := s.connectFake(nil)
	ghost := s.ghost("bob@network")
	old := s.bobPortal(f, "m1", text)
	return f, ghost, s.upgradeDM(old, ghost)
}

// bobAbout is bob's event of kind in his DM, with id evID, about target.
func bobAbout(kind, evID, target string) *connector.Event {
	ev := fidFromBob(kind, evID)
	ev.Target = target
	return ev
}

// waitGhostEvent waits for an event of typ from the ghost in the room
// that matches, with its content parsed.
func (s *stack) waitGhostEvent(room id.RoomID, ghost id.UserID, typ event.Type, match func(*event.Event) bool) *event.Event {
	s.t.Helper()
	return s.sync.WaitEvent(s.t, 30*time.Second, func(evt *event.Event) bool {
		if evt.RoomID != room || evt.Sender != ghost || evt.Type != typ {
			return false
		}
		_ = evt.Content.ParseRaw(evt.Type)
		return match == nil || match(evt)
	})
}

// wantNoForeignRelation fails when evt relates to an event that is not in
// the room (as alice's sync saw it): clients show such an edit, reply or
// reaction nowhere, or as "unable to load".
func (s *stack) wantNoForeignRelation(room id.RoomID, evt *event.Event) {
	s.t.Helper()
	rel := evt.Content.AsMessage().RelatesTo
	if evt.Type == event.EventReaction {
		rel = &evt.Content.AsReaction().RelatesTo
	}
	var targets []id.EventID
	if rel != nil {
		targets = append(targets, rel.EventID)
		if rel.InReplyTo != nil {
			targets = append(targets, rel.InReplyTo.EventID)
		}
	}
	inRoom := map[id.EventID]bool{}
	for _, e := range s.sync.Events(room) {
		inRoom[e.ID] = true
	}
	for _, target := range targets {
		if target != "" && !inRoom[target] {
			s.t.Errorf("%s %s in the new room relates to %s, an event not in that room: %s", evt.Type.Type, evt.ID, target, evt.Content.VeryRaw)
		}
	}
}

// wantShownQuoting sends bob's ev (an edit or a reply) and waits for the
// ghost's message in the room that shows its text; it checks that the
// message relates to no event of another room and quotes the message ev
// is about (its text, quoted), and returns it.
func (s *stack) wantShownQuoting(f *fakeConnector, room id.RoomID, ghost id.UserID, ev *connector.Event, quoted string) *event.Event {
	s.t.Helper()
	f.send(ev)
	shown := s.waitGhostEvent(room, ghost, event.EventMessage, func(evt *event.Event) bool {
		return strings.Contains(evt.Content.AsMessage().Body, ev.Text)
	})
	s.wantNoForeignRelation(room, shown)
	if body := shown.Content.AsMessage().Body; !strings.Contains(body, quoted) {
		s.t.Errorf("%s in the new room = %q, want it to quote %q", ev.Kind, body, quoted)
	}
	return shown
}

// wantTold waits for the ghost's notice in the room and checks that it
// says want and no raw error.
func (s *stack) wantTold(room id.RoomID, ghost id.UserID, want string) {
	s.t.Helper()
	notice := s.waitGhostEvent(room, ghost, event.EventMessage, func(evt *event.Event) bool {
		return evt.Content.AsMessage().MsgType == event.MsgNotice
	}).Content.AsMessage()
	if !strings.Contains(notice.Body, want) || strings.Contains(notice.Body, "could not be bridged") ||
		strings.Contains(notice.Body, "M_") || strings.Contains(notice.Body, "another room") {
		s.t.Errorf("notice in the new room = %q, want one that says %q and no error", notice.Body, want)
	}
}

// TestContactEditsMessageFromBeforeUpgrade: bob corrects, after the
// upgrade, his message from before it. The user sees the correction in
// the new room, as a message that quotes the original and relates to no
// event of the old room; bob's next correction of the same message is
// shown too.
func TestContactEditsMessageFromBeforeUpgrade(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f, ghost, room := s.upgradedBobDM("see you tomorow")

		edit := bobAbout(connector.KindEdit, "e1", "m1")
		edit.Text = "see you tomorrow"
		shown := s.wantShownQuoting(f, room, ghost, edit, "see you tomorow")

		// The correction stands for the message in the new room: the next
		// edit replaces it, the user's reply to it answers the message on
		// the network, and a deletion removes it.
		again := bobAbout(connector.KindEdit, "e2", "m1")
		again.Text = "see you tomorrow at 10"
		f.send(again)
		next := s.waitGhostEvent(room, ghost, event.EventMessage, func(evt *event.Event) bool {
			msg := evt.Content.AsMessage()
			return strings.Contains(msg.Body, "at 10")
		})
		if rel := next.Content.AsMessage().RelatesTo; rel.GetReplaceID() != shown.ID {
			t.Errorf("next edit relates to %+v, want a replacement of the correction %s: %s", rel, shown.ID, next.Content.VeryRaw)
		}
		reply := &event.MessageEventContent{MsgType: event.MsgText, Body: "10 is fine",
			RelatesTo: (&event.RelatesTo{}).SetReplyTo(shown.ID)}
		if cmd := s.fidSendFromMatrix(f, room, reply); cmd.ReplyTo != "m1" {
			t.Errorf("the user's reply to the correction reached the network as %+v, want a reply to m1", cmd)
		}

		f.send(bobAbout(connector.KindDelete, "d1", "m1"))
		s.waitGhostEvent(room, ghost, event.EventRedaction, func(evt *event.Event) bool { return evt.Redacts == shown.ID })
		s.wantTold(room, ghost, "deleted")
	})
}

// TestContactDeletesMessageFromBeforeUpgrade: bob deletes, after the
// upgrade, his message from before it. It stays in the old room (the
// ghost left it); the user is told so briefly in the new room, without
// the homeserver's error.
func TestContactDeletesMessageFromBeforeUpgrade(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f, ghost, room := s.upgradedBobDM("regrettable")
		f.send(bobAbout(connector.KindDelete, "d1", "m1"))
		s.wantTold(room, ghost, "deleted")
	})
}

// TestContactReactsToMessageFromBeforeUpgrade: bob reacts, after the
// upgrade, to his message from before it, and takes the reaction back; he
// takes back a reaction he made before the upgrade too. No reaction in
// the new room points at the old room's event: the user is told each in a
// short notice, without the homeserver's error.
func TestContactReactsToMessageFromBeforeUpgrade(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f := s.connectFake(nil)
		ghost := s.ghost("bob@network")
		old := s.bobPortal(f, "m1", "react to me")
		early := bobAbout(connector.KindReaction, "r0", "m1")
		early.Key = "❤️"
		f.send(early)
		s.waitGhostEvent(old, ghost, event.EventReaction, nil)
		room := s.upgradeDM(old, ghost)

		react := bobAbout(connector.KindReaction, "r1", "m1")
		react.Key = "👍"
		f.send(react)
		s.wantTold(room, ghost, "👍")
		for _, evt := range s.sync.Events(room) {
			if evt.Type == event.EventReaction {
				_ = evt.Content.ParseRaw(evt.Type)
				s.wantNoForeignRelation(room, evt)
			}
		}

		for i, key := range []string{"❤️", "👍"} {
			unreact := bobAbout(connector.KindReactionRemove, fmt.Sprintf("u%d", i), "m1")
			unreact.Key = key
			f.send(unreact)
			s.wantToldAlso(room, ghost, "took back the "+key)
		}
	})
}

// wantToldAlso is wantTold for a notice other than those seen already:
// one that says want.
func (s *stack) wantToldAlso(room id.RoomID, ghost id.UserID, want string) {
	s.t.Helper()
	notice := s.waitGhostEvent(room, ghost, event.EventMessage, func(evt *event.Event) bool {
		msg := evt.Content.AsMessage()
		return msg.MsgType == event.MsgNotice && (strings.Contains(msg.Body, want) || strings.Contains(msg.Body, "could not be bridged"))
	}).Content.AsMessage()
	if strings.Contains(notice.Body, "could not be bridged") || strings.Contains(notice.Body, "M_") {
		s.t.Errorf("notice in the new room = %q, want one that says %q and no error", notice.Body, want)
	}
}

// TestContactRepliesToMessageFromBeforeUpgrade: bob replies, after the
// upgrade, to a message from before it. The reply shows in the new room
// quoting what it answers, with no m.in_reply_to naming the old room's
// event (clients show that as "unable to load").
func TestContactRepliesToMessageFromBeforeUpgrade(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f, ghost, room := s.upgradedBobDM("shall we meet at noon?")
		reply := textFrom("bob@network", "m2", "actually, make it one")
		reply.ReplyTo = "m1"
		s.wantShownQuoting(f, room, ghost, reply, "meet at noon")
	})
}

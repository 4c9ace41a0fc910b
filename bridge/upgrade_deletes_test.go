package bridge_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// After an upgrade the user's client shows the old room's history, and a
// deletion of a message there is a redaction in the old room: a homeserver
// refuses one in the new room naming an event of the old. The ghost has
// left the old room, so the homeserver pushes nothing of it; the user's
// redactions come from their /sync (double_puppet.sync), as in a portal.

// syncedRedactions is a stack whose bridge follows alice's /sync for her
// redactions (Dendrite pushes none to appservices).
var syncedRedactions = stackOptions{configure: func(c *config.Config) { c.DoublePuppet.Sync = true }}

// predecessor is the room that room's create event names as the one it
// replaced.
func (s *stack) predecessor(room id.RoomID) id.RoomID {
	s.t.Helper()
	var create event.CreateEventContent
	if err := s.alice.StateEvent(context.Background(), room, event.StateCreate, "", &create); err != nil {
		s.t.Fatal(err)
	}
	if create.Predecessor == nil {
		s.t.Fatalf("room %s names no predecessor", room)
	}
	return create.Predecessor.RoomID
}

// redactAs deletes alice's event evt in room.
func (s *stack) redactAs(room id.RoomID, evt id.EventID) {
	s.t.Helper()
	if _, err := s.alice.RedactEvent(context.Background(), room, evt); err != nil {
		s.t.Fatalf("redact %s in %s: %v", evt, room, err)
	}
}

// TestQueuedMessageDeletedInOldRoomIsNotSent: the connector is away, the
// user sends a message, upgrades the DM and then deletes the message in
// the old room, where it is. It must never reach the network: the queued
// send is dropped, and once the connector is back only what the user sent
// later goes.
func TestQueuedMessageDeletedInOldRoomIsNotSent(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, syncedRedactions)
		f, _, room, waiting := s.upgradedWithQueued("meant for someone else")
		s.waitFollowing(s.alice.UserID)
		s.redactAs(s.predecessor(room), waiting.EventID)
		s.waitNothingQueued("the message deleted in the old room dropped from the queue")

		back := s.connectFake(f.store)
		later, err := s.alice.SendText(context.Background(), room, "and this one is for bob")
		if err != nil {
			t.Fatal(err)
		}
		tesths.WaitFor(t, 20*time.Second, "the later message at the network", func() (bool, error) {
			return back.answeredID(connector.OpSendMessage, string(later.EventID)) != "", nil
		})
		if id := back.answeredID(connector.OpSendMessage, string(waiting.EventID)); id != "" {
			t.Errorf("the network got the message the user deleted (as %s)", id)
		}
	})
}

// TestDeletedInOldRoomAfterUpgradeReachesNetwork: two messages of the user
// reached the network from the old room, one before the upgrade and one
// that waited for the connector and went after it. The user deletes both
// in the old room: the network gets a delete_message of each.
func TestDeletedInOldRoomAfterUpgradeReachesNetwork(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, syncedRedactions)
		ctx := context.Background()
		f := s.connectFake(nil)
		ghost := s.ghost("bob@network")
		old := s.bobPortal(f, "m1", "before the upgrade")
		before, err := s.alice.SendText(ctx, old, "sent before the upgrade")
		if err != nil {
			t.Fatal(err)
		}
		tesths.WaitFor(t, 20*time.Second, "the first message at the network", func() (bool, error) {
			return f.answeredID(connector.OpSendMessage, string(before.EventID)) != "", nil
		})
		f.stop()
		queued, err := s.alice.SendText(ctx, old, "queued at the upgrade")
		if err != nil {
			t.Fatal(err)
		}
		s.waitQueued(queued.EventID, "the second message queued for the connector")
		s.upgradeDM(old, ghost)
		back := s.connectFake(f.store)
		tesths.WaitFor(t, 20*time.Second, "the queued message at the network", func() (bool, error) {
			return back.answeredID(connector.OpSendMessage, string(queued.EventID)) != "", nil
		})
		s.waitNothingQueued("the queued message's command done")
		s.waitFollowing(s.alice.UserID)

		s.redactAs(old, before.EventID)
		s.redactAs(old, queued.EventID)
		want := map[string]bool{
			f.answeredID(connector.OpSendMessage, string(before.EventID)):    true,
			back.answeredID(connector.OpSendMessage, string(queued.EventID)): true,
		}
		tesths.WaitFor(t, 20*time.Second, "both deletions at the network", func() (bool, error) {
			n := 0
			for _, del := range back.commandsOf(connector.OpDeleteMessage) {
				if want[del.Target] {
					n++
				}
			}
			return n == len(want), nil
		})
	})
}

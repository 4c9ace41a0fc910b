package bridge_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
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

// TestRelationsOfMessageDeletedInOldRoomGoWithIt: the connector is away,
// the user sends a message, upgrades the DM, corrects the message and
// reacts to it from the new room (both queued there behind it), and then
// deletes it in the old room. The correction and the reaction go with the
// message, without a word, as they do in a room never upgraded: nothing
// stays queued, the network gets none of it, and no notice says an edit
// or a reaction was not delivered.
func TestRelationsOfMessageDeletedInOldRoomGoWithIt(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, syncedRedactions)
		ctx := context.Background()
		f, ghost, room, waiting := s.upgradedWithQueued("see you tomorow")
		s.waitFollowing(s.alice.UserID)
		edit := s.editAs(room, waiting.EventID, "see you tomorrow")
		reaction, err := s.alice.SendReaction(ctx, room, waiting.EventID, "👍")
		if err != nil {
			t.Fatal(err)
		}
		s.waitQueued(edit.EventID, "the edit queued behind the message")
		s.waitQueued(reaction.EventID, "the reaction queued behind the message")

		s.redactAs(s.predecessor(room), waiting.EventID)
		tesths.WaitFor(t, 20*time.Second, "the deleted message dropped from the queue", func() (bool, error) {
			return s.countRows("SELECT COUNT(*) FROM pending_command WHERE txn = $1", string(waiting.EventID)) == 0, nil
		})

		back := s.connectFake(f.store)
		later, err := s.alice.SendText(ctx, room, "see you")
		if err != nil {
			t.Fatal(err)
		}
		tesths.WaitFor(t, 20*time.Second, "the later message at the network", func() (bool, error) {
			return back.answeredID(connector.OpSendMessage, string(later.EventID)) != "", nil
		})
		s.waitNothingQueued("nothing left queued")
		// Posted after any notice about what was queued: alice's sync
		// has those once it has this.
		back.send(textFrom("bob@network", "m2", "see you too"))
		s.waitMessage(room, "see you too")
		for _, op := range []string{connector.OpEditMessage, connector.OpReact} {
			if got := back.commandsOf(op); len(got) != 0 {
				t.Errorf("the network got %s %+v of a message the user deleted", op, got)
			}
		}
		for _, evt := range s.sync.Events(room) {
			if msg := evt.Content.AsMessage(); evt.Sender == ghost && msg != nil && msg.MsgType == event.MsgNotice &&
				strings.Contains(msg.Body, "not delivered") {
				t.Errorf("notice %q about a relation of a message the user deleted", msg.Body)
			}
		}
	})
}

// TestReactionRemovedInOldRoomAfterUpgradeReachesNetwork: the user reacted
// to the contact's message before the upgrade, and takes the reaction back
// in the old room afterwards (where it is): the network gets the unreact.
func TestReactionRemovedInOldRoomAfterUpgradeReachesNetwork(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, syncedRedactions)
		f := s.connectFake(nil)
		ghost := s.ghost("bob@network")
		f.send(textFrom("bob@network", "m1", "lunch?"))
		old := s.roomOf("bob@network")
		msg := s.waitMessage(old, "lunch?")
		reaction, err := s.alice.SendReaction(context.Background(), old, msg.ID, "👍")
		if err != nil {
			t.Fatal(err)
		}
		tesths.WaitFor(t, 20*time.Second, "the reaction at the network", func() (bool, error) {
			return len(f.commandsOf(connector.OpReact)) == 1, nil
		})
		s.upgradeDM(old, ghost)
		s.waitFollowing(s.alice.UserID)

		s.redactAs(old, reaction.EventID)
		tesths.WaitFor(t, 20*time.Second, "the reaction taken back at the network", func() (bool, error) {
			return len(f.commandsOf(connector.OpUnreact)) == 1, nil
		})
		if got := f.commandsOf(connector.OpUnreact)[0]; got.Target != "m1" || got.Key != "👍" {
			t.Errorf("unreact at the network = target %q key %q, want m1 👍", got.Target, got.Key)
		}
	})
}

// TestQueuedInOldRoomWhenPortalEnds: the user's message waits in the old
// room's queue (the network refuses it for now, so it is retried) when
// the chat is deleted on the network and the portal, now in the new room,
// ends. As in a room never upgraded, the message is given up before the
// farewell, and the user is told in the new room: it must not go out
// later to a chat the user was told is no longer bridged, nor be dropped
// without a word.
func TestQueuedInOldRoomWhenPortalEnds(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f, ghost, room, waiting := s.upgradedWithQueued("are you still there?")
		var refusing atomic.Bool
		var tries atomic.Int32
		refusing.Store(true)
		back := s.connectFakeWith(fakeSetup{store: f.store, before: func(_ context.Context, _ *sdk.Client, op string, cmd *connector.Command) error {
			if op == connector.OpSendMessage && cmd.Txn == string(waiting.EventID) {
				tries.Add(1)
				if refusing.Load() {
					return &connector.Error{Code: connector.ErrNetwork, Message: "bob's server is busy", Retryable: true}
				}
			}
			return nil
		}})
		tesths.WaitFor(t, 20*time.Second, "the queued message tried", func() (bool, error) { return tries.Load() > 0, nil })

		back.send(&connector.Event{Kind: connector.KindChatDeleted, Login: testLogin, TS: time.Now().UnixMilli(), Chat: dmChat("bob@network")})
		s.waitNotice(s.sync, room, ghost, "deleted on")
		// bob's server takes messages again: a retry would deliver it.
		refusing.Store(false)
		s.waitNothingQueued("the message given up")
		if remote := back.answeredID(connector.OpSendMessage, string(waiting.EventID)); remote != "" {
			t.Errorf("the network got the message (as %s) after the user was told the chat is no longer bridged", remote)
		}
		s.waitNotice(s.sync, room, ghost, string(waiting.EventID))
	})
}

// TestInDoubtMessageDeletedInOldRoomAfterUpgrade: the connector passes the
// user's message on to the network and its connection drops before the
// answer; the user upgrades the DM and deletes the message in the old
// room. The network may have it, so when the connector is back the send
// goes again (answered with its first result) and the message is deleted
// there.
func TestInDoubtMessageDeletedInOldRoomAfterUpgrade(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, syncedRedactions)
		f, old, sent := s.sentAsConnectionDropped(s.connectFakeWith, func(f *fakeConnector) id.RoomID {
			return s.bobPortal(f, "m1", "before the upgrade")
		})
		ghost := s.ghost("bob@network")
		first := f.answeredID(connector.OpSendMessage, string(sent))
		if first == "" {
			t.Fatal("the network has no id for the message")
		}
		s.upgradeDM(old, ghost)
		s.waitFollowing(s.alice.UserID)

		s.redactAs(old, sent)
		tesths.WaitFor(t, 20*time.Second, "the deletion noted", func() (bool, error) {
			return s.countRows("SELECT COUNT(*) FROM early_redaction WHERE event_id = $1", string(sent)) == 1, nil
		})
		back := s.connectFake(f.store)
		tesths.WaitFor(t, 20*time.Second, "the message deleted at the network", func() (bool, error) {
			dels := back.commandsOf(connector.OpDeleteMessage)
			return len(dels) == 1 && dels[0].Target == first, nil
		})
		s.waitNothingQueued("nothing left queued")
	})
}

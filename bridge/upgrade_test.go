package bridge_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestUpgradedDMFollowsTheUser: the user upgrades their DM the way Element
// does it: the homeserver makes a new room and puts a tombstone in the old
// one, and the client invites the old room's members into the new one with
// a plain invite. The portal moves there: the contact's next message is in
// the new room and not in the old one, the new room is in m.direct and the
// old one is not, and the ghost left the old room.
func TestUpgradedDMFollowsTheUser(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		ctx := context.Background()
		f := s.connectFake(nil)
		ghost := s.ghost("bob@network")
		old := s.bobPortal(f, "m1", "before the upgrade")

		room := s.upgradeDM(old, ghost)
		s.waitDirect(ghost, room, true)
		s.waitDirect(ghost, old, false)

		f.send(textFrom("bob@network", "m2", "after the upgrade"))
		if msg := s.waitMessage(room, "after the upgrade"); msg.Sender != ghost {
			t.Errorf("sender %s, want %s", msg.Sender, ghost)
		}
		if got := s.roomOf("bob@network"); got != room {
			t.Errorf("portal room = %s, want the upgraded room %s", got, room)
		}
		for r, want := range map[id.RoomID]int{old: 0, room: 1} {
			counts, err := s.timelineBodies(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if n := counts["after the upgrade"]; n != want {
				t.Errorf("room %s shows the message after the upgrade %d times, want %d", r, n, want)
			}
		}
	})
}

// upgradeDM upgrades the DM as alice, the way Element does (the upgrade,
// then a plain invite of the ghost), and waits until the ghost is in the
// new room and out of the old one; it returns the new room.
func (s *stack) upgradeDM(old id.RoomID, ghost id.UserID) id.RoomID {
	s.t.Helper()
	room := s.upgradeAndInvite(old, ghost)
	s.waitMembership(s.sync, room, ghost, event.MembershipJoin)
	s.waitMembership(s.sync, old, ghost, event.MembershipLeave)
	return room
}

// upgradeAndInvite upgrades the DM as alice and invites the ghost into the
// new room, which it returns, without waiting for the bridge.
func (s *stack) upgradeAndInvite(old id.RoomID, ghost id.UserID) id.RoomID {
	s.t.Helper()
	ctx := context.Background()
	var create event.CreateEventContent
	if err := s.alice.StateEvent(ctx, old, event.StateCreate, "", &create); err != nil {
		s.t.Fatal(err)
	}
	var upgraded struct {
		ReplacementRoom id.RoomID `json:"replacement_room"`
	}
	version := create.RoomVersion
	if version == "" {
		version = "1"
	}
	if _, err := s.alice.MakeRequest(ctx, http.MethodPost, s.alice.BuildClientURL("v3", "rooms", old, "upgrade"),
		map[string]any{"new_version": version}, &upgraded); err != nil {
		s.t.Fatalf("upgrade: %v", err)
	}
	room := upgraded.ReplacementRoom
	if _, err := s.alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: ghost}); err != nil {
		s.t.Fatal(err)
	}
	return room
}

// upgradedWithQueued opens bob's DM, sends text from alice while the
// connector is away (so it waits for it), and upgrades the DM: it returns
// the stopped fake (whose store a new one takes over), the ghost, the new
// room and alice's queued message.
func (s *stack) upgradedWithQueued(text string) (*fakeConnector, id.UserID, id.RoomID, *mautrix.RespSendEvent) {
	s.t.Helper()
	f := s.connectFake(nil)
	ghost := s.ghost("bob@network")
	old := s.bobPortal(f, "m1", "before the upgrade")
	// The connector is away: the message waits for it.
	f.stop()
	waiting, err := s.alice.SendText(context.Background(), old, text)
	if err != nil {
		s.t.Fatal(err)
	}
	s.waitQueued(waiting.EventID, "the message queued for the connector")
	return f, ghost, s.upgradeDM(old, ghost), waiting
}

// waitQueued waits until the command of alice's event evt waits for the
// connector.
func (s *stack) waitQueued(evt id.EventID, what string) {
	s.t.Helper()
	tesths.WaitFor(s.t, 20*time.Second, what, func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM pending_command WHERE txn = $1", string(evt)) == 1, nil
	})
}

// waitNothingQueued waits until no command waits for the connector.
func (s *stack) waitNothingQueued(what string) {
	s.t.Helper()
	tesths.WaitFor(s.t, 20*time.Second, what, func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM pending_command") == 0, nil
	})
}

// connectRefusingSends connects a fake, on store, whose network refuses
// every message with a "bob blocked you" error.
func (s *stack) connectRefusingSends(store *sdk.MemoryStore) *fakeConnector {
	s.t.Helper()
	return s.connectFakeWith(fakeSetup{store: store, before: func(_ context.Context, _ *sdk.Client, op string, _ *connector.Command) error {
		if op == connector.OpSendMessage {
			return &connector.Error{Code: connector.ErrForbidden, Message: "bob blocked you"}
		}
		return nil
	}})
}

// editAs sends alice's edit of target in room, with body text.
func (s *stack) editAs(room id.RoomID, target id.EventID, text string) *mautrix.RespSendEvent {
	s.t.Helper()
	edit := &event.MessageEventContent{MsgType: event.MsgText, Body: text}
	edit.SetEdit(target)
	sent, err := s.alice.SendMessageEvent(context.Background(), room, event.EventMessage, edit)
	if err != nil {
		s.t.Fatal(err)
	}
	return sent
}

// TestQueuedCommandFailsAfterUpgrade: a message of the user's still
// waiting for the network when they upgrade the DM goes out after the
// portal moved to the new room; when the network then refuses it, the
// user is told in the new room, where they are, with a link to their
// message in the old one.
func TestQueuedCommandFailsAfterUpgrade(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f, ghost, room, waiting := s.upgradedWithQueued("did you get my mail?")
		// Back once the portal has moved, the network refuses the message.
		s.connectRefusingSends(f.store)
		notice := s.waitNotice(s.sync, room, ghost, "bob blocked you")
		if !strings.Contains(notice, "was not delivered") || !strings.Contains(notice, string(waiting.EventID)) {
			t.Errorf("notice in the new room = %q, want it to say the message was not delivered and link to it", notice)
		}
		// Told first, then dropped (commandFailed).
		s.waitNothingQueued("the failed command dropped")
	})
}

// TestQueuedMessageSentAfterUpgradeIsMapped: a message of the user's
// still waiting for the network when they upgrade the DM goes out after
// the portal moved to the new room, and the network takes it. The bridge
// must still record which network message it became: the user's edit of
// it, sent from the new room (the old one no longer takes their
// messages), reaches the network naming the message's network id.
func TestQueuedMessageSentAfterUpgradeIsMapped(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f, _, room, waiting := s.upgradedWithQueued("see you tomorow")
		// Back once the portal has moved, the network takes the message.
		back := s.connectFake(f.store)
		var remote string
		tesths.WaitFor(t, 20*time.Second, "the queued message sent and its command dropped", func() (bool, error) {
			remote = back.answeredID(connector.OpSendMessage, string(waiting.EventID))
			return remote != "" && s.countRows("SELECT COUNT(*) FROM pending_command") == 0, nil
		})

		s.editAs(room, waiting.EventID, "see you tomorrow")
		tesths.WaitFor(t, 20*time.Second, "the edit at the network", func() (bool, error) {
			return len(back.commandsOf(connector.OpEditMessage)) > 0, nil
		})
		wantEditOf(t, back, remote, "see you tomorrow")
	})
}

// TestTombstoneToAnotherRoomIsNotFollowed: the user puts a tombstone in
// the DM that names a room of theirs that was not created as its upgrade,
// and invites the ghost there. The ghost refuses the invite without ever
// joining that room (which may be anyone's), says why in its answer, and
// the portal stays where it is.
func TestTombstoneToAnotherRoomIsNotFollowed(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		ctx := context.Background()
		f := s.connectFake(nil)
		ghost := s.ghost("bob@network")
		old := s.bobPortal(f, "m1", "before")

		other, err := s.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "not an upgrade"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err = s.alice.SendStateEvent(ctx, old, event.StateTombstone, "",
			&event.TombstoneEventContent{Body: "moved", ReplacementRoom: other.RoomID}); err != nil {
			t.Fatalf("tombstone: %v", err)
		}
		if _, err = s.alice.InviteUser(ctx, other.RoomID, &mautrix.ReqInviteUser{UserID: ghost}); err != nil {
			t.Fatal(err)
		}
		s.waitMembership(s.sync, other.RoomID, ghost, event.MembershipLeave)
		for _, evt := range s.sync.Events(other.RoomID) {
			if evt.Type == event.StateMember && evt.GetStateKey() == string(ghost) {
				member := evt.Content.AsMember()
				if member.Membership == event.MembershipJoin {
					t.Errorf("the ghost joined the room the tombstone named")
				}
				if member.Membership == event.MembershipLeave && !strings.Contains(member.Reason, "not an upgrade") {
					t.Errorf("the refusal's reason = %q, want it to say the room is not an upgrade", member.Reason)
				}
			}
		}
		f.send(textFrom("bob@network", "m2", "still here"))
		s.waitMessage(old, "still here")
		if got := s.roomOf("bob@network"); got != old {
			t.Errorf("portal room = %s, want it to stay %s", got, old)
		}
	})
}

// TestEditInUpgradedRoomOfQueuedMessage: the connector is away, the user
// sends a message, upgrades the DM and then, in the new room (the old one
// no longer takes their messages), edits that message, still queued in
// the old room, and reacts to it. Neither is refused as "not delivered":
// once the connector is back the network gets the message and then the
// edit and the reaction, which name the network id the message got.
func TestEditInUpgradedRoomOfQueuedMessage(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		ctx := context.Background()
		f, _, room, waiting := s.upgradedWithQueued("see you tomorow")

		sent := s.editAs(room, waiting.EventID, "see you tomorrow")
		reaction, err := s.alice.SendReaction(ctx, room, waiting.EventID, "👍")
		if err != nil {
			t.Fatal(err)
		}
		// Queued behind the message, not refused (which handles the
		// events without a command).
		tesths.WaitFor(t, 20*time.Second, "the edit and the reaction queued behind the message", func() (bool, error) {
			return s.countRows("SELECT COUNT(*) FROM pending_command WHERE txn IN ($1, $2) AND target_mx = $3",
				string(sent.EventID), string(reaction.EventID), string(waiting.EventID)) == 2, nil
		})

		back := s.connectFake(f.store)
		tesths.WaitFor(t, 20*time.Second, "the message, its edit and the reaction at the network", func() (bool, error) {
			return back.answeredID(connector.OpEditMessage, string(sent.EventID)) != "" &&
				back.answeredID(connector.OpReact, string(reaction.EventID)) != "", nil
		})
		remote := back.answeredID(connector.OpSendMessage, string(waiting.EventID))
		if remote == "" {
			t.Fatal("the edit reached the network, the message it edits did not")
		}
		if order := back.txnOrder(); order[string(waiting.EventID)] > order[string(sent.EventID)] ||
			order[string(waiting.EventID)] > order[string(reaction.EventID)] {
			t.Errorf("the network got the edit or reaction before the message (%v)", order)
		}
		if react := back.commandsOf(connector.OpReact)[0]; react.Target != remote || react.Key != "👍" {
			t.Errorf("reaction at the network = target %q key %q, want target %q key 👍", react.Target, react.Key, remote)
		}
		wantEditOf(t, back, remote, "see you tomorrow")
		s.waitNothingQueued("the commands dropped once done")
	})
}

// TestEditInUpgradedRoomOfFailedQueuedMessage: as above, but the network
// refuses the message once the connector is back. The edit queued behind
// it in the new room does not wait there for good: the user is told it
// was not delivered either, and nothing stays queued.
func TestEditInUpgradedRoomOfFailedQueuedMessage(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f, ghost, room, waiting := s.upgradedWithQueued("see you tomorow")
		sent := s.editAs(room, waiting.EventID, "see you tomorrow")
		s.waitQueued(sent.EventID, "the edit queued behind the message")

		back := s.connectRefusingSends(f.store)
		s.waitNotice(s.sync, room, ghost, "bob blocked you")
		s.waitNotice(s.sync, room, ghost, "not confirmed as delivered")
		s.waitNothingQueued("nothing left queued")
		if edits := back.commandsOf(connector.OpEditMessage); len(edits) != 0 {
			t.Errorf("the network got edits %+v of a message it refused", edits)
		}
	})
}

// wantEditOf checks the first edit the network got: of its message remote
// in bob's chat, with text.
func wantEditOf(t *testing.T, f *fakeConnector, remote, text string) {
	t.Helper()
	got := f.commandsOf(connector.OpEditMessage)[0]
	if got.Target != remote || got.Text != text || got.Chat == nil || got.Chat.ID != "bob@network" {
		t.Errorf("edit at the network = target %q text %q chat %+v, want target %q text %q chat bob@network",
			got.Target, got.Text, got.Chat, remote, text)
	}
}

// txnOrder gives each command's txn the position it reached the fake at.
func (f *fakeConnector) txnOrder() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	order := make(map[string]int, len(f.commands))
	for i, c := range f.commands {
		if _, seen := order[c.Cmd.Txn]; !seen {
			order[c.Cmd.Txn] = i
		}
	}
	return order
}

// TestEditQueuedInRoomUpgradedAgain: the connector is away, the user sends
// a message in A, upgrades A to B, edits the message from B (queued behind
// it there), then upgrades B to C. Once the connector is back the network
// gets the message and then the edit: the edit, queued in B, is still the
// chat's, though the portal moved on to C meanwhile.
func TestEditQueuedInRoomUpgradedAgain(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f, ghost, b, waiting := s.upgradedWithQueued("see you tomorow")
		sent := s.editAs(b, waiting.EventID, "see you tomorrow")
		tesths.WaitFor(t, 20*time.Second, "the edit queued behind the message", func() (bool, error) {
			return s.countRows("SELECT COUNT(*) FROM pending_command WHERE txn = $1 AND target_mx = $2",
				string(sent.EventID), string(waiting.EventID)) == 1, nil
		})
		c := s.upgradeDM(b, ghost)
		if got := s.roomOf("bob@network"); got != c {
			t.Fatalf("portal room = %s, want the second upgrade %s", got, c)
		}

		back := s.connectFake(f.store)
		tesths.WaitFor(t, 30*time.Second, "the message and its edit at the network, or the edit dropped", func() (bool, error) {
			return back.answeredID(connector.OpEditMessage, string(sent.EventID)) != "" ||
				s.countRows("SELECT COUNT(*) FROM pending_command WHERE txn = $1", string(sent.EventID)) == 0, nil
		})
		remote := back.answeredID(connector.OpSendMessage, string(waiting.EventID))
		if remote == "" {
			t.Fatal("the message did not reach the network")
		}
		edits := back.commandsOf(connector.OpEditMessage)
		if len(edits) != 1 || edits[0].Target != remote {
			t.Fatalf("edits at the network = %+v, want one of %q (the edit queued in the middle room was dropped)", edits, remote)
		}
	})
}

// TestReactionInUpgradedRoomOfUnsupportedQueuedMessage: as above, but the
// connector comes back with a network that carries no files, so the
// queued picture is dropped with a notice before it is sent. The reaction
// queued behind it in the new room is not left waiting there: the user is
// told it was not delivered either, and nothing stays queued.
func TestReactionInUpgradedRoomOfUnsupportedQueuedMessage(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		ctx := context.Background()
		f := s.connectFake(nil)
		ghost := s.ghost("bob@network")
		old := s.bobPortal(f, "m1", "before the upgrade")
		f.stop()
		picture := makePNG(t, 8, 8)
		up, err := s.alice.UploadBytes(ctx, picture, "image/png")
		if err != nil {
			t.Fatal(err)
		}
		sent, err := s.alice.SendMessageEvent(ctx, old, event.EventMessage, &event.MessageEventContent{
			MsgType: event.MsgImage, Body: "cat.png", URL: up.ContentURI.CUString(),
			Info: &event.FileInfo{MimeType: "image/png", Size: len(picture)}})
		if err != nil {
			t.Fatal(err)
		}
		s.waitQueued(sent.EventID, "the picture queued for the connector")
		room := s.upgradeDM(old, ghost)
		reaction, err := s.alice.SendReaction(ctx, room, sent.EventID, "👍")
		if err != nil {
			t.Fatal(err)
		}
		s.waitQueued(reaction.EventID, "the reaction queued behind the picture")

		caps := helloFor().Capabilities
		caps.Media = false
		back := s.connectFakeWith(fakeSetup{store: f.store, caps: &caps})
		s.waitNotice(s.sync, room, ghost, "does not support")
		s.waitNotice(s.sync, room, ghost, "not confirmed as delivered")
		s.waitNothingQueued("nothing left queued")
		if got := back.commandsOf(connector.OpReact); len(got) != 0 {
			t.Errorf("the network got reactions %+v to a picture it never got", got)
		}
	})
}

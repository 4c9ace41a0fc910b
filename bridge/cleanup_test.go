package bridge_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestLeavingPortalCleansUp: the user leaves a DM; the bridge forgets the
// room, the network hears nothing, and the contact's next message opens a
// fresh DM the user is in.
func TestLeavingPortalCleansUp(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		ctx := context.Background()
		f := s.connectFake(nil)
		ghost := s.ghost("bob@network")
		first := s.bobPortal(f, "m1", "hi")
		s.waitDirect(ghost, first, true)
		commandsBefore := f.changingCommands()

		if _, err := s.alice.LeaveRoom(ctx, first); err != nil {
			t.Fatal(err)
		}
		s.waitDirect(ghost, first, false)
		tesths.WaitFor(t, 20*time.Second, "the ghost leaving the old room", func() (bool, error) {
			return !s.ghostIn(ghost, first), nil
		})
		tesths.WaitFor(t, 20*time.Second, "the portal row to go", func() (bool, error) {
			return s.countRows("SELECT COUNT(*) FROM portal") == 0, nil
		})
		if n := s.countRows("SELECT COUNT(*) FROM cleaned_room WHERE room_id=$1", first); n != 1 {
			t.Errorf("cleaned_room has %d rows for the room, want 1", n)
		}
		if n := f.changingCommands(); n != commandsBefore {
			t.Errorf("the connector got %d commands because of the leave, want none", n-commandsBefore)
		}

		f.send(textFrom("bob@network", "m2", "are you there?"))
		second := s.roomOfOther("bob@network", first)
		s.waitMembership(s.sync, second, s.alice.UserID, event.MembershipJoin)
		s.waitMessage(second, "are you there?")
		s.waitDirect(ghost, second, true)
		if direct := tesths.DirectContent(t, s.alice); slices.Contains(direct[ghost], first) {
			t.Errorf("m.direct lists the old room again: %v", direct[ghost])
		}
	})
}

// bobDirect makes bob's portal with a first message and waits until
// alice's m.direct lists it; it returns the room and bob's ghost.
func (s *stack) bobDirect(f *fakeConnector) (id.RoomID, id.UserID) {
	s.t.Helper()
	ghost := s.ghost("bob@network")
	f.send(textFrom("bob@network", "m1", "hi"))
	room := s.roomOf("bob@network")
	s.waitDirect(ghost, room, true)
	return room, ghost
}

// waitPortalEnded waits until the bridge has stopped bridging the room:
// the ghost tells the user why (a notice containing why) and leaves, the
// room leaves alice's m.direct, and the portal row is gone.
func (s *stack) waitPortalEnded(room id.RoomID, ghost id.UserID, why string) {
	s.t.Helper()
	s.waitNotice(s.sync, room, ghost, why)
	s.waitMembership(s.sync, room, ghost, event.MembershipLeave)
	s.waitDirect(ghost, room, false)
	tesths.WaitFor(s.t, 20*time.Second, "the portal row to go", func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM portal") == 0, nil
	})
}

// TestChatDeletedCleansUp: a chat deleted on the network stops being bridged;
// the user keeps the room and is told why.
func TestChatDeletedCleansUp(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	f := s.connectFake(nil)
	room, ghost := s.bobDirect(f)
	f.send(&connector.Event{Kind: connector.KindChatDeleted, Login: testLogin, TS: time.Now().UnixMilli(), Chat: dmChat("bob@network")})
	s.waitPortalEnded(room, ghost, "deleted on Fake network")
}

// TestBadCredentialsCleansUp: a login whose session the network ended
// leaves no portal behind that looks bridged. A message of the user's that
// was still waiting for the network is reported in the room, not left to
// fail unseen once the room is no longer a portal.
func TestBadCredentialsCleansUp(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	f := s.connectFake(nil)
	room, ghost := s.bobDirect(f)
	f.mu.Lock()
	f.fail[connector.OpSendMessage] = &connector.Error{Code: connector.ErrNetwork, Message: "network away", Retryable: true}
	f.mu.Unlock()
	waiting, err := s.alice.SendText(context.Background(), room, "did you get my mail?")
	if err != nil {
		t.Fatal(err)
	}
	tesths.WaitFor(t, 20*time.Second, "the message queued for a retry", func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM pending_command WHERE txn = $1", string(waiting.EventID)) == 1, nil
	})
	f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(),
		State: connector.LoginBadCredentials, Message: "password changed"})
	s.waitPortalEnded(room, ghost, "was logged out (password changed)")
	// The connector had it and answered with an error worth retrying: it
	// may have gone out before the error, so the notice does not say it
	// did not.
	s.fidNotice(room, "Your message may not have been delivered", "stopped being bridged")
	if n := s.countRows("SELECT COUNT(*) FROM pending_command"); n != 0 {
		t.Errorf("%d commands left queued for a login that is gone", n)
	}
	if n := s.countRows("SELECT COUNT(*) FROM login WHERE state='bad_credentials'"); n != 1 {
		t.Errorf("login row with bad_credentials: %d, want it kept", n)
	}
}

// TestDirectRepair: someone's client rewrote m.direct without a portal and
// with a room the bridge cleaned up; a repair cycle restores the first,
// drops the second, and leaves the user's own entries alone.
func TestDirectRepair(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{configure: func(c *config.Config) {
			c.Bridge.MDirectRepairInterval = config.Duration(300 * time.Millisecond)
		}})
		ctx := context.Background()
		f := s.connectFake(nil)
		bob, carol := s.ghost("bob@network"), s.ghost("carol@network")
		f.send(textFrom("bob@network", "m1", "hi"))
		f.send(textFrom("carol@network", "m1", "hi"))
		bobRoom, carolRoom := s.roomOf("bob@network"), s.roomOf("carol@network")
		s.waitDirect(bob, bobRoom, true)
		s.waitDirect(carol, carolRoom, true)
		if _, err := s.alice.LeaveRoom(ctx, carolRoom); err != nil {
			t.Fatal(err)
		}
		s.waitDirect(carol, carolRoom, false)

		edited := map[id.UserID][]id.RoomID{
			carol:              {carolRoom},
			"@zed:example.org": {"!unrelated:example.org", carolRoom},
		}
		if err := s.alice.SetAccountData(ctx, event.AccountDataDirectChats.Type, edited); err != nil {
			t.Fatal(err)
		}
		tesths.WaitFor(t, 20*time.Second, "the repaired m.direct", func() (bool, error) {
			direct := tesths.DirectContent(t, s.alice)
			return slices.Contains(direct[bob], bobRoom) && len(direct[carol]) == 0 &&
				slices.Equal(direct["@zed:example.org"], []id.RoomID{"!unrelated:example.org"}), nil
		})
	})
}

// roomOfOther waits for the chat's portal to be a room other than old.
func (s *stack) roomOfOther(chatID string, old id.RoomID) id.RoomID {
	s.t.Helper()
	return s.portalRoom(20*time.Second, "a new portal room for "+chatID, testLogin, chatID, old)
}

// ghostIn asks the homeserver whether the ghost is joined to the room.
func (s *stack) ghostIn(ghost id.UserID, roomID id.RoomID) bool {
	s.t.Helper()
	rooms, err := s.br.Link.AS.Intent(ghost).JoinedRooms(context.Background())
	if err != nil {
		s.t.Fatalf("joined rooms of %s: %v", ghost, err)
	}
	return slices.Contains(rooms.JoinedRooms, roomID)
}

// changingCommands counts the commands that change something on the network
// (everything but typing, read markers and presence).
func (f *fakeConnector) changingCommands() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.commands {
		switch c.Op {
		case connector.OpSetTyping, connector.OpMarkRead, connector.OpSetPresence:
		default:
			n++
		}
	}
	return n
}

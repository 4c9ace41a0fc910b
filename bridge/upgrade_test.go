package bridge_test

import (
	"context"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/testdb"
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

		var create event.CreateEventContent
		if err := s.alice.StateEvent(ctx, old, event.StateCreate, "", &create); err != nil {
			t.Fatal(err)
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
			t.Fatalf("upgrade: %v", err)
		}
		room := upgraded.ReplacementRoom
		if _, err := s.alice.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: ghost}); err != nil {
			t.Fatal(err)
		}
		s.waitMembership(s.sync, room, ghost, event.MembershipJoin)
		s.waitMembership(s.sync, old, ghost, event.MembershipLeave)
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

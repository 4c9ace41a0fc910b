package portal

import (
	"testing"

	"maunium.net/go/mautrix/event"
)

// TestUpgradedDMFollowsTombstone: alice upgrades her DM with bob (room
// version upgrade: a tombstone in the old room naming the new one, whose
// create event names the old one) and her client brings bob's ghost along,
// with a plain invite as Element does, or as a direct chat. The portal
// follows: bob's next message goes to the new room (it used to go to the
// superseded one, which clients hide once the new one is joined, after the
// invite was refused as a second DM with bob), which is in m.direct, and
// the ghost leaves the old room.
func TestUpgradedDMFollowsTombstone(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain invite", true: "direct invite"}[direct], func(t *testing.T) {
			upgradeFollowed(t, direct)
		})
	}
}

func upgradeFollowed(t *testing.T, direct bool) {
	u := newUnit(t, true)
	u.remote(t, fromBob("m1", "hello"))
	old := u.portal(t).RoomID
	resolveBob(u)
	tomb := map[string]any{"body": "This room has been replaced", "replacement_room": userRoom}
	u.hs.SetState(old, event.StateTombstone, "", tomb)
	u.handle(t, old, "$tomb", map[string]any{"type": "m.room.tombstone", "state_key": "", "content": tomb})
	u.hs.SetState(userRoom, event.StateCreate, "", map[string]any{"predecessor": map[string]any{"room_id": old, "event_id": "$tomb"}})
	inviteBob(t, u, unitUser, direct)
	u.hs.Reset()
	u.remote(t, fromBob("m2", "are you there?"))
	got := 0
	for _, c := range u.sends() {
		if c.Content["body"] == "are you there?" {
			got++
			if c.RoomID != userRoom {
				t.Errorf("bob's message after the upgrade went to the superseded room %s, not to %s", c.RoomID, userRoom)
			}
		}
	}
	if got != 1 {
		t.Errorf("bob's message after the upgrade was posted %d times, want once", got)
	}
	if p := u.portal(t); p.RoomID != userRoom || !p.InDirect || !p.UserJoined {
		t.Errorf("portal after the upgrade: %+v", p)
	}
	if u.hs.Membership(old, unitGhost) == event.MembershipJoin {
		t.Error("the ghost stayed in the superseded room")
	}
}

// TestRoomNamingPortalAsPredecessorIsNotAnUpgrade: anyone may create a room
// whose create event names the portal as its predecessor; without the
// portal's tombstone naming it, it is a second DM with the contact and is
// refused, and the portal stays where it is.
func TestRoomNamingPortalAsPredecessorIsNotAnUpgrade(t *testing.T) {
	u := newUnit(t, true)
	u.remote(t, fromBob("m1", "hello"))
	old := u.portal(t).RoomID
	resolveBob(u)
	u.hs.SetState(userRoom, event.StateCreate, "", map[string]any{"predecessor": map[string]any{"room_id": old, "event_id": "$x"}})
	inviteBob(t, u, unitUser, true)
	if p := u.portal(t); p.RoomID != old {
		t.Errorf("portal moved to %s without a tombstone in %s", p.RoomID, old)
	}
}

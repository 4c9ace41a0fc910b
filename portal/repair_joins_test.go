package portal

import (
	"context"
	"slices"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/internal/fakematrix"
)

// TestUnitRepairJoins: the repair pass finds the portals the bridge joined
// the user to but where the homeserver does not have them joined. A join that
// never applied (still invited) is done again; a user who left is a portal
// cleaned up; a portal the user is in costs the one joined-rooms call.
func TestUnitRepairJoins(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// membership is what the homeserver holds for the user after the
		// bridge's join ("": the join applied).
		membership event.Membership
		wantJoins  int
		wantPortal bool
	}{
		{name: "joined", wantJoins: 0, wantPortal: true},
		{name: "join not applied", membership: event.MembershipInvite, wantJoins: 1, wantPortal: true},
		{name: "left unnoticed", membership: event.MembershipLeave, wantJoins: 0, wantPortal: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnit(t, true)
			u.remote(t, fromBob("m1", "hello"))
			p := u.portal(t)
			if p == nil || !p.UserJoined {
				t.Fatalf("portal %+v, want one the user joined", p)
			}
			if tc.membership != "" {
				u.hs.SetState(p.RoomID, event.StateMember, string(unitUser), &event.MemberEventContent{Membership: tc.membership})
			}
			u.hs.Reset()
			if err := u.m.RepairDirect(ctx); err != nil {
				t.Fatal(err)
			}
			if n := len(u.hs.Calls("JoinedRooms")); n != 1 {
				t.Errorf("%d joined-rooms reads, want 1", n)
			}
			if n := len(u.hs.Calls("JoinRoomByID")); n != tc.wantJoins {
				t.Errorf("%d joins, want %d", n, tc.wantJoins)
			}
			if got := u.hs.Membership(p.RoomID, unitUser); tc.wantPortal && got != event.MembershipJoin {
				t.Errorf("user's membership %q after the repair, want join", got)
			}
			after := u.portal(t)
			if (after != nil) != tc.wantPortal {
				t.Fatalf("portal after the repair: %+v, want it kept: %v", after, tc.wantPortal)
			}
			if !tc.wantPortal {
				if got := u.hs.Membership(p.RoomID, unitGhost); got != event.MembershipLeave {
					t.Errorf("ghost's membership %q after the cleanup, want leave", got)
				}
				if rooms := u.direct(t)[string(unitGhost)]; len(rooms) != 0 {
					t.Errorf("m.direct still lists %v for the ghost", rooms)
				}
			}
			// A second pass finds everything in order: no join, no cleanup.
			u.hs.Reset()
			if err := u.m.RepairDirect(ctx); err != nil {
				t.Fatal(err)
			}
			if n := len(u.hs.Calls("JoinRoomByID", "LeaveRoom")); n != 0 {
				t.Errorf("second pass made %d joins or leaves, want 0", n)
			}
		})
	}
}

// TestUnitRefusedJoinInvitesAgain: a room created without the user's invite
// refuses the double puppet's join; the ghost invites the user (as a DM) and
// the join goes through, so the message is posted instead of failing.
func TestUnitRefusedJoinInvitesAgain(t *testing.T) {
	u := newUnit(t, true)
	refused := false
	u.hs.Fail = func(c fakematrix.Call) error {
		switch {
		case c.Method == "CreateRoom":
			return nil
		case c.Method == "JoinRoomByID" && c.User == unitUser && !refused:
			refused = true
			// As if createRoom had not invited the user: no member event.
			u.hs.SetState(c.RoomID, event.StateMember, string(unitUser), &event.MemberEventContent{Membership: event.MembershipLeave})
			return fakematrix.Forbidden("not invited")
		}
		return nil
	}
	u.remote(t, fromBob("m1", "hello"))
	p := u.portal(t)
	if p == nil || !p.UserJoined {
		t.Fatalf("portal %+v, want one the user joined", p)
	}
	var order []string
	for _, c := range u.hs.Calls("JoinRoomByID", "InviteUser") {
		if c.User == unitUser || c.Target == unitUser {
			order = append(order, c.Method)
		}
	}
	if want := []string{"JoinRoomByID", "InviteUser", "JoinRoomByID"}; !slices.Equal(order, want) {
		t.Errorf("calls %v, want %v", order, want)
	}
	for _, c := range u.hs.Calls("InviteUser") {
		if c.Content["is_direct"] != true {
			t.Errorf("the new invite is not marked direct: %v", c.Content)
		}
	}
	if got := u.hs.Membership(p.RoomID, unitUser); got != event.MembershipJoin {
		t.Errorf("user's membership %q, want join", got)
	}
	if n := len(u.sends()); n != 1 {
		t.Errorf("%d messages posted, want 1", n)
	}
}

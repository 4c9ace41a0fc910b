package bot

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
)

// Tests from a review (helper agent): a management room that stayed
// recorded for a user who was no longer in it, or that the bot was kicked
// from, so the user's login alerts went to others or nowhere.

func memberEvent(roomID id.RoomID, sender, target id.UserID, m event.Membership) *event.Event {
	key := string(target)
	return &event.Event{ID: id.EventID("$" + string(m) + "_" + string(target)), RoomID: roomID, Sender: sender,
		Type: event.StateMember, StateKey: &key,
		Content: event.Content{Parsed: &event.MemberEventContent{Membership: m}}}
}

// aliceMgmtRoom is alice's management room in these tests.
const aliceMgmtRoom = id.RoomID("!mgmt:x")

// aliceManagedBot is a unit bot that alice has invited into a room of her
// own, aliceMgmtRoom, which the invite made her management room.
func aliceManagedBot(t *testing.T) (*Bot, *fakematrix.Homeserver, *database.Database) {
	t.Helper()
	b, hs, db := newUnitBot(t)
	if err := b.HandleRoomEvent(context.Background(), botInvite(b, hs, aliceMgmtRoom, "@alice:x")); err != nil {
		t.Fatal(err)
	}
	return b, hs, db
}

// TestManagementRoomOwnerLeavesWhileOthersStay: alice's management
// room is where the login alerts for alice's logins go. When alice invites
// bob into it and then leaves, the bot stays with bob (memberLeft only
// forgets the room when the bot is left alone), and alice's record still
// names the room: her login alerts (login id, connector, state) are then
// posted to bob, and alice never sees them.
func TestManagementRoomOwnerLeavesWhileOthersStay(t *testing.T) {
	ctx := context.Background()
	b, hs, db := aliceManagedBot(t)
	room := aliceMgmtRoom
	// alice invites bob, bob joins, alice leaves.
	hs.SetState(room, event.StateMember, "@bob:x", &event.MemberEventContent{Membership: event.MembershipJoin})
	if err := b.HandleRoomEvent(ctx, memberEvent(room, "@bob:x", "@bob:x", event.MembershipJoin)); err != nil {
		t.Fatal(err)
	}
	hs.SetState(room, event.StateMember, "@alice:x", &event.MemberEventContent{Membership: event.MembershipLeave})
	if err := b.HandleRoomEvent(ctx, memberEvent(room, "@alice:x", "@alice:x", event.MembershipLeave)); err != nil {
		t.Fatal(err)
	}
	u, err := db.User.Get(ctx, "@alice:x")
	if err != nil {
		t.Fatal(err)
	}
	if u != nil && u.ManagementRoom == room {
		t.Errorf("alice left %s, which bob still shares with the bot, but it is still her management room: "+
			"her login alerts would be posted to bob", room)
	}
}

// TestBotKickedByAnotherMember: the bot kicked out of alice's
// management room by someone else (a moderator she made): forgetRoom
// clears the management room of the kicker, not of alice, so her alerts
// keep going to a room the bot is no longer in; every send fails and the
// alert is retried forever, never reaching her.
func TestBotKickedByAnotherMember(t *testing.T) {
	ctx := context.Background()
	b, _, db := aliceManagedBot(t)
	room := aliceMgmtRoom
	bot := b.link.BotMXID()
	if err := b.HandleRoomEvent(ctx, memberEvent(room, "@mod:x", bot, event.MembershipLeave)); err != nil {
		t.Fatal(err)
	}
	if u, err := db.User.Get(ctx, "@alice:x"); err != nil {
		t.Fatal(err)
	} else if u != nil && u.ManagementRoom == room {
		t.Errorf("the bot was kicked from %s by @mod:x, but it is still alice's management room", room)
	}
}

// TestLeavingAnotherRoomKeepsManagementRoom: a user leaving some other
// room the bot is in keeps their management room.
func TestLeavingAnotherRoomKeepsManagementRoom(t *testing.T) {
	ctx := context.Background()
	b, _, db := aliceManagedBot(t)
	if err := b.HandleRoomEvent(ctx, memberEvent("!other:x", "@alice:x", "@alice:x", event.MembershipLeave)); err != nil {
		t.Fatal(err)
	}
	if u, err := db.User.Get(ctx, "@alice:x"); err != nil || u == nil || u.ManagementRoom != aliceMgmtRoom {
		t.Errorf("alice left another room, and her management room is now %+v, %v", u, err)
	}
}

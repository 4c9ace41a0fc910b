package memhs

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestSendIsIdempotentAndMembershipChecked: the behaviours the bridge's
// exactly-once path leans on answer as a homeserver's would.
func TestSendIsIdempotentAndMembershipChecked(t *testing.T) {
	s, ghost := startWithGhost(t)
	ctx := context.Background()
	if _, _, err := ghost.Register(ctx, &mautrix.ReqRegister[any]{Username: "ghost", Type: mautrix.AuthTypeAppservice}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ghost.Register(ctx, &mautrix.ReqRegister[any]{Username: "ghost", Type: mautrix.AuthTypeAppservice}); err == nil {
		t.Fatal("second register of the same user succeeded")
	}
	room, err := ghost.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{"@alice:hs"}, IsDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	content := map[string]string{"msgtype": "m.text", "body": "hi"}
	first, err := ghost.SendMessageEvent(ctx, room.RoomID, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := ghost.SendMessageEvent(ctx, room.RoomID, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: "t1"})
	if err != nil || again.EventID != first.EventID {
		t.Fatalf("repeated txn id: %v %v, want %s", again, err, first.EventID)
	}
	messages := 0
	for _, ev := range s.Timeline(string(room.RoomID)) {
		if ev.Type == "m.room.message" {
			messages++
		}
	}
	if messages != 1 {
		t.Fatalf("%d messages after a repeated txn id", messages)
	}
	alice, _ := mautrix.NewClient(s.URL, "@alice:hs", "as")
	alice.SetAppServiceUserID = true
	if _, err = alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, content); err == nil {
		t.Fatal("an invited user could send before joining")
	}
	if _, err = alice.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	if _, err = alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, content); err != nil {
		t.Fatal(err)
	}
	if err = alice.SetAccountData(ctx, "m.direct", map[string][]string{"@ghost:hs": {string(room.RoomID)}}); err != nil {
		t.Fatal(err)
	}
	if s.AccountData("@alice:hs", "m.direct") == nil {
		t.Fatal("m.direct not stored")
	}
}

// TestProfileChangeReachesJoinedRoomsOnly: the joined-room index that keeps a
// profile change and /joined_rooms from scanning every room must follow
// joins and leaves.
func TestProfileChangeReachesJoinedRoomsOnly(t *testing.T) {
	s, ghost := startWithGhost(t)
	ctx := context.Background()
	stay, err := ghost.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	left, err := ghost.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = ghost.LeaveRoom(ctx, left.RoomID); err != nil {
		t.Fatal(err)
	}
	if err = ghost.SetDisplayName(ctx, "Ghost"); err != nil {
		t.Fatal(err)
	}
	renamed := func(room id.RoomID) bool {
		for _, ev := range s.Timeline(string(room)) {
			if ev.Type == "m.room.member" && strings.Contains(string(ev.Content), `"Ghost"`) {
				return true
			}
		}
		return false
	}
	if !renamed(stay.RoomID) || renamed(left.RoomID) {
		t.Fatalf("displayname in the joined room: %v, in the room left: %v", renamed(stay.RoomID), renamed(left.RoomID))
	}
	joined, err := ghost.JoinedRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(joined.JoinedRooms) != 1 || joined.JoinedRooms[0] != stay.RoomID {
		t.Fatalf("joined rooms %v, want only %s", joined.JoinedRooms, stay.RoomID)
	}
}

// startWithGhost starts a homeserver that knows the appservice token "as"
// and returns it with a client acting as @ghost:hs under that token.
func startWithGhost(t *testing.T) (*Server, *mautrix.Client) {
	t.Helper()
	s := Start("hs")
	t.Cleanup(s.Close)
	s.AddToken("as", "@bot:hs")
	ghost, err := mautrix.NewClient(s.URL, "@ghost:hs", "as")
	if err != nil {
		t.Fatal(err)
	}
	ghost.SetAppServiceUserID = true
	return s, ghost
}

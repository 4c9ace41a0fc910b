package portal

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

const userRoom = id.RoomID("!userroom:x")

// inviteBob is the user (or inviter) inviting bob's ghost into userRoom,
// with the room's state and timeline set up in the fake as the client left
// them: the inviter joined, the ghost invited, and then others. The
// manager handles the invite as it handles the homeserver's; an error from
// it fails the test (every caller checks what it decided, not that).
func inviteBob(t *testing.T, u *unit, inviter id.UserID, direct bool, others ...id.UserID) {
	t.Helper()
	if err := u.m.ghostInvited(context.Background(), bobInvite(u, inviter, direct, others...), "bob"); err != nil {
		t.Fatal(err)
	}
}

// bobInvite sets up the fake as inviteBob says and returns the invite.
func bobInvite(u *unit, inviter id.UserID, direct bool, others ...id.UserID) *event.Event {
	u.hs.SetState(userRoom, event.StateMember, string(inviter), &event.MemberEventContent{Membership: event.MembershipJoin})
	u.hs.SetState(userRoom, event.StateMember, string(unitGhost), &event.MemberEventContent{Membership: event.MembershipInvite, IsDirect: direct})
	for _, o := range others {
		u.hs.SetState(userRoom, event.StateMember, string(o), &event.MemberEventContent{Membership: event.MembershipJoin})
	}
	key := string(unitGhost)
	evt := &event.Event{ID: "$invite", RoomID: userRoom, Sender: inviter, Type: event.StateMember, StateKey: &key,
		Content: event.Content{Parsed: &event.MemberEventContent{Membership: event.MembershipInvite, IsDirect: direct}}}
	u.hs.SetTimeline(userRoom, map[string]any{"event_id": "$invite", "room_id": userRoom, "sender": inviter, "type": "m.room.member",
		"state_key": key, "content": map[string]any{"membership": "invite", "is_direct": direct}})
	return evt
}

// resolveBob makes the connector resolve bob to the DM chat "bob".
func resolveBob(u *unit) {
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if op == connector.OpResolveIdentifier && cmd.Identifier == "bob" {
			return &connector.Result{Chat: &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "bob"},
				Contact: &connector.Contact{ID: "bob", Name: "Bob"}}, nil
		}
		return &connector.Result{}, nil
	}
}

// A DM the user starts with a ghost becomes the chat's portal: the ghost
// joins named as the contact, marks the room as bridged, and the room goes
// into m.direct.
func TestUnitInvitedGhostAdoptsRoom(t *testing.T) {
	u := newUnit(t, true)
	resolveBob(u)
	inviteBob(t, u, unitUser, true)
	p := u.portal(t)
	if p == nil || p.RoomID != userRoom || !p.InDirect {
		t.Fatalf("portal = %+v, want the user's room, in m.direct", p)
	}
	if got := u.hs.Membership(userRoom, unitGhost); got != event.MembershipJoin {
		t.Errorf("ghost membership = %q, want join", got)
	}
	var named bool
	for _, c := range u.hs.Calls("SetDisplayName", "JoinRoomByID") {
		if c.Method == "SetDisplayName" && c.User == unitGhost && c.Content["displayname"] == "Bob" {
			named = true
		} else if c.Method == "JoinRoomByID" && !named {
			t.Error("the ghost joined before it was named as the contact")
		}
	}
	if !named {
		t.Error("the ghost was never named Bob")
	}
	var bridged bool
	for _, c := range u.hs.Calls("SendStateEvent") {
		if c.EventType == event.StateBridge && c.StateKey == "testnet://bob" && field(c.Content, "channel", "id") == "bob" {
			bridged = true
		}
	}
	if !bridged {
		t.Error("no m.bridge state in the adopted room")
	}
	if rooms := u.direct(t)[string(unitGhost)]; len(rooms) != 1 || rooms[0] != userRoom {
		t.Errorf("m.direct = %v, want the room under the ghost", u.direct(t))
	}
	if ghost, _ := u.db.Ghost.Get(context.Background(), "bob"); ghost == nil || !ghost.Registered {
		t.Error("the adopted room's ghost is not recorded")
	}
	if sends := u.sends(); len(sends) != 0 {
		t.Errorf("adoption posted messages: %+v", sends)
	}
}

// Every refusal leaves the room with an explanation and no portal; a user
// the bridge does not serve gets a declined invite and nothing written.
func TestUnitInvitedGhostRefusals(t *testing.T) {
	cases := []struct {
		name    string
		inviter id.UserID
		direct  bool
		others  []id.UserID
		noLogin bool
		want    string // in the notice; "" means declined without a word
	}{
		{name: "not served", inviter: "@eve:elsewhere", direct: true},
		{name: "not a DM", inviter: unitUser, want: "only be in direct chats"},
		{name: "a third member", inviter: unitUser, direct: true, others: []id.UserID{"@carol:x"}, want: "@carol:x"},
		{name: "no login", inviter: "@nologin:x", direct: true, want: "cannot reach bob"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnit(t, false)
			resolveBob(u)
			inviteBob(t, u, tc.inviter, tc.direct, tc.others...)
			if p := u.portal(t); p != nil && p.RoomID != "" {
				t.Errorf("refused room became a portal: %+v", p)
			}
			if got := u.hs.Membership(userRoom, unitGhost); got != event.MembershipLeave {
				t.Errorf("ghost membership = %q, want leave", got)
			}
			sends := u.sends()
			if tc.want == "" {
				if len(sends) != 0 || len(u.hs.Calls("JoinRoomByID")) != 0 {
					t.Errorf("answered an unserved user in the room: %+v", sends)
				}
				if ghost, _ := u.db.Ghost.Get(context.Background(), "bob"); ghost != nil {
					t.Error("an unserved user's invite recorded a ghost")
				}
				return
			}
			if len(sends) != 1 || sends[0].Content["msgtype"] != "m.notice" || !strings.Contains(sends[0].Content["body"].(string), tc.want) {
				t.Errorf("refusal = %+v, want one notice mentioning %q", sends, tc.want)
			}
			if sends[0].TxnID != "dmb_refuse_$invite" {
				t.Errorf("refusal txn = %q, want one derived from the invite", sends[0].TxnID)
			}
		})
	}
}

// A second room for a chat that has a portal is refused with a pointer to
// the portal.
func TestUnitInvitedGhostRefusesSecondRoom(t *testing.T) {
	u := newUnit(t, false)
	u.remote(t, fromBob("m1", "hello"))
	existing := u.portal(t).RoomID
	resolveBob(u)
	u.hs.Reset()
	inviteBob(t, u, unitUser, true)
	if p := u.portal(t); p.RoomID != existing {
		t.Fatalf("portal moved to %s", p.RoomID)
	}
	var pointed bool
	for _, c := range u.sends() {
		if c.RoomID == userRoom && strings.Contains(c.Content["body"].(string), existing.URI().MatrixToURL()) {
			pointed = true
		}
	}
	if !pointed || u.hs.Membership(userRoom, unitGhost) != event.MembershipLeave {
		t.Errorf("second room not refused with a pointer to %s: %+v", existing, u.sends())
	}
}

// A chat deleted on the network ends its portal: a farewell, the room out of
// m.direct (the user's other entries kept), the ghost gone, the row deleted.
func TestUnitChatDeletedCleansUp(t *testing.T) {
	u := newUnit(t, true)
	u.remote(t, fromBob("m1", "hello"))
	room := u.portal(t).RoomID
	u.hs.SetAccountData(unitUser, event.AccountDataDirectChats.Type, map[string]any{
		string(unitGhost): []id.RoomID{"!older:x", room}, "@carol:x": []string{"!c:x"}, "weird": map[string]any{"keep": true},
	})
	u.hs.Reset()
	u.remote(t, &connector.Event{Kind: connector.KindChatDeleted, ID: "del1"})
	if p := u.portal(t); p != nil {
		t.Fatalf("portal still stored: %+v", p)
	}
	sends := u.sends()
	if len(sends) != 1 || sends[0].RoomID != room || !strings.Contains(sends[0].Content["body"].(string), "deleted on TestNet") {
		t.Errorf("farewell = %+v", sends)
	}
	if got := u.hs.Membership(room, unitGhost); got != event.MembershipLeave {
		t.Errorf("ghost membership = %q, want leave", got)
	}
	direct := u.direct(t)
	if rooms := direct[string(unitGhost)]; len(rooms) != 1 || rooms[0] != "!older:x" {
		t.Errorf("m.direct[ghost] = %v, want only the older room", rooms)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(u.hs.AccountData(unitUser, event.AccountDataDirectChats.Type), &raw)
	if string(raw["weird"]) != `{"keep":true}` || len(direct["@carol:x"]) != 1 {
		t.Errorf("m.direct lost entries the bridge does not own: %s", u.hs.AccountData(unitUser, event.AccountDataDirectChats.Type))
	}
	// The next message of the chat opens a new room.
	u.remote(t, fromBob("m2", "back"))
	if p := u.portal(t); p == nil || p.RoomID == "" || p.RoomID == room {
		t.Errorf("after cleanup the chat got portal %+v, want a new room", p)
	}
}

// A client overwriting m.direct right after the bridge's write drops the
// bridge's entry; the bridge merges again and keeps the client's entries.
func TestUnitDirectMergeSurvivesConcurrentWrite(t *testing.T) {
	u := newUnit(t, true)
	u.hs.SetAccountData(unitUser, event.AccountDataDirectChats.Type, map[string][]string{"@carol:x": {"!c:x"}})
	clobbered := false
	u.hs.Clobber = func(user id.UserID, eventType string, data map[string]json.RawMessage) map[string]json.RawMessage {
		if clobbered || eventType != event.AccountDataDirectChats.Type {
			return nil
		}
		clobbered = true
		return map[string]json.RawMessage{"@carol:x": json.RawMessage(`["!c:x"]`), "@dave:x": json.RawMessage(`["!d:x"]`)}
	}
	u.remote(t, fromBob("m1", "hello"))
	room := u.portal(t).RoomID
	direct := u.direct(t)
	if len(direct[string(unitGhost)]) != 1 || direct[string(unitGhost)][0] != room || len(direct["@carol:x"]) != 1 || len(direct["@dave:x"]) != 1 {
		t.Errorf("m.direct = %v, want the portal, carol's and dave's entries", direct)
	}
	if writes := u.hs.Calls("SetAccountData"); len(writes) != 2 {
		t.Errorf("%d m.direct writes, want 2 (one clobbered, one redone)", len(writes))
	}
	if !u.portal(t).InDirect {
		t.Error("portal not marked as in m.direct")
	}
}

// A creation interrupted before the room id was stored resumes with the room
// the ghost created (found by its m.bridge state), inviting the user if the
// crash came before the invite, instead of creating a second room. A room
// of another login's chat is not taken for it.
func TestUnitInterruptedCreationResumes(t *testing.T) {
	u := newUnit(t, false)
	ctx := context.Background()
	key := database.PortalKey{LoginID: unitLoginID, ChatID: "bob"}
	if _, err := u.db.Portal.GetOrCreate(ctx, key, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := u.db.Portal.MarkCreateStarted(ctx, key); err != nil {
		t.Fatal(err)
	}
	ghost := u.hs.Ghost(unitGhost, true)
	mkRoom := func(chatID, loginID string) id.RoomID {
		resp, err := ghost.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		u.hs.SetState(resp.RoomID, event.StateBridge, "testnet://"+chatID, &event.BridgeEventContent{
			Channel: event.BridgeInfoSection{ID: chatID, Receiver: loginID}})
		return resp.RoomID
	}
	// The same chat of another login (the ghost is in both) comes first.
	other := mkRoom("bob", "l2")
	orphan := mkRoom("bob", unitLoginID)
	u.hs.Reset()
	u.remote(t, fromBob("m1", "hello"))
	if p := u.portal(t); p.RoomID != orphan {
		t.Fatalf("portal room = %s, want the orphan %s (not %s)", p.RoomID, orphan, other)
	}
	if creates := u.hs.Calls("CreateRoom"); len(creates) != 0 {
		t.Errorf("created another room: %+v", creates)
	}
	if got := u.hs.Membership(orphan, unitUser); got != event.MembershipInvite {
		t.Errorf("user's membership in the recovered room = %q, want invite", got)
	}
	if inv := u.hs.Calls("InviteUser"); len(inv) != 1 || inv[0].Content["is_direct"] != true {
		t.Errorf("invites = %+v, want one is_direct invite", inv)
	}
	if sends := u.sends(); len(sends) != 1 || sends[0].RoomID != orphan {
		t.Errorf("sends = %+v, want the message in the recovered room", sends)
	}
}

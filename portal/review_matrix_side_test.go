package portal

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// Review 3: the Matrix side of a portal as other Matrix users meet it.

const reviewCarol = id.UserID("@carol:x")

// TestStrangersMalformedEventGetsNoNotice: carol, whom alice let into
// her DM with bob, sends a message whose content does not parse. Nothing
// carol sends is ever bridged, so the bridge has nothing to tell her; yet
// bob's ghost answers her in alice's DM with "Your message was not
// delivered", as if the bridge had tried to carry it to bob for her.
func TestStrangersMalformedEventGetsNoNotice(t *testing.T) {
	u, p := newUnitPortal(t)
	u.hs.Reset()
	row := u.userEvent(t, p.RoomID, "$carolbad", map[string]any{"sender": reviewCarol, "type": "m.room.message",
		"content": map[string]any{"msgtype": "m.text", "body": map[string]any{"not": "a string"}}})
	if err := u.m.handleMatrix(context.Background(), row); err != nil {
		t.Fatal(err)
	}
	for _, n := range u.notices(t) {
		if strings.Contains(n, "not delivered") {
			t.Errorf("bob's ghost answered carol's (never bridged) event in alice's DM: %q", n)
		}
	}
}

// TestUpgradedDMFollowsTombstone: alice upgrades her DM with bob (room
// version upgrade: a tombstone in the old room naming the new one, whose
// create event names the old one) and her client brings bob's ghost along
// with a direct invite. The bridge ignores the tombstone and refuses the
// new room ("You already have a chat with Bob: <old room>"), so bob's next
// message lands in the superseded room, which clients hide once the new
// one is joined: the conversation silently stops for her.
// TestRefusedGroupInviteCreatesNothingOnTheNetwork: alice invites bob's
// ghost, as a DM, into a room that already holds carol. The bridge refuses
// the room ("already has other members"), but before looking at the members
// it asked the connector to resolve bob with create=true, which on XMPP adds
// bob to alice's roster and sends him a subscription request: a refused
// invite changes alice's account on the network.
func TestRefusedGroupInviteCreatesNothingOnTheNetwork(t *testing.T) {
	u := newUnit(t, false)
	var creates []string
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if op == connector.OpResolveIdentifier {
			if cmd.Create {
				creates = append(creates, cmd.Identifier)
			}
			return &connector.Result{Chat: &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "bob"},
				Contact: &connector.Contact{ID: "bob", Name: "Bob"}}, nil
		}
		return &connector.Result{}, nil
	}
	inviteBob(t, u, unitUser, true, reviewCarol)
	if p := u.portal(t); p != nil && p.RoomID != "" {
		t.Fatalf("group room adopted: %+v", p)
	}
	if len(creates) > 0 {
		t.Errorf("a refused invite made the connector create the chat on the network: resolve_identifier create=true for %v", creates)
	}
}

// TestBlockedUserTypingDoesNotReachNetwork: the admin blocks alice after
// her portal was made. Her messages are no longer bridged (handleMatrix
// checks the permission), but her typing notifications and read receipts
// still go to the network as set_typing and mark_read: MatrixEphemeral
// checks only that the room is a portal.
func TestBlockedUserTypingDoesNotReachNetwork(t *testing.T) {
	u, p := newUnitPortal(t)
	u.conn.caps.Typing, u.conn.caps.ReadReceipts = true, true
	u.m.cfg.Permissions[string(unitUser)] = config.LevelBlock
	ops := u.opsFromNow()
	// Blocked: a message of hers goes nowhere.
	u.handle(t, p.RoomID, "$blocked", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "hi"}})
	u.userTyping(p.RoomID)
	bobMsg, _ := u.db.Message.GetPart(context.Background(), p.PortalKey, "m1", 0)
	if bobMsg != nil {
		receipt := &event.Event{Type: event.EphemeralEventReceipt, RoomID: p.RoomID, Content: event.Content{Parsed: &event.ReceiptEventContent{
			bobMsg.MXID: {event.ReceiptTypeRead: {unitUser: {Timestamp: time.Now()}}}}}}
		u.m.MatrixEphemeral(context.Background(), &appservice.EphemeralEvent{Event: receipt})
	}
	u.drainLanes()
	if got := ops(); len(got) > 0 {
		t.Errorf("a blocked user's Matrix activity reached the network: %v", got)
	}
}

// TestDirectWriteKeepsConcurrentClientEntry: alice's client adds her new
// DM with dave to m.direct between the bridge's read and its write (the
// bridge is adding bob's portal). The bridge writes what it read plus its
// entry, then reads back and checks only its own entry: dave's DM is gone
// from m.direct and nobody puts it back (the client has no reason to).
// Matrix has no compare-and-swap on account data, so the window cannot be
// closed, only noticed: this pins down that the read-back does not notice.
// TestRelationAcrossRoomsIsRefused: alice's client (or a bot acting
// for her) sends, in her DM with carol, a reaction whose m.relates_to names
// a message of her DM with bob. Matrix does not check that a relation's
// target is in the same room, and neither does the bridge: it sends carol's
// chat a reaction to the network id of bob's message (edits, deletions and
// reply targets are looked up the same way, by event id alone).
func TestRelationAcrossRoomsIsRefused(t *testing.T) {
	u, bobPortal := newUnitPortal(t)
	u.conn.caps.Reactions = true
	carolChat := &connector.Chat{ID: "carol", Type: connector.ChatTypeDM, With: "carol"}
	u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "c1", Text: "hi", TS: 1000,
		Sender: &connector.Sender{ID: "carol"}, Chat: carolChat})
	carolPortal, err := u.db.Portal.Get(context.Background(), database.PortalKey{LoginID: unitLoginID, ChatID: "carol"})
	if err != nil || carolPortal == nil || carolPortal.RoomID == bobPortal.RoomID {
		t.Fatalf("carol's portal: %+v %v", carolPortal, err)
	}
	bobMsg, err := u.db.Message.GetPart(context.Background(), bobPortal.PortalKey, "m1", 0)
	if err != nil || bobMsg == nil {
		t.Fatalf("bob's message: %v", err)
	}
	var got []string
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if op == connector.OpReact {
			got = append(got, cmd.Chat.ID+" <- react to "+cmd.Target)
		}
		return &connector.Result{}, nil
	}
	u.handle(t, carolPortal.RoomID, "$xreact", reactionTo(bobMsg.MXID, "👍"))
	if len(got) > 0 {
		t.Errorf("a reaction in carol's room to bob's message went to the network: %v", got)
	}
}

// TestBlockedUserIsToldMessageWasNotDelivered: after the admin blocks
// alice, her message in her DM with bob is dropped without a word: bob never
// gets it and she is not told (handleMatrix marks it done silently), so
// from her side the conversation just goes quiet.
func TestBlockedUserIsToldMessageWasNotDelivered(t *testing.T) {
	u, p := newUnitPortal(t)
	u.m.cfg.Permissions[string(unitUser)] = config.LevelBlock
	u.hs.Reset()
	u.handle(t, p.RoomID, "$blocked", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "hi bob"}})
	if len(u.conn.ops) > 0 {
		t.Fatalf("a blocked user's message reached the network: %v", u.conn.ops)
	}
	told := false
	for _, n := range u.notices(t) {
		if strings.Contains(n, "not delivered") {
			told = true
		}
	}
	if !told {
		t.Error("alice's message was dropped without telling her")
	}
}

// TestGhostKickedByModeratorEndsOrRepairsPortal: alice's DM with bob is
// a room she made (adopted), where bob's ghost has power level 0; she made
// carol a moderator. Carol kicks bob's ghost. memberLeft acts on a ghost
// kick only when alice sent it, so the portal stays on the room with its
// ghost outside it: every later message from bob fails (the ghost may not
// join an invite-only room) and is parked with a notice in the management
// room, for good, since the repair pass checks only alice's membership.
func TestGhostKickedByModeratorEndsOrRepairsPortal(t *testing.T) {
	u := newUnit(t, true)
	resolveBob(u)
	inviteBob(t, u, unitUser, true)
	if p := u.portal(t); p == nil || p.RoomID != userRoom {
		t.Fatalf("room not adopted: %+v", p)
	}
	key := string(unitGhost)
	u.hs.SetState(userRoom, event.StateMember, key, &event.MemberEventContent{Membership: event.MembershipLeave})
	u.handle(t, userRoom, "$kick", map[string]any{"sender": reviewCarol, "type": "m.room.member", "state_key": key,
		"content": map[string]any{"membership": "leave", "reason": "bye bot"}})
	p := u.portal(t)
	if p != nil && p.RoomID == userRoom && u.hs.Membership(userRoom, unitGhost) != event.MembershipJoin {
		t.Errorf("bob's ghost was kicked by carol, but the portal still points at %s with its ghost outside it (nothing re-invites it or ends the portal)", userRoom)
	}
}

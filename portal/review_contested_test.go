package portal

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
)

// Tests from a review (helper agent): a login its connector's hello names
// for another Matrix user was refused in the hello, but its events were
// still accepted, and its owner's messages still went to it.

// helloOwner sends a hello of c1 naming login l1 as user's.
func helloOwner(t *testing.T, u *unit, user string) int {
	t.Helper()
	return len(u.m.Hello(context.Background(), unitConnID, &connector.Hello{Logins: []connector.Login{
		{ID: unitLoginID, MatrixUser: user, State: connector.LoginConnected},
	}}))
}

// TestLoginMovedToAnotherUserStillFeedsTheOldOwner: the connector now
// announces alice's login l1 as bob's (its admin gave the account to
// bob). The hello refuses it, as a login never changes its owner, and the
// protocol says a refused login's events get M_FORBIDDEN. But Check only
// compared the connector id and the stored owner's permission, so the
// events the connector then sent for bob's account were accepted and
// posted into alice's rooms: bob's private conversations shown to alice.
func TestLoginMovedToAnotherUserStillFeedsTheOldOwner(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	// The first hello (as in production, it fills the owner cache).
	if n := helloOwner(t, u, string(unitUser)); n != 0 {
		t.Fatalf("first hello refused %d logins", n)
	}
	if n := helloOwner(t, u, "@bob:x"); n != 1 {
		t.Fatalf("precondition: the hello moving l1 to bob should be refused, got %d refusals", n)
	}
	ev := fromBob("m2", "bob's private message")
	ev.Login = unitLoginID
	ev.Chat = &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "bob"}
	if cerr := u.m.Check(ctx, unitConnID, ev); cerr == nil {
		u.remote(t, ev)
		for _, c := range u.sends() {
			if c.RoomID == p.RoomID && c.Content["body"] == "bob's private message" {
				t.Errorf("an event of l1, whose hello (naming @bob:x) was refused, was accepted and posted into alice's room %s", p.RoomID)
			}
		}
		t.Errorf("Check accepted an event of login %s after its hello was refused", unitLoginID)
	} else if cerr.Code != connector.ErrForbidden {
		t.Errorf("Check refused with %s, want %s as the protocol says for a refused login", cerr.Code, connector.ErrForbidden)
	}
}

// TestContestedLoginTakesNoMessagesUntilOwnerNamedAgain: while l1's
// connector names bob as its owner, alice's messages in l1's portals do
// not go to it and she is told why; once a hello names her again, both
// directions work again.
func TestContestedLoginTakesNoMessagesUntilOwnerNamedAgain(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	helloOwner(t, u, string(unitUser))
	// An owner the bridge does not serve is another owner all the same.
	u.m.cfg.Permissions["@mallory:x"] = config.LevelBlock
	helloOwner(t, u, "@mallory:x")
	u.hs.Reset()
	u.handle(t, p.RoomID, "$m1", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "for bob"}})
	if slices.Contains(u.conn.ops, connector.OpSendMessage) {
		t.Errorf("alice's message went to l1, which its connector now names as someone else's: %v", u.conn.ops)
	}
	if n := u.notices(t); len(n) != 1 || !strings.Contains(n[0], "another Matrix user") {
		t.Errorf("alice was told %q, want why her message was not delivered", n)
	}
	if _, err := u.m.StartChat(ctx, unitUser, "", "carol"); err == nil {
		t.Error("start-chat went through a contested login")
	}
	// Ephemeral drops what checkLogin refuses.
	if cerr := u.m.checkLogin(ctx, unitConnID, unitLoginID); cerr == nil {
		t.Error("ephemerals of a contested login are accepted")
	}

	if n := helloOwner(t, u, string(unitUser)); n != 0 {
		t.Fatalf("the hello naming alice again was refused (%d)", n)
	}
	if cerr := u.m.Check(ctx, unitConnID, &connector.Event{Login: unitLoginID}); cerr != nil {
		t.Errorf("after a hello naming alice again, her login's events are refused: %s", cerr.Message)
	}
	u.conn.ops = nil
	u.handle(t, p.RoomID, "$m2", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "again"}})
	if !slices.Contains(u.conn.ops, connector.OpSendMessage) {
		t.Errorf("after a hello naming alice again, her message did not go: %v", u.conn.ops)
	}
}

// TestOtherConnectorNamingAnotherOwnerContestsNothing: a hello of another
// connector that names l1 for bob is refused, but l1's own connector still
// runs it for alice: her login keeps working.
func TestOtherConnectorNamingAnotherOwnerContestsNothing(t *testing.T) {
	u, _ := newUnitPortal(t)
	ctx := context.Background()
	helloOwner(t, u, string(unitUser))
	if refused := u.m.Hello(ctx, "c2", &connector.Hello{Logins: []connector.Login{
		{ID: unitLoginID, MatrixUser: "@bob:x"},
	}}); len(refused) != 1 {
		t.Fatalf("c2's hello naming l1 was not refused: %+v", refused)
	}
	if cerr := u.m.Check(ctx, unitConnID, &connector.Event{Login: unitLoginID}); cerr != nil {
		t.Errorf("c1's events for alice's l1 are refused after c2 named it for bob: %s", cerr.Message)
	}
	if cerr := u.m.Check(ctx, "c2", &connector.Event{Login: unitLoginID}); cerr == nil {
		t.Error("c2's events for l1 are accepted")
	}
}

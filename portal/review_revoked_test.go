package portal

import (
	"context"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
)

// Tests from a review (helper agent): revoking a user from a connector
// (connector.connectors allowed_users) worked for the connector's events
// only, not for the user's Matrix side.

// revokeConnector makes c1 a connector with its own token that may serve
// someone else only: as after the admin removed alice from its
// allowed_users and restarted the bridge.
func revokeConnector(u *unit) {
	u.m.cfg.Connector.Connectors = []config.ConnectorAccess{{
		ID: unitConnID, Token: strings.Repeat("t", 40), AllowedUsers: []string{"@someoneelse:x"},
	}}
}

// TestRevokedConnectorStillGetsTheUsersMessages: once connector c1
// may no longer serve alice, the bridge refuses everything c1 sends for
// her login (checkLogin: acked with M_FORBIDDEN, so lost), yet her Matrix
// messages in the login's portals still went to c1. Now they do not, and
// she is told why.
func TestRevokedConnectorStillGetsTheUsersMessages(t *testing.T) {
	u, p := newUnitPortal(t)
	revokeConnector(u)
	if cerr := u.m.Check(context.Background(), unitConnID, &connector.Event{Login: unitLoginID}); cerr == nil {
		t.Fatal("precondition: the connector's events for alice should be refused")
	}
	u.conn.mu.Lock()
	u.conn.ops = nil
	u.conn.mu.Unlock()
	u.hs.Reset()
	u.handle(t, p.RoomID, "$m1", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "secret"}})
	u.conn.mu.Lock()
	ops := slices.Clone(u.conn.ops)
	u.conn.mu.Unlock()
	if slices.Contains(ops, connector.OpSendMessage) {
		t.Errorf("alice's message went to connector %s, which may no longer serve her (ops %v)", unitConnID, ops)
	}
	if n := u.notices(t); len(n) != 1 || !strings.Contains(n[0], "not delivered") || !strings.Contains(n[0], "may no longer serve you") {
		t.Errorf("alice was told %q, want one notice saying the connector may no longer serve her", n)
	}
}

// TestStartChatThroughRevokedConnector: start-chat (bot and provisioning)
// picked among the user's logins without asking whether their connector
// may still serve the user, so it asked the revoked connector to create
// the chat and made a portal whose incoming messages the bridge refuses.
func TestStartChatThroughRevokedConnector(t *testing.T) {
	u := newUnit(t, false)
	revokeConnector(u)
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		return &connector.Result{Chat: &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "bob"},
			Contact: &connector.Contact{ID: "bob", Name: "Bob"}}, nil
	}
	started, err := u.m.StartChat(context.Background(), unitUser, "", "bob")
	if err == nil {
		t.Fatalf("start-chat went through connector %s, which may no longer serve alice: room %s", unitConnID, started.RoomID)
	}
	if !strings.Contains(UserMessage(err), "may no longer serve you") {
		t.Errorf("start-chat refused with %q, want the reason", UserMessage(err))
	}
	if len(u.conn.ops) > 0 {
		t.Errorf("the revoked connector was asked %v", u.conn.ops)
	}
}

// TestRevokedConnectorGhostInviteIsExplained: a DM alice starts with a
// ghost, once her only login's connector may no longer serve her, is
// refused with a notice from the ghost, without asking the connector
// anything.
func TestRevokedConnectorGhostInviteIsExplained(t *testing.T) {
	u := newUnit(t, true)
	resolveBob(u)
	revokeConnector(u)
	inviteBob(t, u, unitUser, true)
	if p := u.portal(t); p != nil && p.RoomID != "" {
		t.Errorf("the room became a portal of a login whose connector may no longer serve alice: %+v", p)
	}
	if len(u.conn.ops) > 0 {
		t.Errorf("the revoked connector was asked %v", u.conn.ops)
	}
	told := false
	for _, n := range u.notices(t) {
		told = told || strings.Contains(n, "may no longer serve you")
	}
	if !told {
		t.Errorf("alice was not told why: notices %q", u.notices(t))
	}
}

// TestRevokedConnectorQueuedCommandFails: a message queued while the
// connector was away does not go to it once it may no longer serve the
// user; the user is told it was not delivered.
func TestRevokedConnectorQueuedCommandFails(t *testing.T) {
	u, room, got := queuedRelationsUnit(t)
	u.handle(t, room, "$m", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "queued"}})
	revokeConnector(u)
	u.conn.down.Store(false)
	u.hs.Reset()
	u.m.flushCommands(context.Background(), room)
	if g := got(); len(g) > 0 {
		t.Errorf("the revoked connector got %q", g)
	}
	if n := u.notices(t); len(n) != 1 || !strings.Contains(n[0], "not delivered") {
		t.Errorf("notices %q, want one saying the message was not delivered", n)
	}
	if pcs, err := u.db.PendingCm.ByRoom(context.Background(), room); err != nil || len(pcs) != 0 {
		t.Errorf("queue = %d commands, %v; want it empty", len(pcs), err)
	}
}

// TestRevokedConnectorTypingAndPresence: typing, receipts and the user's
// own presence do not reach a connector that may no longer serve the user.
func TestRevokedConnectorTypingAndPresence(t *testing.T) {
	u, p := newUnitPortal(t)
	u.conn.caps.Typing, u.conn.caps.ReadReceipts, u.conn.caps.Presence = true, true, true
	u.m.cfg.Bridge.BridgePresence = true
	revokeConnector(u)
	ops := u.opsFromNow()
	u.userTyping(p.RoomID)
	presence := &event.Event{Type: event.EphemeralEventPresence, Sender: unitUser,
		Content: event.Content{Parsed: &event.PresenceEventContent{Presence: event.PresenceOnline}}}
	u.m.MatrixEphemeral(context.Background(), &appservice.EphemeralEvent{Event: presence})
	u.drainLanes()
	if got := ops(); len(got) > 0 {
		t.Errorf("the Matrix activity of a user the connector may no longer serve reached it: %v", got)
	}
}

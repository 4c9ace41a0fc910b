package bridge_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestEncryptedFirstMessageBeforeJoin: a client creates an encrypted DM with
// a ghost and sends the first message at once, as Element X does. When the
// ghost joins only after that message (here the connector answers the
// contact's resolve_identifier late, and the join waits for it), the
// homeserver never pushes the message to the bridge: the ghost was only
// invited. The catch-up after the join reads it from the room, decrypts it
// with the key the client shared with the invited ghost's device, and
// bridges it once. It used to skip m.room.encrypted, so the user's first
// words were lost without a word.
func TestEncryptedFirstMessageBeforeJoin(t *testing.T) {
	target := testdb.Targets(t)[0]
	s := newStack(t, target, stackOptions{encryption: true})
	ctx := context.Background()
	release := make(chan struct{})
	f := s.connectFakeWith(fakeSetup{before: func(ctx context.Context, _ *sdk.Client, op string, _ *connector.Command) error {
		if op == connector.OpResolveIdentifier {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}})
	ghost := s.ghost("bob@network")
	nio := startNio(t, s, "alice")

	dm := nio.do(map[string]any{"cmd": "create_dm", "ghost": string(ghost), "text": "first words before the join"})
	roomID := id.RoomID(dm["room_id"].(string))
	var member event.MemberEventContent
	if err := s.alice.StateEvent(ctx, roomID, event.StateMember, string(ghost), &member); err != nil {
		t.Fatal(err)
	} else if member.Membership != event.MembershipInvite {
		t.Fatalf("the ghost's membership when the first message was sent = %s, want invite", member.Membership)
	}
	close(release)
	expectFirstOnce(t, f, "first words before the join", dm["event_id"])
	s.waitMembership(s.sync, roomID, ghost, event.MembershipJoin)
}

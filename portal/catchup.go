package portal

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
)

// catchUpLimit bounds how much early history an adopted room is searched.
// Nobody writes a hundred messages to a contact that has not joined yet.
const catchUpLimit = 100

// catchUpHead is the part of a timeline event the catch-up looks at.
type catchUpHead struct {
	appservice.EventHead
	Content struct {
		Membership event.Membership `json:"membership"`
	} `json:"content"`
}

// catchUpEarlyMessages bridges the user's messages that were sent between
// the ghost's invite and its join. A homeserver gives an appservice only the
// events of rooms its users are in, and clients send the first message of a
// new DM right after creating it, so without this that message would never
// reach the network. They are handled like events from the intake, in order,
// before any later event of the room.
func (m *Manager) catchUpEarlyMessages(ctx context.Context, ghost matrix.API, roomID id.RoomID, invite id.EventID, user id.UserID) error {
	// What follows the invite, read with /context because /messages needs a
	// pagination token on some servers; messages from before the invite were
	// not meant for the contact.
	after, err := ghost.EventsAfter(ctx, roomID, invite, catchUpLimit)
	if err != nil {
		return fmt.Errorf("read early history of %s: %w", roomID, err)
	}
	taken := 0
	for _, raw := range after {
		var head catchUpHead
		if err := json.Unmarshal(raw, &head); err != nil || head.ID == "" {
			continue
		}
		if head.Type == event.StateMember.Type && head.StateKey != nil && id.UserID(*head.StateKey) == ghost.UserID() &&
			head.Content.Membership == event.MembershipJoin {
			break
		}
		// In an encrypted room the first message is m.room.encrypted; the
		// user's client shared its key with the ghost's device while the
		// ghost was invited, so it is decrypted like any other.
		if head.Sender != user || (head.Type != event.EventMessage.Type && head.Type != event.EventEncrypted.Type) {
			continue
		}
		// A replay of the invite after a crash may find messages that were
		// bridged and whose intake rows are pruned since.
		if mapped, err := m.db.Message.GetByMXID(ctx, head.ID); err != nil {
			return err
		} else if mapped != nil {
			continue
		}
		if head.RoomID == "" {
			raw = withRoomID(raw, roomID)
		}
		// Handled here rather than stored in the intake: a second writer of
		// mx_event could commit around an intake transaction and make the
		// dispatcher's cursor skip that transaction's events. The row has no
		// seq, so marking it done is a no-op; a retry of the whole invite
		// redoes this, and commands are idempotent by txn.
		row := &database.MXEvent{EventID: head.ID, RoomID: roomID, Data: raw}
		if err := m.handleMatrix(ctx, row); err != nil {
			return fmt.Errorf("bridge early message %s: %w", head.ID, err)
		}
		taken++
	}
	if taken > 0 {
		zerolog.Ctx(ctx).Info().Int("messages", taken).Msg("Bridged messages sent before the ghost joined")
	}
	return nil
}

// withRoomID adds the room id that the stored event must carry, for servers
// that leave it out of /messages.
func withRoomID(raw json.RawMessage, roomID id.RoomID) json.RawMessage {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return raw
	}
	fields["room_id"], _ = json.Marshal(roomID)
	out, err := json.Marshal(fields)
	if err != nil {
		return raw
	}
	return out
}

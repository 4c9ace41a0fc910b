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

// catchUpEarlyMessages bridges the user's messages that were sent between
// the ghost's invite and its join (see matrix.EarlyEvents): the first
// message of a new DM comes right after the room is created, and the
// homeserver does not show it to the bridge while the ghost is only
// invited. They are handled like events from the intake, in order, before
// any later event of the room. In an encrypted room the first message is
// m.room.encrypted; the user's client shared its key with the invited
// ghost's device, so it is decrypted like any other.
func (m *Manager) catchUpEarlyMessages(ctx context.Context, ghost matrix.API, roomID id.RoomID, invite id.EventID, user id.UserID) error {
	early, err := matrix.EarlyEvents(ctx, ghost, roomID, invite, user, event.EventMessage, event.EventEncrypted,
		event.EventSticker, eventPollStartUnstable, eventPollStart, eventCallInvite)
	if err != nil {
		return err
	}
	taken := 0
	for _, raw := range early {
		var head appservice.EventHead
		if err := json.Unmarshal(raw, &head); err != nil {
			continue
		}
		// A replay of the invite after a crash may find messages that were
		// bridged and whose intake rows are pruned since.
		if mapped, err := m.db.Message.GetByMXID(ctx, head.ID); err != nil {
			return err
		} else if mapped != nil {
			continue
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

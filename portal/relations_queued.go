package portal

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// An edit, a reaction or a reply can point at the user's message while that
// message is itself still queued (the connector is away, or the room has
// commands waiting): it has no network id yet, so the relation cannot name
// it. The relation is queued behind it with the message's Matrix event id
// (pending_command.target_mx), and gets the network id when it goes, which
// is after the message's own command, since a room's queue goes in order.
// A message dropped before it went out (the user deleted it) takes its
// queued edits and reactions with it; one that failed for good leaves them
// to fail with a notice each. A reply goes either way, as a plain message
// if what it replies to never arrived. Without this, edits and reactions
// were skipped with only a log line (a correction made while the network
// was away was lost without a word) and replies lost their quote.

// errTargetNotDelivered is why a relation of a message that never reached
// the network did not go either.
var errTargetNotDelivered = errors.New("the message it refers to was not confirmed as delivered")

// queuedSend returns the queued, unanswered send of the user's message
// targetMX in the room of the chat key, or nil. That includes a send still
// queued in the room the user upgraded to this one (sameChatRoom): the
// user relates to it from the new room.
func (m *Manager) queuedSend(ctx context.Context, targetMX id.EventID, key database.PortalKey, roomID id.RoomID) (*database.PendingCommand, error) {
	pc, err := m.db.PendingCm.Get(ctx, string(targetMX))
	if err != nil || pc == nil || pc.Op != connector.OpSendMessage {
		return nil, err
	}
	if pc.RoomID != roomID {
		if pc.PortalKey != key {
			return nil, nil
		}
		if same, err := m.sameChatRoom(ctx, key, pc.RoomID, roomID); err != nil || !same {
			return nil, err
		}
	}
	return pc, nil
}

// resolveTarget gives a relation queued behind a message (TargetMX) the
// message's network id, as its target or, for a reply, its reply_to. It
// reports ok false when the command is not to go now: with wait, the
// message is queued after it and has not gone yet (flushCommands comes back
// for it); otherwise the message never reached the network (the user has
// been told).
func (m *Manager) resolveTarget(ctx context.Context, pc *database.PendingCommand, cmd *connector.Command) (ok, wait bool, err error) {
	field := &cmd.Target
	if pc.Op == connector.OpSendMessage {
		field = &cmd.ReplyTo
	}
	if pc.TargetMX == "" || *field != "" {
		return true, false, nil
	}
	if remote, err := m.deliveredAs(ctx, pc); err != nil || remote != "" {
		*field = remote
		return err == nil, false, err
	}
	if queued, err := m.queuedSend(ctx, pc.TargetMX, pc.PortalKey, pc.RoomID); err != nil {
		return false, false, fmt.Errorf("look up the message the command refers to: %w", err)
	} else if queued != nil {
		// Queued after its message but ordered before it (events read back
		// by the catch-up share mx_seq 0, and a millisecond): it goes once
		// the message has.
		zerolog.Ctx(ctx).Debug().Str("txn", pc.Txn).Msg("The message this refers to has not gone yet; trying again after it")
		return false, true, nil
	}
	// The message's send may have been answered between the two lookups
	// above: its result and the end of its queued send commit together
	// (commandDone), in another room's lane when the chat moved to an
	// upgraded room. Looked at again, it is there; without this second
	// look the relation was refused as "not delivered" while the message
	// had arrived.
	if remote, err := m.deliveredAs(ctx, pc); err != nil || remote != "" {
		*field = remote
		return err == nil, false, err
	}
	if pc.Op == connector.OpSendMessage {
		zerolog.Ctx(ctx).Info().Str("txn", pc.Txn).Msg("The message this replies to never reached the network; sending it as a plain message")
		return true, false, nil
	}
	// The user may have deleted the message meanwhile, in the room they
	// upgraded this one from, on that room's lane: the relation went with
	// it (dropQueuedSend), and there is nothing to tell them.
	if still, err := m.db.PendingCm.Get(ctx, pc.Txn); err != nil {
		return false, false, fmt.Errorf("look up the command: %w", err)
	} else if still == nil {
		return false, false, nil
	}
	zerolog.Ctx(ctx).Warn().Str("txn", pc.Txn).Stringer("target", pc.TargetMX).Msg("The message this refers to never reached the network")
	m.commandFailed(ctx, pc, errTargetNotDelivered)
	return false, false, nil
}

// deliveredAs is the network id of the message pc refers to (TargetMX) if
// it went from pc's room or one the chat moved from, or "".
func (m *Manager) deliveredAs(ctx context.Context, pc *database.PendingCommand) (string, error) {
	msg, err := m.db.Message.GetByMXID(ctx, pc.TargetMX)
	if err != nil {
		return "", fmt.Errorf("look up the message the command refers to: %w", err)
	}
	if msg == nil || (msg.RoomID != pc.RoomID && msg.PortalKey != pc.PortalKey) {
		return "", nil
	}
	// The message went from the room the user then upgraded to this one,
	// or from this one.
	if same, err := m.sameChatRoom(ctx, pc.PortalKey, msg.RoomID, pc.RoomID); err != nil || !same {
		if err != nil {
			err = fmt.Errorf("look up the message the command refers to: %w", err)
		}
		return "", err
	}
	return msg.RemoteID, nil
}

// dropQueuedSend drops a queued send that never went out, with the
// relations queued behind it: in its room, and in the room the user
// upgraded it to, where they related to it from (queuedSend). Left there,
// those failed each with a notice once the connector was back, as
// relations of a message that never went, though the user had deleted it.
func (m *Manager) dropQueuedSend(ctx context.Context, pc *database.PendingCommand) error {
	if err := m.db.PendingCm.DeleteFor(ctx, id.EventID(pc.Txn), pc.PortalKey); err != nil {
		return fmt.Errorf("drop the commands waiting for %s: %w", pc.Txn, err)
	}
	return m.db.PendingCm.Delete(ctx, pc.Txn)
}

package database

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// BridgedIn returns the chat of the event eventID when the bridge bridged
// it in roomID (a stored message, or a reaction to one) or still has its
// command queued there; found is false otherwise. It is how a room no
// portal names now is known as one a portal was in: the user upgraded the
// DM, and the bridge's messages and queued commands keep the old room's
// id, while the portal moved on (portal/upgrade.go).
func (db *Database) BridgedIn(ctx context.Context, eventID id.EventID, roomID id.RoomID) (key PortalKey, found bool, err error) {
	msg, err := db.Message.GetByMXID(ctx, eventID)
	if err != nil {
		return PortalKey{}, false, fmt.Errorf("look up the bridged message %s: %w", eventID, err)
	} else if msg != nil {
		return msg.PortalKey, msg.RoomID == roomID, nil
	}
	pc, err := db.PendingCm.Get(ctx, string(eventID))
	if err != nil {
		return PortalKey{}, false, fmt.Errorf("look up the queued command %s: %w", eventID, err)
	} else if pc != nil {
		return pc.PortalKey, pc.RoomID == roomID, nil
	}
	// A reaction keeps no room of its own: it is in the room of the
	// message it reacts to (a homeserver refuses a redaction naming an
	// event of another room, so one reacting from elsewhere is not
	// removed from here).
	r, err := db.Reaction.GetByMXID(ctx, eventID)
	if err != nil || r == nil {
		if err != nil {
			err = fmt.Errorf("look up the bridged reaction %s: %w", eventID, err)
		}
		return PortalKey{}, false, err
	}
	target, err := db.Message.GetPart(ctx, r.PortalKey, r.TargetID, 0)
	if err != nil {
		return PortalKey{}, false, fmt.Errorf("look up the message reaction %s is to: %w", eventID, err)
	}
	return r.PortalKey, target != nil && target.RoomID == roomID, nil
}

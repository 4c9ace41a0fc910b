package database

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// BridgedIn returns the chat of the user's event eventID when the bridge
// bridged it in roomID (a stored message) or still has its command queued
// there; found is false otherwise. It is how a room no portal names now is
// known as one a portal was in: the user upgraded the DM, and the bridge's
// messages and queued commands keep the old room's id, while the portal
// moved on (portal/upgrade.go).
func (db *Database) BridgedIn(ctx context.Context, eventID id.EventID, roomID id.RoomID) (key PortalKey, found bool, err error) {
	msg, err := db.Message.GetByMXID(ctx, eventID)
	if err != nil {
		return PortalKey{}, false, fmt.Errorf("look up the bridged message %s: %w", eventID, err)
	} else if msg != nil && msg.RoomID == roomID {
		return msg.PortalKey, true, nil
	}
	pc, err := db.PendingCm.Get(ctx, string(eventID))
	if err != nil {
		return PortalKey{}, false, fmt.Errorf("look up the queued command %s: %w", eventID, err)
	} else if pc != nil && pc.RoomID == roomID {
		return pc.PortalKey, true, nil
	}
	return PortalKey{}, false, nil
}

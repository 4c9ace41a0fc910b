package appservice

import (
	"context"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
)

// StoreSynced takes in room events that a double puppet's /sync brought
// because the homeserver does not push them (dpsync), together with the
// sync position after them, in one database transaction: a crash before
// the commit makes the next sync bring them again, one after it finds
// them stored, and event ids keep each once even if the homeserver pushes
// some of them too. It goes through the intake's lock, like a pushed
// transaction, so that mx_event's seq stays in commit order for the
// dispatcher. Each event must carry its room_id (a /sync response leaves
// it out). added counts the events not seen before.
func (l *Link) StoreSynced(ctx context.Context, userID id.UserID, nextBatch string, raw []json.RawMessage) (added int, err error) {
	events := make([]*database.NewMXEvent, 0, len(raw))
	for _, r := range raw {
		var head EventHead
		if err := json.Unmarshal(r, &head); err != nil || head.ID == "" || head.RoomID == "" {
			return 0, fmt.Errorf("synced event without event_id or room_id")
		}
		if !l.ownEcho(&head) {
			events = append(events, &database.NewMXEvent{EventID: head.ID, RoomID: head.RoomID, Data: r})
		}
	}
	l.intakeMu.Lock()
	defer l.intakeMu.Unlock()
	err = l.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if added, err = l.db.MXEvent.InsertMany(ctx, events); err != nil {
			return fmt.Errorf("store %d synced events: %w", len(events), err)
		}
		return l.db.DPSync.Put(ctx, userID, nextBatch)
	})
	if err != nil {
		return 0, err
	}
	if added > 0 && l.sink != nil {
		l.sink.Wake()
	}
	return added, nil
}

// HandSyncedEphemeral hands an ephemeral event from a double puppet's /sync
// (typing, a receipt) to the sink as if the homeserver had pushed it; the
// room is the one the response listed it under.
func (l *Link) HandSyncedEphemeral(ctx context.Context, roomID id.RoomID, raw json.RawMessage) error {
	if l.sink == nil {
		return nil
	}
	evt, err := parseEphemeral(raw)
	if err != nil {
		return err
	}
	evt.RoomID = roomID
	l.sink.MatrixEphemeral(ctx, evt)
	return nil
}

package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
)

// EarlyLimit bounds how much early history of a room is searched. Nobody
// writes a hundred messages to someone who has not joined yet.
const EarlyLimit = 100

// earlyHead is the part of a timeline event EarlyEvents looks at.
type earlyHead struct {
	appservice.EventHead
	Content struct {
		Membership event.Membership `json:"membership"`
	} `json:"content"`
}

// EarlyEvents returns the events of the given types that sender posted
// after api's user was invited (the event invite) and before it joined, in
// timeline order, as raw JSON carrying the room id. A homeserver gives an
// appservice only the events of rooms its users are in, not of rooms they
// are invited to, and clients send the first message of a new DM right
// after creating it (Element creates the room with that message), so
// without this read the first message would never reach the bridge.
// Messages from before the invite were not meant for api's user.
func EarlyEvents(ctx context.Context, api API, roomID id.RoomID, invite id.EventID, sender id.UserID, types ...event.Type) ([]json.RawMessage, error) {
	// Read with /context because /messages needs a pagination token on
	// some servers.
	after, err := api.EventsAfter(ctx, roomID, invite, EarlyLimit)
	if err != nil {
		return nil, fmt.Errorf("read early history of %s: %w", roomID, err)
	}
	var early []json.RawMessage
	for _, raw := range after {
		var head earlyHead
		if err := json.Unmarshal(raw, &head); err != nil || head.ID == "" {
			continue
		}
		if head.Type == event.StateMember.Type && head.StateKey != nil && id.UserID(*head.StateKey) == api.UserID() &&
			head.Content.Membership == event.MembershipJoin {
			break
		}
		if head.Sender != sender || !slices.ContainsFunc(types, func(t event.Type) bool { return t.Type == head.Type }) {
			continue
		}
		if head.RoomID == "" {
			raw = withRoomID(raw, roomID)
		}
		early = append(early, raw)
	}
	return early, nil
}

// withRoomID adds the room id that an event must carry, for servers that
// leave it out of /context.
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

package matrix

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// OtherMembers lists who, besides user and api's own user, is in the room
// or invited to it. The bot's management rooms and the ghosts' DMs are
// only for two (a user and the bridge's side), so each refuses a room for
// which this is not empty; invitees count, as they may join at any moment.
func OtherMembers(ctx context.Context, api API, roomID id.RoomID, user id.UserID) ([]id.UserID, error) {
	resp, err := api.Members(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("list members of %s: %w", roomID, err)
	}
	var others []id.UserID
	for _, evt := range resp.Chunk {
		target := id.UserID(evt.GetStateKey())
		if target == user || target == api.UserID() {
			continue
		}
		if membership := evt.Content.AsMember().Membership; membership == event.MembershipJoin || membership == event.MembershipInvite {
			others = append(others, target)
		}
	}
	return others, nil
}

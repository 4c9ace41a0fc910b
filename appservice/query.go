package appservice

import (
	"context"

	"maunium.net/go/mautrix/id"
)

// queryHandler answers the homeserver's "does this user exist" for the
// bridge's namespace from the database, never by asking the network.
type queryHandler struct{ link *Link }

func (q *queryHandler) QueryAlias(id.RoomAlias) bool { return false }

func (q *queryHandler) QueryUser(userID id.UserID) bool {
	if userID == q.link.BotMXID() {
		return true
	}
	if _, ok := q.link.cfg.ParseGhostUserID(userID); !ok {
		return false
	}
	ghost, err := q.link.db.Ghost.GetByMXID(context.Background(), userID)
	if err != nil {
		q.link.log.Err(err).Stringer("user_id", userID).Msg("Failed to look up ghost for user query")
		return false
	}
	return ghost != nil
}

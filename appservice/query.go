package appservice

import (
	"context"
	"time"

	"maunium.net/go/mautrix/id"
)

// queryTimeout bounds the registration a user query may trigger; the
// homeserver is waiting on the answer.
const queryTimeout = 30 * time.Second

// queryHandler answers the homeserver's "does this user exist" for the
// bridge's namespace, never by asking the network: the homeserver gives no
// hint of which login is asking, and the answer must be quick.
//
// Any canonical ghost id in the namespace exists. A user starting a DM with a
// ghost the bridge has never seen (typing @dm_bob=40example.org:server into
// "Start chat") must be able to invite it; whether the contact exists on the
// network is for the invite handling to find out, and it tells the user. As
// the spec asks, a ghost reported to exist is registered first.
type queryHandler struct{ link *Link }

func (q *queryHandler) QueryAlias(id.RoomAlias) bool { return false }

func (q *queryHandler) QueryUser(userID id.UserID) bool {
	if userID == q.link.BotMXID() {
		return true
	}
	if _, ok := q.link.cfg.ParseGhostUserID(userID); !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	ghost, err := q.link.db.Ghost.GetByMXID(ctx, userID)
	if err != nil {
		q.link.log.Err(err).Stringer("user_id", userID).Msg("Failed to look up ghost for user query")
		return false
	} else if ghost != nil && ghost.Registered {
		q.ghostQueried(ctx, userID)
		return true
	}
	// Only the homeserver account is made here; the ghost row follows when
	// the bridge first uses the ghost, so a query alone writes no bridge state.
	if err = q.link.AS.Intent(userID).EnsureRegistered(ctx); err != nil {
		q.link.log.Err(err).Stringer("user_id", userID).Msg("Failed to register ghost on demand")
		return false
	}
	q.link.log.Debug().Stringer("user_id", userID).Msg("Registered ghost on demand for a user query")
	q.ghostQueried(ctx, userID)
	return true
}

// ghostQueried gives the hook (end-to-bridge encryption making the ghost's
// device) its turn while the homeserver waits: a client inviting the ghost
// into an encrypted room asks for its devices right after.
func (q *queryHandler) ghostQueried(ctx context.Context, userID id.UserID) {
	if q.link.GhostQueried != nil {
		q.link.GhostQueried(ctx, userID)
	}
}

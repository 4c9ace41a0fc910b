package appservice

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/keyedmutex"
)

// queryTimeout bounds the registration a user query may trigger; the
// homeserver is waiting on the answer.
const queryTimeout = 30 * time.Second

// The homeserver asks about a user it does not know on behalf of any local
// user (a profile lookup, an invite), without saying who asks, so every
// "yes" to a name nobody has seen is paid by the bridge: an account and,
// with encryption, a device with its keys. New names are therefore
// answered from a budget shared by all queries
// (appservice.new_ghost_queries: burst names at once, then one every
// `every`).

// queryHandler answers the homeserver's "does this user exist" for the
// bridge's namespace, never by asking the network: the homeserver gives no
// hint of which login is asking, and the answer must be quick.
//
// Ghosts the bridge knows are answered at once. A canonical ghost id the
// bridge has never seen is answered "yes" while the budget lasts: a user
// starting a DM with a new contact (typing @dm_bob=40example.org:server
// into "Start chat") must be able to invite it, since the homeserver
// refuses an invite to a user that does not exist; whether the contact
// exists on the network is for the invite handling to find out, and it
// tells the user. As the spec asks, a ghost reported to exist is
// registered first.
type queryHandler struct {
	link   *Link
	budget *rate.Limiter
	// names serialises the queries of one new name.
	names keyedmutex.Mutex[id.UserID]
	// refusedLog samples the warning about an exhausted budget: a script
	// querying names must not flood the log either.
	refusedLog zerolog.Logger
}

func newQueryHandler(l *Link) *queryHandler {
	return &queryHandler{
		link:       l,
		budget:     newBudget(l.cfg.Appservice.NewGhostQueries.Burst, l.cfg.Appservice.NewGhostQueries.Every.D()),
		refusedLog: l.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: time.Minute}),
	}
}

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
	// Queries of one name at once (a profile lookup beside an invite, two
	// of the user's devices) wait for the first: it spends the budget's
	// token and registers the name, and the others then find it
	// registered, instead of spending a token each.
	unlock := q.names.Lock(userID)
	defer unlock()
	if registered, err := q.link.StateStore.IsRegistered(ctx, userID); err == nil && registered {
		// Made by an earlier query or a refused invite: it costs nothing
		// new to say so.
		return true
	}
	if !q.budget.Allow() {
		q.refusedLog.Warn().Stringer("user_id", userID).Msg("Too many user queries for unknown ghosts, answering that the user does not exist")
		return false
	}
	// Only the homeserver account is made here; the ghost row follows when
	// the bridge first uses the ghost, so a query alone writes no bridge state.
	if err = q.register(ctx, userID); err != nil {
		q.link.log.Err(err).Stringer("user_id", userID).Msg("Failed to register ghost on demand")
		return false
	}
	q.link.log.Debug().Stringer("user_id", userID).Msg("Registered ghost on demand for a user query")
	q.ghostQueried(ctx, userID)
	return true
}

// register registers the ghost through the bridge's bounded intent cache
// when there is one: mautrix's AppService.Intent keeps every intent it
// makes, one per queried name, for good.
func (q *queryHandler) register(ctx context.Context, userID id.UserID) error {
	if q.link.RegisterGhost != nil {
		return q.link.RegisterGhost(ctx, userID)
	}
	return q.link.AS.Intent(userID).EnsureRegistered(ctx)
}

// ghostQueried gives the hook (end-to-bridge encryption making the ghost's
// device) its turn while the homeserver waits: a client inviting the ghost
// into an encrypted room asks for its devices right after, and encrypts its
// first message for the devices it found then.
func (q *queryHandler) ghostQueried(ctx context.Context, userID id.UserID) {
	if q.link.GhostQueried != nil {
		q.link.GhostQueried(ctx, userID)
	}
}

// newBudget is a token bucket of burst names, refilled by one every
// interval (golang.org/x/time/rate, which also ignores a clock that steps
// back).
func newBudget(burst int, every time.Duration) *rate.Limiter {
	return rate.NewLimiter(rate.Every(every), burst)
}

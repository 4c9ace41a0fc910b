// Package dpsync follows double-puppeted users' /sync for what a homeserver
// does not push to appservices. Dendrite pushes no redactions and no
// ephemeral events, so without this a user who deletes a message in a DM,
// types or reads there would change nothing on the network. With
// double_puppet.sync each user who owns a login and has a working double
// puppet gets one long-poll: the user's redactions in portals are stored in
// the Matrix event intake with the sync position (appservice.StoreSynced),
// so a restart neither misses nor repeats one; typing and receipts in
// portals go to the portals as pushed ones do. Redactions from users without
// a double puppet are not seen, as the bridge has no way to sync for them.
package dpsync

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
)

// Puppets hands out a user's double puppet, or nil when none covers them
// (puppet.DoublePuppets).
type Puppets interface {
	Intent(ctx context.Context, userID id.UserID) (matrix.API, error)
}

// Intake takes what a sync brought (appservice.Link).
type Intake interface {
	StoreSynced(ctx context.Context, userID id.UserID, nextBatch string, raw []json.RawMessage) (int, error)
	HandSyncedEphemeral(ctx context.Context, roomID id.RoomID, raw json.RawMessage) error
}

const (
	// pollTimeout is each /sync's long-poll.
	pollTimeout = 30 * time.Second
	// rescanInterval is how often the owners of logins are listed again,
	// for users whose double puppet was not used yet in this process (the
	// verified hook covers the others at once).
	rescanInterval = time.Minute
	// followGap paces the start of loops for users listed together.
	followGap = 20 * time.Millisecond
	// minBackoff and maxBackoff bound the wait after a failed sync or store.
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute
)

// Manager runs one sync loop per followed user.
type Manager struct {
	db      *database.Database
	puppets Puppets
	intake  Intake
	log     zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// following holds each running loop's cancel; failing, the users
	// whose last try failed.
	following map[id.UserID]context.CancelFunc
	failing   map[id.UserID]bool
}

// New makes a manager; nothing runs before Start.
func New(db *database.Database, puppets Puppets, intake Intake, log zerolog.Logger) *Manager {
	return &Manager{
		db: db, puppets: puppets, intake: intake,
		log:       log.With().Str("component", "double_puppet_sync").Logger(),
		following: make(map[id.UserID]context.CancelFunc),
		failing:   make(map[id.UserID]bool),
	}
}

// Start follows every owner of a login, now and every rescanInterval.
func (m *Manager) Start(ctx context.Context) {
	m.mu.Lock()
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			m.followOwners()
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(rescanInterval):
			}
		}
	}()
}

// Stop ends every loop and waits for them.
func (m *Manager) Stop() {
	// Canceled under the lock, so that a Follow (from the verified hook,
	// still live while the portals stop) either sees it and starts
	// nothing, or has added its loop before Wait.
	m.mu.Lock()
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// followOwners follows every owner of a login and stops following users
// who own none any more (their logins were deleted).
func (m *Manager) followOwners() {
	users, err := m.db.Login.Owners(m.ctx)
	if err != nil {
		if m.ctx.Err() == nil {
			m.log.Err(err).Msg("Could not list the owners of logins to follow their /sync")
		}
		return
	}
	owners := make(map[id.UserID]bool, len(users))
	started := 0
	for _, u := range users {
		owners[u] = true
		if m.Following(u) {
			continue
		}
		// Paced like the m.direct repair: each new loop asks the
		// homeserver who the user is and makes a first sync, and 10,000
		// users at once would be 20,000 calls in the first second.
		if started++; started > 1 {
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(followGap):
			}
		}
		m.Follow(u)
	}
	m.mu.Lock()
	var gone []id.UserID
	for u := range m.following {
		if !owners[u] {
			gone = append(gone, u)
		}
	}
	m.mu.Unlock()
	for _, u := range gone {
		// A loop started after the list was read (a first login made
		// meanwhile) is not in it: asked again before it is stopped.
		if owns, err := m.db.Login.HasOwner(m.ctx, u); err != nil || owns {
			continue
		}
		m.mu.Lock()
		if cancel := m.following[u]; cancel != nil {
			cancel()
		}
		m.mu.Unlock()
	}
}

// Follow starts the user's loop unless it runs already; the loop ends at
// once for a user who owns no login. Safe before Start (a no-op then: Start
// lists the user) and after Stop.
func (m *Manager) Follow(userID id.UserID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil || m.following[userID] != nil {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.following[userID] = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.run(ctx, userID)
	}()
}

// Counts reports how many users are followed and how many of them failed
// their last try (dmbridge_double_puppet_syncs).
func (m *Manager) Counts() (following, failing int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.following), len(m.failing)
}

// setFailing records the outcome of a user's last try.
func (m *Manager) setFailing(userID id.UserID, failed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if failed {
		m.failing[userID] = true
	} else {
		delete(m.failing, userID)
	}
}

// Following reports whether the user's loop runs.
func (m *Manager) Following(userID id.UserID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.following[userID] != nil
}

// run is one user's loop. It ends with the manager, when the user owns no
// login (at its start, or when a rescan cancels ctx: the stored position
// is then dropped, so that a later login follows from then on), or when
// the user has no double puppet. The loop is then forgotten, so that a
// later Follow starts it again.
func (m *Manager) run(ctx context.Context, userID id.UserID) {
	log := m.log.With().Stringer("user_id", userID).Logger()
	ctx = log.WithContext(ctx)
	unfollowed := false
	defer func() {
		unfollowed = unfollowed || (ctx.Err() != nil && m.ctx.Err() == nil)
		m.mu.Lock()
		defer m.mu.Unlock()
		// The position goes before the loop is forgotten, so that a loop
		// started again for the user cannot have it deleted under it.
		if unfollowed {
			log.Debug().Msg("The user owns no login; not following their /sync")
			if err := m.db.DPSync.Delete(m.ctx, userID); err != nil {
				log.Warn().Err(err).Msg("Could not forget the user's sync position")
			}
		}
		m.following[userID]()
		delete(m.following, userID)
		delete(m.failing, userID)
	}()
	if owns, err := m.db.Login.HasOwner(ctx, userID); err != nil {
		return // the next rescan tries again
	} else if !owns {
		unfollowed = true
		return
	}
	f := &follower{m: m, user: userID, log: log, filter: followFilter(userID)}
	backoff := minBackoff
	for ctx.Err() == nil {
		done, err := f.step(ctx)
		if done {
			return
		}
		if err == nil {
			if f.synced {
				backoff = minBackoff
				m.setFailing(userID, false)
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		m.setFailing(userID, true)
		if backoff == minBackoff {
			log.Warn().Err(err).Msg("Following the user's /sync failed; trying again")
		} else {
			log.Debug().Err(err).Dur("next_try_in", backoff).Msg("Following the user's /sync failed again")
		}
		// Up to a quarter more, so that users who failed together (the
		// homeserver was down) do not all come back in the same second.
		wait := backoff + rand.N(backoff/4+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

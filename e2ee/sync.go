package e2ee

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// noRoom is a room id no homeserver has: the /sync filter names it as the
// only room wanted, so that no room's timeline or state comes down.
const noRoom = id.RoomID("!none:dmbridge.invalid")

// syncFilter keeps a ghost device's /sync to what its Olm machine needs:
// to-device messages, device-list changes and one-time-key counts.
func syncFilter() *mautrix.Filter {
	none := &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}, Limit: 1}
	return &mautrix.Filter{
		AccountData: none,
		Presence:    none,
		Room: &mautrix.RoomFilter{
			Rooms:       []id.RoomID{noRoom},
			AccountData: none, Ephemeral: none, State: none, Timeline: none,
		},
	}
}

// startSync runs the device's /sync loop until the manager stops.
func (m *Manager) startSync(d *device) {
	client := d.mach.Client
	client.Syncer = &syncer{d: d, log: m.log.With().Stringer("user_id", d.userID).Logger(), retry: m.syncRetry}
	// A sync without set_presence marks the ghost online at every sync on
	// Synapse, over the presence the bridge sets from the network; offline
	// leaves that alone there. (Dendrite, with presence on, recomputes it
	// from the syncs either way: the first sync of a device overrides the
	// network's presence once, until the network's next update.)
	client.SyncPresence = event.PresenceOffline
	ctx, stop := context.WithCancel(zerolog.Ctx(m.ctx).WithContext(m.ctx))
	m.mu.Lock()
	previous := d.syncDone
	done := make(chan struct{})
	d.stopSync, d.syncDone = stop, done
	m.mu.Unlock()
	m.wg.Add(1)
	m.syncLoops.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.syncLoops.Add(-1)
		defer close(done)
		if previous != nil {
			// A loop released a moment ago may still be winding down on
			// the same client: one loop at a time.
			<-previous
		}
		// mautrix's loop goes on after a failed /sync (OnFailedSync), but
		// returns when the filter upload at its start or the storing of
		// next_batch fails: a passing homeserver or database error would
		// stop the ghost's room keys for good. It is started again, with
		// the same backoff, until the manager stops.
		for fails := 0; ; {
			began := time.Now()
			err := client.SyncWithContext(ctx)
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return
			}
			if errors.Is(err, mautrix.MUnknownToken) {
				// Polling again cannot help: the homeserver dropped the
				// device's token (logged out, deleted). A new device
				// object with a new token takes over, or none.
				m.dropped(d)
				return
			}
			if time.Since(began) > time.Minute {
				fails = 0
			}
			fails++
			wait := m.syncRetry(fails)
			m.log.Warn().Err(err).Stringer("user_id", d.userID).Dur("retry_in", wait).Msg("Ghost device sync stopped, starting it again")
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
}

// SyncLoops is the number of ghost devices' /sync loops running now; it
// stays 0 when the homeserver pushes their data (encryption.appservice).
func (m *Manager) SyncLoops() int { return int(m.syncLoops.Load()) }

// syncer hands each /sync response to the Olm machine.
type syncer struct {
	d     *device
	log   zerolog.Logger
	fails int
	retry func(fails int) time.Duration // the manager's syncRetry
}

func (s *syncer) ProcessResponse(ctx context.Context, resp *mautrix.RespSync, since string) error {
	s.fails = 0
	ctx = s.log.WithContext(ctx)
	mach := s.d.mach
	s.d.keysMu.Lock()
	defer s.d.keysMu.Unlock()
	// A count of 0 is what an absent device_one_time_keys_count reads as,
	// and Dendrite leaves it out of every initial /sync. Taken as 0, the
	// machine tops up 50 keys without asking the server (unless it uploaded
	// in the last minute), past the 100 its account keeps: the account drops
	// its oldest key, which the server still hands out, and the pre-key
	// message made with it cannot be opened. A partial count, read while an
	// upload was being stored, does the same on a machine loaded since that
	// upload. So mautrix never acts on the count itself here: topUp (push.go)
	// asks the server for its own whenever the count is low. While the
	// repair claims the device's keys (otkrepair.go) the count is not acted
	// on at all: the repair uploads when it is done.
	count := resp.DeviceOTKCount
	resp.DeviceOTKCount.SignedCurve25519 = int(mach.GetAccount().Internal.MaxNumberOfOneTimeKeys())
	mach.ProcessSyncResponse(ctx, resp, since)
	if !s.d.repairing {
		topUp(ctx, mach, &count)
	}
	return nil
}

// OnFailedSync backs off up to a minute and never gives up on a homeserver
// that is down: it comes back, and the device's messages wait for it there.
// A token it no longer knows is another matter (renew.go).
func (s *syncer) OnFailedSync(_ *mautrix.RespSync, err error) (time.Duration, error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, mautrix.MUnknownToken) {
		// A dropped token ends mautrix's loop; startSync logs in again.
		return 0, err
	}
	s.fails++
	wait := s.retry(s.fails)
	s.log.Warn().Err(err).Dur("retry_in", wait).Msg("Ghost device sync failed")
	return wait, nil
}

// syncBackoff is the wait after the fails-th failure in a row of a ghost
// device's sync: doubling from 2 s, at most a minute.
func syncBackoff(fails int) time.Duration {
	return min(time.Duration(1<<min(fails, 6))*time.Second, time.Minute)
}

func (s *syncer) GetFilterJSON(id.UserID) *mautrix.Filter { return syncFilter() }

// inPortal reports whether the ghost is the contact of any portal with a
// room: only such a ghost needs its device's /sync loop. A device of a user
// that is no ghost of this configuration (its namespace changed since) is
// taken as needed: nothing says it is not.
func (m *Manager) inPortal(ctx context.Context, userID id.UserID) (bool, error) {
	contactID, ok := m.o.Config.ParseGhostUserID(userID)
	if !ok {
		return true, nil
	}
	portals, err := m.o.DB.Portal.ByContact(ctx, contactID)
	if err != nil {
		return false, err
	}
	for _, p := range portals {
		if p.RoomID != "" {
			return true, nil
		}
	}
	return false, nil
}

// releaseGrace is how long after an Active a loop is not released: a new
// portal activates its ghost before its room is stored (createRoom and
// adopting a room take seconds, at most a minute or two).
const releaseGrace = 10 * time.Minute

// Release ends the ghost's /sync loop once the ghost is in no portal any
// more (the portal layer calls it when a portal ends): without it every
// contact that ever had an encrypted DM would keep a loop (three goroutines
// and two requests a minute) for as long as the bridge runs, and get it
// back at every start. The device itself stays: it is in the map, and the
// ghost's next encrypted DM starts the loop again (Active).
func (m *Manager) Release(ctx context.Context, userID id.UserID) error {
	if inPortal, err := m.inPortal(ctx, userID); err != nil || inPortal {
		return err
	}
	m.mu.Lock()
	var stop context.CancelFunc
	if d := m.devices[userID]; d != nil && d.syncing {
		if time.Since(d.activeAt) < releaseGrace {
			// A portal with the ghost may be on its way: made, its room
			// not stored yet. Its loop stays; the next start drops it if
			// no portal came.
			m.mu.Unlock()
			return nil
		}
		d.syncing, stop, d.stopSync = false, d.stopSync, nil
	}
	m.mu.Unlock()
	if stop != nil {
		stop()
		m.log.Info().Stringer("user_id", userID).Msg("Ghost is in no portal any more; its device stops syncing")
	}
	return m.o.DB.GhostDev.ClearSyncing(ctx, userID)
}

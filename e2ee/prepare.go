package e2ee

import (
	"context"
	"fmt"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
)

// prepareEvery paces the background device creation: one device (about ten
// homeserver requests) per interval, so that a start with many ghosts
// lacking a device, or a burst of new contacts, is a trickle and not a
// burst.
const prepareEvery = 100 * time.Millisecond

// preparer makes devices for ghosts ahead of need. A user who starts an
// encrypted DM with a ghost that already exists (it was registered when the
// contact first wrote, or from the contact list), or switches encryption on
// in a portal, sends the next message at once; the ghost's device must be
// on the homeserver by then, or the user's client never shares that
// message's room key with it. Devices made here are not kept in memory: a
// ghost with no encrypted room needs none there.
type preparer struct {
	mu      sync.Mutex
	queue   []id.UserID
	queued  map[id.UserID]bool
	wake    chan struct{}
	started bool
}

func newPreparer() *preparer {
	return &preparer{queued: map[id.UserID]bool{}, wake: make(chan struct{}, 1)}
}

// Prepare queues the ghost for a device of its own, made in the background.
// The puppet package calls it when it registers a ghost. A device costs
// about ten requests and some 60 ms of CPU (its one-time keys): made here,
// paced, rather than on the path of the contact's first message.
func (m *Manager) Prepare(userID id.UserID) {
	p := m.prep
	p.mu.Lock()
	if !p.queued[userID] {
		p.queued[userID] = true
		p.queue = append(p.queue, userID)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// startPreparing queues the registered ghosts that have no device (those of
// an install that ran without encryption, or whose device creation was cut
// short) and starts the background worker.
func (m *Manager) startPreparing(ctx context.Context) error {
	missing, err := m.o.DB.GhostDev.RegisteredWithout(ctx)
	if err != nil {
		return fmt.Errorf("find ghosts without a device: %w", err)
	}
	for _, u := range missing {
		m.Prepare(u)
	}
	if len(missing) > 0 {
		m.log.Info().Int("ghosts", len(missing)).Dur("every", prepareEvery).Msg("Giving registered ghosts their devices in the background")
	}
	p := m.prep
	p.mu.Lock()
	start := !p.started
	p.started = true
	p.mu.Unlock()
	if start {
		m.wg.Add(1)
		go m.prepareLoop()
	}
	return nil
}

func (m *Manager) prepareLoop() {
	defer m.wg.Done()
	p := m.prep
	tick := time.NewTicker(prepareEvery)
	defer tick.Stop()
	for {
		p.mu.Lock()
		var next id.UserID
		if len(p.queue) > 0 {
			next = p.queue[0]
			p.queue[0] = ""
			p.queue = p.queue[1:]
			delete(p.queued, next)
		}
		p.mu.Unlock()
		if next == "" {
			select {
			case <-m.ctx.Done():
				return
			case <-p.wake:
			}
			continue
		}
		m.prepareOne(next)
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// prepareOne makes the ghost's device if it has none, then lets go of it
// unless something else started using it for an encrypted room meanwhile.
func (m *Manager) prepareOne(userID id.UserID) {
	log := m.log.With().Stringer("user_id", userID).Logger()
	ctx := log.WithContext(m.ctx)
	d, err := m.device(ctx, userID)
	if err != nil {
		if ctx.Err() == nil {
			// Not retried here: the ghost's first invite or encrypted room
			// makes the device on demand, as it did before this existed.
			log.Warn().Err(err).Msg("Failed to prepare the ghost's device")
		}
		return
	}
	m.mu.Lock()
	if !d.syncing && m.devices[userID] == d {
		delete(m.devices, userID)
	}
	m.mu.Unlock()
}

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

// maxRecent bounds the ghosts queued in memory. Past it a new ghost waits
// for the scan of the database, like those of the backlog.
const maxRecent = 1024

// backlogPage is how many ghosts without a device one scan query returns.
const backlogPage = 100

// preparer makes devices for ghosts ahead of need. A user who starts an
// encrypted DM with a ghost that already exists (it was registered when the
// contact first wrote, or from the contact list), or switches encryption on
// in a portal, sends the next message at once; the ghost's device must be
// on the homeserver by then, or the user's client never shares that
// message's room key with it. Devices made here are not kept in memory: a
// ghost with no encrypted room needs none there.
//
// Ghosts registered while the bridge runs go first, from a short queue in
// memory; the rest (an install that ran without encryption, a device whose
// creation failed, a queue that overflowed) are found by scanning the ghost
// table in user id order from a cursor, so that a backlog of 100,000 ghosts
// costs no memory.
type preparer struct {
	mu      sync.Mutex
	recent  []id.UserID
	queued  map[id.UserID]bool
	wake    chan struct{}
	started bool
	// after is the scan's cursor; scanned is set once a scan reached the
	// end of the table, and cleared (the scan starting over) when Prepare
	// drops a ghost from a full queue.
	after   id.UserID
	scanned bool
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
	switch {
	case p.queued[userID]:
	case len(p.recent) < maxRecent:
		p.queued[userID] = true
		p.recent = append(p.recent, userID)
	default:
		p.scanned, p.after = false, ""
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// startPreparing starts the background worker; its first scan of the ghost
// table finds the registered ghosts that have no device yet.
func (m *Manager) startPreparing() {
	p := m.prep
	p.mu.Lock()
	start := !p.started
	p.started = true
	p.mu.Unlock()
	if start {
		m.wg.Add(1)
		go m.prepareLoop()
	}
}

func (m *Manager) prepareLoop() {
	defer m.wg.Done()
	tick := time.NewTicker(prepareEvery)
	defer tick.Stop()
	var page []id.UserID
	for {
		next := m.nextRecent()
		if next == "" {
			if len(page) == 0 {
				page = m.scanBacklog()
			}
			if len(page) > 0 {
				next, page = page[0], page[1:]
			}
		}
		if next == "" {
			select {
			case <-m.ctx.Done():
				return
			case <-m.prep.wake:
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

func (m *Manager) nextRecent() id.UserID {
	p := m.prep
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.recent) == 0 {
		return ""
	}
	next := p.recent[0]
	p.recent = p.recent[1:]
	delete(p.queued, next)
	return next
}

// scanBacklog returns the next page of registered ghosts without a device
// after the cursor; nil once the scan reached the end of the table. A
// ghost whose device failed is tried again by the next scan: at the next
// start, or after the queue overflowed.
func (m *Manager) scanBacklog() []id.UserID {
	p := m.prep
	p.mu.Lock()
	after, scanned := p.after, p.scanned
	p.mu.Unlock()
	if scanned {
		return nil
	}
	page, err := m.o.DB.GhostDev.RegisteredWithout(m.ctx, after, backlogPage)
	if err != nil {
		if m.ctx.Err() == nil {
			m.log.Err(err).Msg("Failed to find ghosts without a device")
		}
		return nil
	}
	p.mu.Lock()
	if p.after == after && !p.scanned {
		if len(page) > 0 {
			p.after = page[len(page)-1]
		} else {
			p.scanned, p.after = true, ""
		}
	}
	p.mu.Unlock()
	return page
}

// prepareOne makes the ghost's device if it has none, then lets go of it
// unless something else started using it for an encrypted room meanwhile.
func (m *Manager) prepareOne(userID id.UserID) {
	log := m.log.With().Stringer("user_id", userID).Logger()
	ctx := log.WithContext(m.ctx)
	if err := m.Provide(ctx, userID); err != nil && ctx.Err() == nil {
		// Not retried at once: the next scan of the table finds it again,
		// and its first invite or encrypted room makes the device on demand
		// meanwhile.
		log.Warn().Err(err).Msg("Failed to prepare the ghost's device")
	}
}

// Provide makes the ghost's device on the homeserver if it has none, and
// keeps nothing of it in memory: for a ghost that may be invited into an
// encrypted room soon (the preparer's, and a user query's), whose device
// must be there before the user's client first encrypts for it, but which
// is in no encrypted room yet.
func (m *Manager) Provide(ctx context.Context, userID id.UserID) error {
	m.mu.Lock()
	_, inUse := m.devices[userID]
	m.mu.Unlock()
	if inUse {
		// Made (or being made) for an invite or an encrypted room: it is
		// needed in memory, and letting go of it here could leave two Olm
		// machines over one account.
		return nil
	}
	if row, err := m.o.DB.GhostDev.Get(ctx, userID); err != nil {
		return fmt.Errorf("look up device of %s: %w", userID, err)
	} else if row != nil {
		// It has one already: loading it would only cost a key query.
		return nil
	}
	d, err := m.device(ctx, userID)
	if err != nil {
		return err
	}
	m.letGo(d)
	return nil
}

// letGo drops a device the background work loaded from memory, unless
// something started using it for an encrypted room meanwhile.
func (m *Manager) letGo(d *device) {
	m.mu.Lock()
	if !d.syncing && m.devices[d.userID] == d {
		delete(m.devices, d.userID)
	}
	m.mu.Unlock()
}

package portal

import (
	"sync"
	"sync/atomic"
)

// pageSize is how many stored events a dispatcher loads per query.
const pageSize = 512

// dispatchGates records which dispatcher stopped loading because the lanes
// were full (maxQueued). A finished job wakes only those: waking both loops
// after every job made each bridged message cost a poll of the inbox (two
// queries) and of the Matrix events (one) on top of its own work, whereas
// new events wake their loop themselves (Accepted, Wake).
type dispatchGates struct {
	remote, matrix atomic.Bool
}

// wakeThrottled is the lanes' onIdle: a job ended, so a loop that held back
// for lack of room may load again.
func (m *Manager) wakeThrottled() {
	if m.gates.remote.Load() {
		signal(m.remoteWake)
	}
	if m.gates.matrix.Load() {
		signal(m.matrixWake)
	}
}

// roomFor reports whether the lanes take more work. The loop is marked as
// held back before it looks, so that a job ending right after the look
// still wakes it.
func (m *Manager) roomFor(throttled *atomic.Bool) bool {
	throttled.Store(true)
	if m.lanes.pending() < maxQueued {
		throttled.Store(false)
		return true
	}
	return false
}

// acceptedConns is what the remote loop is to look at next: the connectors
// whose events were stored since it last looked (Accepted names them), or
// every connector with pending events (all). Most wakes are for one
// connector's new events, and looking only at those saves listing the
// connectors with pending events, a query per wake and so per bridged
// message when messages come one at a time.
type acceptedConns struct {
	mu  sync.Mutex
	ids map[string]bool
	// all is set at start, after a failed or page-filling look, and when
	// the periodic look comes round.
	all bool
}

func newAcceptedConns() *acceptedConns {
	return &acceptedConns{ids: make(map[string]bool), all: true}
}

func (a *acceptedConns) add(connectorID string) {
	a.mu.Lock()
	a.ids[connectorID] = true
	a.mu.Unlock()
}

func (a *acceptedConns) setAll() {
	a.mu.Lock()
	a.all = true
	a.mu.Unlock()
}

// take returns what to look at and starts collecting anew.
func (a *acceptedConns) take() (ids []string, all bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := range a.ids {
		ids = append(ids, id)
	}
	all = a.all
	clear(a.ids)
	a.all = false
	return ids, all
}

package portal

import "sync/atomic"

// pageSize is how many stored events a dispatcher loads per query.
const pageSize = 512

// dispatchGates records which dispatcher stopped loading because the lanes
// were full (maxQueued). A finished job wakes only those: waking both loops
// after every job made each bridged message cost a poll of the inbox (two
// queries) and of the Matrix events (one) on top of its own work, whereas
// new events wake their loop themselves (the inbox's Wake).
type dispatchGates struct {
	remote, matrix atomic.Bool
}

// wakeThrottled is the lanes' onIdle: a job ended, so a loop that held back
// for lack of room may load again.
func (m *Manager) wakeThrottled() {
	if m.gates.remote.Load() {
		m.inbox.Wake()
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

package server

import (
	"context"
	"sync"
	"time"
)

// SyncStore is an optional extension of BatchStore, for a store whose
// commit can return before what it committed is durable (PostgreSQL
// committing without waiting for its log's flush). The server then stores
// the next batch while an earlier one is made durable, rather than after:
// a batch's events are not held up by the durability wait of the batch
// before them, only its ack is. A batch is acked once a Sync called after
// it was stored has returned.
type SyncStore interface {
	BatchStore
	// StoreBatch stores items as AcceptBatch does but may return before
	// they are durable; durable says whether they already are. After an
	// error nothing of the batch may be acked, as after AcceptBatch's.
	StoreBatch(ctx context.Context, connectorID string, items []Accepted) (durable bool, err error)
	// Sync makes durable every batch that StoreBatch stored for
	// connectorID before Sync was called. The server calls it one call at
	// a time per connection, possibly while StoreBatch runs.
	Sync(ctx context.Context, connectorID string) error
}

// syncer is a connection's second stage after the committer, for a
// SyncStore: it makes what the committer stored durable and only then
// tells the writer to ack it. Syncs are at least half an ack delay apart
// (10 ms by default), since an ack waits that long anyway: the batches
// stored in between share the next Sync, so a busy stream of small
// batches costs PostgreSQL one flush per interval instead of one per
// batch, and a lone event, long after the last Sync, is synced at once.
type syncer struct {
	mu       sync.Mutex
	seq      int64 // highest seq stored and not yet handed to the writer
	n        int   // events stored up to seq since the last hand-over
	unsynced bool  // some of them are not durable yet
	closing  bool  // the committer stopped: sync what is left, then stop

	wake   chan struct{} // one pending wake covers any number
	done   chan struct{} // closed when the syncer has stopped
	failed chan struct{} // closed when a Sync failed; the connection is closing
}

func newSyncer() *syncer {
	return &syncer{wake: make(chan struct{}, 1), done: make(chan struct{}), failed: make(chan struct{})}
}

func (s *syncer) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// stored hands the syncer n events stored up to seq. Committer only.
func (s *syncer) stored(seq int64, n int, durable bool) {
	s.mu.Lock()
	s.seq, s.n = seq, s.n+n
	s.unsynced = s.unsynced || !durable
	s.mu.Unlock()
	s.poke()
}

// stop makes the syncer sync and hand over what it has, then stop, and
// waits for that. Committer only, as it stops.
func (s *syncer) stop() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.poke()
	<-s.done
}

// syncLoop runs the syncer for c's store ss until stop, or until a Sync
// fails, which closes the connection as a failed store does.
func (c *serverConn) syncLoop(ss SyncStore, s *syncer) {
	defer close(s.done)
	every := c.srv.opts.AckDelay / 2
	var last time.Time
	for {
		<-s.wake
		if wait := time.Until(last.Add(every)); wait > 0 {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if !closing {
				time.Sleep(wait)
			}
		}
		s.mu.Lock()
		seq, n, unsynced, closing := s.seq, s.n, s.unsynced, s.closing
		s.n, s.unsynced = 0, false
		s.mu.Unlock()
		if n > 0 {
			if unsynced {
				last = time.Now()
				if err := ss.Sync(c.ctx, c.id); err != nil {
					close(s.failed)
					c.failCommit(err, seq)
					return
				}
			}
			c.committed.Store(seq)
			c.noteStored(seq, n)
		}
		if closing {
			return
		}
	}
}

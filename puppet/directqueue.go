package puppet

import (
	"context"
	"errors"
	"slices"

	"maunium.net/go/mautrix/id"
)

// directQueue is one user's m.direct changes waiting for a write. Only one
// write per user runs at a time (Matrix has no compare-and-swap on account
// data, so the bridge must not race itself); changes that arrive meanwhile
// wait here and the next write carries all of them. Each write reads and
// rewrites the user's whole m.direct, so for a user with thousands of DMs,
// several new DMs in quick succession cost one read, write and verifying
// read instead of one each.
type directQueue struct {
	pending []*directWaiter
	// running is set while some caller is writing for this user.
	running bool
}

// directWaiter is one Apply call's change and, once written, its outcome.
type directWaiter struct {
	change DirectChange
	// done is closed when the outcome is set, or when the waiter is to
	// write itself (lead).
	done  chan struct{}
	lead  bool
	wrote bool
	err   error
}

// maxDirectBatch bounds how many changes one write carries, so that a write
// stays a bounded piece of work.
const maxDirectBatch = 256

// Apply merges the change into the user's m.direct. Every key and room the
// change does not name stays as it was. It reports whether it wrote. Changes
// for one user that come in while a write is under way are merged and
// written together once it is done; each caller returns when the write that
// carried its change was read back.
func (d *Direct) Apply(ctx context.Context, client AccountData, change DirectChange) (bool, error) {
	if change.Empty() {
		return false, nil
	}
	w := &directWaiter{change: change, done: make(chan struct{})}
	d.mu.Lock()
	q := d.queues[client.UserID()]
	if q == nil {
		q = &directQueue{}
		d.queues[client.UserID()] = q
	}
	q.pending = append(q.pending, w)
	if q.running {
		d.mu.Unlock()
		select {
		case <-w.done:
		case <-ctx.Done():
			d.mu.Lock()
			if i := slices.Index(q.pending, w); i >= 0 && !w.lead {
				// Not picked up yet: withdraw.
				q.pending = slices.Delete(q.pending, i, i+1)
				d.mu.Unlock()
				return false, ctx.Err()
			}
			d.mu.Unlock()
			// Picked up by a write, or handed the lead: see it through.
			<-w.done
		}
		if !w.lead {
			if w.err != nil && ctx.Err() == nil && (errors.Is(w.err, context.Canceled) || errors.Is(w.err, context.DeadlineExceeded)) {
				// The write that carried the change ran out of its
				// caller's time, not of ours: try again.
				return d.Apply(ctx, client, change)
			}
			return w.wrote, w.err
		}
		d.mu.Lock()
	}
	q.running = true
	batch := takeDirectBatch(q)
	d.mu.Unlock()

	wrote, err := d.write(ctx, client, combineDirect(batch))
	for _, b := range batch {
		if b != w {
			b.wrote, b.err = wrote, err
			close(b.done)
		}
	}

	d.mu.Lock()
	if len(q.pending) > 0 {
		// The next waiter writes the next batch, under its own context.
		next := q.pending[0]
		next.lead = true
		close(next.done)
	} else {
		q.running = false
		delete(d.queues, client.UserID())
	}
	d.mu.Unlock()
	return wrote, err
}

// takeDirectBatch removes the changes the next write carries from the
// queue: a change that removes rooms goes alone (its removal must land after
// the additions queued before it and before those queued after it), else
// every add-only change up to the next one that removes.
func takeDirectBatch(q *directQueue) []*directWaiter {
	n := 1
	if len(q.pending[0].change.Remove) == 0 {
		for n < len(q.pending) && n < maxDirectBatch && len(q.pending[n].change.Remove) == 0 {
			n++
		}
	}
	batch := slices.Clone(q.pending[:n])
	q.pending = slices.Delete(q.pending, 0, n)
	return batch
}

// combineDirect merges add-only changes (or returns a lone change as is).
func combineDirect(batch []*directWaiter) DirectChange {
	if len(batch) == 1 {
		return batch[0].change
	}
	out := DirectChange{Add: make(map[id.UserID][]id.RoomID)}
	for _, w := range batch {
		for ghost, rooms := range w.change.Add {
			for _, r := range rooms {
				if !slices.Contains(out.Add[ghost], r) {
					out.Add[ghost] = append(out.Add[ghost], r)
				}
			}
		}
	}
	return out
}

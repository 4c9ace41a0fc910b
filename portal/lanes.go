package portal

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// lanes runs jobs in order per key and different keys in parallel. A key has
// a goroutine only while it has work, so idle portals cost nothing. The
// semaphore bounds how many jobs run at once, which bounds the calls in
// flight to the homeserver.
type lanes struct {
	ctx    context.Context
	log    zerolog.Logger
	sem    chan struct{}
	onIdle func()

	// stopping is closed by stop: a job waiting to retry gives up at once
	// (its event stays stored) instead of holding up the shutdown.
	stopping chan struct{}

	mu      sync.Mutex
	queues  map[string][]job
	queued  int
	stopped bool
	wg      sync.WaitGroup
}

type job struct {
	name string
	run  func(ctx context.Context)
	// peek is what a job before it in the lane may see of it (see ahead).
	peek any
}

func newLanes(ctx context.Context, concurrency int, log zerolog.Logger) *lanes {
	if concurrency < 1 {
		concurrency = 1
	}
	return &lanes{ctx: ctx, log: log, sem: make(chan struct{}, concurrency), queues: make(map[string][]job),
		stopping: make(chan struct{})}
}

// submit queues a job on a key. It reports false once the lanes are stopping.
func (l *lanes) submit(key, name string, run func(ctx context.Context)) bool {
	return l.submitPeek(key, name, nil, run)
}

// submitPeek is submit with peek, what the job before this one in the lane
// sees of it through ahead.
func (l *lanes) submitPeek(key, name string, peek any, run func(ctx context.Context)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	q, running := l.queues[key]
	l.queues[key] = append(q, job{name: name, run: run, peek: peek})
	l.queued++
	if !running {
		l.wg.Add(1)
		go l.work(key)
	}
	return true
}

// pending is the number of jobs queued or running.
func (l *lanes) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queued
}

func (l *lanes) work(key string) {
	defer l.wg.Done()
	// One lane's jobs run one after another on this goroutine, so what a
	// job leaves in here for the next one is seen by that one.
	here := &laneHere{l: l, key: key}
	for {
		l.mu.Lock()
		q := l.queues[key]
		if len(q) == 0 || l.stopped {
			if here.behind != nil {
				// Settled while the lane is still this goroutine's: a
				// job queued meanwhile runs here, after it.
				l.mu.Unlock()
				here.settle(l.ctx, nil)
				continue
			}
			l.queued -= len(q)
			delete(l.queues, key)
			l.mu.Unlock()
			return
		}
		next := q[0]
		l.mu.Unlock()
		if here.behind != nil && !here.behind.lets(next.peek) {
			here.settle(l.ctx, next.peek)
		}

		s := &slot{sem: l.sem, stopping: l.stopping}
		if !s.acquire(l.ctx) {
			if here.behind != nil {
				here.settle(l.ctx, nil)
			}
			l.mu.Lock()
			l.queued -= len(l.queues[key])
			delete(l.queues, key)
			l.mu.Unlock()
			return
		}
		l.runOne(here, next, s)
		here.wroteOrGaveUp()
		s.release()

		l.mu.Lock()
		l.queues[key] = l.queues[key][1:]
		l.queued--
		idle := l.onIdle
		l.mu.Unlock()
		if idle != nil {
			idle()
		}
	}
}

// runOne runs a job; a panic is logged with the lane key and does not take
// the other lanes down. The job itself owns retries and parking.
func (l *lanes) runOne(here *laneHere, j job, s *slot) {
	defer func() {
		if r := recover(); r != nil {
			l.log.Error().Str("lane", here.key).Str("job", j.name).
				Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).
				Msg("Job panicked")
		}
	}()
	j.run(jobContext{Context: l.ctx, slot: s, here: here})
}

// jobContext is a job's context: the lanes' own, with the job's slot and
// lane. One value for both, where two context.WithValue layers were two
// allocations per message and a longer walk for every Value.
type jobContext struct {
	context.Context
	slot *slot
	here *laneHere
}

func (c jobContext) Value(key any) any {
	switch key.(type) {
	case slotKey:
		return c.slot
	case laneKey:
		return c.here
	}
	return c.Context.Value(key)
}

// laneHere is a running job's view of its lane.
type laneHere struct {
	l   *lanes
	key string
	// behind is what jobs left unfinished for the jobs after them to
	// overlap; the lane settles it before a job it does not let start,
	// and before the lane runs dry or stops.
	behind behind
	// expecting is set while the job is about to hand the group
	// committer a write (groupcommit.go, expectWrite); the job's end
	// clears it whatever happened.
	expecting *groupCommit
}

type laneKey struct{}

// behind is work that a lane's jobs left running when they ended (the
// commits of their results, pipeline.go), so that the next job need not
// wait for it.
type behind interface {
	// lets reports whether the job whose peek is given may start while
	// the work is still under way.
	lets(peek any) bool
	// finish waits for the work and sees to what failed. It runs on the
	// lane, with ctx of the lane (laneOf finds it), and may run jobs'
	// work again. next is the peek of the job that runs after it, nil
	// when none does; what finish returns stays behind for that job (nil
	// for nothing).
	finish(ctx context.Context, next any) behind
}

// settle finishes what is behind the lane before the job whose peek is
// next (nil: none). behind stays set while it finishes, so that work run
// again meanwhile sees it.
func (h *laneHere) settle(ctx context.Context, next any) {
	h.behind = h.behind.finish(context.WithValue(ctx, laneKey{}, h), next)
}

// laneOf returns the lane of the job that ctx belongs to, or nil outside one.
func laneOf(ctx context.Context) *laneHere {
	here, _ := ctx.Value(laneKey{}).(*laneHere)
	return here
}

// ahead returns the peeks of up to n jobs queued behind the running one in
// its lane, in the order they will run (unless the lanes stop first).
func (h *laneHere) ahead(n int) []any {
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	q := h.l.queues[h.key]
	if len(q) <= 1 {
		return nil
	}
	q = q[1:min(len(q), n+1)]
	peeks := make([]any, len(q))
	for i, j := range q {
		peeks[i] = j.peek
	}
	return peeks
}

// slot is a job's hold on the concurrency semaphore. A job that waits (a
// retry's backoff) gives its slot back meanwhile: the lane stays blocked, so
// its chat keeps its order, but other chats are not held up by it.
type slot struct {
	sem      chan struct{}
	stopping <-chan struct{}
	held     bool
}

type slotKey struct{}

func (s *slot) acquire(ctx context.Context) bool {
	select {
	case s.sem <- struct{}{}:
		s.held = true
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *slot) release() {
	if s.held {
		<-s.sem
		s.held = false
	}
}

// pause waits for d without holding the job's slot, then takes a slot
// again. It reports false if ctx ended or the lanes began to stop first; the
// job must then return.
func pause(ctx context.Context, d time.Duration) bool {
	s, _ := ctx.Value(slotKey{}).(*slot)
	var stopping <-chan struct{}
	if s != nil {
		s.release()
		stopping = s.stopping
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return false
	case <-stopping:
		return false
	}
	return s == nil || s.acquire(ctx)
}

// unslotted runs fn without the job's slot, then takes a slot again; it
// reports false if ctx ended first. For a wait on something other than the
// homeserver (a room key, which comes by to-device message up to twice the
// key wait later): a slot held through it would hold up other chats, and a
// few rooms waiting for keys would stop every chat in both directions.
func unslotted(ctx context.Context, fn func()) bool {
	s, _ := ctx.Value(slotKey{}).(*slot)
	if s != nil {
		s.release()
	}
	fn()
	return s == nil || s.acquire(ctx)
}

// stop lets every running job finish, drops what is queued (it is still in
// the database and runs again after a restart), and waits.
func (l *lanes) stop() {
	l.mu.Lock()
	if !l.stopped {
		l.stopped = true
		close(l.stopping)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

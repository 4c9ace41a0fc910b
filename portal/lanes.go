package portal

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"

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

	mu      sync.Mutex
	queues  map[string][]job
	queued  int
	stopped bool
	wg      sync.WaitGroup
}

type job struct {
	name string
	run  func(ctx context.Context)
}

func newLanes(ctx context.Context, concurrency int, log zerolog.Logger) *lanes {
	if concurrency < 1 {
		concurrency = 1
	}
	return &lanes{ctx: ctx, log: log, sem: make(chan struct{}, concurrency), queues: make(map[string][]job)}
}

// submit queues a job on a key. It reports false once the lanes are stopping.
func (l *lanes) submit(key, name string, run func(ctx context.Context)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	q, running := l.queues[key]
	l.queues[key] = append(q, job{name: name, run: run})
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
	for {
		l.mu.Lock()
		q := l.queues[key]
		if len(q) == 0 || l.stopped {
			l.queued -= len(q)
			delete(l.queues, key)
			l.mu.Unlock()
			return
		}
		next := q[0]
		l.mu.Unlock()

		select {
		case l.sem <- struct{}{}:
		case <-l.ctx.Done():
			l.mu.Lock()
			l.queued -= len(l.queues[key])
			delete(l.queues, key)
			l.mu.Unlock()
			return
		}
		l.runOne(key, next)
		<-l.sem

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
func (l *lanes) runOne(key string, j job) {
	defer func() {
		if r := recover(); r != nil {
			l.log.Error().Str("lane", key).Str("job", j.name).
				Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).
				Msg("Job panicked")
		}
	}()
	j.run(context.WithValue(l.ctx, laneSlotKey{}, l.sem))
}

// laneSlotKey finds, in a job's context, the semaphore whose slot the job
// holds, so that a job that must wait can give its slot back meanwhile.
type laneSlotKey struct{}

// withoutSlot runs wait with the calling job's concurrency slot released,
// and takes a slot again before it returns: a job that sleeps must not keep
// other portals from reaching the homeserver. Outside a lane it just waits.
func withoutSlot(ctx context.Context, wait func()) {
	sem, ok := ctx.Value(laneSlotKey{}).(chan struct{})
	if !ok {
		wait()
		return
	}
	<-sem
	defer func() {
		// Not cancellable: the lane gives the slot back after the job, so
		// the job must hold one when it returns. Other jobs always release.
		sem <- struct{}{}
	}()
	wait()
}

// stop lets every running job finish, drops what is queued (it is still in
// the database and runs again after a restart), and waits.
func (l *lanes) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.wg.Wait()
}

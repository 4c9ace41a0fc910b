// Package ha elects one active bridge among several processes that share a
// PostgreSQL database, and fences the others off.
//
// Election uses two things together. A session-level advisory lock, held on a
// dedicated connection, tells a standby at once whether the holder's
// session still exists. A lease row (holder, epoch, expires_at) renewed by
// the active covers what the lock cannot: a paused holder (SIGSTOP, a VM
// pause) keeps its session and its kernel keeps answering TCP keepalives, so
// the lock alone would keep it "active" forever. A standby takes over only
// once the lease has expired by the database's clock; it then terminates
// the stale holder's backend if the lock is still held, and increments the
// epoch.
//
// Fencing has three layers, from the cheapest to the strongest:
//   - the active checks its lease by its own monotonic clock (valid until the
//     start of its last successful renewal plus the lease duration minus a
//     safety margin) before each homeserver request, ack and command;
//   - every database transaction of the active locks the lease row FOR KEY
//     SHARE and checks that the epoch is still its own (fence.go), so a
//     takeover's epoch increment waits for running transactions, and a former
//     active's later transactions fail;
//   - on losing the lease (renewal failed, lock connection lost, lease time
//     run out) the process is told at once and stops all work: the bridge
//     binary exits, and its supervisor restarts it as a standby.
//
// Timing, with the defaults lease L = 3 s, renewal every R = 1 s, margin
// M = L/4 = 750 ms. A renewal that starts at S (by the active's clock) sets
// expires_at to the database's now() plus L; that now() is read after S, so
// the lease expires no earlier than S + L in real time. The active acts only
// until S + L - M by its own monotonic clock, and a standby takes over only
// once expires_at has passed by the database's clock. Both ends are measured
// from the same renewal, so no two hosts' wall clocks are compared, and the
// former active's last check comes at least M before the new active's first:
// M covers a request's way from the check to its arrival (and the
// difference in rate of two monotonic clocks, parts per million). A paused
// former active wakes past S + L - M and fails every check before it sends.
// The epoch fence does not depend on any clock. A renewal may be late by
// L - M - R = 1.25 s before the active steps down by itself. After a crash
// between two renewals the lease runs out L - R to L later (2 to 3 s), a
// standby notices within L/8, and the new active resolves sends left in
// doubt from the expiry on (see Elector.FormerDone), looking for them first
// so that one which landed costs no wait.
package ha

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Role is what a process is doing in the election.
type Role string

// The roles. A process starts as a standby, becomes active at most once,
// and is lost once its lease is gone: it must not work any more.
const (
	Standby Role = "standby"
	Active  Role = "active"
	Lost    Role = "lost"
)

// ErrNotActive is what every fenced operation returns when this process does
// not (or no longer) hold a valid lease.
var ErrNotActive = errors.New("this bridge instance does not hold the active lease")

// lockKey is the advisory lock's key: fixed, so that every instance of one
// bridge database contends for the same lock ("dmbr" in ASCII).
const lockKey int64 = 0x646d6272

// Options tunes the election. Zero values take the defaults.
type Options struct {
	// Lease is how long a renewal keeps the lease valid (default 3 s).
	Lease time.Duration
	// Renew is how often the active renews (default Lease/3).
	Renew time.Duration
	// Margin is taken off the lease when the active judges by its own
	// clock whether it may still act (default Lease/4), covering the time
	// between a check and the request reaching its destination.
	Margin time.Duration
	// Poll is how often a standby looks at the lease (default Lease/8).
	Poll time.Duration
	// Instance names this process in the lease row, the logs and the
	// application_name of its database sessions; default "dmbridge-" with
	// the pid and a random suffix. It must be unique per process.
	Instance string
	// EpochFenceOnly is for fault tests only: it turns off the fencing by
	// this process's own clock (Check looks at the role alone) and the loss
	// of the lease on a failed renewal, so that a test can show the epoch
	// fence stopping a resumed former active by itself. Never set it in
	// production: without the clock check a paused former active sends to
	// the homeserver after a takeover.
	EpochFenceOnly bool
}

func (o *Options) setDefaults() {
	if o.Lease <= 0 {
		o.Lease = 3 * time.Second
	}
	if o.Renew <= 0 {
		o.Renew = o.Lease / 3
	}
	if o.Margin <= 0 {
		o.Margin = o.Lease / 4
	}
	if o.Poll <= 0 {
		o.Poll = o.Lease / 8
	}
	if o.Instance == "" {
		// Short enough for PostgreSQL's 63-byte application_name, by which
		// a new active finds and ends a stale holder's sessions.
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.Instance = fmt.Sprintf("dmbridge-%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
	}
}

// Elector takes part in the election for one process.
type Elector struct {
	db   *sql.DB
	opts Options
	log  zerolog.Logger

	// conn holds the advisory lock; it is used by one goroutine at a time
	// (Run's loop).
	conn *sql.Conn

	mu         sync.Mutex
	role       Role
	epoch      int64
	validUntil time.Time // by this process's monotonic clock
	// formerDone is, by this process's clock, a time by which every request
	// of the former actives had gone out (see FormerDone).
	formerDone time.Time
	lostCh     chan struct{}
	onChange   []func(Role, int64)
	// stopRenew and renewDone bracket the renewal goroutine; nil until
	// this process became active.
	stopRenew chan struct{}
	renewDone chan struct{}
	stopOnce  sync.Once
}

// New prepares an elector on the PostgreSQL database at uri, over a pool of
// its own. It creates the lease table if it is missing.
func New(ctx context.Context, uri string, opts Options, log zerolog.Logger) (*Elector, error) {
	opts.setDefaults()
	if opts.Margin >= opts.Lease-opts.Renew {
		return nil, fmt.Errorf("ha: margin %s leaves no time between renewals of a %s lease renewed every %s", opts.Margin, opts.Lease, opts.Renew)
	}
	e := &Elector{opts: opts, role: Standby, lostCh: make(chan struct{}),
		log: log.With().Str("component", "ha").Str("instance", opts.Instance).Logger()}
	db, err := e.OpenDB(uri, false)
	if err != nil {
		return nil, err
	}
	e.db = db
	// The lease is coordination, not bridge state: it lives outside the
	// bridge's versioned schema so that an election can run before (and
	// around) the bridge's migrations.
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS dmbridge_lease (
			id         INTEGER PRIMARY KEY CHECK (id = 1),
			holder     TEXT NOT NULL,
			epoch      BIGINT NOT NULL,
			expires_at TIMESTAMPTZ NOT NULL
		)`,
		`INSERT INTO dmbridge_lease (id, holder, epoch, expires_at) VALUES (1, '', 0, '-infinity') ON CONFLICT (id) DO NOTHING`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("ha: prepare lease table: %w", err)
		}
	}
	return e, nil
}

// Instance is this process's name in the lease row.
func (e *Elector) Instance() string { return e.opts.Instance }

// OnChange registers fn to be called (synchronously, from the election
// goroutine) on each change of role. Register before Run.
func (e *Elector) OnChange(fn func(role Role, epoch int64)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onChange = append(e.onChange, fn)
}

// Role is this process's role now. An active whose lease has run out by its
// own clock counts as lost even before the renewal loop has noticed.
func (e *Elector) Role() (Role, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.role == Active && !e.opts.EpochFenceOnly && !time.Now().Before(e.validUntil) {
		return Lost, e.epoch
	}
	return e.role, e.epoch
}

// FormerDone is, by this process's clock, a time by which every request of
// a former active to the homeserver or a connector had arrived, or the zero
// time before this process is active: the moment the lease expired by the
// database's clock. A former active acts only while its lease is valid by its
// own clock minus the margin (see Check), and the margin covers the way from
// a check to the request's arrival. After a release (an orderly shutdown) it
// is the moment the release was seen: the former had stopped all work then.
// The one request this cannot bound is that of a process paused right
// between its check and its write; see docs/scaling.md.
func (e *Elector) FormerDone() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.formerDone
}

// Check returns nil only while this process is active and its lease is
// valid by its own clock (with the safety margin). Call it right before
// anything that acts on the outside world.
func (e *Elector) Check() error {
	role, _ := e.Role()
	if role != Active {
		return ErrNotActive
	}
	return nil
}

// Lost is closed once this process has lost the lease.
func (e *Elector) Lost() <-chan struct{} { return e.lostCh }

// setRole records a change and tells the listeners.
func (e *Elector) setRole(role Role, epoch int64, validUntil time.Time) {
	e.mu.Lock()
	old := e.role
	e.role, e.epoch, e.validUntil = role, epoch, validUntil
	fns := make([]func(Role, int64), len(e.onChange))
	copy(fns, e.onChange)
	if role == Lost && old != Lost {
		close(e.lostCh)
	}
	e.mu.Unlock()
	if old == role {
		return
	}
	for _, fn := range fns {
		fn(role, epoch)
	}
}

// WaitActive takes part in the election until this process is active (nil)
// or ctx ends. It then keeps renewing in the background until ctx ends or
// the lease is lost; see Lost.
func (e *Elector) WaitActive(ctx context.Context) error {
	e.log.Info().Msg("Standby: waiting for the active lease")
	ticker := time.NewTicker(e.opts.Poll)
	defer ticker.Stop()
	logged := ""
	for {
		holder, err := e.tryAcquire(ctx)
		if err == nil && holder == "" {
			break
		}
		if err != nil && ctx.Err() == nil {
			e.log.Warn().Err(err).Msg("Election attempt failed; retrying")
		} else if holder != logged {
			e.log.Info().Str("holder", holder).Msg("Standby: another instance holds the lease")
			logged = holder
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			e.dropConn()
			return ctx.Err()
		}
	}
	e.mu.Lock()
	e.stopRenew, e.renewDone = make(chan struct{}), make(chan struct{})
	e.mu.Unlock()
	// Renewal outlives ctx (the signal context): an orderly shutdown still
	// needs the lease until Release.
	go e.renewLoop(context.WithoutCancel(ctx))
	return nil
}

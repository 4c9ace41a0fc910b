package portal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/dmbridge/dmbridge/database"
)

// Group commit: the writes that every bridged message makes (its in-doubt
// marker before the send, its mapping, the marker's removal and the inbox
// row's done flag after it; a command's queueing and its result) are
// independent between chats, so the lanes hand them to a few committers,
// each of which runs whatever has queued up meanwhile in one transaction.
// One transaction then carries several chats' writes: fewer round trips
// (BEGIN and COMMIT once per group) and fewer commits, the database's
// costliest part on both engines. A lone write does not wait for company:
// a committer that is free takes it at once.
//
// A write that fails rolls back its group, and then each write of the group
// runs again in a transaction of its own, so one chat's failure is never
// another's. A failed BEGIN or COMMIT is every member's: their outcome is
// the same (after a failed COMMIT, unknown), as it was for a transaction of
// their own; every write given here is safe to run again.

// committers is how many committers of the writes other than in-doubt
// markers run on PostgreSQL: one collects the next group while another
// waits for its commit.
const committers = 2

// markerCommitters is how many more commit only in-doubt markers, on
// PostgreSQL. A marker is what a send waits for, and its transaction does
// not wait for the WAL flush (database.MarkersOnly); in the committers
// above it queued behind other chats' results, whose transactions do: with
// both committers in a flush, a marker waited out the rest of one, which
// is where a slow disk (a flush of milliseconds) put most of a busy
// bridge's added latency (docs/design.md, "Markers without the flush").
// In a queue of their own, markers wait only for other markers' commits.
const markerCommitters = 2

// committersFor is committers for the dialect. SQLite takes one writer at a
// time, so a second committer only waits for the first one's lock; with
// one, the writes that queue meanwhile share the next commit, whose cost
// (every page the writes touched, appended to the WAL) is most of a
// message's database work there.
func committersFor(dialect dbutil.Dialect) int {
	if dialect == dbutil.SQLite {
		return 1
	}
	return committers
}

// maxGroup bounds the writes of one transaction, so that one group does not
// hold its locks for long.
const maxGroup = 64

type groupWrite struct {
	fn func(context.Context) error
	// oneStatement: fn is a single statement, which alone needs no
	// transaction (one round trip instead of three).
	oneStatement bool
	// beforeSend: a send waits for this write (its in-doubt marker), so
	// its group does not linger (see linger).
	beforeSend bool
	// marker: the write is an in-doubt marker and nothing else, which on
	// PostgreSQL commits without waiting for the WAL flush, in the
	// markers' own queue (markerCommitters).
	marker bool
	// finished is closed once the write's outcome, err, is known.
	finished chan struct{}
	err      error
	// then, if set, is called with the outcome before finished closes.
	then func(err error)
	// sent, if set, is fn as a row of a group's results (groupsent.go).
	sent *sentWrite
}

func newGroupWrite(fn func(context.Context) error, oneStatement bool) *groupWrite {
	return &groupWrite{fn: fn, oneStatement: oneStatement, finished: make(chan struct{})}
}

// finish records the write's outcome; the committer calls it once.
func (w *groupWrite) finish(err error) {
	w.err = err
	if w.then != nil {
		w.then(err)
	}
	close(w.finished)
}

// wait waits for the write's outcome; false when ctx ended first.
func (w *groupWrite) wait(ctx context.Context) bool {
	select {
	case <-w.finished:
		return true
	case <-ctx.Done():
		return false
	}
}

// alone runs w in a transaction of its own, or none if it needs none.
func (g *groupCommit) alone(ctx context.Context, w *groupWrite) error {
	return runWrite(ctx, g.db, w)
}

// runWrite runs w's statement on its own, or in a transaction where it has
// more than one or the database is fenced: the high-availability lease's
// epoch is checked at BEGIN, and a resumed former active must not write a
// marker (and then send) or a result, even a lone one.
func runWrite(ctx context.Context, db *database.Database, w *groupWrite) error {
	if w.oneStatement && !db.Fenced {
		return w.fn(ctx)
	}
	return db.DoTxn(ctx, nil, w.fn)
}

type groupCommit struct {
	db     *database.Database
	writes chan *groupWrite
	// markers is the in-doubt markers' own queue on PostgreSQL
	// (markerCommitters); nil on SQLite, where they share writes.
	markers chan *groupWrite
	// expected counts the lanes whose send is out and whose result write
	// will follow; nudge wakes a lingering committer when it drops.
	expected atomic.Int64
	nudge    chan struct{}
	// lingerFor is maxLinger (tests set their own).
	lingerFor time.Duration
	// together counts the results stored as rows of one statement
	// (groupsent.go), for the tests.
	together atomic.Int64
}

func newGroupCommit(db *database.Database) *groupCommit {
	g := &groupCommit{db: db, writes: make(chan *groupWrite, maxGroup), nudge: make(chan struct{}, 1), lingerFor: maxLinger}
	if db.Dialect == dbutil.Postgres {
		// On SQLite a commit does not wait for the disk (synchronous =
		// NORMAL), and more transactions would only queue at its single
		// writer.
		g.markers = make(chan *groupWrite, maxGroup)
	}
	return g
}

// queueOf is the queue that commits w.
func (g *groupCommit) queueOf(w *groupWrite) chan *groupWrite {
	if w.marker && g.markers != nil {
		return g.markers
	}
	return g.writes
}

// maxLinger bounds how long a committer holds a group open for the writes
// of sends that are still out (see linger).
const maxLinger = 500 * time.Microsecond

// expectWrite tells the committers that the job of ctx has a send out and
// will hand them its result: until it does (or the job ends), a committer
// holding a group waits a little for it. Outside a lane it does nothing.
func (g *groupCommit) expectWrite(ctx context.Context) {
	here := laneOf(ctx)
	if g == nil || here == nil || here.expecting != nil {
		return
	}
	here.expecting = g
	g.expected.Add(1)
}

// wroteOrGaveUp ends the job's expectation, if it has one.
func (h *laneHere) wroteOrGaveUp() {
	g := h.expecting
	if g == nil {
		return
	}
	h.expecting = nil
	g.expected.Add(-1)
	select {
	case g.nudge <- struct{}{}:
	default:
	}
}

// linger adds to group the writes that arrive while other lanes' sends are
// still out, for at most maxLinger: 8 busy chats then share a commit
// instead of taking turns at one each, which on SQLite is most of a
// message's database CPU (every page a commit touched goes to the WAL) and
// on PostgreSQL a WAL flush. With no send out, a lone message or a single
// busy chat, nothing waits.
func (g *groupCommit) linger(group []*groupWrite) []*groupWrite {
	if g.expected.Load() <= 0 || anyBeforeSend(group) {
		return group
	}
	timer := time.NewTimer(g.lingerFor)
	defer timer.Stop()
	for len(group) < maxGroup && g.expected.Load() > 0 {
		select {
		case w := <-g.writes:
			group = append(group, w)
			if w.beforeSend {
				return group
			}
		case <-g.nudge:
		case <-timer.C:
			return group
		}
	}
	return group
}

// start runs the committers until ctx ends, each counted in wg.
func (g *groupCommit) start(ctx context.Context, wg *sync.WaitGroup) {
	for range committersFor(g.db.Dialect) {
		wg.Go(func() { g.run(ctx, g.writes) })
	}
	if g.markers != nil {
		for range markerCommitters {
			wg.Go(func() { g.run(ctx, g.markers) })
		}
	}
}

// run is one committer of queue, until ctx ends. The markers' queue's
// transactions are MarkersOnly: they skip the WAL flush.
func (g *groupCommit) run(ctx context.Context, queue chan *groupWrite) {
	if queue == g.markers {
		ctx = database.MarkersOnly(ctx)
	}
	group := make([]*groupWrite, 0, maxGroup)
	for {
		select {
		case w := <-queue:
			group = append(group[:0], w)
		case <-ctx.Done():
			return
		}
	collect:
		for len(group) < maxGroup {
			select {
			case w := <-queue:
				group = append(group, w)
			default:
				break collect
			}
		}
		if queue == g.writes {
			group = g.linger(group)
		}
		g.commit(ctx, group)
		clear(group)
	}
}

// commit runs group's writes in one transaction (or, for one write, as
// runWrite does); after a failure that is not BEGIN's or COMMIT's, each
// write runs again alone.
func (g *groupCommit) commit(ctx context.Context, group []*groupWrite) {
	if len(group) == 1 {
		group[0].finish(g.alone(ctx, group[0]))
		return
	}
	sent, rest := splitSent(group)
	run := func(ctx context.Context) error {
		for _, w := range rest {
			if err := w.fn(ctx); err != nil {
				return err
			}
		}
		if err := storeTogether(ctx, g.db, sent); err != nil {
			return err
		}
		g.together.Add(int64(len(sent)))
		return nil
	}
	var err error
	if len(rest) == 0 && !g.db.Fenced {
		// One statement, atomic on its own: no transaction around it.
		// With high availability it keeps one: the lease's epoch is
		// checked at BEGIN, and a resumed former active must not store
		// these results.
		err = run(ctx)
		if err != nil && !database.Rejected(err) {
			// Not known whether it was stored: as after a failed COMMIT.
			err = fmt.Errorf("%w: %w", dbutil.ErrTxnCommit, err)
		}
	} else {
		err = g.db.DoTxn(ctx, nil, run)
	}
	if err == nil || errors.Is(err, dbutil.ErrTxnBegin) || errors.Is(err, dbutil.ErrTxnCommit) {
		for _, w := range group {
			w.finish(err)
		}
		return
	}
	for _, w := range group {
		w.finish(g.alone(ctx, w))
	}
}

// anyBeforeSend reports whether a send waits for one of the writes: a
// message's added latency is not traded for fewer commits.
func anyBeforeSend(group []*groupWrite) bool {
	for _, w := range group {
		if w.beforeSend {
			return true
		}
	}
	return false
}

// groupTxn runs fn in a transaction, possibly together with other chats'
// writes. fn must only write the database, through the ctx it is given, and
// may be run again after a rollback. When ctx ends first, groupTxn returns
// its error and fn may still commit. Inside a transaction, or before Start
// (no committers), fn runs in a transaction of its own or the caller's.
func (m *Manager) groupTxn(ctx context.Context, fn func(context.Context) error) error {
	return m.group(ctx, newGroupWrite(fn, false))
}

// groupStatement is groupTxn for an fn of one statement, which alone runs
// without a transaction.
func (m *Manager) groupStatement(ctx context.Context, fn func(context.Context) error) error {
	return m.group(ctx, newGroupWrite(fn, true))
}

// groupMarker is groupStatement for the in-doubt marker a send waits for.
// fn must write that marker and nothing else: on PostgreSQL its
// transaction commits without waiting for the WAL flush
// (markerCommitters).
func (m *Manager) groupMarker(ctx context.Context, fn func(context.Context) error) error {
	w := newGroupWrite(fn, true)
	w.beforeSend, w.marker = true, true
	return m.group(ctx, w)
}

func (m *Manager) group(ctx context.Context, w *groupWrite) error {
	if !m.groupAsync(ctx, w) || !w.wait(ctx) {
		return ctx.Err()
	}
	return w.err
}

// groupAsync hands w to a committer and returns without waiting for it:
// w.wait tells its outcome. Inside a transaction, or before Start, w runs
// at once. It reports false, with w finished with ctx's error, if ctx ended
// before a committer took it.
func (m *Manager) groupAsync(ctx context.Context, w *groupWrite) bool {
	g := m.commits
	if _, inTxn := m.db.Execable(ctx).(dbutil.Transaction); g == nil || inTxn {
		w.finish(runWrite(ctx, m.db, w))
		return true
	}
	select {
	case g.queueOf(w) <- w:
	case <-ctx.Done():
		// Never run: whoever waits for it learns so at once.
		w.finish(ctx.Err())
		return false
	}
	if here := laneOf(ctx); here != nil {
		here.wroteOrGaveUp()
	}
	return true
}

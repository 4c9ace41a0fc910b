package portal

import (
	"context"
	"errors"

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

// committers is how many group transactions run at once on PostgreSQL:
// one collects the next group while another waits for its commit.
const committers = 2

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
	done         chan error
}

// alone runs w in a transaction of its own, or none if it needs none.
func (g *groupCommit) alone(ctx context.Context, w *groupWrite) error {
	if w.oneStatement {
		return w.fn(ctx)
	}
	return g.db.DoTxn(ctx, nil, w.fn)
}

type groupCommit struct {
	db     *database.Database
	writes chan *groupWrite
}

func newGroupCommit(db *database.Database) *groupCommit {
	return &groupCommit{db: db, writes: make(chan *groupWrite, maxGroup)}
}

// run is one committer, until ctx ends.
func (g *groupCommit) run(ctx context.Context) {
	group := make([]*groupWrite, 0, maxGroup)
	for {
		select {
		case w := <-g.writes:
			group = append(group[:0], w)
		case <-ctx.Done():
			return
		}
	collect:
		for len(group) < maxGroup {
			select {
			case w := <-g.writes:
				group = append(group, w)
			default:
				break collect
			}
		}
		g.commit(ctx, group)
		clear(group)
	}
}

func (g *groupCommit) commit(ctx context.Context, group []*groupWrite) {
	if len(group) == 1 {
		group[0].done <- g.alone(ctx, group[0])
		return
	}
	err := g.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		for _, w := range group {
			if err := w.fn(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || errors.Is(err, dbutil.ErrTxnBegin) || errors.Is(err, dbutil.ErrTxnCommit) {
		for _, w := range group {
			w.done <- err
		}
		return
	}
	for _, w := range group {
		w.done <- g.alone(ctx, w)
	}
}

// groupTxn runs fn in a transaction, possibly together with other chats'
// writes. fn must only write the database, through the ctx it is given, and
// may be run again after a rollback. When ctx ends first, groupTxn returns
// its error and fn may still commit. Inside a transaction, or before Start
// (no committers), fn runs in a transaction of its own or the caller's.
func (m *Manager) groupTxn(ctx context.Context, fn func(context.Context) error) error {
	return m.group(ctx, fn, false)
}

// groupStatement is groupTxn for an fn of one statement, which alone runs
// without a transaction.
func (m *Manager) groupStatement(ctx context.Context, fn func(context.Context) error) error {
	return m.group(ctx, fn, true)
}

func (m *Manager) group(ctx context.Context, fn func(context.Context) error, oneStatement bool) error {
	g := m.commits
	if _, inTxn := m.db.Execable(ctx).(dbutil.Transaction); g == nil || inTxn {
		if oneStatement {
			return fn(ctx)
		}
		return m.db.DoTxn(ctx, nil, fn)
	}
	w := &groupWrite{fn: fn, oneStatement: oneStatement, done: make(chan error, 1)}
	select {
	case g.writes <- w:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

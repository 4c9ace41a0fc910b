package database

import (
	"context"
	"database/sql/driver"
	"errors"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// SQLite lets one connection write at a time, and one that finds the lock
// taken sleeps in SQLite's busy handler: 1 ms, then 2, then 5, 10 and on,
// however soon the lock is freed. The bridge writes from several
// goroutines at once (the connector intake's committer, the portal group
// committer, the Matrix intake), so a write that lost the race waited 1, 3
// or 8 ms for a lock held a fraction of that: the stalls that made the late
// tail of make bench's added latency on SQLite. The write gate queues the
// pool's writers in Go instead, where the next one runs as soon as the
// previous one is done.
//
// What goes through the gate: a transaction, from BEGIN to its end (with
// _txlock=immediate every transaction takes SQLite's write lock at BEGIN
// anyway), and a statement outside a transaction that may write (any
// Exec, and a prepared statement SQLite does not call read-only). Queries
// outside a transaction do not wait: in WAL mode they never need the lock,
// and one that writes (INSERT … RETURNING run as a query) keeps SQLite's
// own waiting.

// writeGate is one slot for the writer of the moment.
type writeGate struct {
	slot chan struct{}
	// wait is how long a writer queues before it goes on to SQLite's own
	// lock (whose busy_timeout then applies): a holder that never ends
	// (a bug) then costs an error, as without the gate, not a hang.
	wait time.Duration
}

func newWriteGate() *writeGate {
	return &writeGate{slot: make(chan struct{}, 1), wait: sqliteBusyTimeout}
}

// enter waits for the slot; entered is false when the wait ran out and the
// caller goes on without it.
func (g *writeGate) enter(ctx context.Context) (entered bool, err error) {
	select {
	case g.slot <- struct{}{}:
		return true, nil
	default:
	}
	timer := time.NewTimer(g.wait)
	defer timer.Stop()
	select {
	case g.slot <- struct{}{}:
		return true, nil
	case <-timer.C:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (g *writeGate) leave(entered bool) {
	if entered {
		<-g.slot
	}
}

// gatedConn is a pool connection whose writes go through the gate.
// database/sql uses a connection from one goroutine at a time, so inTx
// needs no lock. The driver's context-less Begin, Exec and Prepare, which
// the embedding passes through ungated, are never called: database/sql
// uses the context methods below whenever a connection has them.
type gatedConn struct {
	*sqlite3.SQLiteConn
	gate *writeGate
	// inTx: a transaction of this connection is open; its statements run
	// without asking for the gate again. txHeld: it holds the gate (it
	// did not give up waiting for it).
	inTx, txHeld bool
	// held is the context its statements run on while txHeld: the
	// transaction's without cancellation (holding), made once at BEGIN
	// rather than for each statement.
	held context.Context
	// kept are the statements marked keptPrefix, prepared on this
	// connection once (at most maxPrepared of them) and closed with it.
	kept map[string]*sqlite3.SQLiteStmt
}

// keptPrefix marks the text of a statement that stmtCache runs by its
// text in a transaction (byTextInTx): a single statement, which the
// connection keeps prepared. SQLite reads it as a comment.
const keptPrefix = "/*kept*/ "

var errNotSQLite = errors.New("sqlite driver returned a connection of another type")

func newGatedConn(c driver.Conn, gate *writeGate) (driver.Conn, error) {
	sc, ok := c.(*sqlite3.SQLiteConn)
	if !ok {
		_ = c.Close()
		return nil, errNotSQLite
	}
	return &gatedConn{SQLiteConn: sc, gate: gate}, nil
}

// BeginTx holds the gate until the transaction ends.
func (c *gatedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	entered, err := c.gate.enter(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := c.SQLiteConn.BeginTx(ctx, opts)
	if err != nil {
		c.gate.leave(entered)
		return nil, err
	}
	c.inTx, c.txHeld = true, entered
	if entered {
		c.held = holding(ctx)
	}
	return &gatedTx{Tx: tx, c: c, entered: entered}, nil
}

// ExecContext runs a statement that may write; outside a transaction it
// waits for the gate.
func (c *gatedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.inTx {
		if strings.HasPrefix(query, keptPrefix) {
			return c.execKept(ctx, query, args)
		}
		return c.SQLiteConn.ExecContext(c.txContext(ctx), query, args)
	}
	entered, err := c.gate.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer c.gate.leave(entered)
	if entered {
		ctx = holding(ctx)
	}
	return c.SQLiteConn.ExecContext(ctx, query, args)
}

// execKept runs a keptPrefix statement of the transaction, prepared once
// per connection.
func (c *gatedConn) execKept(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	st, ok := c.kept[query]
	if !ok {
		s, err := c.SQLiteConn.PrepareContext(ctx, query)
		if err != nil {
			return nil, err
		}
		if st, ok = s.(*sqlite3.SQLiteStmt); !ok {
			_ = s.Close()
			return nil, errNotSQLite
		}
		if len(c.kept) >= maxPrepared {
			defer st.Close()
		} else {
			if c.kept == nil {
				c.kept = make(map[string]*sqlite3.SQLiteStmt)
			}
			c.kept[query] = st
		}
	}
	return st.ExecContext(c.txContext(ctx), args)
}

// Close closes the kept statements, then the connection.
func (c *gatedConn) Close() error {
	for q, st := range c.kept {
		_ = st.Close()
		delete(c.kept, q)
	}
	return c.SQLiteConn.Close()
}

// PrepareContext returns a statement that asks for the gate when it writes.
func (c *gatedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	s, err := c.SQLiteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	ss, ok := s.(*sqlite3.SQLiteStmt)
	if !ok {
		return s, nil
	}
	return &gatedStmt{SQLiteStmt: ss, c: c}, nil
}

type gatedTx struct {
	driver.Tx
	c       *gatedConn
	entered bool
}

func (t *gatedTx) Commit() error {
	defer t.end()
	return t.Tx.Commit()
}

func (t *gatedTx) Rollback() error {
	defer t.end()
	return t.Tx.Rollback()
}

func (t *gatedTx) end() {
	t.c.inTx, t.c.txHeld, t.c.held = false, false, nil
	t.c.gate.leave(t.entered)
}

type gatedStmt struct {
	*sqlite3.SQLiteStmt
	c *gatedConn
}

// ExecContext waits for the gate unless the statement only reads or runs
// in a transaction.
func (s *gatedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if s.c.inTx {
		return s.SQLiteStmt.ExecContext(s.c.txContext(ctx), args)
	}
	if s.Readonly() {
		return s.SQLiteStmt.ExecContext(ctx, args)
	}
	entered, err := s.c.gate.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer s.c.gate.leave(entered)
	if entered {
		ctx = holding(ctx)
	}
	return s.SQLiteStmt.ExecContext(ctx, args)
}

// txContext is the context of a statement in the connection's
// transaction: holding's when the transaction holds the gate. The driver
// uses a statement's context only to interrupt it, so the transaction's
// (held) serves every statement in it.
func (c *gatedConn) txContext(ctx context.Context) context.Context {
	if c.txHeld {
		return c.held
	}
	return ctx
}

// holding is the context a write runs on once its connection holds the
// gate: ctx's values without its cancellation. go-sqlite3 runs each
// statement whose context can end on a goroutine of its own, so that it
// can interrupt SQLite when the context ends first; on the per-message
// path that goroutine, and the handoffs to it and back, cost more than the
// statement. Holding the gate, a write never waits for a lock except one
// taken by a write that bypasses the gate (a query that writes), which
// holds it for a single statement, so it ends soon anyway. Its caller's
// cancellation still counts before the statement (database/sql checks it,
// and the gate's wait honours it) and after it (a transaction whose
// context ended is rolled back); a statement that then completes is the
// outcome of a cancellation that came a moment too late, which every
// caller already has to handle. A write, or a transaction, that gave up on
// the gate (its holder stuck) keeps its context, and SQLite's busy wait
// stays interruptible.
func holding(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

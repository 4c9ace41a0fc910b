package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
)

// sqlitePragmas are set on every connection of a sqlite3-fk-wal database:
// those of dbutil's driver of that name, and SQLite's own checkpoint
// interval (1,000 pages) set explicitly, as the backstop behind the
// background checkpointer (walCheckpointer).
var sqlitePragmas = []string{
	"PRAGMA foreign_keys = ON",
	"PRAGMA journal_mode = WAL",
	"PRAGMA synchronous = NORMAL",
	fmt.Sprintf("PRAGMA busy_timeout = %d", sqliteBusyTimeout.Milliseconds()),
	"PRAGMA wal_autocheckpoint = 1000",
}

// sqliteBusyTimeout is how long a writer waits for SQLite's write lock,
// and as long again at the write gate before that (sqlitegate.go).
const sqliteBusyTimeout = 5 * time.Second

// openSQLite opens a pool whose connections get sqlitePragmas, queue their
// writes at one write gate (sqlitegate.go) and report their commits to the
// returned checkpointer, without registering a driver name for the whole
// process.
func openSQLite(uri string) (*sql.DB, *walCheckpointer) {
	cp := newWALCheckpointer()
	drv := &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		for _, p := range sqlitePragmas {
			if _, err := c.Exec(p, nil); err != nil {
				return err
			}
		}
		c.RegisterCommitHook(cp.committed)
		return nil
	}}
	pool := sql.OpenDB(dsnConnector{dsn: uri, drv: drv, gate: newWriteGate()})
	return pool, cp
}

type dsnConnector struct {
	dsn  string
	drv  driver.Driver
	gate *writeGate
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return newGatedConn(conn, c.gate)
}

func (c dsnConnector) Driver() driver.Driver { return c.drv }

// walCheckpointer copies the WAL's pages into the database file from a
// goroutine of its own, so that no commit has to. SQLite's automatic
// checkpoint runs inside the commit that crosses the mark and holds up
// every write queued behind it (the bridge has one writer): at 200 pages,
// those stalls were the late tail of make bench's added latency at 1,000
// msg/s. A PASSIVE checkpoint on another connection runs beside the writer
// and readers without blocking them; once it has caught up, the next write
// starts the WAL over.
//
// It runs after every checkpointEvery commits, about as often as the
// 200-page mark did, not after each: each start-over costs the next commit
// a sync of the new WAL header, which after every lone message made lone
// messages slower. A database that has gone quiet is checkpointed once
// it has been so for a tick. The automatic checkpoint stays, at SQLite's
// 1,000 pages, as the backstop for a checkpointer that falls behind.
type walCheckpointer struct {
	// commits counts every connection's commits.
	commits atomic.Uint64
	// due holds one pending wake-up: the commit hook never blocks.
	due  chan struct{}
	stop chan struct{}
	done chan struct{}
	// quietTick is checkpointQuiet (tests set their own).
	quietTick time.Duration
}

const (
	// checkpointEvery is how many commits the checkpointer lets pass
	// between two checkpoints under load.
	checkpointEvery = 32
	// checkpointQuiet is how long commits must have stopped before what
	// they left in the WAL is checkpointed.
	checkpointQuiet = time.Second
)

func newWALCheckpointer() *walCheckpointer {
	return &walCheckpointer{due: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), quietTick: checkpointQuiet}
}

// committed is every connection's commit hook; 0 lets the commit go on.
// It runs before the commit has written, so a checkpoint it wakes may leave
// this commit's pages to the next one.
func (cp *walCheckpointer) committed() int {
	if cp.commits.Add(1)%checkpointEvery == 0 {
		select {
		case cp.due <- struct{}{}:
		default:
		}
	}
	return 0
}

// run checkpoints pool until close.
func (cp *walCheckpointer) run(pool *sql.DB) {
	defer close(cp.done)
	tick := time.NewTicker(cp.quietTick)
	defer tick.Stop()
	// checkpointed is the commit count at the last checkpoint, seen the
	// count at the last tick.
	var checkpointed, seen uint64
	for {
		select {
		case <-cp.due:
		case <-tick.C:
			n := cp.commits.Load()
			quiet := n == seen
			seen = n
			if !quiet || n == checkpointed {
				continue
			}
		case <-cp.stop:
			return
		}
		checkpointed = cp.commits.Load()
		// An error (the database closing, a busy lock) leaves the work to
		// the next round or to the automatic checkpoint.
		var busy, frames, copied int
		_ = pool.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
	}
}

// close stops the checkpointer and waits for it; the pool stays open.
func (cp *walCheckpointer) close() {
	if cp == nil {
		return
	}
	close(cp.stop)
	<-cp.done
}

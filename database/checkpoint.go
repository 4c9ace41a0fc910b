package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
)

// SQLite in WAL mode copies the log back into the database file (a
// checkpoint, with an fsync) from inside whichever commit makes the log pass
// 1,000 pages. A busy bridge writes a few pages per message, so every few
// hundred messages one commit, and every message of the chats queued
// behind it, waited for a checkpoint: the tail of the added latency. With
// the "sqlite3-fk-wal" dialect, connections here do not checkpoint on
// commit (wal_autocheckpoint=0) and a goroutine of the database's does it
// instead, beside the writers (a PASSIVE checkpoint never blocks them).
// The pragmas are otherwise those of dbutil's driver of that name.

// walDriver is the driver the "sqlite3-fk-wal" dialect opens here.
const walDriver = "sqlite3-fk-wal-bgcheckpoint"

// checkpointEvery is how often the log is copied back. A complete
// checkpoint lets the next commit start the log over from its beginning, so
// the file stays at its largest size since the start, bounded by
// journal_size_limit once a burst is over.
const checkpointEvery = 250 * time.Millisecond

func init() {
	sql.Register(walDriver, &sqlite3.SQLiteDriver{
		ConnectHook: func(conn *sqlite3.SQLiteConn) error {
			for _, pragma := range []string{
				"PRAGMA foreign_keys = ON",
				"PRAGMA journal_mode = WAL",
				"PRAGMA synchronous = NORMAL",
				"PRAGMA busy_timeout = 5000",
				"PRAGMA wal_autocheckpoint = 0",
				"PRAGMA journal_size_limit = 16777216",
			} {
				if _, err := conn.Exec(pragma, []driver.Value{}); err != nil {
					return fmt.Errorf("%s: %w", pragma, err)
				}
			}
			return nil
		},
	})
}

// driverFor is the database/sql driver a dialect opens.
func driverFor(dialect string) string {
	if dialect == "sqlite3-fk-wal" {
		return walDriver
	}
	return dialect
}

// checkpointer copies the WAL back in the background until stop.
type checkpointer struct {
	db   *dbutil.Database
	log  zerolog.Logger
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func startCheckpointer(db *dbutil.Database, log zerolog.Logger) *checkpointer {
	c := &checkpointer{db: db, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

func (c *checkpointer) run() {
	defer close(c.done)
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		if err := c.checkpoint(); err != nil {
			c.log.Warn().Err(err).Msg("SQLite WAL checkpoint failed")
		}
	}
}

// checkpoint copies what it can of the log back without waiting for
// anyone (PASSIVE): readers and writers carry on beside it.
func (c *checkpointer) checkpoint() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var busy, logPages, done int
	return c.db.RawDB.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logPages, &done)
}

// close stops the checkpointer and copies the log back a last time.
func (c *checkpointer) close() {
	if c == nil {
		return
	}
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		_ = c.checkpoint()
	})
}

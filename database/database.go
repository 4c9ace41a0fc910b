// Package database is the bridge's persistent state: schema, migrations and one
// query struct per table, on SQLite or PostgreSQL through go.mau.fi/util/dbutil.
package database

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"time"

	_ "github.com/lib/pq"           // PostgreSQL driver
	_ "github.com/mattn/go-sqlite3" // SQLite driver
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	// Registers the sqlite3-fk-wal driver name for whatever opens the
	// database by name; Open builds its own pool for it (sqlitepool.go).
	_ "go.mau.fi/util/dbutil/litestream"

	"github.com/dmbridge/dmbridge/database/upgrades"
	"github.com/dmbridge/dmbridge/internal/privatefile"
)

// Database bundles the query structs over one dbutil database. Each query
// struct owns one table and lives in the file named after it; Stats (stats.go)
// is the one that reads across tables.
type Database struct {
	*dbutil.Database

	// Fenced: the pool refuses the writes of an instance that lost the
	// high-availability lease (ha.Elector.OpenDB). Its epoch check runs at
	// BEGIN, so a write that must be refused after a takeover goes in a
	// transaction.
	Fenced bool

	Login     *LoginQuery
	User      *UserQuery
	Ghost     *GhostQuery
	Portal    *PortalQuery
	Cleaned   *CleanedRoomQuery
	Message   *MessageQuery
	Reaction  *ReactionQuery
	Stream    *StreamQuery
	Inbox     *InboxQuery
	ASTxn     *ASTxnQuery
	MXEvent   *MXEventQuery
	PendingCm *PendingCommandQuery
	InDoubt   *InDoubtQuery
	Backfill  *BackfillQuery
	LoginSync *LoginSyncQuery
	GhostDev  *GhostDeviceQuery
	EncMedia  *EncryptedMediaQuery
	DPSync    *DoublePuppetSyncQuery
	EarlyRed  *EarlyRedactionQuery

	// cache keeps the rows the per-message path reads (cache.go).
	cache *caches
	// stmts runs the per-message path's statements prepared (stmtcache.go).
	stmts *stmtCache
	// lock keeps other processes off a SQLite file; nil otherwise.
	lock *os.File
	// checkpointer checkpoints a sqlite3-fk-wal database's WAL in the
	// background (sqlitepool.go); nil otherwise.
	checkpointer *walCheckpointer
}

// New wraps db with the bridge's upgrade table and query structs.
func New(db *dbutil.Database) *Database {
	db.UpgradeTable = upgrades.Table
	c := newCaches()
	st := newStmtCache(db)
	return &Database{
		Database:  db,
		cache:     c,
		stmts:     st,
		Login:     &LoginQuery{qh: helper[Login](db), c: c},
		User:      &UserQuery{helper[User](db)},
		Ghost:     &GhostQuery{helper[Ghost](db)},
		Portal:    &PortalQuery{qh: helper[Portal](db), c: c},
		Cleaned:   &CleanedRoomQuery{helper[CleanedRoom](db)},
		Message:   &MessageQuery{helper[Message](db), st},
		Reaction:  &ReactionQuery{helper[Reaction](db)},
		Stream:    &StreamQuery{db: db, st: st, log: zerolog.Nop()},
		Inbox:     &InboxQuery{helper[InboxRow](db), st},
		ASTxn:     &ASTxnQuery{db},
		MXEvent:   &MXEventQuery{helper[MXEvent](db), st},
		PendingCm: &PendingCommandQuery{helper[PendingCommand](db), st},
		InDoubt:   &InDoubtQuery{helper[InDoubtSend](db), st},
		Backfill:  &BackfillQuery{db: db, c: c},
		LoginSync: &LoginSyncQuery{db},
		GhostDev:  &GhostDeviceQuery{helper[GhostDevice](db)},
		EncMedia:  &EncryptedMediaQuery{helper[EncryptedMedia](db)},
		DPSync:    &DoublePuppetSyncQuery{db},
		EarlyRed:  &EarlyRedactionQuery{db},
	}
}

// helper is dbutil's query helper for the row type R, whose pointer scans
// itself (the Scan method next to each row type).
func helper[R any, P interface {
	*R
	dbutil.DataStruct[P]
}](db *dbutil.Database) *dbutil.QueryHelper[P] {
	return dbutil.MakeQueryHelper(db, func(*dbutil.QueryHelper[P]) P { return new(R) })
}

// Open connects to the database of the given dbutil dialect ("sqlite3-fk-wal",
// "sqlite3" or "postgres") and runs the migrations.
func Open(ctx context.Context, dialect, uri string, log zerolog.Logger) (*Database, error) {
	return open(ctx, dialect, uri, log, checkpointQuiet)
}

// open is Open with the WAL checkpointer's quiet tick given, so that a test
// of the checkpointer need not wait out seconds of it (export_test.go).
func open(ctx context.Context, dialect, uri string, log zerolog.Logger, quiet time.Duration) (*Database, error) {
	if strings.HasPrefix(dialect, "sqlite") {
		// The database holds messages and user ids: readable by its owner only.
		if err := privatefile.CreateSQLite(uri); err != nil {
			return nil, fmt.Errorf("open %s database: %w", dialect, err)
		}
	}
	var lock *os.File
	if strings.HasPrefix(dialect, "sqlite") {
		var err error
		if lock, err = lockSQLite(uri); err != nil {
			return nil, err
		}
	}
	var raw *dbutil.Database
	var err error
	var cp *walCheckpointer
	if dialect == "sqlite3-fk-wal" {
		var pool *sql.DB
		pool, cp = openSQLite(uri)
		cp.quietTick = quiet
		raw, err = dbutil.NewWithDB(pool, dialect)
	} else {
		raw, err = dbutil.NewWithDialect(uri, dialect)
	}
	if err != nil {
		closeLock(lock)
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	db, err := upgrade(ctx, raw, log)
	if err != nil {
		closeLock(lock)
		return nil, err
	}
	db.lock = lock
	// The pool's connections keep the statements run by their text in a
	// transaction prepared (gatedConn.execKept).
	db.stmts.byTextInTx = cp != nil
	if cp != nil {
		db.checkpointer = cp
		go cp.run(raw.RawDB)
	}
	return db, nil
}

func closeLock(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}

// Close closes the database and releases the SQLite lock.
func (db *Database) Close() error {
	db.stmts.close()
	db.checkpointer.close()
	db.checkpointer = nil
	err := db.Database.Close()
	closeLock(db.lock)
	db.lock = nil
	return err
}

// OpenPool is Open over a pool the caller built, such as high
// availability's fenced PostgreSQL pool.
func OpenPool(ctx context.Context, pool *sql.DB, dialect string, log zerolog.Logger) (*Database, error) {
	raw, err := dbutil.NewWithDB(pool, dialect)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	return upgrade(ctx, raw, log)
}

func upgrade(ctx context.Context, raw *dbutil.Database, log zerolog.Logger) (*Database, error) {
	dblog := log.With().Str("component", "database").Logger()
	raw.Log = dbutil.ZeroLogger(dblog)
	db := New(raw)
	db.Stream.log = dblog
	if err := db.Upgrade(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("upgrade database: %w", err)
	}
	if off, err := db.CommitsUnflushed(ctx); err != nil {
		log.Warn().Err(err).Msg("Could not read synchronous_commit")
	} else if off {
		log.Warn().Msg("PostgreSQL's synchronous_commit is off for the bridge's sessions: " +
			"a crash of the server can lose events the bridge told connectors it stored; set it to on")
	}
	return db, nil
}

// CommitsUnflushed says whether this PostgreSQL database's sessions commit
// without waiting for the WAL flush by default (synchronous_commit off, set
// for the server, the database or the role). The intake acks an event only
// after a commit made with the default setting (StreamQuery.Flush), which
// then no longer makes it durable. Always false on SQLite.
func (db *Database) CommitsUnflushed(ctx context.Context) (bool, error) {
	if db.Dialect != dbutil.Postgres {
		return false, nil
	}
	var setting string
	if err := db.QueryRow(ctx, "SHOW synchronous_commit").Scan(&setting); err != nil {
		return false, err
	}
	return setting == "off", nil
}

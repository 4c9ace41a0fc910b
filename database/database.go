// Package database is the bridge's persistent state: schema, migrations and one
// query struct per table, on SQLite or PostgreSQL through go.mau.fi/util/dbutil.
package database

import (
	"context"
	"fmt"
	"strings"

	_ "github.com/lib/pq"           // PostgreSQL driver
	_ "github.com/mattn/go-sqlite3" // SQLite driver
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	_ "go.mau.fi/util/dbutil/litestream" // registers the sqlite3-fk-wal dialect

	"github.com/dmbridge/dmbridge/database/upgrades"
	"github.com/dmbridge/dmbridge/internal/privatefile"
)

// Database bundles the query structs over one dbutil database.
type Database struct {
	*dbutil.Database

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

	// cache keeps the rows the per-message path reads (cache.go).
	cache *caches
}

// New wraps db with the bridge's upgrade table and query structs.
func New(db *dbutil.Database) *Database {
	db.UpgradeTable = upgrades.Table
	c := newCaches()
	return &Database{
		Database:  db,
		cache:     c,
		Login:     &LoginQuery{db: db, c: c},
		User:      &UserQuery{db},
		Ghost:     &GhostQuery{db},
		Portal:    &PortalQuery{db: db, c: c},
		Cleaned:   &CleanedRoomQuery{db},
		Message:   &MessageQuery{db},
		Reaction:  &ReactionQuery{db},
		Stream:    &StreamQuery{db},
		Inbox:     &InboxQuery{db},
		ASTxn:     &ASTxnQuery{db},
		MXEvent:   &MXEventQuery{db},
		PendingCm: &PendingCommandQuery{db},
		InDoubt:   &InDoubtQuery{db},
		Backfill:  &BackfillQuery{db: db, c: c},
	}
}

// Open connects to the database of the given dbutil dialect ("sqlite3-fk-wal",
// "sqlite3" or "postgres") and runs the migrations.
func Open(ctx context.Context, dialect, uri string, log zerolog.Logger) (*Database, error) {
	if strings.HasPrefix(dialect, "sqlite") {
		// The database holds messages and user ids: readable by its owner only.
		if err := privatefile.CreateSQLite(uri); err != nil {
			return nil, fmt.Errorf("open %s database: %w", dialect, err)
		}
	}
	raw, err := dbutil.NewWithDialect(uri, dialect)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	raw.Log = dbutil.ZeroLogger(log.With().Str("component", "database").Logger())
	db := New(raw)
	if err = db.Upgrade(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("upgrade database: %w", err)
	}
	return db, nil
}

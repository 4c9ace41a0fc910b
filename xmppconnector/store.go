package xmppconnector

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/dmbridge/dmbridge/internal/privatefile"
)

// Store is the connector's SQLite file. It is the SDK's ClientStore (event
// outbox and txn outcomes) and also remembers, per account, the archive
// cursor, which archive ids were already bridged, how bridge message ids
// map to XMPP ids, reactions, contacts and avatars.
//
// Everything that must move together happens in one transaction; see
// Append for the one place where that crosses the SDK boundary.
type Store struct {
	db *sql.DB
}

// upgrades is the store's schema: embedded dbutil upgrade files, numbered
// like the bridge's (database/upgrades).
//
//go:embed upgrades/*.sql
var upgrades embed.FS

var upgradeTable = dbutil.BuildUpgradeTable().WithFSPath(upgrades, "upgrades").Finish()

// OpenStore opens (creating if needed) the SQLite file at path and brings
// its schema to the latest version.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	// The store holds queued messages and who talks to whom: owner-only.
	if err := privatefile.Create(path); err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000&_synchronous=FULL")
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	// One connection: SQLite serialises writers anyway, and a single
	// connection turns "database is locked" into plain waiting.
	db.SetMaxOpenConns(1)
	if err := upgradeStore(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("upgrading schema in %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// upgradeStore runs the upgrades through dbutil, which records the version
// in the version table. Queries keep using db directly.
func upgradeStore(ctx context.Context, db *sql.DB) error {
	udb, err := dbutil.NewWithDB(db, "sqlite3")
	if err != nil {
		return err
	}
	udb.UpgradeTable = upgradeTable
	udb.Log = dbutil.ZeroLogger(zerolog.Ctx(ctx).With().Str("component", "xmpp store").Logger())
	if err := adoptUnversioned(ctx, udb); err != nil {
		return fmt.Errorf("adopting a store without a schema version: %w", err)
	}
	return udb.Upgrade(ctx)
}

// adoptUnversioned records version 1 in a store that the connector wrote
// before its schema had versions: such a store has the tables but no version
// table, and running v0 -> latest on it would fail on the tables it has (or,
// once there is a v2, skip the changes since v1). Every such store has the
// v1 schema, except that one made before messages.author existed lacks that
// column.
func adoptUnversioned(ctx context.Context, db *dbutil.Database) error {
	if versioned, err := db.TableExists(ctx, db.VersionTable); err != nil || versioned {
		return err
	}
	if legacy, err := db.TableExists(ctx, "seq"); err != nil || !legacy {
		return err
	}
	return db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if hasAuthor, err := db.ColumnExists(ctx, "messages", "author"); err != nil {
			return err
		} else if !hasAuthor {
			if _, err := db.Exec(ctx, `ALTER TABLE messages ADD COLUMN author TEXT NOT NULL DEFAULT ''`); err != nil {
				return fmt.Errorf("adding messages.author: %w", err)
			}
		}
		if err := dbutil.DangerousInternalUpgradeVersionTable(ctx, db); err != nil {
			return err
		}
		_, err := db.Exec(ctx, "INSERT INTO "+db.VersionTable+" (version, compat) VALUES (1, 1)")
		return err
	})
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// inTx runs fn in a transaction, committing if it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Cursor returns the last archive id of login that was bridged ("" if none).
func (s *Store) Cursor(ctx context.Context, login string) (string, error) {
	id, _, err := s.lookup(ctx, `SELECT stanza_id FROM cursors WHERE login = ?`, login)
	return id, err
}

// MarkArchived records that the archive item stanzaID of login has been
// handled without producing an event (a chat state, a message from a
// group chat, ...), so catch-up continues after it.
func (s *Store) MarkArchived(ctx context.Context, login, stanzaID string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error { return markArchived(ctx, tx, login, stanzaID, true) })
}

// markArchived marks stanzaID seen and, with moveCursor, moves the cursor
// to it. Without, a later catch-up pages over the item again and skips it
// as seen.
func markArchived(ctx context.Context, tx *sql.Tx, login, stanzaID string, moveCursor bool) error {
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO seen (login, stanza_id, at) VALUES (?, ?, ?)`,
		login, stanzaID, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("marking %s seen: %w", stanzaID, err)
	}
	if !moveCursor {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO cursors (login, stanza_id) VALUES (?, ?)
		ON CONFLICT (login) DO UPDATE SET stanza_id = excluded.stanza_id`, login, stanzaID); err != nil {
		return fmt.Errorf("moving cursor to %s: %w", stanzaID, err)
	}
	return nil
}

// keepFor is how long archive ids and txn outcomes are remembered. Both
// only matter while the same item can come back: a resent command, or an
// archive page overlapping what arrived live, which is a matter of
// minutes to days, not months.
const keepFor = 30 * 24 * time.Hour

// Prune forgets archive ids and txn outcomes older than keepFor. An
// archive id is kept, whatever its age, while its login's cursor has not
// passed it: live messages are marked seen but leave the cursor (the next
// sweep moves it), so a connector stopped before that sweep and started a
// month later would otherwise bridge them again. "Passed" is told by the
// time the cursor's own item was seen (catch-up marks it before moving the
// cursor onto it); a cursor whose item was never seen (a first start)
// passes nothing.
func (s *Store) Prune(ctx context.Context) error {
	cutoff := time.Now().Add(-keepFor).UnixMilli()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM seen WHERE at < ? AND EXISTS (
		SELECT 1 FROM cursors c JOIN seen cs ON cs.login = c.login AND cs.stanza_id = c.stanza_id
		WHERE c.login = seen.login AND cs.at > seen.at)`, cutoff); err != nil {
		return fmt.Errorf("pruning seen archive ids: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM txns WHERE created_at < ?`, cutoff); err != nil {
		return fmt.Errorf("pruning txn outcomes: %w", err)
	}
	return nil
}

// SetCursor moves the cursor without marking anything seen (first start).
func (s *Store) SetCursor(ctx context.Context, login, stanzaID string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO cursors (login, stanza_id) VALUES (?, ?)
		ON CONFLICT (login) DO UPDATE SET stanza_id = excluded.stanza_id`, login, stanzaID)
	return err
}

// Seen reports whether the archive item stanzaID of login was handled.
func (s *Store) Seen(ctx context.Context, login, stanzaID string) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM seen WHERE login = ? AND stanza_id = ?`, login, stanzaID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

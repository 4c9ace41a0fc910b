package database_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/database"
)

// TestSQLitePragmasOnEveryConnection: each connection of the pool (not only
// the first) has foreign keys, WAL and the shorter checkpoint interval.
func TestSQLitePragmasOnEveryConnection(t *testing.T) {
	ctx := context.Background()
	uri := "file:" + filepath.Join(t.TempDir(), "p.db") + "?_txlock=immediate"
	db, err := database.Open(ctx, "sqlite3-fk-wal", uri, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Hold several connections at once so that the pool opens new ones.
	for i := 0; i < 3; i++ {
		conn, err := db.RawDB.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var fk, checkpoint int
		var mode string
		if err := conn.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&checkpoint); err != nil {
			t.Fatal(err)
		}
		if fk != 1 || mode != "wal" || checkpoint != 200 {
			t.Fatalf("connection %d: foreign_keys=%d journal_mode=%s wal_autocheckpoint=%d", i, fk, mode, checkpoint)
		}
	}
}

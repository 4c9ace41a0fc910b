package database_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestSQLiteCheckpointsInBackground: commits do not copy the WAL back
// (wal_autocheckpoint is 0), and the database's own goroutine does, so
// what is written reaches the database file without any commit waiting
// for it.
func TestSQLiteCheckpointsInBackground(t *testing.T) {
	ctx := context.Background()
	target := testdb.SQLite(t)
	db, err := database.Open(ctx, target.Type, target.URI, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var auto int
	if err = db.QueryRow(ctx, "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != 0 {
		t.Fatalf("wal_autocheckpoint = %d: commits would checkpoint", auto)
	}

	path := strings.TrimPrefix(strings.SplitN(target.URI, "?", 2)[0], "file:")
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if _, err = db.Exec(ctx, "CREATE TABLE filler (v TEXT)"); err != nil {
		t.Fatal(err)
	}
	before := size()
	// About 150 pages: fewer than SQLite's default autocheckpoint (1,000),
	// so only a checkpoint of the bridge's own moves them into the file.
	for i := 0; i < 300; i++ {
		if _, err = db.Exec(ctx, "INSERT INTO filler (v) VALUES ($1)", strings.Repeat("x", 2000)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for size() < before+300*2000 {
		if time.Now().After(deadline) {
			t.Fatalf("the database file is still %d bytes (%d before the writes): no checkpoint ran (WAL %s)",
				size(), before, filepath.Base(path)+"-wal")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package database_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/database"
)

// TestSQLitePragmasOnEveryConnection: each connection of the pool (not only
// the first) has foreign keys, WAL and the backstop checkpoint interval.
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
		if fk != 1 || mode != "wal" || checkpoint != 1000 {
			t.Fatalf("connection %d: foreign_keys=%d journal_mode=%s wal_autocheckpoint=%d", i, fk, mode, checkpoint)
		}
	}
}

// TestSQLiteWALCheckpointedInBackground: after a run of commits, and with
// no further commit to trigger SQLite's own checkpoint, every frame of the
// WAL reaches the database file: the background checkpointer copied them.
func TestSQLiteWALCheckpointedInBackground(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	// A quiet tick of 50 ms rather than the second it is in production:
	// the commits' last frames are checkpointed only once a tick has
	// passed without commits, which took this test two seconds.
	db, err := database.OpenQuiet(ctx, "sqlite3-fk-wal", "file:"+path+"?_txlock=immediate", zerolog.Nop(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.RawDB.ExecContext(ctx, "CREATE TABLE scratch (n INTEGER PRIMARY KEY, body TEXT)"); err != nil {
		t.Fatal(err)
	}
	// Fewer frames than the automatic checkpoint's 1,000, in separate
	// commits, so that only the background can have copied them all.
	for i := 0; i < 300; i++ {
		if _, err := db.RawDB.ExecContext(ctx, "INSERT INTO scratch (n, body) VALUES (?, ?)", i, fmt.Sprint("row ", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		frames, copied := walIndex(t, path)
		if frames > 0 && copied == frames {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAL not checkpointed: %d frames, %d copied to the database file", frames, copied)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// walIndex reads the WAL's frame count (mxFrame) and how many of them a
// checkpoint has copied (nBackfill) from the shared-memory wal-index, in
// the machine's byte order, as SQLite keeps it (wal.c: two 48-byte copies
// of the header, then the checkpoint info).
func walIndex(t *testing.T, dbPath string) (frames, copied uint32) {
	t.Helper()
	shm, err := os.ReadFile(dbPath + "-shm")
	if err != nil {
		t.Fatal(err)
	}
	if len(shm) < 100 {
		t.Fatalf("wal-index of %d bytes", len(shm))
	}
	return binary.NativeEndian.Uint32(shm[16:20]), binary.NativeEndian.Uint32(shm[96:100])
}

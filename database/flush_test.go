package database_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestStoreAdvancingThenFlush: on PostgreSQL the intake's one statement
// commits without waiting for the WAL flush and leaves the session's
// setting as it was, and Flush then puts the log on disk at least up to
// that commit (what the connector's ack waits for), without moving
// acked_seq.
func TestStoreAdvancingThenFlush(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, testdb.Postgres(t))
	// One connection, so that SHOW asks the session that wrote.
	db.RawDB.SetMaxOpenConns(1)
	if err := db.Stream.AdvanceFrom(ctx, "c", 0, 1); err != nil {
		t.Fatal(err)
	}
	rows := []*database.InboxRow{{ConnectorID: "c", Seq: 2, LoginID: "l", ChatID: "chat", Kind: "message", Data: []byte(`{}`)}}
	if ok, err := db.Inbox.StoreAdvancing(ctx, "c", rows, 1, 2); !ok || err != nil {
		t.Fatalf("StoreAdvancing: %v, %v", ok, err)
	}
	var setting, written string
	if err := db.QueryRow(ctx, "SHOW synchronous_commit").Scan(&setting); err != nil || setting != "on" {
		t.Fatalf("synchronous_commit is %q (%v) after the intake's statement, want on", setting, err)
	}
	// The log as far as it is written now, which holds the commit.
	if err := db.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&written); err != nil {
		t.Fatal(err)
	}
	if err := db.Stream.Flush(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	var flushed bool
	if err := db.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn", written).Scan(&flushed); err != nil || !flushed {
		t.Fatalf("after Flush the log is flushed up to %s: %v, %v", written, flushed, err)
	}
	if acked, err := db.Stream.AckedSeq(ctx, "c"); err != nil || acked != 2 {
		t.Fatalf("acked_seq %d, %v after Flush; want 2", acked, err)
	}
}

// TestFlushTakesNoRowLock: while another transaction holds the stream's row
// (as the connector's next batch does while it moves acked_seq), Flush
// returns at once. The connector server stores that next batch while the
// one before is flushed; a flush that wrote the row would wait for it, and
// that batch for the flush's disk write.
func TestFlushTakesNoRowLock(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, testdb.Postgres(t))
	if err := db.Stream.AdvanceFrom(ctx, "c", 0, 1); err != nil {
		t.Fatal(err)
	}
	tx, err := db.RawDB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "UPDATE connector_stream SET acked_seq=2 WHERE connector_id='c'"); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.Stream.Flush(fctx, "c"); err != nil {
		t.Fatalf("Flush while the stream's row is locked: %v", err)
	}
}

// TestFlushFallsBackToTheRow: a server that refuses the flush's logical
// message (testdb.RefuseLogicalMessages) still gets its log flushed, by the write of the
// stream's row, and Flush reports no error; the log says so once.
func TestFlushFallsBackToTheRow(t *testing.T) {
	ctx := context.Background()
	target := testdb.Postgres(t)
	testdb.RefuseLogicalMessages(t, target)
	if _, err := target.Open(t).Exec(ctx, `CREATE TABLE refuse.probe (x int)`); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	db, err := database.Open(ctx, target.Type, target.URI, zerolog.New(&logged))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The refusing function is what the bridge's sessions find.
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM probe").Scan(&n); err != nil {
		t.Fatalf("the bridge's sessions do not search the schema refuse first: %v", err)
	}
	if err := db.Stream.AdvanceFrom(ctx, "c", 0, 1); err != nil {
		t.Fatal(err)
	}
	rows := []*database.InboxRow{{ConnectorID: "c", Seq: 2, LoginID: "l", ChatID: "chat", Kind: "message", Data: []byte(`{}`)}}
	if ok, err := db.Inbox.StoreAdvancing(ctx, "c", rows, 1, 2); !ok || err != nil {
		t.Fatalf("StoreAdvancing: %v, %v", ok, err)
	}
	for i := range 2 { // the first finds the refusal, the second goes to the row at once
		var written string
		if err := db.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&written); err != nil {
			t.Fatal(err)
		}
		if err := db.Stream.Flush(ctx, "c"); err != nil {
			t.Fatalf("Flush %d: %v", i+1, err)
		}
		var flushed bool
		if err := db.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn", written).Scan(&flushed); err != nil || !flushed {
			t.Fatalf("after Flush %d the log is flushed up to %s: %v, %v", i+1, written, flushed, err)
		}
	}
	if n := strings.Count(logged.String(), "PostgreSQL refused a logical message"); n != 1 {
		t.Fatalf("the fallback was logged %d times, want once: %s", n, logged.String())
	}
}

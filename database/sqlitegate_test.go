package database

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
)

// gateTestConns opens a gated pool on a fresh file with a table, and takes
// two of its connections with SQLite's busy timeout at 0: a write that
// found SQLite's lock taken would fail at once, so one that succeeds while
// the other connection's transaction holds the lock has queued at the gate.
func gateTestConns(t *testing.T) (ctx context.Context, holder, waiter *sql.Conn) {
	t.Helper()
	ctx = context.Background()
	pool, cp := openSQLite("file:" + filepath.Join(t.TempDir(), "g.db") + "?_txlock=immediate")
	t.Cleanup(func() { _ = pool.Close() })
	_ = cp // not started: checkpoints play no part here
	if _, err := pool.ExecContext(ctx, "CREATE TABLE w (n INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	conns := make([]*sql.Conn, 2)
	for i := range conns {
		c, err := pool.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err = c.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return ctx, conns[0], conns[1]
}

// TestWriteGateQueuesWriters: while one connection's transaction holds the
// write lock, another's plain and prepared writes wait for it to end and
// then succeed, and its reads do not wait.
func TestWriteGateQueuesWriters(t *testing.T) {
	ctx, holder, waiter := gateTestConns(t)
	tx, err := holder.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = tx.ExecContext(ctx, "INSERT INTO w (n) VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	readCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n int
	if err = waiter.QueryRowContext(readCtx, "SELECT COUNT(*) FROM w").Scan(&n); err != nil || n != 0 {
		t.Fatalf("read beside the transaction: n=%d err=%v", n, err)
	}

	stmt, err := waiter.PrepareContext(ctx, "INSERT INTO w (n) VALUES (3)")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	done := make(chan error, 2)
	go func() {
		_, err := waiter.ExecContext(ctx, "INSERT INTO w (n) VALUES (2)")
		if err == nil {
			_, err = stmt.ExecContext(ctx)
		}
		done <- err
	}()
	// The writes cannot have finished: the lock is still held (without
	// the gate they would already have failed, busy).
	select {
	case err := <-done:
		t.Fatalf("write finished while another transaction held the lock: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err = tx.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-done:
		if err != nil {
			t.Fatalf("queued writes: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queued writes still waiting 10 s after the transaction ended")
	}
	if err = waiter.QueryRowContext(ctx, "SELECT COUNT(*) FROM w").Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows after the queued writes: n=%d err=%v", n, err)
	}
}

// TestWriteGateFreedByRollbackAndCancel: a transaction that rolls back, and
// a writer whose context ends while it queues, leave the gate free.
func TestWriteGateFreedByRollbackAndCancel(t *testing.T) {
	ctx, holder, waiter := gateTestConns(t)
	tx, err := holder.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err = waiter.ExecContext(short, "INSERT INTO w (n) VALUES (1)"); err == nil {
		t.Fatal("a write went through while another transaction held the lock")
	}
	if err = tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*sql.Conn{waiter, holder} {
		if _, err = c.ExecContext(ctx, "INSERT INTO w DEFAULT VALUES"); err != nil {
			t.Fatalf("write after the rollback: %v", err)
		}
	}
}

// TestGatedWriteRunsOnCallersGoroutine: a write that holds the gate costs
// as many allocations with a context that can end as with one that cannot,
// so go-sqlite3 did not start its per-statement goroutine (with its
// channel and closure) for it; a read outside the gate is not affected.
func TestGatedWriteRunsOnCallersGoroutine(t *testing.T) {
	ctx, conn, _ := gateTestConns(t)
	cancellable, cancel := context.WithCancel(ctx)
	defer cancel()
	stmt, err := conn.PrepareContext(ctx, "INSERT INTO w DEFAULT VALUES")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	allocs := func(ctx context.Context, inTx bool) float64 {
		return testing.AllocsPerRun(200, func() {
			if !inTx {
				if _, err := stmt.ExecContext(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.ExecContext(ctx, "INSERT INTO w DEFAULT VALUES"); err != nil {
					t.Fatal(err)
				}
				return
			}
			// Begun on a context that cannot end, so that only the
			// statements' contexts differ (database/sql watches a
			// transaction's context on a goroutine of its own).
			tx, err := conn.BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err = tx.StmtContext(ctx, stmt).ExecContext(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err = tx.ExecContext(ctx, "INSERT INTO w DEFAULT VALUES"); err != nil {
				t.Fatal(err)
			}
			if err = tx.Commit(); err != nil {
				t.Fatal(err)
			}
		})
	}
	for _, inTx := range []bool{false, true} {
		plain, withDone := allocs(ctx, inTx), allocs(cancellable, inTx)
		// context.WithoutCancel is one allocation per statement; the
		// goroutine's channel, closure and results would be several.
		if withDone > plain+2 {
			t.Errorf("in a transaction %v: %.0f allocations with a cancellable context, %.0f without", inTx, withDone, plain)
		}
	}
}

// TestKeptStatementsInTransactions: a statement marked keptPrefix runs in a
// transaction on the statement its connection prepared the first time, in
// every later transaction too; a failed run (a constraint) leaves it
// usable and writes nothing; a rollback takes back what it wrote; and the
// connection's statements are closed with it.
func TestKeptStatementsInTransactions(t *testing.T) {
	ctx, c, _ := gateTestConns(t)
	insert := keptPrefix + "INSERT INTO w (n) VALUES (?1)"
	var kept map[string]*sqlite3.SQLiteStmt
	inTx := func(fn func(tx *sql.Tx) error, commit bool) {
		t.Helper()
		tx, err := c.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err = fn(tx); err != nil {
			t.Fatal(err)
		}
		if err = c.Raw(func(dc any) error { kept = dc.(*gatedConn).kept; return nil }); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var first *sqlite3.SQLiteStmt
	for i := 1; i <= 3; i++ {
		inTx(func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, insert, i)
			return err
		}, true)
		if len(kept) != 1 || kept[insert] == nil {
			t.Fatalf("transaction %d: kept %v", i, kept)
		}
		if first == nil {
			first = kept[insert]
		} else if kept[insert] != first {
			t.Fatalf("transaction %d prepared the statement again", i)
		}
	}
	inTx(func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, insert, 1); err == nil {
			t.Error("a duplicate key was inserted")
		}
		_, err := tx.ExecContext(ctx, insert, 4)
		return err
	}, false)
	var n int
	if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM w").Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows after the rolled-back transaction: %d, %v; want 3", n, err)
	}
	if err := c.Raw(func(dc any) error { return dc.(*gatedConn).Close() }); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 0 {
		t.Fatalf("statements left after the connection closed: %v", kept)
	}
}

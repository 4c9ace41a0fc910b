package database_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestPreparedStatementsJoinTransactions: the per-message statements that
// run prepared (stmtcache.go) write inside the caller's transaction, so a
// rollback takes them back and a commit keeps them, and outside one they
// commit on their own; repeated, they keep working on every connection.
func TestPreparedStatementsJoinTransactions(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		mark := func(txn string) *database.InDoubtSend {
			return &database.InDoubtSend{TxnID: txn, RoomID: "!r:x", PortalKey: database.PortalKey{LoginID: "l", ChatID: "c"},
				RemoteID: txn, EventType: "m.room.message", StartedAt: time.Now()}
		}
		rollback := errors.New("roll back")
		err := db.DoTxn(ctx, nil, func(ctx context.Context) error {
			if fresh, err := db.InDoubt.BeginFresh(ctx, mark("t1")); err != nil || !fresh {
				t.Fatalf("first marker: %v %v", fresh, err)
			}
			return rollback
		})
		if !errors.Is(err, rollback) {
			t.Fatal(err)
		}
		if got, err := db.InDoubt.Get(ctx, "t1"); err != nil || got != nil {
			t.Fatalf("a rolled-back marker is stored: %v %v", got, err)
		}
		for i := 0; i < 30; i++ { // more than the pool has connections
			if fresh, err := db.InDoubt.BeginFresh(ctx, mark("t2")); err != nil || fresh != (i == 0) {
				t.Fatalf("try %d: fresh %v, %v", i, fresh, err)
			}
		}
		err = db.DoTxn(ctx, nil, func(ctx context.Context) error {
			return db.InDoubt.Delete(ctx, "t2")
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := db.InDoubt.Get(ctx, "t2"); err != nil || got != nil {
			t.Fatalf("a committed delete left the marker: %v %v", got, err)
		}
	})
}

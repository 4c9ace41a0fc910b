package database_test

import (
	"context"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestBeginFreshUnlessBridged: the marker goes in only for a message whose
// part 0 is not stored and whose transaction has no marker yet.
func TestBeginFreshUnlessBridged(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		if _, err := db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x"}); err != nil {
			t.Fatal(err)
		}
		key := database.PortalKey{LoginID: "l1", ChatID: "bob"}
		if _, err := db.Portal.GetOrCreate(ctx, key, "bob"); err != nil {
			t.Fatal(err)
		}
		mark := func(txn, remoteID string) *database.InDoubtSend {
			return &database.InDoubtSend{TxnID: txn, RoomID: "!r:x", PortalKey: key, RemoteID: remoteID,
				EventType: "m.room.message", StartedAt: time.Now()}
		}
		fresh, err := db.InDoubt.BeginFreshUnlessBridged(ctx, mark("t1", "m1"))
		if err != nil || !fresh {
			t.Fatalf("new message: %v, %v; want a fresh marker", fresh, err)
		}
		if got, err := db.InDoubt.Get(ctx, "t1"); err != nil || got == nil || got.RemoteID != "m1" || got.Part != 0 {
			t.Fatalf("marker = %+v, %v", got, err)
		}
		if fresh, err = db.InDoubt.BeginFreshUnlessBridged(ctx, mark("t1", "m1")); err != nil || fresh {
			t.Fatalf("marker exists: %v, %v; want not fresh", fresh, err)
		}
		if err = db.Message.Insert(ctx, &database.Message{PortalKey: key, RemoteID: "m2", MXID: "$e2", RoomID: "!r:x", SenderID: "bob"}); err != nil {
			t.Fatal(err)
		}
		if fresh, err = db.InDoubt.BeginFreshUnlessBridged(ctx, mark("t2", "m2")); err != nil || fresh {
			t.Fatalf("bridged message: %v, %v; want not fresh", fresh, err)
		}
		if got, err := db.InDoubt.Get(ctx, "t2"); err != nil || got != nil {
			t.Fatalf("a marker for a bridged message: %+v, %v", got, err)
		}
		// Another chat's message of the same id is not this one.
		other := mark("t3", "m2")
		other.PortalKey.ChatID = "carol"
		if fresh, err = db.InDoubt.BeginFreshUnlessBridged(ctx, other); err != nil || !fresh {
			t.Fatalf("same id in another chat: %v, %v; want fresh", fresh, err)
		}
	})
}

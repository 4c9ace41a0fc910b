package database_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestBeginFreshUnlessBridged: the marker goes in only for a message whose
// part 0 is not stored and whose transaction has no marker yet.
func TestBeginFreshUnlessBridged(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		key := storeBobPortal(ctx, t, db)
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

// TestDeleteMarkers: Delete removes the markers named, one or several (on
// PostgreSQL in one statement), and no other.
func TestDeleteMarkers(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		key := storeBobPortal(ctx, t, db)
		for _, txn := range []string{"t1", "t2", "t3", "t4"} {
			if err := db.InDoubt.Begin(ctx, &database.InDoubtSend{TxnID: txn, RoomID: "!r:x", PortalKey: key, RemoteID: txn,
				EventType: "m.room.message", StartedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.InDoubt.Delete(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		if err := db.InDoubt.Delete(ctx, "t2", "t4", "nothing"); err != nil {
			t.Fatal(err)
		}
		for txn, want := range map[string]bool{"t1": false, "t2": false, "t3": true, "t4": false} {
			if got, err := db.InDoubt.Get(ctx, txn); err != nil || (got != nil) != want {
				t.Errorf("marker %s = %+v, %v; want stored %v", txn, got, err, want)
			}
		}
	})
}

// TestStoreSent: the one statement of a sent message's result clears its
// marker, marks its inbox row applied, maps it, and writes the next
// message's marker unless that one is bridged already.
func TestStoreSent(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, testdb.Postgres(t))
	key := storeBobPortal(ctx, t, db)
	for seq := int64(1); seq <= 2; seq++ {
		row := &database.InboxRow{ConnectorID: "c", Seq: seq, LoginID: "l1", ChatID: "bob", Kind: "message", Data: []byte("{}")}
		if err := db.Inbox.Insert(ctx, row); err != nil {
			t.Fatal(err)
		}
	}
	mark := func(txn, remoteID string) *database.InDoubtSend {
		return &database.InDoubtSend{TxnID: txn, RoomID: "!r:x", PortalKey: key, RemoteID: remoteID,
			EventType: "m.room.message", StartedAt: time.Now()}
	}
	msg := func(remoteID string) *database.Message {
		return &database.Message{PortalKey: key, RemoteID: remoteID, MXID: id.EventID("$" + remoteID), RoomID: "!r:x", SenderID: "bob"}
	}
	if err := db.InDoubt.Begin(ctx, mark("t1", "m1")); err != nil {
		t.Fatal(err)
	}
	premarked, err := db.Message.StoreSent(ctx, msg("m1"), "t1", "c", 1, mark("t2", "m2"))
	if err != nil || !premarked {
		t.Fatalf("StoreSent m1: %v, %v; want the next marker written", premarked, err)
	}
	if got, err := db.InDoubt.Get(ctx, "t1"); err != nil || got != nil {
		t.Errorf("m1's marker left: %+v, %v", got, err)
	}
	if got, err := db.InDoubt.Get(ctx, "t2"); err != nil || got == nil || got.RemoteID != "m2" {
		t.Errorf("m2's marker = %+v, %v", got, err)
	}
	if got, err := db.Message.GetPart(ctx, key, "m1", 0); err != nil || got == nil || got.MXID != "$m1" {
		t.Errorf("m1's mapping = %+v, %v", got, err)
	}
	pending, err := db.Inbox.Pending(ctx, "c", 0, 10)
	if err != nil || len(pending) != 1 || pending[0].Seq != 2 {
		t.Errorf("pending inbox rows %+v, %v; want seq 2 only", pending, err)
	}
	// The next message is m1 again, bridged already: no marker for it.
	if premarked, err = db.Message.StoreSent(ctx, msg("m2"), "t2", "c", 2, mark("t3", "m1")); err != nil || premarked {
		t.Fatalf("StoreSent m2: %v, %v; want no marker for a bridged message", premarked, err)
	}
	if got, err := db.InDoubt.Get(ctx, "t3"); err != nil || got != nil {
		t.Errorf("a marker for a bridged message: %+v, %v", got, err)
	}
	if pending, err = db.Inbox.Pending(ctx, "c", 0, 10); err != nil || len(pending) != 0 {
		t.Errorf("pending inbox rows %+v, %v; want none", pending, err)
	}
	if _, err = db.Message.StoreSent(ctx, msg("m3"), "t4", "c", 3, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Message.GetPart(ctx, key, "m3", 0); err != nil || got == nil {
		t.Errorf("m3's mapping = %+v, %v", got, err)
	}
}

// TestLoneMarkerAsyncCommitStaysLocal: on PostgreSQL a marker written
// outside a transaction turns synchronous_commit off for its own
// transaction only: the session's setting is on again after it, and a
// marker written in a transaction leaves the transaction's setting alone
// (it would hold for every write of it), unless the transaction holds
// markers only (database.MarkersOnly). That such a commit skips the WAL
// flush is measured (docs/design.md), not tested here.
func TestLoneMarkerAsyncCommitStaysLocal(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, testdb.Postgres(t))
	// One connection, so that SHOW asks the session that wrote.
	db.RawDB.SetMaxOpenConns(1)
	key := storeBobPortal(ctx, t, db)
	setting := func(ctx context.Context) string {
		var v string
		if err := db.QueryRow(ctx, "SHOW synchronous_commit").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	mark := func(txn string) *database.InDoubtSend {
		return &database.InDoubtSend{TxnID: txn, RoomID: "!r:x", PortalKey: key, RemoteID: txn, EventType: "m.room.message", StartedAt: time.Now()}
	}
	if fresh, err := db.InDoubt.BeginFreshUnlessBridged(ctx, mark("t1")); err != nil || !fresh {
		t.Fatalf("lone marker: %v, %v", fresh, err)
	}
	if fresh, err := db.InDoubt.BeginFresh(ctx, mark("t2")); err != nil || !fresh {
		t.Fatalf("lone marker: %v, %v", fresh, err)
	}
	if v := setting(ctx); v != "on" {
		t.Fatalf("synchronous_commit is %q after a lone marker, want on", v)
	}
	db.RawDB.SetMaxOpenConns(0)
	err := db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if fresh, err := db.InDoubt.BeginFreshUnlessBridged(ctx, mark("t3")); err != nil || !fresh {
			t.Fatalf("marker in a transaction: %v, %v", fresh, err)
		}
		if v := setting(ctx); v != "on" {
			t.Fatalf("synchronous_commit is %q in a transaction after a marker, want on", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A transaction of markers only (a group commit's) commits as a lone
	// marker does: the setting is off from its first marker to its end
	// (is_local, as for the lone marker above).
	var before, inside string
	err = db.DoTxn(database.MarkersOnly(ctx), nil, func(ctx context.Context) error {
		before = setting(ctx)
		if _, err := db.InDoubt.BeginFresh(ctx, mark("t4")); err != nil {
			return err
		}
		if _, err := db.InDoubt.BeginFreshUnlessBridged(ctx, mark("t5")); err != nil {
			return err
		}
		inside = setting(ctx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if before != "on" || inside != "off" {
		t.Fatalf("synchronous_commit before and after the markers of a transaction of markers: %q, %q; want on, off",
			before, inside)
	}
	for _, txn := range []string{"t1", "t2", "t3", "t4", "t5"} {
		if got, err := db.InDoubt.Get(ctx, txn); err != nil || got == nil {
			t.Fatalf("marker %s = %+v, %v", txn, got, err)
		}
	}
}

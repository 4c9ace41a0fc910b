package database_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestStoreSentMany: one statement stores several chats' results as
// StoreSent stores one (markers cleared, inbox rows done, mappings in), and
// writes the next messages' markers except for a message bridged already
// or one whose marker exists; it says which it wrote. A statement that
// PostgreSQL refuses stores none of it and is told apart (Rejected).
func TestStoreSentMany(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, testdb.Postgres(t))
	bob := storeBobPortal(ctx, t, db)
	eve := database.PortalKey{LoginID: "l1", ChatID: "eve"}
	if _, err := db.Portal.GetOrCreate(ctx, eve, "eve"); err != nil {
		t.Fatal(err)
	}
	for seq := int64(1); seq <= 4; seq++ {
		row := &database.InboxRow{ConnectorID: "c", Seq: seq, LoginID: "l1", ChatID: "bob", Kind: "message", Data: []byte("{}")}
		if err := db.Inbox.Insert(ctx, row); err != nil {
			t.Fatal(err)
		}
	}
	// Another connector's row of the same seq is not the results'.
	other := &database.InboxRow{ConnectorID: "other", Seq: 1, LoginID: "l1", ChatID: "eve", Kind: "message", Data: []byte("{}")}
	if err := db.Inbox.Insert(ctx, other); err != nil {
		t.Fatal(err)
	}
	mark := func(key database.PortalKey, txn, remoteID string) *database.InDoubtSend {
		return &database.InDoubtSend{TxnID: txn, RoomID: "!r:x", PortalKey: key, RemoteID: remoteID,
			EventType: "m.room.message", StartedAt: time.UnixMilli(1700000000000)}
	}
	msg := func(key database.PortalKey, remoteID string) *database.Message {
		return &database.Message{PortalKey: key, RemoteID: remoteID, MXID: id.EventID("$" + key.ChatID + remoteID),
			RoomID: "!r:x", SenderID: key.ChatID, TS: 5}
	}
	// Already there: bob's m0 is bridged, eve's e9 has its marker.
	if err := db.Message.Insert(ctx, msg(bob, "m0")); err != nil {
		t.Fatal(err)
	}
	for _, mk := range []*database.InDoubtSend{mark(bob, "t1", "m1"), mark(bob, "t2", "m2"), mark(eve, "u1", "e1"), mark(eve, "u9", "e9")} {
		if err := db.InDoubt.Begin(ctx, mk); err != nil {
			t.Fatal(err)
		}
	}
	results := []database.SentResult{
		{Message: msg(bob, "m1"), TxnID: "t1", ConnectorID: "c", Seq: 1, Next: []*database.InDoubtSend{mark(bob, "t3", "m3"), mark(bob, "t4", "m4")}},
		{Message: msg(bob, "m2"), TxnID: "t2", ConnectorID: "c", Seq: 2, Next: []*database.InDoubtSend{mark(bob, "t0", "m0")}},
		{Message: msg(eve, "e1"), TxnID: "u1", ConnectorID: "c", Seq: 3, Next: []*database.InDoubtSend{mark(eve, "u9", "e9")}},
		{Message: msg(eve, "e2"), TxnID: "u2", ConnectorID: "c", Seq: 4},
	}
	premarked, err := db.Message.StoreSentMany(ctx, results)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(premarked)); !slices.Equal(got, []string{"t3", "t4"}) {
		t.Errorf("markers written %v, want only t3 and t4 (m0 is bridged, u9 was there)", got)
	}
	for _, r := range results {
		got, err := db.Message.GetPart(ctx, r.Message.PortalKey, r.Message.RemoteID, 0)
		if err != nil || got == nil || *got != *r.Message {
			t.Errorf("mapping of %s = %+v, %v", r.Message.RemoteID, got, err)
		}
	}
	for txn, want := range map[string]bool{"t1": false, "t2": false, "u1": false, "t3": true, "t4": true, "t0": false, "u9": true} {
		got, err := db.InDoubt.Get(ctx, txn)
		if err != nil || (got != nil) != want {
			t.Errorf("marker %s = %+v, %v; want stored %v", txn, got, err, want)
		}
		if txn == "t3" && got != nil && (got.RemoteID != "m3" || got.StartedAt.UnixMilli() != 1700000000000) {
			t.Errorf("marker t3 = %+v", got)
		}
	}
	if pending, err := db.Inbox.Pending(ctx, "c", 0, 10); err != nil || len(pending) != 0 {
		t.Errorf("pending inbox rows %+v, %v; want none", pending, err)
	}
	if pending, err := db.Inbox.Pending(ctx, "other", 0, 10); err != nil || len(pending) != 1 {
		t.Errorf("pending inbox rows of the other connector %+v, %v; want its one", pending, err)
	}

	// A result PostgreSQL cannot store (a NUL byte in a text): it refuses
	// the statement, and the good result beside it is not stored either.
	if err := db.InDoubt.Begin(ctx, mark(bob, "t5", "m5")); err != nil {
		t.Fatal(err)
	}
	_, err = db.Message.StoreSentMany(ctx, []database.SentResult{
		{Message: msg(bob, "m5"), TxnID: "t5", ConnectorID: "c", Seq: 5, Next: []*database.InDoubtSend{mark(bob, "t6", "m6")}},
		{Message: msg(bob, "x\x001"), TxnID: "x1", ConnectorID: "c", Seq: 6},
	})
	if err == nil || !database.Rejected(err) {
		t.Fatalf("a result with a NUL byte: %v; want PostgreSQL's refusal", err)
	}
	if got, err := db.Message.GetPart(ctx, bob, "m5", 0); err != nil || got != nil {
		t.Errorf("m5 stored by a refused statement: %+v, %v", got, err)
	}
	for txn, want := range map[string]bool{"t5": true, "t6": false} {
		if got, err := db.InDoubt.Get(ctx, txn); err != nil || (got != nil) != want {
			t.Errorf("after the refusal, marker %s = %+v, %v; want stored %v", txn, got, err, want)
		}
	}
	// The inbox rows of one statement are one connector's: results of
	// two are refused before anything is sent.
	if _, err := db.Message.StoreSentMany(ctx, []database.SentResult{
		{Message: msg(bob, "m5"), TxnID: "t5", ConnectorID: "c", Seq: 5},
		{Message: msg(eve, "e5"), TxnID: "u5", ConnectorID: "other", Seq: 1},
	}); err == nil {
		t.Error("results of two connectors in one statement: no error")
	}
	if database.Rejected(fmt.Errorf("wrapped: %w", context.Canceled)) {
		t.Error("a cancelled context counts as PostgreSQL's refusal")
	}

	lite := testdb.Open(t, testdb.SQLite(t))
	if _, err := lite.Message.StoreSentMany(ctx, results[:1]); err == nil {
		t.Error("StoreSentMany on SQLite: no error")
	}
}

// BenchmarkStoreSent: a group commit's results of plain messages stored as
// one statement each (StoreSent) against one statement for the group
// (StoreSentMany), by group size: the former in one transaction (as a group
// commit runs them), the latter on its own. us/group is what the committer
// waits; portal's minSentRows comes from it.
func BenchmarkStoreSent(b *testing.B) {
	ctx := context.Background()
	db := testdb.Open(b, testdb.Postgres(b))
	key := storeBobPortal(ctx, b, db)
	seq := int64(0)
	mk := func(n int) []database.SentResult {
		var rs []database.SentResult
		for i := 0; i < n; i++ {
			seq++
			row := &database.InboxRow{ConnectorID: "c", Seq: seq, LoginID: "l1", ChatID: "bob", Kind: "message", Data: []byte("{}")}
			if err := db.Inbox.Insert(ctx, row); err != nil {
				b.Fatal(err)
			}
			txn := fmt.Sprintf("t%d", seq)
			m := &database.InDoubtSend{TxnID: txn, RoomID: "!r:x", PortalKey: key, RemoteID: txn, EventType: "m.room.message", StartedAt: time.Now()}
			if err := db.InDoubt.Begin(ctx, m); err != nil {
				b.Fatal(err)
			}
			next := &database.InDoubtSend{TxnID: "n" + txn, RoomID: "!r:x", PortalKey: key, RemoteID: "n" + txn, EventType: "m.room.message", StartedAt: time.Now()}
			rs = append(rs, database.SentResult{Message: &database.Message{PortalKey: key, RemoteID: txn, MXID: id.EventID("$" + txn), RoomID: "!r:x"},
				TxnID: txn, ConnectorID: "c", Seq: seq, Next: []*database.InDoubtSend{next}})
		}
		return rs
	}
	// Tables that are not empty, as in a bridge that has run a while.
	for _, r := range mk(5000) {
		if _, err := db.Message.StoreSent(ctx, r.Message, r.TxnID, r.ConnectorID, r.Seq, nil); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("each-%d", n), func(b *testing.B) {
			var dur time.Duration
			for i := 0; i < b.N; i++ {
				rs := mk(n)
				t := time.Now()
				each := func(ctx context.Context) error {
					for _, r := range rs {
						if _, err := db.Message.StoreSent(ctx, r.Message, r.TxnID, r.ConnectorID, r.Seq, r.Next[0]); err != nil {
							return err
						}
					}
					return nil
				}
				// As the group commit runs them: in one transaction.
				err := each(ctx)
				if n > 1 {
					err = db.DoTxn(ctx, nil, each)
				}
				if err != nil {
					b.Fatal(err)
				}
				dur += time.Since(t)
			}
			b.ReportMetric(float64(dur.Microseconds())/float64(b.N), "us/group")
		})
		b.Run(fmt.Sprintf("together-%d", n), func(b *testing.B) {
			var dur time.Duration
			for i := 0; i < b.N; i++ {
				rs := mk(n)
				t := time.Now()
				if _, err := db.Message.StoreSentMany(ctx, rs); err != nil {
					b.Fatal(err)
				}
				dur += time.Since(t)
			}
			b.ReportMetric(float64(dur.Microseconds())/float64(b.N), "us/group")
		})
	}
}

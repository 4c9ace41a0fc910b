//go:build linux

package inbox

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestSyncedBatchSurvivesACrash crashes a real PostgreSQL server (pg_ctl
// -m immediate) right after the inbox stored events: what StoreBatch
// committed without its flush is gone after the crash, what AcceptBatch
// returned for (StoreBatch, then Sync) is not. The first half is the
// control: it shows that this crash does lose an unflushed commit, so the
// second half would fail if Sync did not make the batch durable (the
// end-to-end fault test cannot show that: the portal's synchronous commits,
// a few milliseconds behind each event, flush the intake's as well).
//
// The server's WAL writer runs every 10 s instead of every 200 ms and
// autovacuum is off, so that nothing but a synchronous commit flushes the
// log in the test's few seconds.
func TestSyncedBatchSurvivesACrash(t *testing.T) {
	pg := testdb.StartPrivate(t, "wal_writer_delay=10000", "autovacuum=off")
	db := testdb.Open(t, pg.Target())
	ctx := context.Background()
	in := New(db, nil, zerolog.Nop())
	// The connector's first event is stored alone and durable at once.
	if durable, err := in.StoreBatch(ctx, "c", []server.Accepted{item(t, 1, "one")}); err != nil || !durable {
		t.Fatalf("first event: durable %v, %v; want durable", durable, err)
	}
	// A small batch after it commits without waiting for the flush.
	if durable, err := in.StoreBatch(ctx, "c", []server.Accepted{item(t, 2, "two"), item(t, 3, "three")}); err != nil || durable {
		t.Fatalf("second batch: durable %v, %v; want not durable before Sync", durable, err)
	}
	pg.Crash(0)
	if acked := ackedAfterCrash(ctx, t, in); acked != 1 {
		t.Fatalf("acked_seq %d after a crash right after an unflushed commit; want 1: the crash did not lose it, "+
			"so this test cannot tell whether Sync makes a batch durable", acked)
	}
	if seqs := pendingSeqs(ctx, t, in); !slices.Equal(seqs, []int64{1}) {
		t.Fatalf("rows %v after the crash, want [1]", seqs)
	}

	// The connector was never acked for 2 and 3 and sends them again; this
	// time the server waits for AcceptBatch, as it does before an ack.
	if err := in.AcceptBatch(ctx, "c", []server.Accepted{item(t, 2, "two"), item(t, 3, "three")}); err != nil {
		t.Fatal(err)
	}
	pg.Crash(0)
	if acked := ackedAfterCrash(ctx, t, in); acked != 3 {
		t.Fatalf("acked_seq %d after a crash that followed AcceptBatch; want 3", acked)
	}
	if seqs := pendingSeqs(ctx, t, in); !slices.Equal(seqs, []int64{1, 2, 3}) {
		t.Fatalf("rows %v after the crash, want [1 2 3]", seqs)
	}
}

// TestAckedEventsSurviveACrash is the same through the connector server:
// every event the connector got an ack for is still stored after the
// server crashes right after the ack, though the server stored the small
// batch without waiting for the flush (the ack waits for the Sync).
func TestAckedEventsSurviveACrash(t *testing.T) {
	pg := testdb.StartPrivate(t, "wal_writer_delay=10000", "autovacuum=off")
	db := testdb.Open(t, pg.Target())
	ctx := context.Background()
	in := New(db, nil, zerolog.Nop())
	h := connectortest.NewHarness(t, func(o *server.Options) {
		o.Store = in
		o.AckDelay = time.Millisecond
	})
	rc, _ := h.Connect(t, "c")
	connectortest.SendEvent(t, rc, 1, connectortest.Message(1))
	connectortest.WaitAck(t, rc, 1)
	connectortest.SendMessages(t, rc, 2, 3)
	connectortest.WaitAck(t, rc, 3)
	pg.Crash(0)
	if acked := ackedAfterCrash(ctx, t, in); acked != 3 {
		t.Fatalf("acked_seq %d after a crash that followed the ack of 3; want 3", acked)
	}
	if seqs := pendingSeqs(ctx, t, in); !slices.Equal(seqs, []int64{1, 2, 3}) {
		t.Fatalf("rows %v after the crash, want [1 2 3]", seqs)
	}
}

// ackedAfterCrash reads acked_seq once the server answers again: the
// pool's first use of a connection from before the crash may fail.
func ackedAfterCrash(ctx context.Context, t *testing.T, in *Inbox) int64 {
	t.Helper()
	var err error
	for try := 0; try < 50; try++ {
		var acked int64
		if acked, err = in.AckedSeq(ctx, "c"); err == nil {
			return acked
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("acked_seq after the crash: %v", err)
	return 0
}

// pendingSeqs are the seqs a new reader (as after a restart of the bridge)
// finds in the database.
func pendingSeqs(ctx context.Context, t *testing.T, in *Inbox) []int64 {
	t.Helper()
	rows, err := in.db.Inbox.Pending(ctx, "c", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, r := range rows {
		seqs = append(seqs, r.Seq)
	}
	return seqs
}

package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// item is an accepted event as the server hands it over: raw is what the
// connector sent, with spacing and a field the bridge does not know.
func item(t *testing.T, seq int64, text string) server.Accepted {
	t.Helper()
	raw := []byte(`{ "kind":"message","login":"alice","ts":7,"chat":{"id":"bob","type":"dm","with":"bob"},` +
		`"sender":{"id":"bob"},"id":"m` + text + `","text":"` + text + `", "x-future":[1] }`)
	var ev connector.Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	return server.Accepted{Seq: seq, Event: &ev, Raw: raw}
}

func woken(in *Inbox) bool {
	select {
	case <-in.Woken():
		return true
	default:
		return false
	}
}

// TestStoredAsSentReadOnce: the inbox stores the connector's bytes as they
// are, wakes the reader on commit, and hands each event to the reader once:
// decoded already while this process wrote it, decoded from the stored
// bytes after a restart. Done, Failed and Park land in the table.
func TestStoredAsSentReadOnce(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		in := New(db, nil, zerolog.Nop())
		items := []server.Accepted{item(t, 1, "one"), {Seq: 2}, item(t, 3, "three")}
		if err := in.AcceptBatch(ctx, "c", items); err != nil {
			t.Fatal(err)
		}
		if !woken(in) {
			t.Fatal("no wake after a commit")
		}
		if acked, err := in.AckedSeq(ctx, "c"); err != nil || acked != 3 {
			t.Fatalf("acked_seq %d, %v; want 3", acked, err)
		}
		var data string
		if err := db.QueryRow(ctx, "SELECT data FROM inbox WHERE connector_id='c' AND seq=1").Scan(&data); err != nil {
			t.Fatal(err)
		}
		if data != string(items[0].Raw) {
			t.Fatalf("stored %s, want the bytes as sent: %s", data, items[0].Raw)
		}

		got := next(in.Reader())
		if len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 3 {
			t.Fatalf("read %+v, want seqs 1 and 3", got)
		}
		if got[0].Event != items[0].Event || got[1].Event != items[2].Event {
			t.Error("the events decoded at the edge were decoded again")
		}

		// Another process reads the same bytes back.
		again := next(New(db, nil, zerolog.Nop()).Reader())
		if len(again) != 2 || !reflect.DeepEqual(again[0].Event, items[0].Event) || again[1].ChatID != "bob" || again[1].LoginID != "alice" {
			t.Fatalf("after a restart read %+v, want the same events", again)
		}

		r := in.Reader()
		e := next(r)
		if err := e[0].Done(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e[1].Failed(ctx, errors.New("homeserver down")); err != nil {
			t.Fatal(err)
		}
		if left := next(in.Reader()); len(left) != 1 || left[0].Seq != 3 || left[0].Attempts != 1 {
			t.Fatalf("after Done and Failed: %+v, want seq 3 with one attempt", left)
		}
		if err := e[1].Park(ctx, errors.New("gave up")); err != nil {
			t.Fatal(err)
		}
		if left := next(in.Reader()); len(left) != 0 {
			t.Fatalf("after Park: %+v, want nothing", left)
		}
		if n := len(in.handoff.events); n != 0 {
			t.Errorf("%d handed-over events left behind", n)
		}
	})
}

// TestReaderTakesStoredRowsFromMemory: what this process stored after the
// reader's first look is handed to the reader without reading it back (the
// rows are gone from the table here, and still come), in seq order, a page
// at a time; what does not fit a page is read from the database next.
func TestReaderTakesStoredRowsFromMemory(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		in := New(db, nil, zerolog.Nop())
		r := in.Reader()
		if got := next(r); len(got) != 0 {
			t.Fatalf("read %+v from an empty inbox", got)
		}
		if err := in.AcceptBatch(ctx, "c", []server.Accepted{item(t, 1, "one"), {Seq: 2}, item(t, 3, "three")}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, "DELETE FROM inbox"); err != nil {
			t.Fatal(err)
		}
		if got := next(r); len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 3 || got[1].ChatID != "bob" {
			t.Fatalf("read %+v, want seqs 1 and 3 from memory", got)
		}
		var batch []server.Accepted
		for seq := int64(4); seq < 16; seq++ {
			batch = append(batch, item(t, seq, "x"))
		}
		if err := in.AcceptBatch(ctx, "c", batch); err != nil {
			t.Fatal(err)
		}
		page, more, _ := r.Next(ctx, 10)
		if len(page) != 10 || page[0].Seq != 4 || page[9].Seq != 13 || !more {
			t.Fatalf("first page %d entries from %d, more %v; want 4-13 and more", len(page), page[0].Seq, more)
		}
		if rest := next(r); len(rest) != 2 || rest[0].Seq != 14 || rest[1].Seq != 15 {
			t.Fatalf("after a full page read %+v, want 14 and 15", rest)
		}
		if again := next(r); len(again) != 0 {
			t.Fatalf("read %+v twice", again)
		}
	})
}

// TestFailedBatchStoresNothing: when acked_seq is not where the batch
// starts (another writer), nothing is stored, nobody is woken, and nothing
// decoded stays in memory; at the stream's start and later on (where
// PostgreSQL stores and advances in one statement).
func TestFailedBatchStoresNothing(t *testing.T) {
	testdb.Each(t, failedBatchStoresNothing)
}

func failedBatchStoresNothing(t *testing.T, target testdb.Target) {
	ctx := context.Background()
	db := testdb.Open(t, target)
	in := New(db, nil, zerolog.Nop())
	if err := in.AcceptBatch(ctx, "c", []server.Accepted{item(t, 2, "two")}); err == nil {
		t.Fatal("a batch from seq 2 on an empty stream was stored")
	}
	if woken(in) {
		t.Error("woken by a failed batch")
	}
	if got := next(in.Reader()); len(got) != 0 {
		t.Fatalf("read %+v after a failed batch", got)
	}
	if n := len(in.handoff.events); n != 0 {
		t.Errorf("%d handed-over events kept after a failed batch", n)
	}
	if err := in.AcceptBatch(ctx, "c", []server.Accepted{item(t, 1, "a"), item(t, 3, "b")}); err == nil {
		t.Fatal("a batch with a hole was stored")
	}
	if err := in.AcceptBatch(ctx, "c", []server.Accepted{item(t, 1, "a")}); err != nil {
		t.Fatal(err)
	}
	for _, batch := range [][]server.Accepted{
		{item(t, 3, "c")},
		{item(t, 3, "c"), item(t, 4, "d"), item(t, 5, "e"), item(t, 6, "f"), item(t, 7, "g")},
	} {
		if err := in.AcceptBatch(ctx, "c", batch); err == nil {
			t.Fatal("a batch past acked_seq + 1 was stored")
		}
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM inbox").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows stored (%v), want the one good batch's", n, err)
	}
	if err := in.AcceptBatch(ctx, "c", []server.Accepted{item(t, 2, "b"), {Seq: 3}}); err != nil {
		t.Fatal(err)
	}
	if acked, err := in.AckedSeq(ctx, "c"); err != nil || acked != 3 {
		t.Fatalf("acked_seq %d, %v; want 3", acked, err)
	}
}

// TestUnflushedBatchIsReadAgain: on PostgreSQL a batch commits without
// the WAL flush and the reader gets it at once; when the flush that must
// follow fails, AcceptBatch fails (so the server does not ack), and if
// PostgreSQL then lost the rows, the connector's resend under the same seqs
// is returned to the reader again rather than skipped as returned. A new
// connection's acked_seq is read only after a flush of its own.
func TestUnflushedBatchIsReadAgain(t *testing.T) {
	ctx := context.Background()
	// A flush is a logical message in the log, or where that is refused,
	// as here, the write that moves acked_seq to itself, which a trigger
	// refuses below.
	target := testdb.Postgres(t)
	testdb.RefuseLogicalMessages(t, target)
	db := testdb.Open(t, target)
	in := New(db, nil, zerolog.Nop())
	r := in.Reader()
	if err := in.AcceptBatch(ctx, "c", []server.Accepted{item(t, 1, "one")}); err != nil {
		t.Fatal(err)
	}
	if got := next(r); len(got) != 1 {
		t.Fatalf("read %+v, want seq 1", got)
	}
	refuse := `CREATE FUNCTION refuse_flush() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.acked_seq = OLD.acked_seq THEN RAISE EXCEPTION 'flush refused'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_flush BEFORE UPDATE ON connector_stream FOR EACH ROW EXECUTE FUNCTION refuse_flush()`
	if _, err := db.Exec(ctx, refuse); err != nil {
		t.Fatal(err)
	}
	err := in.AcceptBatch(ctx, "c", []server.Accepted{item(t, 2, "two"), item(t, 3, "three")})
	if err == nil || !strings.Contains(err.Error(), "flush refused") {
		t.Fatalf("AcceptBatch with the flush refused: %v, want its error", err)
	}
	if got := next(r); len(got) != 2 || got[0].Seq != 2 {
		t.Fatalf("read %+v, want seqs 2 and 3 before their flush", got)
	}
	if _, err := in.AckedSeq(ctx, "c"); err == nil {
		t.Fatal("acked_seq read without a flush")
	}
	// PostgreSQL crashed before the log reached the disk: the rows and
	// acked_seq's move are gone.
	if _, err := db.Exec(ctx, `DELETE FROM inbox WHERE seq > 1; UPDATE connector_stream SET acked_seq = 1;
		DROP TRIGGER refuse_flush ON connector_stream`); err != nil {
		t.Fatal(err)
	}
	if acked, err := in.AckedSeq(ctx, "c"); err != nil || acked != 1 {
		t.Fatalf("acked_seq %d, %v; want 1", acked, err)
	}
	if err := in.AcceptBatch(ctx, "c", []server.Accepted{item(t, 2, "two"), item(t, 3, "three")}); err != nil {
		t.Fatal(err)
	}
	if got := next(r); len(got) != 2 || got[0].Seq != 2 || got[1].Seq != 3 {
		t.Fatalf("after the resend read %+v, want seqs 2 and 3 again", got)
	}
	if again := next(r); len(again) != 0 {
		t.Fatalf("read %+v a third time", again)
	}
}

// TestStoreBatchSaysWhatIsDurable: on PostgreSQL a small batch (the
// first event stores alone, then up to four) comes back not durable yet and
// is readable at once; Sync makes it durable, and a larger batch is
// durable when StoreBatch returns. On SQLite every batch is.
func TestStoreBatchSaysWhatIsDurable(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		pg := db.Dialect == dbutil.Postgres
		in := New(db, nil, zerolog.Nop())
		r := in.Reader()
		batches := [][]server.Accepted{
			{item(t, 1, "a")},
			{item(t, 2, "b"), item(t, 3, "c")},
			{item(t, 4, "d"), item(t, 5, "e"), item(t, 6, "f"), item(t, 7, "g"), item(t, 8, "h")},
		}
		want := []bool{true, !pg, true}
		for i, b := range batches {
			durable, err := in.StoreBatch(ctx, "c", b)
			if err != nil || durable != want[i] {
				t.Fatalf("batch %d: durable %v, %v; want %v", i+1, durable, err, want[i])
			}
			if got := next(r); len(got) != len(b) {
				t.Fatalf("batch %d: read %d entries before any Sync, want %d", i+1, len(got), len(b))
			}
			if err := in.Sync(ctx, "c"); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestUnparsableRow: a row whose data does not decode comes back without
// an Event, for the caller to park.
func TestUnparsableRow(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, testdb.SQLite(t))
	if err := db.Inbox.Insert(ctx, &database.InboxRow{ConnectorID: "c", Seq: 1, LoginID: "alice", Kind: "message", Data: []byte("{")}); err != nil {
		t.Fatal(err)
	}
	got := next(New(db, nil, zerolog.Nop()).Reader())
	if len(got) != 1 || got[0].Event != nil {
		t.Fatalf("read %+v, want one entry without an event", got)
	}
}

// next is one Reader.Next of up to 10 events per connector.
func next(r *Reader) []*Entry {
	entries, _, _ := r.Next(context.Background(), 10)
	return entries
}

package inbox

import (
	"context"
	"testing"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// BenchmarkAcceptLone is the intake of an event that comes alone (a batch
// of one), which a lone message waits for before it can be applied: on
// PostgreSQL one statement (AcceptBatch), against the transaction of an
// insert and a stream update it replaces (txn).
func BenchmarkAcceptLone(b *testing.B) {
	target := testdb.Postgres(b)
	db := testdb.Open(b, target)
	ctx := context.Background()
	raw := []byte(`{"kind":"message","login":"alice","ts":7,"chat":{"id":"bob","type":"dm","with":"bob"},"sender":{"id":"bob"},"id":"m","text":"x"}`)
	row := func(seq int64) []*database.InboxRow {
		return []*database.InboxRow{{ConnectorID: "c", Seq: seq, LoginID: "alice", ChatID: "bob", Kind: "message", Data: raw}}
	}
	seq := int64(1)
	if err := db.Stream.AdvanceFrom(ctx, "c", 0, 1); err != nil {
		b.Fatal(err)
	}
	for _, round := range []string{"txn", "one-statement", "txn", "one-statement"} {
		b.Run(round, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				seq++
				var err error
				if round == "txn" {
					err = db.DoTxn(ctx, nil, func(ctx context.Context) error {
						if err := db.Inbox.InsertMany(ctx, row(seq)); err != nil {
							return err
						}
						return db.Stream.AdvanceFrom(ctx, "c", seq-1, seq)
					})
				} else {
					var ok bool
					if ok, err = db.Inbox.StoreAdvancing(ctx, "c", row(seq), seq-1, seq); !ok {
						b.Fatal("not stored in one statement")
					}
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

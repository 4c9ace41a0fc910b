package database_test

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestMXEventInsertManyKeepsOrder: a transaction's events stored in one
// statement get seqs in their order, an event seen before (stored earlier
// or twice in the list) is stored once, and the count says how many were new.
func TestMXEventInsertManyKeepsOrder(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		if _, err := db.MXEvent.InsertMany(ctx, []*database.NewMXEvent{{EventID: "$e3", RoomID: "!r:x", Data: []byte(`{"n":3}`)}}); err != nil {
			t.Fatal(err)
		}
		var events []*database.NewMXEvent
		for _, n := range []int{0, 1, 2, 3, 4, 1, 5} {
			events = append(events, &database.NewMXEvent{
				EventID: id.EventID(fmt.Sprintf("$e%d", n)), RoomID: "!r:x", Data: []byte(fmt.Sprintf(`{"n":%d}`, n)),
			})
		}
		// More than one statement's worth, to cross a chunk boundary.
		for n := 6; n < 250; n++ {
			events = append(events, &database.NewMXEvent{
				EventID: id.EventID(fmt.Sprintf("$e%d", n)), RoomID: "!r:x", Data: []byte(fmt.Sprintf(`{"n":%d}`, n)),
			})
		}
		added, err := db.MXEvent.InsertMany(ctx, events)
		if err != nil {
			t.Fatal(err)
		}
		if added != 249 {
			t.Fatalf("added %d, want 249 (250 ids, one stored before)", added)
		}
		rows, err := db.MXEvent.Pending(ctx, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"$e3", "$e0", "$e1", "$e2", "$e4"}
		for n := 5; n < 250; n++ {
			want = append(want, fmt.Sprintf("$e%d", n))
		}
		if len(rows) != len(want) {
			t.Fatalf("%d rows, want %d", len(rows), len(want))
		}
		for i, r := range rows {
			if string(r.EventID) != want[i] {
				t.Fatalf("row %d is %s, want %s", i, r.EventID, want[i])
			}
			if i > 0 && r.Seq <= rows[i-1].Seq {
				t.Fatalf("seq not increasing at %d", i)
			}
			if r.ReceivedAt.IsZero() {
				t.Fatalf("row %d has no received time", i)
			}
		}
	})
}

package database_test

import (
	"context"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestGhostsRegisteredWithoutDevice: the ghosts the encryption start-up
// gives a device to are the registered ones that have none; a ghost never
// registered, or with a device, is left alone.
func TestGhostsRegisteredWithoutDevice(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		for _, g := range []*database.Ghost{
			{ID: "a", MXID: "@a:x", Registered: true},
			{ID: "b", MXID: "@b:x", Registered: true},
			{ID: "c", MXID: "@c:x"},
			{ID: "e", MXID: "@e:x", Registered: true},
		} {
			if err := db.Ghost.Put(ctx, g); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.GhostDev.Put(ctx, &database.GhostDevice{MXID: "@b:x", DeviceID: "DEV", AccessToken: "tok"}); err != nil {
			t.Fatal(err)
		}
		got, err := db.GhostDev.RegisteredWithout(ctx, "", 10)
		if err != nil || !slices.Equal(got, []id.UserID{"@a:x", "@e:x"}) {
			t.Fatalf("registered ghosts without a device = %v, %v; want [@a:x @e:x]", got, err)
		}
		// Paged from a cursor, in user id order.
		if got, err = db.GhostDev.RegisteredWithout(ctx, "", 1); err != nil || !slices.Equal(got, []id.UserID{"@a:x"}) {
			t.Fatalf("first page = %v, %v; want [@a:x]", got, err)
		}
		if got, err = db.GhostDev.RegisteredWithout(ctx, "@a:x", 1); err != nil || !slices.Equal(got, []id.UserID{"@e:x"}) {
			t.Fatalf("page after @a:x = %v, %v; want [@e:x]", got, err)
		}
		if got, err = db.GhostDev.RegisteredWithout(ctx, "@e:x", 1); err != nil || len(got) != 0 {
			t.Fatalf("page after @e:x = %v, %v; want none", got, err)
		}
	})
}

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
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		ctx := context.Background()
		db := testdb.Open(t, target)
		for _, g := range []*database.Ghost{
			{ID: "a", MXID: "@a:x", Registered: true},
			{ID: "b", MXID: "@b:x", Registered: true},
			{ID: "c", MXID: "@c:x"},
		} {
			if err := db.Ghost.Put(ctx, g); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.GhostDev.Put(ctx, &database.GhostDevice{MXID: "@b:x", DeviceID: "DEV", AccessToken: "tok"}); err != nil {
			t.Fatal(err)
		}
		got, err := db.GhostDev.RegisteredWithout(ctx)
		if err != nil || !slices.Equal(got, []id.UserID{"@a:x"}) {
			t.Fatalf("registered ghosts without a device = %v, %v; want [@a:x]", got, err)
		}
	})
}

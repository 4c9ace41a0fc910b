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

// TestGhostDeviceKeysChecked: a device stored before v9 comes out of the
// upgrade unchecked, so that the bridge checks its one-time keys once; a
// device stored now as checked stays so, and marking one checked names its
// device, leaving a replacement alone.
func TestGhostDeviceKeysChecked(t *testing.T) {
	eachUpgradedFrom(t, 8, []string{
		"INSERT INTO ghost_device (mxid, device_id, access_token, syncing) VALUES ('@old:x', 'OLD', 'tok', true)",
		"INSERT INTO ghost_device (mxid, device_id, access_token) VALUES ('@quiet:x', 'QUIET', 'tok')",
	}, func(ctx context.Context, t *testing.T, db *database.Database) {
		old, err := db.GhostDev.Get(ctx, "@old:x")
		if err != nil || old == nil || !old.Syncing || old.KeysChecked {
			t.Fatalf("device from before the upgrade = %+v, %v; want syncing, unchecked", old, err)
		}
		if err = db.GhostDev.Put(ctx, &database.GhostDevice{MXID: "@new:x", DeviceID: "NEW", AccessToken: "tok", KeysChecked: true}); err != nil {
			t.Fatal(err)
		}
		if got, err := db.GhostDev.Get(ctx, "@new:x"); err != nil || got == nil || !got.KeysChecked {
			t.Fatalf("new device = %+v, %v; want checked", got, err)
		}
		unchecked := func(after id.UserID, limit int) []id.UserID {
			t.Helper()
			rows, err := db.GhostDev.Unchecked(ctx, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			var ids []id.UserID
			for _, r := range rows {
				ids = append(ids, r.MXID)
			}
			return ids
		}
		if got := unchecked("", 10); !slices.Equal(got, []id.UserID{"@old:x", "@quiet:x"}) {
			t.Fatalf("unchecked = %v; want [@old:x @quiet:x]", got)
		}
		if got := unchecked("@old:x", 1); !slices.Equal(got, []id.UserID{"@quiet:x"}) {
			t.Fatalf("unchecked after @old:x = %v; want [@quiet:x]", got)
		}
		// The device was replaced since it was listed: not marked.
		if err = db.GhostDev.SetKeysChecked(ctx, "@quiet:x", "GONE"); err != nil {
			t.Fatal(err)
		}
		if err = db.GhostDev.SetKeysChecked(ctx, "@old:x", "OLD"); err != nil {
			t.Fatal(err)
		}
		if got := unchecked("", 10); !slices.Equal(got, []id.UserID{"@quiet:x"}) {
			t.Fatalf("unchecked after marking = %v; want [@quiet:x]", got)
		}
	})
}

package database_test

import (
	"context"
	"errors"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestCachedRowsFollowWrites: the login, portal and backfill caches never
// answer with a row older than the last write, whether the write was on its
// own, in a transaction that committed, or came by cascade; a transaction
// that rolled back leaves the committed row.
func TestCachedRowsFollowWrites(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		key, p := createBobPortal(ctx, t, db, "connected")
		if pending, err := db.Backfill.Pending(ctx, key); err != nil || !pending {
			t.Fatalf("a new portal has its history pending: %v %v", pending, err)
		}
		p.RoomID = "!changed-by-caller:x" // callers' changes stay theirs
		if got, _ := db.Portal.Get(ctx, key); got.RoomID != "" {
			t.Fatalf("cache shares the caller's copy: %q", got.RoomID)
		}
		_ = mustLogin(t, db, "connected") // now cached
		if err := db.Login.SetState(ctx, "l1", "bad_credentials"); err != nil {
			t.Fatal(err)
		}
		_ = mustLogin(t, db, "bad_credentials")

		if err := db.Backfill.Done(ctx, key); err != nil {
			t.Fatal(err)
		}
		if pending, _ := db.Backfill.Pending(ctx, key); pending {
			t.Fatal("backfill still pending after Done")
		}
		// A write in a transaction: seen after commit, not after rollback.
		err := db.DoTxn(ctx, nil, func(ctx context.Context) error {
			return db.Portal.SetRoom(ctx, key, "!room1:x")
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := db.Portal.Get(ctx, key); got.RoomID != "!room1:x" {
			t.Fatalf("room after commit %q", got.RoomID)
		}
		err = db.DoTxn(ctx, nil, func(ctx context.Context) error {
			if err := db.Portal.SetRoom(ctx, key, "!room2:x"); err != nil {
				return err
			}
			if got, _ := db.Portal.Get(ctx, key); got.RoomID != id.RoomID("!room2:x") {
				t.Errorf("inside the transaction: %q", got.RoomID)
			}
			return errors.New("roll back")
		})
		if err == nil {
			t.Fatal("rollback expected")
		}
		if got, _ := db.Portal.Get(ctx, key); got.RoomID != "!room1:x" {
			t.Fatalf("room after rollback %q", got.RoomID)
		}
		// Deleting the login deletes its portals by cascade.
		if err := db.Login.Delete(ctx, "l1"); err != nil {
			t.Fatal(err)
		}
		if got, err := db.Portal.Get(ctx, key); err != nil || got != nil {
			t.Fatalf("portal after its login was deleted: %+v %v", got, err)
		}
		if got, err := db.Login.Get(ctx, "l1"); err != nil || got != nil {
			t.Fatalf("login after delete: %+v %v", got, err)
		}
	})
}

func mustLogin(t *testing.T, db *database.Database, state string) *database.Login {
	t.Helper()
	l, err := db.Login.Get(context.Background(), "l1")
	if err != nil || l == nil || l.State != state {
		t.Fatalf("login %+v (%v), want state %s", l, err, state)
	}
	return l
}

// TestPortalByRoomFollowsItsRoom: a room's portal, once read, is found
// again without the table, and never after the room changed hands: moved
// to another portal, taken from its portal, or its portal deleted.
func TestPortalByRoomFollowsItsRoom(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		storeLogin(ctx, t, db, "connected")
		bob := database.PortalKey{LoginID: "l1", ChatID: "bob"}
		carol := database.PortalKey{LoginID: "l1", ChatID: "carol"}
		for _, k := range []database.PortalKey{bob, carol} {
			if _, err := db.Portal.GetOrCreate(ctx, k, k.ChatID); err != nil {
				t.Fatal(err)
			}
		}
		const room = id.RoomID("!r:x")
		owner := func(want string) {
			t.Helper()
			p, err := db.Portal.GetByRoom(ctx, room)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if p != nil {
				got = p.ChatID
			}
			if got != want {
				t.Fatalf("owner of %s: %q, want %q", room, got, want)
			}
		}
		owner("")
		if err := db.Portal.SetRoom(ctx, bob, room); err != nil {
			t.Fatal(err)
		}
		owner("bob")
		owner("bob") // from the room index now
		// The room moves to carol in a transaction (a cleanup then an
		// adoption): bob's portal goes, carol's takes the room.
		err := db.DoTxn(ctx, nil, func(ctx context.Context) error {
			if err := db.Portal.Delete(ctx, bob); err != nil {
				return err
			}
			return db.Portal.SetRoom(ctx, carol, room)
		})
		if err != nil {
			t.Fatal(err)
		}
		owner("carol")
		owner("carol")
		// Outside a transaction: carol moves to another room, then back,
		// then her portal goes.
		if err := db.Portal.SetRoom(ctx, carol, "!elsewhere:x"); err != nil {
			t.Fatal(err)
		}
		owner("")
		if err := db.Portal.SetRoom(ctx, carol, room); err != nil {
			t.Fatal(err)
		}
		owner("carol")
		if err := db.Portal.Delete(ctx, carol); err != nil {
			t.Fatal(err)
		}
		owner("")
	})
}

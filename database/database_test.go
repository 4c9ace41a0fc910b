package database_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

func TestMigrationsFromEmptyAndAgain(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		ctx := context.Background()
		first := testdb.Open(t, target)
		version, err := schemaVersion(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		if version < 1 {
			t.Fatalf("version after upgrade = %d, want >= 1", version)
		}
		storeLogin(ctx, t, first, "")
		_ = first.Close()
		second := testdb.Open(t, target)
		again, err := schemaVersion(ctx, second)
		if err != nil {
			t.Fatal(err)
		}
		if again != version {
			t.Fatalf("second start changed version %d -> %d", version, again)
		}
		login, err := second.Login.Get(ctx, "l1")
		if err != nil || login == nil || login.MatrixUser != "@a:x" {
			t.Fatalf("login lost across restart: %+v, %v", login, err)
		}
	})
}

func TestPortalUniquePerChat(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		key, a := createBobPortal(ctx, t, db, "")
		if err := db.Portal.SetRoom(ctx, key, "!r:x"); err != nil {
			t.Fatal(err)
		}
		b, err := db.Portal.GetOrCreate(ctx, key, "bob")
		if err != nil {
			t.Fatal(err)
		}
		if b.RoomID != "!r:x" || a.LoginID != b.LoginID {
			t.Fatalf("second GetOrCreate gave another portal: %+v", b)
		}
	})
}

func TestStreamAdvanceRefusesGaps(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		for seq := int64(1); seq <= 3; seq++ {
			if err := db.Stream.Advance(ctx, "c", seq); err != nil {
				t.Fatalf("advance to %d: %v", seq, err)
			}
		}
		if err := db.Stream.Advance(ctx, "c", 5); err == nil {
			t.Fatal("advance 3 -> 5 succeeded, want an error")
		}
		if err := db.Stream.Advance(ctx, "c", 3); err == nil {
			t.Fatal("advance 3 -> 3 succeeded, want an error")
		}
		if got, _ := db.Stream.AckedSeq(ctx, "c"); got != 3 {
			t.Fatalf("acked_seq = %d, want 3", got)
		}
	})
}

func TestStreamAdvanceFromRefusesGapsAndGoingBack(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		if err := db.Stream.AdvanceFrom(ctx, "c", 1, 4); err == nil {
			t.Fatal("advance 1 -> 4 of a new stream succeeded, want an error")
		}
		if err := db.Stream.AdvanceFrom(ctx, "c", 0, 4); err != nil {
			t.Fatalf("advance 0 -> 4: %v", err)
		}
		if err := db.Stream.AdvanceFrom(ctx, "c", 0, 2); err == nil {
			t.Fatal("advance 0 -> 2 at 4 succeeded, want an error")
		}
		for _, bad := range [][2]int64{{3, 6}, {5, 6}, {4, 4}, {4, 3}} {
			if err := db.Stream.AdvanceFrom(ctx, "c", bad[0], bad[1]); err == nil {
				t.Fatalf("advance %d -> %d at 4 succeeded, want an error", bad[0], bad[1])
			}
		}
		if err := db.Stream.AdvanceFrom(ctx, "c", 4, 9); err != nil {
			t.Fatalf("advance 4 -> 9: %v", err)
		}
		// The single-step Advance carries on from there.
		if err := db.Stream.Advance(ctx, "c", 10); err != nil {
			t.Fatalf("advance to 10: %v", err)
		}
		if got, _ := db.Stream.AckedSeq(ctx, "c"); got != 10 {
			t.Fatalf("acked_seq = %d, want 10", got)
		}
	})
}

func TestMessageMappingDedup(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		key := storeBobPortal(ctx, t, db)
		msg := &database.Message{PortalKey: key, RemoteID: "m1", MXID: "$e1", RoomID: "!r:x", SenderID: "bob", TS: 1}
		if err := db.Message.Insert(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if err := db.Message.Insert(ctx, msg); err != nil {
			t.Fatalf("replayed insert: %v", err)
		}
		got, err := db.Message.GetByMXID(ctx, "$e1")
		if err != nil || got == nil || got.RemoteID != "m1" {
			t.Fatalf("GetByMXID = %+v, %v", got, err)
		}
	})
}

// TestMessageTextTail: the parts that carry the rest of a long text are
// marked, and an edit's DeleteTextTails removes them and nothing else; a
// row from before v14 reads as no tail.
func TestMessageTextTail(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		key := storeBobPortal(ctx, t, db)
		for part, tail := range []bool{false, true, true, false} {
			msg := &database.Message{PortalKey: key, RemoteID: "m1", Part: part, MXID: id.EventID(fmt.Sprintf("$p%d", part)),
				RoomID: "!r:x", SenderID: "bob", TS: 1, TextTail: tail}
			if err := db.Message.Insert(ctx, msg); err != nil {
				t.Fatal(err)
			}
		}
		parts, err := db.Message.GetParts(ctx, key, "m1")
		if err != nil || len(parts) != 4 || parts[0].TextTail || !parts[1].TextTail || parts[3].TextTail {
			t.Fatalf("parts = %+v, %v", parts, err)
		}
		if err = db.Message.DeleteTextTails(ctx, key, "m1"); err != nil {
			t.Fatal(err)
		}
		if parts, _ = db.Message.GetParts(ctx, key, "m1"); len(parts) != 2 || parts[0].Part != 0 || parts[1].Part != 3 {
			t.Fatalf("after DeleteTextTails: %+v", parts)
		}
	})
	eachUpgradedFrom(t, 13, []string{
		"INSERT INTO login (id, connector_id, matrix_user) VALUES ('l1', 'c', '@a:x')",
		"INSERT INTO portal (login_id, chat_id, contact_id, created_at) VALUES ('l1', 'bob', 'bob', 1)",
		"INSERT INTO message (login_id, chat_id, remote_id, part, mxid, room_id, sender_id, ts) VALUES ('l1', 'bob', 'old', 1, '$old', '!r:x', 'bob', 1)",
	}, func(ctx context.Context, t *testing.T, upgraded *database.Database) {
		got, err := upgraded.Message.GetByMXID(ctx, "$old")
		if err != nil || got == nil || got.TextTail {
			t.Fatalf("row from v13 = %+v, %v", got, err)
		}
	})
}

// storeLogin stores login l1 of @a:x in state ("" for none): the login
// that the portals, commands and rows of these tests hang from.
func storeLogin(ctx context.Context, t testing.TB, db *database.Database, state string) {
	t.Helper()
	if _, err := db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x", State: state}); err != nil {
		t.Fatal(err)
	}
}

// storeBobPortal stores login l1 (of @a:x) and its portal for chat bob,
// the rows most tests here start from, and returns the portal's key.
func storeBobPortal(ctx context.Context, t testing.TB, db *database.Database) database.PortalKey {
	t.Helper()
	key, _ := createBobPortal(ctx, t, db, "")
	return key
}

// createBobPortal is storeBobPortal with the login in the given state,
// returning also the portal as GetOrCreate created it, for the tests of
// what later reads and writes do to that row.
func createBobPortal(ctx context.Context, t testing.TB, db *database.Database, loginState string) (database.PortalKey, *database.Portal) {
	t.Helper()
	storeLogin(ctx, t, db, loginState)
	key := database.PortalKey{LoginID: "l1", ChatID: "bob"}
	p, err := db.Portal.GetOrCreate(ctx, key, "bob")
	if err != nil {
		t.Fatal(err)
	}
	return key, p
}

func schemaVersion(ctx context.Context, db *database.Database) (int, error) {
	var v int
	err := db.QueryRow(ctx, "SELECT version FROM version").Scan(&v)
	return v, err
}

// Commands queued within one millisecond (a user typing fast while the
// connector is offline) must still come back in the order they were queued.
func TestPendingCommandsKeepQueueOrder(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		// Event ids are random, so a later one often sorts first.
		txns := []string{"$z", "$y", "$x", "$w", "$v", "$u", "$t", "$s", "$r", "$q"}
		for i, txn := range txns {
			err := db.PendingCm.Insert(ctx, &database.PendingCommand{
				Txn: txn, ConnectorID: "c", PortalKey: database.PortalKey{LoginID: "l1", ChatID: "ch"},
				RoomID: "!r:x", Op: "send_message", Data: []byte("{}"), MXSeq: int64(i + 1),
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		for name, list := range map[string]func() ([]*database.PendingCommand, error){
			"ByRoom":      func() ([]*database.PendingCommand, error) { return db.PendingCm.ByRoom(ctx, "!r:x") },
			"ByConnector": func() ([]*database.PendingCommand, error) { return db.PendingCm.ByConnector(ctx, "c") },
			"All":         func() ([]*database.PendingCommand, error) { return db.PendingCm.All(ctx) },
		} {
			cmds, err := list()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range cmds {
				got = append(got, c.Txn)
			}
			if !slices.Equal(got, txns) {
				t.Errorf("%s order = %v, want %v", name, got, txns)
			}
		}
	})
}

// TestUpgradeFromV1 takes a database back to the v1 schema (without the
// columns v2 added) and checks that opening it runs the v1 -> v2 upgrade.
func TestUpgradeFromV1(t *testing.T) {
	eachUpgradedFrom(t, 1, nil, func(ctx context.Context, t *testing.T, upgraded *database.Database) {
		if _, err := upgraded.MXEvent.InsertMany(ctx, []*database.NewMXEvent{{EventID: "$e", RoomID: "!r:x", Data: []byte("{}")}}); err != nil {
			t.Errorf("mx_event after upgrade: %v", err)
		}
		if err := upgraded.PendingCm.Insert(ctx, &database.PendingCommand{Txn: "$t", ConnectorID: "c", PortalKey: database.PortalKey{LoginID: "l", ChatID: "c"}, RoomID: "!r:x", Op: "send_message", Data: []byte("{}"), MXSeq: 1}); err != nil {
			t.Errorf("pending_command after upgrade: %v", err)
		}
	})
}

// TestUpgradeFromV2 takes a database back to v2 (without in_doubt_send) and
// checks that opening it adds the table.
func TestUpgradeFromV2(t *testing.T) {
	eachUpgradedFrom(t, 2, nil, func(ctx context.Context, t *testing.T, upgraded *database.Database) {
		send := &database.InDoubtSend{TxnID: "t1", RoomID: "!r:x", PortalKey: database.PortalKey{LoginID: "l", ChatID: "c"},
			RemoteID: "m1", EventType: "m.room.message", StartedAt: time.UnixMilli(1000)}
		if err := upgraded.InDoubt.Begin(ctx, send); err != nil {
			t.Fatal(err)
		}
		if err := upgraded.InDoubt.SetEventID(ctx, "t1", "$e"); err != nil {
			t.Fatal(err)
		}
		// A new attempt starts over: new start time, no answer yet.
		send.StartedAt = time.UnixMilli(2000)
		if err := upgraded.InDoubt.Begin(ctx, send); err != nil {
			t.Fatal(err)
		}
		got, err := upgraded.InDoubt.Get(ctx, "t1")
		if err != nil || got == nil || got.EventID != "" || got.StartedAt.UnixMilli() != 2000 || got.PortalKey.ChatID != "c" {
			t.Fatalf("marker after a second Begin = %+v, %v", got, err)
		}
		if err = upgraded.InDoubt.Prune(ctx, time.UnixMilli(3000)); err != nil {
			t.Fatal(err)
		}
		if got, _ = upgraded.InDoubt.Get(ctx, "t1"); got != nil {
			t.Error("old marker not pruned")
		}
	})
}

// TestLoginKeepsItsOwner: announcing an existing login for another Matrix
// user changes nothing; the same owner may update it.
func TestLoginKeepsItsOwner(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		stored, err := db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x", Name: "A"})
		if err != nil || !stored {
			t.Fatalf("first upsert: %v %v", stored, err)
		}
		stored, err = db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c2", MatrixUser: "@m:x", Name: "M"})
		if err != nil || stored {
			t.Fatalf("upsert for another owner: stored %v, err %v; want refused", stored, err)
		}
		stored, err = db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c2", MatrixUser: "@a:x", Name: "M"})
		if err != nil || stored {
			t.Fatalf("upsert from another connector: stored %v, err %v; want refused", stored, err)
		}
		l, err := db.Login.Get(ctx, "l1")
		if err != nil || l.MatrixUser != "@a:x" || l.ConnectorID != "c" || l.Name != "A" {
			t.Fatalf("login after a refused move: %+v, %v", l, err)
		}
		stored, err = db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x", Name: "A2", State: "connected"})
		if err != nil || !stored {
			t.Fatalf("same owner's update: %v %v", stored, err)
		}
		if l, _ = db.Login.Get(ctx, "l1"); l.Name != "A2" || l.State != "connected" {
			t.Fatalf("update not stored: %+v", l)
		}
	})
}

// TestLoginUpsertWithoutState: a hello that says no state keeps the stored
// one and its start; one that says a state replaces it. The same for the
// login's name. The point where
// the login was logged out only moves forward.
func TestLoginUpsertWithoutState(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		login := &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x", State: "connected"}
		if stored, err := db.Login.Upsert(ctx, login); err != nil || !stored {
			t.Fatal(stored, err)
		}
		if err := db.Login.SetState(ctx, "l1", "bad_credentials"); err != nil {
			t.Fatal(err)
		}
		if err := db.Login.SetEnded(ctx, "l1", 7); err != nil {
			t.Fatal(err)
		}
		before, _ := db.Login.Get(ctx, "l1")
		if stored, err := db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x", Name: "A"}); err != nil || !stored {
			t.Fatal(stored, err)
		}
		got, err := db.Login.Get(ctx, "l1")
		if err != nil || got.State != "bad_credentials" || !got.StateSince.Equal(before.StateSince) || got.Name != "A" || got.EndedSeq != 7 {
			t.Fatalf("after a hello without state = %+v, %v; want bad_credentials since %v, ended at 7", got, err, before.StateSince)
		}
		// An older end point does not move it back; a newer one does.
		if err = db.Login.SetEnded(ctx, "l1", 3); err != nil {
			t.Fatal(err)
		}
		if got, _ = db.Login.Get(ctx, "l1"); got.EndedSeq != 7 {
			t.Errorf("ended_seq moved back to %d", got.EndedSeq)
		}
		if stored, err := db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x", State: "connected", EndedSeq: 9}); err != nil || !stored {
			t.Fatal(stored, err)
		}
		if got, _ = db.Login.Get(ctx, "l1"); got.State != "connected" || got.EndedSeq != 9 {
			t.Fatalf("after a hello with a state = %+v; want connected, ended at 9", got)
		}
		// Nor does a hello without a name blank the stored name.
		if stored, err := db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x", State: "connected"}); err != nil || !stored {
			t.Fatal(stored, err)
		}
		if got, _ = db.Login.Get(ctx, "l1"); got.Name != "A" {
			t.Errorf("after a hello without a name, name = %q, want A", got.Name)
		}
		if stored, err := db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x", Name: "B"}); err != nil || !stored {
			t.Fatal(stored, err)
		}
		if got, _ = db.Login.Get(ctx, "l1"); got.Name != "B" {
			t.Errorf("after a hello with name B, name = %q", got.Name)
		}
	})
}

// latestVersion is the schema version of 00-latest.sql.
const latestVersion = 17

// TestUpgradeToV4 takes a database back to before v4 (without the login
// alert columns) and checks that opening it adds them: a login stored before
// keeps its state and gets its state time, last event and alert.
func TestUpgradeToV4(t *testing.T) {
	eachUpgradedFrom(t, 3, []string{
		"INSERT INTO login (id, connector_id, matrix_user, name, state) VALUES ('old', 'c', '@a:x', 'Old', 'connected')",
	}, func(ctx context.Context, t *testing.T, upgraded *database.Database) {
		old, err := upgraded.Login.Get(ctx, "old")
		if err != nil || old == nil || old.State != "connected" || !old.StateSince.IsZero() || old.Alerted != "" {
			t.Fatalf("login kept across the upgrade = %+v, %v", old, err)
		}
		if err = upgraded.Login.SetState(ctx, "old", "disconnected"); err != nil {
			t.Fatal(err)
		}
		at := time.UnixMilli(5000)
		if err = upgraded.Login.SetLastEvent(ctx, "old", at); err != nil {
			t.Fatal(err)
		}
		if err = upgraded.Login.SetAlerted(ctx, "old", "disconnected"); err != nil {
			t.Fatal(err)
		}
		got, err := upgraded.Login.Get(ctx, "old")
		if err != nil || got.StateSince.IsZero() || !got.LastEvent.Equal(at) || got.Alerted != "disconnected" {
			t.Fatalf("login after writes = %+v, %v", got, err)
		}
		since := got.StateSince
		// The same state again keeps its start; a hello that repeats it too.
		if err = upgraded.Login.SetState(ctx, "old", "disconnected"); err != nil {
			t.Fatal(err)
		}
		if stored, err := upgraded.Login.Upsert(ctx, &database.Login{ID: "old", ConnectorID: "c", MatrixUser: "@a:x", State: "disconnected"}); err != nil || !stored {
			t.Fatal(stored, err)
		}
		if got, _ = upgraded.Login.Get(ctx, "old"); !got.StateSince.Equal(since) {
			t.Errorf("state_since moved from %v to %v without a state change", since, got.StateSince)
		}
	})
}

// TestUpgradeFromV4 takes a database back to v4 (without backfill_pending)
// with a portal in it, and checks that the upgrade adds the table without
// queueing a backfill for that portal, while a new portal gets one.
func TestUpgradeFromV4(t *testing.T) {
	eachUpgradedFrom(t, 4, []string{
		"INSERT INTO login (id, connector_id, matrix_user) VALUES ('l', 'c', '@u:x')",
		"INSERT INTO portal (login_id, chat_id, contact_id, created_at) VALUES ('l', 'old', 'old', 1)",
	}, func(ctx context.Context, t *testing.T, upgraded *database.Database) {
		old := database.PortalKey{LoginID: "l", ChatID: "old"}
		if pending, err := upgraded.Backfill.Pending(ctx, old); err != nil || pending {
			t.Fatalf("portal from before the upgrade pending = %v, %v; want false", pending, err)
		}
		key := database.PortalKey{LoginID: "l", ChatID: "new"}
		if _, err := upgraded.Portal.GetOrCreate(ctx, key, "new"); err != nil {
			t.Fatal(err)
		}
		if pending, err := upgraded.Backfill.Pending(ctx, key); err != nil || !pending {
			t.Fatalf("new portal pending = %v, %v; want true", pending, err)
		}
		if err := upgraded.Backfill.Done(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := upgraded.Portal.GetOrCreate(ctx, key, "new"); err != nil {
			t.Fatal(err)
		}
		if pending, _ := upgraded.Backfill.Pending(ctx, key); pending {
			t.Fatal("an existing portal was queued for backfill again")
		}
	})
}

// eachUpgradedFrom runs test on each database target taken back to schema
// version, with setup's rows in it, and upgraded again (reopenFrom): what
// testdb.EachDatabase is for a new database, for the upgrade tests.
func eachUpgradedFrom(t *testing.T, version int, setup []string, test func(ctx context.Context, t *testing.T, upgraded *database.Database)) {
	t.Helper()
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		test(context.Background(), t, reopenFrom(t, target, version, setup...))
	})
}

// undoUpgrade holds, for each schema version after the first, the
// statements that take a database at that version back to the one before:
// upgrades/NN-*.sql in reverse.
var undoUpgrade = map[int][]string{
	2: {
		"DROP INDEX IF EXISTS mx_event_pending_idx",
		"ALTER TABLE pending_command DROP COLUMN mx_seq",
		"ALTER TABLE mx_event DROP COLUMN received_at",
		"CREATE INDEX mx_event_pending_idx ON mx_event (done, seq)",
	},
	3: {"DROP TABLE in_doubt_send"},
	4: {
		"ALTER TABLE login DROP COLUMN state_since",
		"ALTER TABLE login DROP COLUMN last_event_at",
		"ALTER TABLE login DROP COLUMN alerted",
	},
	5:  {"DROP TABLE backfill_pending", "DROP TABLE login_sync_pending"},
	6:  {"DROP TABLE ghost_device", "DROP TABLE ghost_cross_signing"},
	7:  {"DROP TABLE encrypted_media"},
	8:  {"DROP INDEX portal_contact_idx"},
	9:  {"ALTER TABLE ghost_device DROP COLUMN keys_checked"},
	10: {"DROP TABLE double_puppet_sync"},
	11: {"DROP TABLE early_redaction"},
	12: {"ALTER TABLE pending_command DROP COLUMN handed"},
	13: {"ALTER TABLE pending_command DROP COLUMN target_mx"},
	14: {"ALTER TABLE message DROP COLUMN text_tail"},
	15: {"ALTER TABLE login DROP COLUMN ended_seq"},
	// SQLite kept the key.
	16: {postgresOnly + `ALTER TABLE message ADD CONSTRAINT message_portal_fkey FOREIGN KEY (login_id, chat_id)
		REFERENCES portal (login_id, chat_id) ON DELETE CASCADE ON UPDATE CASCADE`},
	17: {
		"DROP INDEX inbox_pending_idx", "CREATE INDEX inbox_pending_idx ON inbox (done, connector_id, seq)",
		"DROP INDEX mx_event_pending_idx", "CREATE INDEX mx_event_pending_idx ON mx_event (done, seq)",
	},
}

// postgresOnly starts an undoUpgrade statement that SQLite skips.
const postgresOnly = "postgres only: "

// reopenFrom takes a new database back to schema version (newest upgrade
// undone first), runs setup there (rows as a bridge of that version wrote
// them), then opens it again, which runs the upgrades, and checks it is at
// the latest version.
func reopenFrom(t *testing.T, target testdb.Target, version int, setup ...string) *database.Database {
	t.Helper()
	ctx := context.Background()
	db := testdb.Open(t, target)
	var downgrade []string
	for v := latestVersion; v > version; v-- {
		undo := undoUpgrade[v]
		if undo == nil {
			t.Fatalf("no undoUpgrade for schema version %d", v)
		}
		downgrade = append(downgrade, undo...)
	}
	downgrade = append(append(downgrade, setup...), fmt.Sprintf("UPDATE version SET version=%d", version))
	for _, stmt := range downgrade {
		stmt, pgOnly := strings.CutPrefix(stmt, postgresOnly)
		if pgOnly && target.Type != testdb.TypePostgres {
			continue
		}
		if _, err := db.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	_ = db.Close()
	upgraded := testdb.Open(t, target)
	if v, err := schemaVersion(ctx, upgraded); err != nil || v != latestVersion {
		t.Fatalf("version after upgrade = %d, %v; want %d", v, err, latestVersion)
	}
	return upgraded
}

// TestSQLiteFileIsPrivate: the bridge's SQLite file and its WAL are
// readable by their owner only, whatever the umask allows.
func TestSQLiteFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bridge.db")
	for _, dialect := range []string{"sqlite3-fk-wal", "sqlite3"} {
		_ = os.Remove(path)
		db, err := database.Open(context.Background(), dialect, "file:"+path+"?_txlock=immediate", zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Login.Upsert(context.Background(), &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x"}); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: %s has mode %v, want 0600", dialect, e.Name(), info.Mode().Perm())
			}
		}
		_ = db.Close()
		for _, suffix := range []string{"-wal", "-shm"} {
			_ = os.Remove(path + suffix)
		}
	}
}

// TestWarnsWhenCommitsAreUnflushed: a PostgreSQL database whose sessions
// commit without the WAL flush by default (synchronous_commit off) is
// named at start, since the intake's acks rely on that flush; the default
// is not, and neither is SQLite.
func TestWarnsWhenCommitsAreUnflushed(t *testing.T) {
	ctx := context.Background()
	if off, err := testdb.Open(t, testdb.SQLite(t)).CommitsUnflushed(ctx); err != nil || off {
		t.Fatalf("SQLite: %v, %v", off, err)
	}
	target := testdb.Postgres(t)
	db := testdb.Open(t, target)
	if off, err := db.CommitsUnflushed(ctx); err != nil || off {
		t.Fatalf("PostgreSQL by default: %v, %v", off, err)
	}
	var name string
	if err := db.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q SET synchronous_commit = off`, name)); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	again, err := database.Open(ctx, target.Type, target.URI, zerolog.New(&logged))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if off, err := again.CommitsUnflushed(ctx); err != nil || !off {
		t.Fatalf("PostgreSQL with synchronous_commit off: %v, %v", off, err)
	}
	if !strings.Contains(logged.String(), "synchronous_commit is off") {
		t.Fatalf("nothing said at start: %s", logged.String())
	}
}

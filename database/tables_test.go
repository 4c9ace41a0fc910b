package database_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestInboxInsertManyChunks: a batch larger than one multi-row INSERT comes
// back whole and in order, and an empty batch is no statement at all.
func TestInboxInsertManyChunks(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		if err := db.Inbox.InsertMany(ctx, nil); err != nil {
			t.Fatalf("empty batch: %v", err)
		}
		const n = 250 // three statements of at most 100 rows
		rows := make([]*database.InboxRow, n)
		for i := range rows {
			rows[i] = &database.InboxRow{ConnectorID: "c", Seq: int64(i + 1), LoginID: "l",
				ChatID: fmt.Sprint("chat", i%3), Kind: "message", Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}
		}
		if err := db.Inbox.InsertMany(ctx, rows); err != nil {
			t.Fatal(err)
		}
		got, err := db.Inbox.Pending(ctx, "c", 0, n+1)
		if err != nil || len(got) != n {
			t.Fatalf("pending = %d rows, %v; want %d", len(got), err, n)
		}
		for i, r := range got {
			if r.Seq != int64(i+1) || r.ChatID != rows[i].ChatID || string(r.Data) != string(rows[i].Data) {
				t.Fatalf("row %d = %+v, want %+v", i, r, rows[i])
			}
		}
		if conns, err := db.Inbox.Connectors(ctx); err != nil || !slices.Equal(conns, []string{"c"}) {
			t.Fatalf("connectors = %v, %v", conns, err)
		}
		if err := db.Inbox.InsertMany(ctx, rows[:1]); err == nil {
			t.Fatal("inserting seq 1 again succeeded, want a conflict")
		}
	})
}

// TestInboxInsertManySizes: batches of every shape of chunking (SQLite
// splits them into statements of a power of two rows) stored in a
// transaction, as the intake does, come back whole and in order.
func TestInboxInsertManySizes(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		seq := int64(0)
		for _, n := range []int{1, 2, 3, 7, 63, 64, 65, 99, 127, 128, 200} {
			rows := make([]*database.InboxRow, n)
			for i := range rows {
				seq++
				rows[i] = &database.InboxRow{ConnectorID: "c", Seq: seq, LoginID: "l",
					ChatID: fmt.Sprint("chat", seq%5), Kind: "message", Data: []byte(fmt.Sprintf(`{"n":%d}`, seq))}
			}
			if err := db.DoTxn(ctx, nil, func(ctx context.Context) error { return db.Inbox.InsertMany(ctx, rows) }); err != nil {
				t.Fatalf("batch of %d: %v", n, err)
			}
			got, err := db.Inbox.Pending(ctx, "c", rows[0].Seq-1, n+1)
			if err != nil || len(got) != n {
				t.Fatalf("batch of %d: pending = %d rows, %v", n, len(got), err)
			}
			for i, r := range got {
				if r.Seq != rows[i].Seq || r.ChatID != rows[i].ChatID || string(r.Data) != string(rows[i].Data) {
					t.Fatalf("batch of %d, row %d = %+v, want %+v", n, i, r, rows[i])
				}
			}
		}
	})
}

// TestCleanedRoomsAndDirectUsers: the cleaned_room queries in one place, and
// the users with a stake in m.direct, who include those whose login is gone.
func TestCleanedRoomsAndDirectUsers(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		storeLogin(ctx, t, db, "")
		if err := db.Cleaned.Add(ctx, "@b:x", "!r1:x", "@ghost:x"); err != nil {
			t.Fatal(err)
		}
		if err := db.Cleaned.Add(ctx, "@b:x", "!r2:x", "@ghost:x"); err != nil {
			t.Fatal(err)
		}
		c, err := db.Cleaned.Get(ctx, "@b:x", "!r1:x")
		if err != nil || c == nil || c.GhostMXID != "@ghost:x" || c.CleanedAt.IsZero() {
			t.Fatalf("get = %+v, %v", c, err)
		}
		if c, err := db.Cleaned.Get(ctx, "@a:x", "!r1:x"); err != nil || c != nil {
			t.Fatalf("get of another user's room = %+v, %v; want nil", c, err)
		}
		if err := db.Cleaned.Delete(ctx, "@b:x", "!r2:x"); err != nil {
			t.Fatal(err)
		}
		rooms, err := db.Cleaned.ByUser(ctx, "@b:x")
		if err != nil || len(rooms) != 1 || !rooms["!r1:x"] {
			t.Fatalf("by user = %v, %v", rooms, err)
		}
		users, err := db.Login.DirectUsers(ctx)
		slices.Sort(users)
		if err != nil || !slices.Equal(users, []id.UserID{"@a:x", "@b:x"}) {
			t.Fatalf("direct users = %v, %v", users, err)
		}
	})
}

// TestLoginSyncFollowsItsLogin: pending login syncs are listed per
// connector and go with their login.
func TestLoginSyncFollowsItsLogin(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		for _, l := range []*database.Login{
			{ID: "l2", ConnectorID: "c", MatrixUser: "@a:x"},
			{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x"},
			{ID: "l3", ConnectorID: "d", MatrixUser: "@a:x"},
		} {
			if _, err := db.Login.Upsert(ctx, l); err != nil {
				t.Fatal(err)
			}
			if err := db.LoginSync.Add(ctx, l.ID); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.LoginSync.Add(ctx, "l1"); err != nil {
			t.Fatalf("adding again: %v", err)
		}
		if got, err := db.LoginSync.ByConnector(ctx, "c"); err != nil || !slices.Equal(got, []string{"l1", "l2"}) {
			t.Fatalf("by connector = %v, %v", got, err)
		}
		if err := db.LoginSync.Done(ctx, "l1"); err != nil {
			t.Fatal(err)
		}
		if err := db.Login.Delete(ctx, "l2"); err != nil {
			t.Fatal(err)
		}
		if got, err := db.LoginSync.ByConnector(ctx, "c"); err != nil || len(got) != 0 {
			t.Fatalf("after done and delete = %v, %v; want none", got, err)
		}
		if got, err := db.LoginSync.ByConnector(ctx, "d"); err != nil || !slices.Equal(got, []string{"l3"}) {
			t.Fatalf("other connector = %v, %v", got, err)
		}
	})
}

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

// TestDoublePuppetSyncPosition: a database from before v10 gets the
// double_puppet_sync table; a position is "" until stored, the newest put
// wins, and a delete forgets it.
func TestDoublePuppetSyncPosition(t *testing.T) {
	eachUpgradedFrom(t, 9, nil, func(ctx context.Context, t *testing.T, db *database.Database) {
		get := func() string {
			t.Helper()
			pos, err := db.DPSync.Get(ctx, "@a:x")
			if err != nil {
				t.Fatal(err)
			}
			return pos
		}
		if pos := get(); pos != "" {
			t.Fatalf("position before any put = %q, want none", pos)
		}
		for _, pos := range []string{"s1", "s2"} {
			if err := db.DPSync.Put(ctx, "@a:x", pos); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.DPSync.Put(ctx, "@b:x", "other"); err != nil {
			t.Fatal(err)
		}
		if pos := get(); pos != "s2" {
			t.Fatalf("position = %q, want the newest, s2", pos)
		}
		if err := db.DPSync.Delete(ctx, "@a:x"); err != nil {
			t.Fatal(err)
		}
		if pos := get(); pos != "" {
			t.Fatalf("position after delete = %q, want none", pos)
		}
		if pos, err := db.DPSync.Get(ctx, "@b:x"); err != nil || pos != "other" {
			t.Fatalf("the other user's position = %q, %v; want it kept", pos, err)
		}
	})
}

// TestEarlyRedactions: a noted event is known until pruned, a second note
// of it changes nothing, and Count follows.
func TestEarlyRedactions(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		for _, redaction := range []id.EventID{"$red1", "$red2"} {
			if err := db.EarlyRed.Add(ctx, "$gone", "!r:x", redaction); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := db.EarlyRed.Count(ctx); err != nil || n != 1 {
			t.Fatalf("count = %d, %v; want 1", n, err)
		}
		for _, c := range []struct {
			ev   id.EventID
			room id.RoomID
			want id.EventID
		}{{"$gone", "!r:x", "$red1"}, {"$kept", "!r:x", ""}, {"$gone", "!other:x", ""}} {
			if got, err := db.EarlyRed.Get(ctx, c.ev, c.room); err != nil || got != c.want {
				t.Errorf("Get(%s, %s) = %q, %v; want %q", c.ev, c.room, got, err, c.want)
			}
		}
		// A note whose event has a queued command outlives the cutoff.
		if err := db.EarlyRed.Add(ctx, "$queued", "!r:x", "$red3"); err != nil {
			t.Fatal(err)
		}
		if err := db.PendingCm.Insert(ctx, &database.PendingCommand{Txn: "$queued", ConnectorID: "c",
			PortalKey: database.PortalKey{LoginID: "l", ChatID: "c"}, RoomID: "!r:x", Op: "send_message", Data: []byte("{}"), MXSeq: 1}); err != nil {
			t.Fatal(err)
		}
		if err := db.EarlyRed.Prune(ctx, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got, err := db.EarlyRed.Get(ctx, "$gone", "!r:x"); err != nil || got != "" {
			t.Errorf("Get after prune = %q, %v; want none", got, err)
		}
		if got, err := db.EarlyRed.Get(ctx, "$queued", "!r:x"); err != nil || got != "$red3" {
			t.Errorf("the queued event's note after prune = %q, %v; want it kept", got, err)
		}
		if n, err := db.EarlyRed.Count(ctx); err != nil || n != 1 {
			t.Errorf("count after prune = %d, %v; want the queued event's note only", n, err)
		}
		// The same event id noted in another room is a note of its own.
		if err := db.EarlyRed.Add(ctx, "$queued", "!other:x", "$red4"); err != nil {
			t.Fatal(err)
		}
		if got, err := db.EarlyRed.Get(ctx, "$queued", "!other:x"); err != nil || got != "$red4" {
			t.Errorf("note in the other room = %q, %v; want $red4", got, err)
		}
	})
}

// TestPendingCommandHanded: a command is stored as not written to the
// connector unless said otherwise, and MarkHanded records the write; commands
// queued by a bridge from before the column count as written, since that
// bridge may have sent them.
func TestPendingCommandHanded(t *testing.T) {
	eachUpgradedFrom(t, 11, []string{
		"INSERT INTO pending_command (txn, connector_id, login_id, chat_id, room_id, op, data, attempts, created_at, mx_seq) VALUES ('$old', 'c', 'l', 'c', '!r:x', 'send_message', '{}', 0, 1, 1)",
	}, func(ctx context.Context, t *testing.T, db *database.Database) {
		handed := func(txn string) bool {
			t.Helper()
			pc, err := db.PendingCm.Get(ctx, txn)
			if err != nil || pc == nil {
				t.Fatalf("Get(%s) = %+v, %v", txn, pc, err)
			}
			return pc.Handed
		}
		if !handed("$old") {
			t.Error("a command from before the upgrade counts as not written; it may have gone out")
		}
		for _, c := range []*database.PendingCommand{{Txn: "$new"}, {Txn: "$failed", Handed: true}} {
			c.ConnectorID, c.PortalKey, c.RoomID, c.Op, c.Data, c.MXSeq = "c", database.PortalKey{LoginID: "l", ChatID: "c"}, "!r:x", "send_message", []byte("{}"), 2
			if err := db.PendingCm.Insert(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		if handed("$new") || !handed("$failed") {
			t.Errorf("handed after insert: $new %v, $failed %v; want false, true", handed("$new"), handed("$failed"))
		}
		if found, err := db.PendingCm.MarkHanded(ctx, "$new"); err != nil || !found {
			t.Fatalf("MarkHanded($new) = %v, %v", found, err)
		}
		if !handed("$new") {
			t.Error("MarkHanded did not stick")
		}
		if found, err := db.PendingCm.MarkHanded(ctx, "$never"); err != nil || found {
			t.Errorf("MarkHanded of a command not stored = %v, %v; want not found", found, err)
		}
	})
}

// TestPendingCommandsForTarget: DeleteFor drops the edits and reactions
// of the chat waiting for a queued message, in its room and in one the
// chat moved to (an upgrade), and keeps replies to it, other chats'
// commands and the message itself.
func TestPendingCommandsForTarget(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		chat := database.PortalKey{LoginID: "l", ChatID: "c"}
		for _, c := range []*database.PendingCommand{
			{Txn: "$m", Op: "send_message", RoomID: "!r:x"},
			{Txn: "$edit", Op: "edit_message", RoomID: "!r:x", TargetMX: "$m"},
			{Txn: "$react", Op: "react", RoomID: "!r:x", TargetMX: "$m"},
			{Txn: "$reply", Op: "send_message", RoomID: "!r:x", TargetMX: "$m"},
			{Txn: "$upgraded", Op: "react", RoomID: "!new:x", TargetMX: "$m"},
			{Txn: "$otherchat", Op: "react", RoomID: "!other:x", TargetMX: "$m", PortalKey: database.PortalKey{LoginID: "l", ChatID: "d"}},
		} {
			if c.PortalKey == (database.PortalKey{}) {
				c.PortalKey = chat
			}
			c.ConnectorID, c.Data, c.MXSeq = "c", []byte("{}"), 1
			if err := db.PendingCm.Insert(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		if pc, err := db.PendingCm.Get(ctx, "$edit"); err != nil || pc == nil || pc.TargetMX != "$m" {
			t.Fatalf("Get($edit) = %+v, %v; want its target kept", pc, err)
		}
		if err := db.PendingCm.DeleteFor(ctx, "$m", chat); err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, room := range []id.RoomID{"!r:x", "!new:x", "!other:x"} {
			pcs, err := db.PendingCm.ByRoom(ctx, room)
			if err != nil {
				t.Fatal(err)
			}
			for _, pc := range pcs {
				left = append(left, pc.Txn)
			}
		}
		slices.Sort(left)
		if want := []string{"$m", "$otherchat", "$reply"}; !slices.Equal(left, want) {
			t.Errorf("left after DeleteFor = %v, want %v", left, want)
		}
	})
}

// TestClearManagementRoom: every user whose management room is the room
// forgets it, and nobody else. (A review (helper agent) found the bot,
// kicked by someone else, cleared the kicker's record instead.)
func TestClearManagementRoom(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		for user, room := range map[id.UserID]id.RoomID{"@a:x": "!r:x", "@b:x": "!r:x", "@c:x": "!other:x"} {
			if err := db.User.SetManagementRoom(ctx, user, room); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.User.ClearManagementRoom(ctx, "!r:x"); err != nil {
			t.Fatal(err)
		}
		for user, want := range map[id.UserID]id.RoomID{"@a:x": "", "@b:x": "", "@c:x": "!other:x"} {
			if u, err := db.User.Get(ctx, user); err != nil || u == nil || u.ManagementRoom != want {
				t.Errorf("%s after clearing !r:x: %+v, %v; want management room %q", user, u, err, want)
			}
		}
	})
}

// A message's mapping has no foreign key to its portal on PostgreSQL
// (upgrades/15-message-no-fkey.sql), so what the cascade did is the code's.

// TestDeletingAPortalDeletesItsMessages: deleting a portal deletes its
// messages and no other chat's, deleting a login deletes all of its
// messages, on both databases.
func TestDeletingAPortalDeletesItsMessages(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		bob := storeBobPortal(ctx, t, db)
		carol := database.PortalKey{LoginID: "l1", ChatID: "carol"}
		if _, err := db.Portal.GetOrCreate(ctx, carol, "carol"); err != nil {
			t.Fatal(err)
		}
		for _, key := range []database.PortalKey{bob, carol} {
			insertMessages(ctx, t, db, key, 3)
		}
		if err := db.Portal.Delete(ctx, bob); err != nil {
			t.Fatal(err)
		}
		if n := countMessages(ctx, t, db, bob); n != 0 {
			t.Errorf("%d messages of the deleted portal are left", n)
		}
		if n := countMessages(ctx, t, db, carol); n != 3 {
			t.Errorf("the other portal has %d messages, want 3", n)
		}
		if err := db.Login.Delete(ctx, "l1"); err != nil {
			t.Fatal(err)
		}
		if n := countMessages(ctx, t, db, carol); n != 0 {
			t.Errorf("%d messages of the deleted login are left", n)
		}
	})
}

// TestNewPortalForgetsALateMapping: on PostgreSQL a message's result that
// commits after its portal was deleted still stores the mapping (nothing
// refuses it); the chat's next portal starts without it, so the message
// does not count as bridged into the new room. SQLite refuses the mapping.
func TestNewPortalForgetsALateMapping(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		bob := storeBobPortal(ctx, t, db)
		if err := db.Portal.Delete(ctx, bob); err != nil {
			t.Fatal(err)
		}
		err := db.Message.Insert(ctx, lateMessage(bob))
		if db.Dialect != dbutil.Postgres {
			if err == nil {
				t.Fatal("SQLite stored a message of no portal")
			}
			return
		}
		if err != nil {
			t.Fatalf("a late result: %v", err)
		}
		if n := countMessages(ctx, t, db, bob); n != 1 {
			t.Fatalf("%d late mappings stored, want 1", n)
		}
		if _, err = db.Portal.GetOrCreate(ctx, bob, "bob"); err != nil {
			t.Fatal(err)
		}
		if got, err := db.Message.GetPart(ctx, bob, "late", 0); err != nil || got != nil {
			t.Fatalf("the new portal sees the old room's mapping: %+v, %v", got, err)
		}
		// Only a portal that is created anew deletes: asking for it again
		// keeps what it has.
		insertMessages(ctx, t, db, bob, 2)
		if _, err = db.Portal.GetOrCreate(ctx, bob, "bob"); err != nil {
			t.Fatal(err)
		}
		if n := countMessages(ctx, t, db, bob); n != 2 {
			t.Fatalf("the portal has %d messages after GetOrCreate, want 2", n)
		}
	})
}

func insertMessages(ctx context.Context, t *testing.T, db *database.Database, key database.PortalKey, n int) {
	t.Helper()
	for i := range n {
		m := &database.Message{PortalKey: key, RemoteID: fmt.Sprintf("m%d", i), RoomID: "!r:x", SenderID: key.ChatID,
			MXID: id.EventID(fmt.Sprintf("$%s-%s-%d", key.LoginID, key.ChatID, i)), TS: int64(i)}
		if err := db.Message.Insert(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

func lateMessage(key database.PortalKey) *database.Message {
	return &database.Message{PortalKey: key, RemoteID: "late", RoomID: "!old:x", SenderID: key.ChatID, MXID: "$late", TS: 1}
}

func countMessages(ctx context.Context, t *testing.T, db *database.Database, key database.PortalKey) int {
	t.Helper()
	var n int
	err := db.QueryRow(ctx, "SELECT count(*) FROM message WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestInsertMarkingDone: a sent message's mapping and its Matrix event
// marked handled go together; a mapping stored already (an echo that came
// first) stays as it was, and the event is marked all the same.
func TestInsertMarkingDone(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		bob := storeBobPortal(ctx, t, db)
		if _, err := db.MXEvent.InsertMany(ctx, []*database.NewMXEvent{
			{EventID: "$sent", RoomID: "!r:x", Data: []byte(`{}`)}, {EventID: "$again", RoomID: "!r:x", Data: []byte(`{}`)},
		}); err != nil {
			t.Fatal(err)
		}
		rows, err := db.MXEvent.Pending(ctx, 0, 10)
		if err != nil || len(rows) != 2 {
			t.Fatalf("pending events %v, %v", rows, err)
		}
		m := &database.Message{PortalKey: bob, RemoteID: "r1", MXID: "$sent", RoomID: "!r:x", SenderID: "l1", IsMe: true, TS: 5}
		if err = db.Message.InsertMarkingDone(ctx, m, rows[0].Seq); err != nil {
			t.Fatal(err)
		}
		echo := *m
		echo.MXID, echo.TS = "$again", 6
		if err = db.Message.InsertMarkingDone(ctx, &echo, rows[1].Seq); err != nil {
			t.Fatal(err)
		}
		if got, err := db.Message.GetPart(ctx, bob, "r1", 0); err != nil || got == nil || got.MXID != "$sent" || got.TS != 5 {
			t.Errorf("mapping %+v, %v; want the first one's", got, err)
		}
		if left, err := db.MXEvent.Pending(ctx, 0, 10); err != nil || len(left) != 0 {
			t.Errorf("events still pending: %v, %v", left, err)
		}
	})
}

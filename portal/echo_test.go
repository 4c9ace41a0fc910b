package portal

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// afterFirstRead runs a function right after the first read of recogniseEcho,
// standing in for the room's lane storing the command's result at that moment.
type afterFirstRead struct {
	dbutil.DatabaseLogger
	armed bool
	run   func()
}

func (a *afterFirstRead) QueryTiming(ctx context.Context, method, query string, args []any, nrows int, d time.Duration, err error) {
	if a.armed && method == "QueryRow" &&
		(strings.Contains(query, "FROM message WHERE mxid") || strings.Contains(query, "FROM pending_command WHERE txn")) {
		a.armed = false
		a.run()
	}
}

// An echo that arrives while the command's result is being stored must be
// recognised whichever way the two interleave; otherwise the user's own
// message is posted back into the room as a new one.
func TestEchoRacingCommandResult(t *testing.T) {
	testdb.EachDatabase(t, func(ctx context.Context, t *testing.T, db *database.Database) {
		var err error
		key := database.PortalKey{LoginID: "l1", ChatID: "bob"}
		if _, err = db.Login.Upsert(ctx, &database.Login{ID: "l1", ConnectorID: "c", MatrixUser: "@a:x"}); err != nil {
			t.Fatal(err)
		}
		if _, err = db.Portal.GetOrCreate(ctx, key, "bob"); err != nil {
			t.Fatal(err)
		}
		if err = db.Portal.SetRoom(ctx, key, "!r:x"); err != nil {
			t.Fatal(err)
		}
		err = db.PendingCm.Insert(ctx, &database.PendingCommand{
			Txn: "$mine", ConnectorID: "c", PortalKey: key, RoomID: "!r:x", Op: connector.OpSendMessage, Data: []byte("{}"),
		})
		if err != nil {
			t.Fatal(err)
		}
		hook := &afterFirstRead{DatabaseLogger: db.Log, armed: true, run: func() {
			// What commandDone does: mapping in, command out, one transaction.
			err := db.DoTxn(ctx, nil, func(ctx context.Context) error {
				if err := db.Message.Insert(ctx, &database.Message{
					PortalKey: key, RemoteID: "r1", MXID: "$mine", RoomID: "!r:x", SenderID: "l1", IsMe: true, TS: 1,
				}); err != nil {
					return err
				}
				return db.PendingCm.Delete(ctx, "$mine")
			})
			if err != nil {
				t.Error(err)
			}
		}}
		db.Log = hook
		m := &Manager{db: db}
		ev := &connector.Event{Kind: connector.KindMessage, Login: "l1", ID: "r1", Txn: "$mine", TS: 1,
			Chat: &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "bob"}, Sender: &connector.Sender{ID: "l1", IsMe: true}}
		doneCalled := false
		handled, err := m.recogniseEcho(ctx, key, ev, func(context.Context) error { doneCalled = true; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if hook.armed {
			t.Fatal("the hook never ran")
		}
		if !handled || !doneCalled {
			t.Fatalf("echo not recognised (handled=%v, done=%v): it would be posted to the room again", handled, doneCalled)
		}
	})
}

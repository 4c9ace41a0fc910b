package bot

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestListBoundsContactNames: a contact name from the network, stored as
// it came (100 KB here), is cut in the bot's list, whose answer would
// otherwise be larger than an event may be.
func TestListBoundsContactNames(t *testing.T) {
	contacts := []listContact{{id: "bob", room: "!bob:x", name: strings.Repeat("B", 100_000)}}
	for _, size := range listAnswerSizes(t, contacts) {
		if size > 64<<10 {
			t.Errorf("bot's list answer is %d bytes of content; the homeserver refuses it", size)
		}
	}
}

// listContact is a portal of alice's for listAnswerSizes.
type listContact struct {
	id, name string
	room     id.RoomID
}

// listAnswerSizes runs alice's `list` with a portal and ghost for each of
// contacts, and returns the content size of each notice the bot sent.
func listAnswerSizes(t *testing.T, contacts []listContact) []int {
	t.Helper()
	ctx := context.Background()
	db := testdb.Open(t, testdb.SQLite(t))
	cfg := config.Default()
	cfg.Homeserver.Domain = "x"
	hs := fakematrix.New("x", "@bot:x")
	login := &database.Login{ID: "l1", ConnectorID: "c1", MatrixUser: "@alice:x", State: connector.LoginConnected}
	if _, err := db.Login.Upsert(ctx, login); err != nil {
		t.Fatal(err)
	}
	for _, c := range contacts {
		key := database.PortalKey{LoginID: "l1", ChatID: c.id}
		if _, err := db.Portal.GetOrCreate(ctx, key, c.id); err != nil {
			t.Fatal(err)
		}
		if err := db.Portal.SetRoom(ctx, key, c.room); err != nil {
			t.Fatal(err)
		}
		if err := db.Ghost.Put(ctx, &database.Ghost{ID: c.id, MXID: id.UserID("@dm_" + c.id + ":x"), Name: c.name, NameSet: true, Registered: true}); err != nil {
			t.Fatal(err)
		}
	}
	b := New(cfg, db, nil, hs.Bot(), nil, nil, zerolog.Nop())
	if err := b.cmdList(ctx, &request{user: "@alice:x", roomID: "!mgmt:x", eventID: id.EventID("$cmd")}); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, c := range hs.Calls("SendMessageEvent") {
		raw, _ := json.Marshal(c.Content)
		sizes = append(sizes, len(raw))
	}
	return sizes
}

package portal

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// The unit tests in decisions_*_test.go drive the portal manager against a
// recording fake of Matrix (internal/fakematrix) and a SQLite database, with
// no homeserver and no connector: they check what the portal decides to do
// on Matrix. The end-to-end tests in bridge/ check what a user sees.

const (
	unitUser    = id.UserID("@alice:x")
	unitGhost   = id.UserID("@dm_bob:x")
	unitConnID  = "c1"
	unitLoginID = "l1"
)

// unitConn is the connector side: every connector is up unless down is
// set, and commands are answered by answer (nil: an empty result) and
// recorded.
type unitConn struct {
	mu     sync.Mutex
	ops    []string
	answer func(op string, cmd *connector.Command) (*connector.Result, error)
	// network, when set, replaces the hello's network name.
	network string
	// caps are the hello's capabilities (none by default).
	caps connector.Capabilities
	// down makes every connector offline.
	down atomic.Bool
}

func (c *unitConn) Command(ctx context.Context, connectorID, op string, cmd *connector.Command) (*connector.Result, error) {
	c.mu.Lock()
	c.ops = append(c.ops, op)
	answer := c.answer
	c.mu.Unlock()
	if answer != nil {
		return answer(op, cmd)
	}
	return &connector.Result{}, nil
}

func (c *unitConn) Connected(string) bool { return !c.down.Load() }

func (c *unitConn) Hello(string) (*connector.Hello, bool) {
	name := "TestNet"
	if c.network != "" {
		name = c.network
	}
	// The hello names the test login for its user, as a connector's names
	// the logins it holds (a login it does not name is not held: see
	// loginStatus).
	return &connector.Hello{Network: connector.Network{ID: "testnet", Name: name}, Capabilities: c.caps,
		Logins: []connector.Login{{ID: unitLoginID, MatrixUser: string(unitUser), State: connector.LoginConnected}}}, true
}

type unit struct {
	m     *Manager
	hs    *fakematrix.Homeserver
	db    *database.Database
	conn  *unitConn
	login *database.Login
	// queries lets a test act between two database queries.
	queries *queryHook
}

// newUnit builds a portal manager on a fresh SQLite database and a fake
// homeserver. With doublePuppet the user's server has an as_token secret,
// so the user's double puppet joins and edits m.direct.
func newUnit(t *testing.T, doublePuppet bool) *unit {
	t.Helper()
	return newUnitOn(t, testdb.SQLite(t), doublePuppet)
}

// newUnitOn is newUnit on the database of target.
func newUnitOn(t *testing.T, target testdb.Target, doublePuppet bool) *unit {
	t.Helper()
	ctx := context.Background()
	db := testdb.Open(t, target)
	// Set before the manager runs: its goroutines read db.Log.
	queries := &queryHook{DatabaseLogger: db.Log}
	db.Log = queries
	cfg := config.Default()
	cfg.Homeserver.Domain = "x"
	// Never contacted: every Matrix call goes to the fake.
	cfg.Homeserver.Address = "http://127.0.0.1:9"
	cfg.Appservice.ID, cfg.Appservice.ASToken, cfg.Appservice.HSToken = "dmb", "as", "hs"
	cfg.Appservice.Bot.Username = "dmbridgebot"
	cfg.Permissions = config.Permissions{"x": config.LevelUser}
	cfg.Bridge.Backfill.InitialLimit = 0
	if doublePuppet {
		cfg.DoublePuppet.Secrets = map[string]string{"x": "as_token:dp"}
	}
	link, err := appservice.New(ctx, cfg, db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	hs := fakematrix.New("x", link.BotMXID())
	m := NewManager(cfg, db, link, hs, zerolog.Nop())
	t.Cleanup(func() { m.cancel() })
	conn := &unitConn{}
	m.SetConnector(conn)
	login := &database.Login{ID: unitLoginID, ConnectorID: unitConnID, MatrixUser: unitUser, State: connector.LoginConnected}
	if _, err = db.Login.Upsert(ctx, login); err != nil {
		t.Fatal(err)
	}
	return &unit{m: m, hs: hs, db: db, conn: conn, login: login, queries: queries}
}

// shortRetries has the manager retry after 20 ms where it waits 500 ms
// (backoff's first step) or a second (flushLater): for tests that wait
// out retries and check only what the retries do. Called before the test
// starts anything that may retry.
func (u *unit) shortRetries() {
	u.m.retryFirst, u.m.flushRetry = 20*time.Millisecond, 20*time.Millisecond
}

// queryHook is the unit database's query log: after each query its hook,
// when set, sees the query and its arguments, on the goroutine that ran it.
// A test can change the database there, between two queries of the code
// under test.
type queryHook struct {
	dbutil.DatabaseLogger
	hook atomic.Pointer[func(query string, args []any)]
}

func (q *queryHook) QueryTiming(ctx context.Context, method, query string, args []any, nrows int, d time.Duration, err error) {
	q.DatabaseLogger.QueryTiming(ctx, method, query, args, nrows, d, err)
	if f := q.hook.Load(); f != nil {
		(*f)(query, args)
	}
}

// newUnitPortal is newUnit (without double puppet) whose chat with bob
// has its portal, made by bob's first message m1, "hello".
func newUnitPortal(t *testing.T) (*unit, *database.Portal) {
	t.Helper()
	u := newUnit(t, false)
	u.remote(t, fromBob("m1", "hello"))
	return u, u.portal(t)
}

// remote applies a connector event of the test login and fails the test if
// it returns an error or does not mark the event done.
func (u *unit) remote(t *testing.T, ev *connector.Event) {
	t.Helper()
	if err := u.tryRemote(ev); err != nil {
		t.Fatalf("apply %s %s: %v", ev.Kind, ev.ID, err)
	}
}

func (u *unit) tryRemote(ev *connector.Event) error {
	if ev.Login == "" {
		ev.Login = unitLoginID
	}
	if ev.Chat == nil {
		ev.Chat = &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "bob"}
	}
	done := false
	err := u.m.applyRemote(context.Background(), unitConnID, ev, func(context.Context) error { done = true; return nil })
	if err == nil && !done {
		return errNotDone
	}
	return err
}

var errNotDone = &notDone{}

type notDone struct{}

func (*notDone) Error() string { return "the event was not marked done" }

// fromBob is a message from the contact bob.
func fromBob(remoteID, text string) *connector.Event {
	return &connector.Event{Kind: connector.KindMessage, ID: remoteID, Text: text, TS: 1000,
		Sender: &connector.Sender{ID: "bob"}}
}

// sends returns the message events posted, in order.
func (u *unit) sends() []fakematrix.Call {
	var out []fakematrix.Call
	for _, c := range u.hs.Calls("SendMessageEvent") {
		if c.EventType == event.EventMessage || c.EventType == event.EventReaction {
			out = append(out, c)
		}
	}
	return out
}

// portal returns the stored portal of chat bob.
func (u *unit) portal(t *testing.T) *database.Portal {
	t.Helper()
	p, err := u.db.Portal.Get(context.Background(), database.PortalKey{LoginID: unitLoginID, ChatID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// direct returns the room lists of the user's m.direct as the fake holds
// it; values that are not room lists are left out.
func (u *unit) direct(t *testing.T) map[string][]id.RoomID {
	t.Helper()
	raw := u.hs.AccountData(unitUser, event.AccountDataDirectChats.Type)
	var entries map[string]json.RawMessage
	if raw != nil {
		if err := json.Unmarshal(raw, &entries); err != nil {
			t.Fatalf("m.direct is not an object: %s", raw)
		}
	}
	out := map[string][]id.RoomID{}
	for k, v := range entries {
		var rooms []id.RoomID
		if json.Unmarshal(v, &rooms) == nil {
			out[k] = rooms
		}
	}
	return out
}

// opsFromNow forgets the commands the connector got so far, answers every
// later one with an empty result, and returns what lists those later ones.
func (u *unit) opsFromNow() (ops func() []string) {
	u.conn.mu.Lock()
	defer u.conn.mu.Unlock()
	u.conn.ops = nil
	u.conn.answer = func(string, *connector.Command) (*connector.Result, error) {
		return &connector.Result{}, nil
	}
	return func() []string {
		u.conn.mu.Lock()
		defer u.conn.mu.Unlock()
		return slices.Clone(u.conn.ops)
	}
}

// drainLanes waits, 2 s at the most, until no lane has work queued or
// running, so that a test can then check that something did not happen.
func (u *unit) drainLanes() {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && u.m.lanes.pending() > 0; {
		time.Sleep(10 * time.Millisecond)
	}
}

// userTyping is the user's typing notification in roomID, as the
// homeserver pushes it.
func (u *unit) userTyping(roomID id.RoomID) {
	typing := &event.Event{Type: event.EphemeralEventTyping, RoomID: roomID,
		Content: event.Content{Parsed: &event.TypingEventContent{UserIDs: []id.UserID{unitUser}}}}
	u.m.MatrixEphemeral(context.Background(), &appservice.EphemeralEvent{Event: typing})
}

// field reads a nested field of recorded content ("m.relates_to.event_id").
func field(content map[string]any, path ...string) any {
	var cur any = content
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// TestMXNoticeTxn: a notice about the user's event is named by its intake
// row, and an early message the catch-up read (no row) by its event id, so
// that two such messages do not share one notice.
func TestMXNoticeTxn(t *testing.T) {
	if got := mxNoticeTxn("enc", &database.MXEvent{Seq: 5, EventID: "$a"}); got != "dmb_enc_5" {
		t.Errorf("stored row: %q, want dmb_enc_5", got)
	}
	a, b := mxNoticeTxn("unenc", &database.MXEvent{EventID: "$a"}), mxNoticeTxn("unenc", &database.MXEvent{EventID: "$b"})
	if a == b || a != "dmb_unenc_$a" {
		t.Errorf("early messages: %q and %q, want one per event id", a, b)
	}
}

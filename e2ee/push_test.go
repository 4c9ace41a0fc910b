package e2ee

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/matrix"
)

const (
	ownGhost  = id.UserID("@dm_bob:localhost")
	ownDevice = id.DeviceID("GHOSTDEV")
)

// pushManager is a manager in push mode on a fresh database whose one
// ghost device is ownGhost's ownDevice. The homeserver address goes
// nowhere: routing must need no homeserver.
func pushManager(t *testing.T) (*Manager, *database.Database) {
	t.Helper()
	db := testdb.Open(t, testdb.Targets(t)[0])
	m := testManager(t, db, "http://127.0.0.1:1", "localhost", true, zerolog.Nop(), nil)
	if err := db.GhostDev.Put(context.Background(), &database.GhostDevice{MXID: ownGhost, DeviceID: ownDevice, AccessToken: "tok"}); err != nil {
		t.Fatal(err)
	}
	return m, db
}

// testManager is a manager, not started, on db for the homeserver at
// address; wrap, if not nil, wraps its HTTP transport. It stops with the
// test.
func testManager(t *testing.T, db *database.Database, address, domain string, pushed bool, log zerolog.Logger, wrap func(http.RoundTripper) http.RoundTripper) *Manager {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.Homeserver.Address = address
	cfg.Homeserver.Domain = domain
	cfg.Appservice.ID = "dmbridge"
	cfg.Appservice.Bot.Username = "dmbridgebot"
	cfg.Appservice.ASToken, cfg.Appservice.HSToken = "as", "hs"
	cfg.Encryption.PickleKey = "pickle"
	cfg.Encryption.Appservice = pushed
	link, err := appservice.New(ctx, cfg, db, log)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		link.AS.HTTPClient.Transport = wrap(link.AS.HTTPClient.Transport)
	}
	m, err := New(ctx, Options{Config: cfg, DB: db, AS: link.AS, State: link.StateStore, Log: log,
		RegisterGhost: matrix.NewIntents(link.AS).RegisterGhost,
		IsBridgeUser: func(u id.UserID) bool {
			_, ghost := cfg.ParseGhostUserID(u)
			return ghost || u == link.BotMXID()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

func toDevice(to id.UserID, dev id.DeviceID) *event.Event {
	return &event.Event{Type: event.ToDeviceEncrypted, Sender: "@alice:localhost", ToUserID: to, ToDeviceID: dev,
		Content: event.Content{Parsed: &event.EncryptedEventContent{Algorithm: id.AlgorithmOlmV1}}}
}

// TestPushRouting: only what names one of the bridge's ghost devices is
// routed, to that device; the rest is dropped.
func TestPushRouting(t *testing.T) {
	m, _ := pushManager(t)
	ctx := context.Background()
	mine := toDevice(ownGhost, ownDevice)
	push := &appservice.CryptoPush{
		ToDevice: []*event.Event{
			toDevice("@alice:localhost", "ALICEDEV"),         // a real user: not the bridge's
			toDevice("@dmbridgebot:localhost", ownDevice),    // the bot has no device
			toDevice(ownGhost, "OTHERDEV"),                   // the ghost, another device
			toDevice("@dm_carol:localhost", "CAROLDEV"),      // a ghost without a device
			toDevice("@dm_bob:elsewhere.example", ownDevice), // another server's look-alike
			mine,
		},
		OTKCounts: []mautrix.OTKCount{
			{UserID: "@alice:localhost", DeviceID: "ALICEDEV", SignedCurve25519: 1},
			{UserID: ownGhost, DeviceID: "OTHERDEV", SignedCurve25519: 1},
			{UserID: ownGhost, DeviceID: ownDevice, SignedCurve25519: 42},
		},
	}
	routed := m.route(ctx, push)
	if len(routed) != 1 {
		t.Fatalf("routed to %d devices, want 1: %+v", len(routed), routed)
	}
	dl := routed[0]
	if dl.userID != ownGhost || dl.deviceID != ownDevice || len(dl.toDevice) != 1 || dl.toDevice[0] != mine ||
		dl.otk == nil || dl.otk.SignedCurve25519 != 42 {
		t.Fatalf("delivery = %+v", dl)
	}
}

// TestPushForOthersChangesNothing: pushes for users and devices the bridge
// does not own, and device-list changes of users it does not track, load
// no device, log nobody in and write nothing.
func TestPushForOthersChangesNothing(t *testing.T) {
	m, db := pushManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	counts := func() map[string]int {
		out := map[string]int{}
		for _, table := range []string{"ghost_device", "crypto_account", "crypto_olm_session", "crypto_device", "crypto_tracked_user"} {
			var n int
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			out[table] = n
		}
		return out
	}
	before := counts()
	m.HandleCryptoPush(ctx, &appservice.CryptoPush{
		ToDevice: []*event.Event{
			toDevice("@alice:localhost", "ALICEDEV"),
			toDevice(ownGhost, "OTHERDEV"),
			toDevice("@dm_carol:localhost", "CAROLDEV"),
		},
		DeviceListChanged: []id.UserID{"@alice:localhost", "@mallory:evil.example"},
		OTKCounts:         []mautrix.OTKCount{{UserID: "@dm_carol:localhost", DeviceID: "CAROLDEV"}},
	})
	if ctx.Err() != nil {
		t.Fatal("handling pushes for others waited on the homeserver")
	}
	m.mu.Lock()
	loaded := len(m.devices)
	m.mu.Unlock()
	if loaded != 0 {
		t.Errorf("%d ghost devices loaded for pushes naming others", loaded)
	}
	after := counts()
	for table, n := range before {
		if after[table] != n {
			t.Errorf("%s: %d rows before, %d after", table, n, after[table])
		}
	}
	if row, err := db.GhostDev.Get(ctx, "@dm_carol:localhost"); err != nil || row != nil {
		t.Errorf("a push for a ghost without a device made it one: %+v %v", row, err)
	}
	if m.SyncLoops() != 0 {
		t.Errorf("%d /sync loops in push mode", m.SyncLoops())
	}
}

// TestFailedDeviceIsNotKept: a ghost whose device could not be made (here
// the homeserver is unreachable) leaves nothing in memory; the preparer
// tries every ghost, so each failure kept would be held for good.
func TestFailedDeviceIsNotKept(t *testing.T) {
	m, _ := pushManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Ensure(ctx, "@dm_carol:localhost"); err == nil {
		t.Fatal("a device was made without a homeserver")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.devices["@dm_carol:localhost"]; ok {
		t.Fatalf("the failed device is still in memory: %+v", d)
	}
}

package e2ee

import (
	"context"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
	"github.com/dmbridge/dmbridge/internal/testlog"
)

// requestCounter counts a manager's homeserver requests by path.
type requestCounter struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func (c *requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[r.URL.Path]++
	c.mu.Unlock()
	return c.base.RoundTrip(r)
}

// snapshot is the count so far per path.
func (c *requestCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// since counts the requests made after before to paths ending in suffix
// ("" for all).
func (c *requestCounter) since(before map[string]int, suffix string) int {
	n := 0
	for path, count := range c.snapshot() {
		if strings.HasSuffix(path, suffix) {
			n += count - before[path]
		}
	}
	return n
}

// TestOTKRepair: ghost devices from before the key count fix get their
// orphaned one-time key taken off the homeserver. Per database, three
// unchecked devices: "synced" and "idle" are put into the state the old
// code left them in (keys uploaded from one machine, then a first /sync
// whose absent key count a second machine took as 0, so its account
// dropped a key the homeserver holds), synced with its /sync loop running
// through the repair and idle without one; "quiet" only uploaded its first
// keys, as a prepared device that never synced. The manager's first start
// is stopped halfway through idle, which stays unchecked; after the second,
// every device is marked checked, synced and idle had each of their keys
// claimed once, quiet none, the repair logged each orphan, and every key
// the homeserver then hands another user for each device is one its
// account holds. A third run does nothing.
func TestOTKRepair(t *testing.T) {
	hs := tesths.Start(t)
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		ctx := context.Background()
		logged := &testlog.Lines{}
		log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), logged)).Level(zerolog.InfoLevel)
		db := testdb.Open(t, target)
		counter := &requestCounter{n: map[string]int{}}
		wrap := func(base http.RoundTripper) http.RoundTripper { counter.base = base; return counter }
		m := testManager(t, db, hs.URL, hs.Domain, false, log, wrap)
		alice := hs.CreateUser(t, "alice_"+target.Name)
		rows := map[string]*database.GhostDevice{}
		for _, name := range []string{"synced", "idle", "quiet"} {
			c := hs.CreateUser(t, name+"_"+target.Name)
			rows[name] = &database.GhostDevice{MXID: c.UserID, DeviceID: c.DeviceID, AccessToken: c.AccessToken, Syncing: name == "synced"}
			if err := db.GhostDev.Put(ctx, rows[name]); err != nil {
				t.Fatal(err)
			}
		}
		load := func(row *database.GhostDevice) *crypto.OlmMachine {
			t.Helper()
			mach, _, err := m.machine(ctx, row.MXID, row)
			if err != nil {
				t.Fatal(err)
			}
			return mach
		}

		// The state the old code left: the preparer's machine uploads, and
		// the /sync loop's machine hands its first /sync to mautrix as is.
		uploaded := map[string]map[id.Curve25519]bool{}
		for name, row := range rows {
			mach := load(row)
			if err := mach.ShareKeys(ctx, -1); err != nil {
				t.Fatal(err)
			}
			keys, _, err := heldOneTimeKeys(mach)
			if err != nil {
				t.Fatal(err)
			}
			uploaded[name] = keys
		}
		onServer := 0 // keys the homeserver holds for synced and idle
		generated := map[string]int{}
		orphaned := 0
		for _, name := range []string{"synced", "idle"} {
			mach := load(rows[name])
			resp, err := mach.Client.SyncRequest(ctx, 0, "", "", false, "")
			if err != nil {
				t.Fatal(err)
			}
			mach.ProcessSyncResponse(ctx, resp, "")
			held, made, err := heldOneTimeKeys(mach)
			if err != nil {
				t.Fatal(err)
			}
			// Every key generated was uploaded and none claimed: the first
			// upload's keys the account no longer holds are on the
			// homeserver, orphaned. (Dendrite's key count stops at 100.)
			orphans := 0
			for k := range uploaded[name] {
				if !held[k] {
					orphans++
				}
			}
			t.Logf("%s: first /sync's key count %d; the account generated and uploaded %d keys and holds %d, %d orphaned",
				name, resp.DeviceOTKCount.SignedCurve25519, made, len(held), orphans)
			if orphans == 0 {
				t.Fatalf("%s has no orphaned key to repair: the test reproduces nothing", name)
			}
			generated[name] = int(made)
			onServer += int(made)
			orphaned += orphans
		}

		// Stopped halfway through its first device (idle, in user id
		// order), the repair leaves it unchecked with its keys that are
		// left on the homeserver; every claim made counts.
		reuse := func(http.RoundTripper) http.RoundTripper { return counter }
		first := counter.snapshot()
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		tesths.WaitFor(t, time.Minute, "the repair's first claims (or its end)", func() (bool, error) {
			if counter.since(first, "/keys/claim") >= 20 {
				return true, nil
			}
			left, err := db.GhostDev.Unchecked(ctx, "", 1)
			return err == nil && len(left) == 0, err
		})
		m.Stop()
		stoppedAfter := counter.since(first, "/keys/claim")
		if got, err := db.GhostDev.Get(ctx, rows["idle"].MXID); err != nil || got == nil || got.KeysChecked {
			t.Errorf("idle after a stop halfway: checked %v (%v); want unchecked", got != nil && got.KeysChecked, err)
		}
		count, err := load(rows["idle"]).Client.UploadKeys(ctx, &mautrix.ReqUploadKeys{})
		if err != nil {
			t.Fatal(err)
		}
		left := count.OneTimeKeyCounts.SignedCurve25519
		t.Logf("stopped after %d claims; idle has %d keys left on the homeserver", stoppedAfter, left)
		if stoppedAfter+left != generated["idle"] {
			t.Errorf("%d claimed and %d left of idle's %d keys", stoppedAfter, left, generated["idle"])
		}

		// The next start finishes.
		m = testManager(t, db, hs.URL, hs.Domain, false, log, reuse)
		before := counter.snapshot()
		began := time.Now()
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// Halfway through synced's keys (idle's are done, quiet has no
		// claim), a to-device message wakes its /sync loop, whose key count
		// is now under 50: an upload then would hand the repair more keys.
		tesths.WaitFor(t, time.Minute, "half of synced's keys claimed", func() (bool, error) {
			return counter.since(before, "/keys/claim") >= left+1+generated["synced"]/2, nil
		})
		syncs := counter.since(before, "/sync")
		wake := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
			rows["synced"].MXID: {rows["synced"].DeviceID: {Raw: map[string]any{"wake": true}}}}}
		if _, err := alice.SendToDevice(ctx, event.Type{Type: "org.example.wake", Class: event.ToDeviceEventType}, wake); err != nil {
			t.Fatal(err)
		}
		tesths.WaitFor(t, 30*time.Second, "synced's /sync loop to take the message", func() (bool, error) {
			return counter.since(before, "/sync") > syncs, nil
		})
		if got, err := db.GhostDev.Get(ctx, rows["synced"].MXID); err != nil || got == nil || got.KeysChecked {
			t.Errorf("synced's repair was over (%v) before its /sync loop woke: the test misses what it is for", err)
		}
		tesths.WaitFor(t, 2*time.Minute, "every ghost device's keys checked", func() (bool, error) {
			left, err := db.GhostDev.Unchecked(ctx, "", 10)
			return len(left) == 0, err
		})
		took := time.Since(began)
		m.Stop()
		t.Logf("repair after the second start: %s; %d requests: %d claims, %d uploads, %d key queries, %d /sync",
			took.Round(time.Millisecond), counter.since(before, ""), counter.since(before, "/keys/claim"),
			counter.since(before, "/keys/upload"), counter.since(before, "/keys/query"), counter.since(before, "/sync"))
		// Every key of synced and idle once, and one claim each that came
		// back empty; none for quiet.
		if claims := counter.since(first, "/keys/claim"); claims != onServer+2 {
			t.Errorf("the repair made %d claims in all, want %d", claims, onServer+2)
		}
		// What the repair says it found: each orphan, in all it claimed.
		var found struct{ Claimed, Orphans int }
		for _, line := range logged.Find("Claimed a ghost device's one-time keys from the homeserver") {
			claimed, _ := line["claimed"].(float64)
			orphans, _ := line["orphans"].(float64)
			found.Claimed += int(claimed)
			found.Orphans += int(orphans)
		}
		if found.Claimed != onServer || found.Orphans != orphaned {
			t.Errorf("the repair logged %d keys claimed, %d orphans; want %d, %d", found.Claimed, found.Orphans, onServer, orphaned)
		}
		m.mu.Lock()
		_, idleKept := m.devices[rows["idle"].MXID]
		_, quietKept := m.devices[rows["quiet"].MXID]
		m.mu.Unlock()
		if idleKept || quietKept {
			t.Errorf("devices loaded for the repair stayed in memory: idle %v, quiet %v", idleKept, quietKept)
		}

		for name, row := range rows {
			held, _, err := heldOneTimeKeys(load(row))
			if err != nil {
				t.Fatal(err)
			}
			claimed, unknown := claimAll(t, alice, row.MXID, row.DeviceID, held)
			t.Logf("%s: the account holds %d one-time keys; the homeserver handed out %d", name, len(held), claimed)
			if claimed == 0 || unknown > 0 {
				t.Errorf("%s: %d of %d handed-out one-time keys are unknown to the device", name, unknown, claimed)
			}
			if got, err := db.GhostDev.Get(ctx, row.MXID); err != nil || got == nil || !got.KeysChecked {
				t.Errorf("%s after the repair: checked %v (%v); want checked", name, got != nil && got.KeysChecked, err)
			}
		}

		again := testManager(t, db, hs.URL, hs.Domain, false, log, reuse)
		before = counter.snapshot()
		if err := again.repairAll(ctx, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if n := counter.since(before, ""); n != 0 {
			t.Errorf("a run after the repair made %d homeserver requests, want none", n)
		}
	})
}

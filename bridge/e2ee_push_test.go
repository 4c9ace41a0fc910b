package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// pushRelay plays Synapse's part for encryption.appservice on Dendrite,
// which pushes no encryption data to appservices: for every ghost device
// the bridge stored (token read from the bridge's database, as the bridge
// keeps it), it runs /sync against Dendrite and posts what comes down as
// appservice transactions in Synapse's MSC2409/MSC3202 shape to the
// bridge's appservice endpoint, with the hs_token. Like a homeserver, it
// moves past a batch only once the bridge answered 200. It reads the
// database through its own handle, so that it outlives bridge restarts.
type pushRelay struct {
	t       *testing.T
	hsURL   string
	asURL   string
	hsToken string
	db      *database.Database

	mu      sync.Mutex
	started map[id.DeviceID]bool
	// counts are the signed_curve25519 counts pushed per device, in order,
	// each once the bridge answered 200 (printed if the test fails).
	counts map[id.DeviceID][]pushedCount
	txn    atomic.Int64
	// toDevice and otk count what was pushed.
	toDevice, otk, deviceLists atomic.Int64
}

func startPushRelay(t *testing.T, s *stack) *pushRelay {
	r := &pushRelay{t: t, hsURL: s.hs.URL, asURL: s.cfg.Appservice.Address, hsToken: s.cfg.Appservice.HSToken,
		db: testdb.Open(t, s.target), started: map[id.DeviceID]bool{}, counts: map[id.DeviceID][]pushedCount{}}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		for dev, counts := range r.counts {
			line := make([]string, len(counts))
			for i, c := range counts {
				line[i] = fmt.Sprintf("%s %d", c.at.Format("15:04:05.000"), c.n)
			}
			t.Logf("relay: one-time-key counts pushed for %s: %s", dev, strings.Join(line, ", "))
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			r.startNew(ctx, &wg)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return r
}

// pushedCount is a one-time-key count the relay pushed, and when.
type pushedCount struct {
	at time.Time
	n  int
}

// pushedCounts are the signed_curve25519 counts pushed for the device so far.
func (r *pushRelay) pushedCounts(dev id.DeviceID) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int, len(r.counts[dev]))
	for i, c := range r.counts[dev] {
		out[i] = c.n
	}
	return out
}

// startNew starts a /sync loop for each ghost device not yet relayed.
func (r *pushRelay) startNew(ctx context.Context, wg *sync.WaitGroup) {
	rows, err := r.db.Query(ctx, "SELECT mxid, device_id, access_token FROM ghost_device")
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var dev database.GhostDevice
		if rows.Scan(&dev.MXID, &dev.DeviceID, &dev.AccessToken) != nil {
			continue
		}
		r.mu.Lock()
		fresh := !r.started[dev.DeviceID]
		r.started[dev.DeviceID] = true
		r.mu.Unlock()
		if fresh {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.relay(ctx, dev)
			}()
		}
	}
}

// relayFilter keeps room data out, as the bridge's own /sync filter does.
const relayFilter = `{"account_data":{"not_types":["*"]},"presence":{"not_types":["*"]},` +
	`"room":{"rooms":["!none:dmbridge.invalid"],"account_data":{"not_types":["*"]},"ephemeral":{"not_types":["*"]},` +
	`"state":{"not_types":["*"]},"timeline":{"not_types":["*"]}}}`

type relaySync struct {
	NextBatch string `json:"next_batch"`
	ToDevice  struct {
		Events []map[string]any `json:"events"`
	} `json:"to_device"`
	DeviceLists       json.RawMessage `json:"device_lists"`
	OTKCount          json.RawMessage `json:"device_one_time_keys_count"`
	UnusedFallbackKey json.RawMessage `json:"device_unused_fallback_key_types"`
}

func (r *pushRelay) relay(ctx context.Context, dev database.GhostDevice) {
	since := ""
	for ctx.Err() == nil {
		q := url.Values{"timeout": {"5000"}, "filter": {relayFilter}}
		if since != "" {
			q.Set("since", since)
		}
		var resp relaySync
		if err := r.call(ctx, http.MethodGet, r.hsURL+"/_matrix/client/v3/sync?"+q.Encode(), dev.AccessToken, nil, &resp); err != nil {
			if ctx.Err() == nil {
				time.Sleep(500 * time.Millisecond)
			}
			continue
		}
		txn := map[string]any{"events": []any{}}
		if len(resp.ToDevice.Events) > 0 {
			for _, evt := range resp.ToDevice.Events {
				evt["to_user_id"], evt["to_device_id"] = dev.MXID, dev.DeviceID
			}
			txn["de.sorunome.msc2409.to_device"] = resp.ToDevice.Events
		}
		if changed := string(resp.DeviceLists); changed != "" && changed != "null" && changed != "{}" {
			txn["org.matrix.msc3202.device_lists"] = resp.DeviceLists
		}
		if len(resp.OTKCount) > 0 {
			txn["org.matrix.msc3202.device_one_time_keys_count"] = map[id.UserID]map[id.DeviceID]json.RawMessage{dev.MXID: {dev.DeviceID: resp.OTKCount}}
		}
		if len(resp.UnusedFallbackKey) > 0 {
			txn["org.matrix.msc3202.device_unused_fallback_key_types"] = map[id.UserID]map[id.DeviceID]json.RawMessage{dev.MXID: {dev.DeviceID: resp.UnusedFallbackKey}}
		}
		body, _ := json.Marshal(txn)
		for ctx.Err() == nil {
			path := fmt.Sprintf("%s/_matrix/app/v1/transactions/relay-%d-%d", r.asURL, time.Now().UnixNano(), r.txn.Add(1))
			if err := r.call(ctx, http.MethodPut, path, r.hsToken, body, nil); err == nil {
				break
			} else if ctx.Err() == nil {
				r.t.Logf("relay: push to the bridge failed, retrying: %v", err)
				time.Sleep(500 * time.Millisecond)
			}
		}
		r.toDevice.Add(int64(len(resp.ToDevice.Events)))
		if _, ok := txn["org.matrix.msc3202.device_one_time_keys_count"]; ok {
			r.otk.Add(1)
			var count mautrix.OTKCount
			if json.Unmarshal(resp.OTKCount, &count) == nil {
				r.mu.Lock()
				r.counts[dev.DeviceID] = append(r.counts[dev.DeviceID], pushedCount{time.Now(), count.SignedCurve25519})
				r.mu.Unlock()
			}
		}
		if _, ok := txn["org.matrix.msc3202.device_lists"]; ok {
			r.deviceLists.Add(1)
		}
		since = resp.NextBatch
	}
}

func (r *pushRelay) call(ctx context.Context, method, u, token string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, strings.SplitN(u, "?", 2)[0], resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// TestEncryptedDMPushed: with encryption.appservice the bridge takes the
// ghosts' to-device messages, device lists and key counts from the
// homeserver's transactions (a relay stands in for Synapse's MSC2409/
// MSC3202 pushes, since Dendrite makes none) and runs no /sync loop at all;
// an encrypted DM still works both ways with an independent E2EE client.
func TestEncryptedDMPushed(t *testing.T) {
	s := newStack(t, testdb.Targets(t)[0], stackOptions{encryption: true, hsProxy: true,
		configure: func(c *config.Config) { c.Encryption.Appservice = true }})
	reqs := &requestLog{n: map[string]int{}}
	s.proxy.setRefuse(reqs.record)
	relay := startPushRelay(t, s)
	f := s.connectFake(nil)
	ghost := s.ghost("bob@network")
	nio := startNio(t, s, "alice")
	reqs.take()

	dm := nio.do(map[string]any{"cmd": "create_dm", "ghost": string(ghost), "text": "first pushed words"})
	expectFirstOnce(t, f, "first pushed words", dm["event_id"])

	f.send(textFrom("bob@network", "p1", "pushed answer"))
	_, dev := expectFromGhostDevice(t, s, nio, ghost, "pushed answer")

	nio.sendText(f, 2, "second pushed words")

	// Pushed one-time-key counts are acted on: once other clients have
	// claimed the ghost device's keys below half, it uploads new ones. It
	// holds at most the 51 of its first upload: a count pushed while that
	// upload was being stored (Dendrite counted 3 of them) once made it
	// upload 47 more, and 5 claims never took it below half.
	tesths.WaitFor(t, 30*time.Second, "a one-time-key count pushed for the ghost device", func() (bool, error) {
		return len(relay.pushedCounts(dev.DeviceID)) > 0, nil
	})
	before := relay.pushedCounts(dev.DeviceID)
	if held := slices.Max(before); held > 51 {
		t.Fatalf("the ghost device held %d one-time keys before the claims, want at most the 51 of its first upload", held)
	}
	early, earlyTotal := reqs.take()
	for range 5 {
		if _, err := s.alice.ClaimKeys(context.Background(), &mautrix.ReqClaimKeys{
			OneTimeKeys: mautrix.OneTimeKeysRequest{ghost: {dev.DeviceID: id.KeyAlgorithmSignedCurve25519}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Dendrite's /sync does not wake for a claim: the new count comes when
	// the relay's long poll (5 s) times out, and the upload about 5 s after
	// the claims even under load.
	tesths.WaitFor(t, 30*time.Second, "the ghost device's new one-time keys", func() (bool, error) {
		// Pushed after the claims: a count below half, then a later one
		// back at half or more.
		low := false
		for _, n := range relay.pushedCounts(dev.DeviceID)[len(before):] {
			low = low || n < 50
			if low && n >= 50 {
				return true, nil
			}
		}
		return false, nil
	})
	reqs.mu.Lock()
	uploads := reqs.n["POST /_matrix/client/v3/keys/upload"]
	reqs.mu.Unlock()
	if uploads == 0 {
		t.Fatal("the ghost device's keys were topped up, yet the bridge uploaded none")
	}

	// The sessions survive a restart: the pushed keys were stored before
	// the relay (the homeserver) heard 200.
	s.restartBridge()
	nio.sendText(f, 3, "pushed after restart")
	f.send(textFrom("bob@network", "p2", "pushed answer after restart"))
	if got := nio.do(map[string]any{"cmd": "expect", "body": "pushed answer after restart", "timeout": 60}); got["encrypted"] != true {
		t.Fatalf("answer after the restart = %v, want encrypted", got)
	}

	byPath, total := reqs.take()
	for path, n := range early {
		byPath[path] += n
	}
	total += earlyTotal
	syncs := 0
	for path, n := range byPath {
		if strings.HasSuffix(path, "/sync") {
			syncs += n
		}
	}
	t.Logf("MEASURE pushed mode, encrypted DM both ways and a restart: %d bridge→homeserver requests, %d of them /sync: %v", total, syncs, byPath)
	t.Logf("MEASURE relay pushed %d to-device events, %d key counts, %d device-list changes", relay.toDevice.Load(), relay.otk.Load(), relay.deviceLists.Load())
	if syncs != 0 || s.br.E2EE.SyncLoops() != 0 {
		t.Fatalf("bridge made %d /sync requests and runs %d /sync loops in encryption.appservice mode, want none", syncs, s.br.E2EE.SyncLoops())
	}
	if relay.toDevice.Load() == 0 {
		t.Fatal("the relay pushed no to-device event, yet the bridge decrypted: the test is not testing the push path")
	}
}

// TestGhostDeviceCostPushed: in encryption.appservice mode a ghost device
// costs no goroutine and (under make e2ee-cost) no request when idle.
func TestGhostDeviceCostPushed(t *testing.T) {
	measureGhostDeviceCost(t, true)
}

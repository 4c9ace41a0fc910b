package appservice_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

const roomKeyEvent = `{"type":"m.room.encrypted","sender":"@alice:localhost","to_user_id":"@dm_bob:localhost",
	"to_device_id":"GHOSTDEV","content":{"algorithm":"m.olm.v1.curve25519-aes-sha2","sender_key":"abc","ciphertext":{}}}`

func TestParseCryptoPushStableAndUnstable(t *testing.T) {
	log := zerolog.Nop()
	unstable := `{"events":[],"de.sorunome.msc2409.to_device":[` + roomKeyEvent + `],
		"org.matrix.msc3202.device_lists":{"changed":["@alice:localhost","@alice:localhost"],"left":["@x:localhost"]},
		"org.matrix.msc3202.device_one_time_keys_count":{"@dm_bob:localhost":{"GHOSTDEV":{"signed_curve25519":7}}}}`
	p := appservice.ParseCryptoPush(log, []byte(unstable))
	if len(p.ToDevice) != 1 || p.ToDevice[0].ToUserID != "@dm_bob:localhost" || p.ToDevice[0].ToDeviceID != "GHOSTDEV" ||
		p.ToDevice[0].Type.Class != event.ToDeviceEventType {
		t.Fatalf("to-device = %+v", p.ToDevice)
	}
	if _, ok := p.ToDevice[0].Content.Parsed.(*event.EncryptedEventContent); !ok {
		t.Errorf("to-device content not parsed: %T", p.ToDevice[0].Content.Parsed)
	}
	if len(p.DeviceListChanged) != 1 || p.DeviceListChanged[0] != "@alice:localhost" {
		t.Errorf("device lists = %v, want alice once", p.DeviceListChanged)
	}
	if len(p.OTKCounts) != 1 || p.OTKCounts[0].UserID != "@dm_bob:localhost" || p.OTKCounts[0].DeviceID != "GHOSTDEV" ||
		p.OTKCounts[0].SignedCurve25519 != 7 {
		t.Errorf("otk counts = %+v", p.OTKCounts)
	}
	// The stable names win over the unstable ones, as in mautrix.
	both := `{"to_device":[],"de.sorunome.msc2409.to_device":[` + roomKeyEvent + `],
		"device_one_time_keys_count":{"@dm_bob:localhost":{"GHOSTDEV":{"signed_curve25519":3}}},
		"org.matrix.msc3202.device_one_time_keys_count":{"@dm_bob:localhost":{"GHOSTDEV":{"signed_curve25519":9}}}}`
	p = appservice.ParseCryptoPush(log, []byte(both))
	if len(p.ToDevice) != 0 || len(p.OTKCounts) != 1 || p.OTKCounts[0].SignedCurve25519 != 3 {
		t.Errorf("stable fields not preferred: %+v", p)
	}
}

// TestParseCryptoPushDropsGarbage: malformed fields and entries are
// dropped one by one; what is well-formed next to them is kept.
func TestParseCryptoPushDropsGarbage(t *testing.T) {
	long := strings.Repeat("a", 300)
	cases := map[string]string{
		"to_device not a list":       `{"de.sorunome.msc2409.to_device":"x"}`,
		"device_lists not an object": `{"org.matrix.msc3202.device_lists":[1]}`,
		"otk not a map":              `{"org.matrix.msc3202.device_one_time_keys_count":"x"}`,
		"no to_user_id":              `{"to_device":[{"type":"m.room.encrypted","sender":"@a:l","to_device_id":"D","content":{}}]}`,
		"no to_device_id":            `{"to_device":[{"type":"m.room.encrypted","sender":"@a:l","to_user_id":"@b:l","content":{}}]}`,
		"bad to_user_id":             `{"to_device":[{"type":"m.room.encrypted","sender":"@a:l","to_user_id":"bob","to_device_id":"D","content":{}}]}`,
		"oversized to_user_id":       `{"to_device":[{"type":"m.room.encrypted","sender":"@a:l","to_user_id":"@` + long + `:l","to_device_id":"D","content":{}}]}`,
		"oversized to_device_id":     `{"to_device":[{"type":"m.room.encrypted","sender":"@a:l","to_user_id":"@b:l","to_device_id":"` + long + `","content":{}}]}`,
		"no sender":                  `{"to_device":[{"type":"m.room.encrypted","to_user_id":"@b:l","to_device_id":"D","content":{}}]}`,
		"no type":                    `{"to_device":[{"sender":"@a:l","to_user_id":"@b:l","to_device_id":"D","content":{}}]}`,
		"content of the wrong shape": `{"to_device":[{"type":"m.room.encrypted","sender":"@a:l","to_user_id":"@b:l","to_device_id":"D","content":{"algorithm":5}}]}`,
		"event not an object":        `{"to_device":[5]}`,
		"bad changed user":           `{"device_lists":{"changed":["alice",5,"@` + long + `:l"]}}`,
		"otk bad user":               `{"device_one_time_keys_count":{"alice":{"D":{"signed_curve25519":1}}}}`,
		"otk oversized device":       `{"device_one_time_keys_count":{"@b:l":{"` + long + `":{"signed_curve25519":1}}}}`,
		"otk negative":               `{"device_one_time_keys_count":{"@b:l":{"D":{"signed_curve25519":-1}}}}`,
		"otk not counts":             `{"device_one_time_keys_count":{"@b:l":{"D":"many"}}}`,
		"body not an object":         `[1,2]`,
	}
	for name, body := range cases {
		if p := appservice.ParseCryptoPush(zerolog.Nop(), []byte(body)); !p.Empty() {
			t.Errorf("%s: kept %+v", name, p)
		}
	}
	mixed := `{"to_device":[5,` + roomKeyEvent + `],"device_lists":{"changed":["x","@alice:localhost"]}}`
	if p := appservice.ParseCryptoPush(zerolog.Nop(), []byte(mixed)); len(p.ToDevice) != 1 || len(p.DeviceListChanged) != 1 {
		t.Errorf("good entries next to bad ones were not kept: %+v", p)
	}
}

func TestParseCryptoPushBounds(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"to_device":[`)
	for i := range 1500 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(roomKeyEvent)
	}
	b.WriteString(`],"device_lists":{"changed":[`)
	for i := range 12000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"@u%d:localhost"`, i)
	}
	b.WriteString(`]},"device_one_time_keys_count":{"@dm_bob:localhost":{`)
	for i := range 12000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"D%d":{"signed_curve25519":1}`, i)
	}
	b.WriteString(`}}}`)
	p := appservice.ParseCryptoPush(zerolog.Nop(), []byte(b.String()))
	if len(p.ToDevice) != 1000 || len(p.DeviceListChanged) != 10000 || len(p.OTKCounts) != 10000 {
		t.Errorf("bounds: %d to-device, %d changed, %d otk counts; want 1000, 10000, 10000",
			len(p.ToDevice), len(p.DeviceListChanged), len(p.OTKCounts))
	}
}

// recordingCrypto records pushes and whether the transaction's events were
// stored yet when each arrived.
type recordingCrypto struct {
	db     *database.Database
	mu     sync.Mutex
	pushes []*appservice.CryptoPush
	stored []int
}

func (r *recordingCrypto) HandleCryptoPush(ctx context.Context, push *appservice.CryptoPush) {
	var n int
	_ = r.db.QueryRow(ctx, "SELECT COUNT(*) FROM mx_event").Scan(&n)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushes = append(r.pushes, push)
	r.stored = append(r.stored, n)
}

// TestIntakeHandsPushesOver: a transaction's encryption data reaches the
// crypto sink before its events are stored (and so before the 200), again
// for a repeated transaction, and a garbage field refuses nothing.
func TestIntakeHandsPushesOver(t *testing.T) {
	target := testdb.Targets(t)[0]
	link, db := newLink(t, target)
	rec := &recordingCrypto{db: db}
	link.SetSink(&countingSink{})
	link.SetCryptoSink(rec)
	srv := httptest.NewServer(link.Handler())
	t.Cleanup(func() { srv.Close(); _ = db.Close() })

	body := `{"events":[{"event_id":"$e1","room_id":"!r:localhost","sender":"@alice:localhost","type":"m.room.message",
		"origin_server_ts":1,"content":{"msgtype":"m.text","body":"hi"}}],"de.sorunome.msc2409.to_device":[` + roomKeyEvent + `]}`
	for range 2 {
		if code, resp := put(t, srv, "t1", "hs-secret", body); code != http.StatusOK {
			t.Fatalf("transaction: %d %s", code, resp)
		}
	}
	if len(rec.pushes) != 2 || rec.stored[0] != 0 || len(rec.pushes[1].ToDevice) != 1 {
		t.Fatalf("pushes %d, events stored before the first: %v; want 2 pushes, the first before any event was stored", len(rec.pushes), rec.stored)
	}
	if code, resp := put(t, srv, "t2", "hs-secret", `{"events":[],"de.sorunome.msc2409.to_device":{"x":1},"device_lists":7}`); code != http.StatusOK {
		t.Fatalf("transaction with garbage encryption fields refused: %d %s", code, resp)
	}
	if code, _ := put(t, srv, "t3", "hs-secret", `{"events":[]}`); code != http.StatusOK || len(rec.pushes) != 2 {
		t.Fatalf("an empty push reached the sink: %d pushes", len(rec.pushes))
	}
	if code, _ := put(t, srv, "t4", "wrong", body); code != http.StatusForbidden || len(rec.pushes) != 2 {
		t.Fatalf("a transaction with a wrong hs_token reached the crypto sink: %d, %d pushes", code, len(rec.pushes))
	}
	// Encryption data alone is acknowledged after a commit, like events; an
	// empty transaction commits nothing.
	if code, resp := put(t, srv, "t5", "hs-secret", `{"events":[],"de.sorunome.msc2409.to_device":[`+roomKeyEvent+`]}`); code != http.StatusOK {
		t.Fatalf("to-device only: %d %s", code, resp)
	}
	stored := func(txn string) bool {
		var n int
		if err := db.QueryRow(context.Background(), "SELECT COUNT(*) FROM as_txn WHERE txn_id=$1", txn).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if !stored("t5") || stored("t3") {
		t.Errorf("transaction ids stored: to-device only %v, empty %v; want true, false", stored("t5"), stored("t3"))
	}
	// With high availability every transaction commits, so that the
	// lease's epoch is checked before the answer.
	db.Fenced = true
	if code, _ := put(t, srv, "t6", "hs-secret", `{"events":[]}`); code != http.StatusOK || !stored("t6") {
		t.Errorf("an empty transaction on a fenced database: %d, stored %v; want 200 after a commit", code, stored("t6"))
	}
}

// FuzzParseCryptoPush: whatever the encryption fields hold, parsing never
// panics and keeps only entries within the bounds, each naming a user and
// device of plausible shape.
func FuzzParseCryptoPush(f *testing.F) {
	f.Add([]byte(`{"de.sorunome.msc2409.to_device":[` + roomKeyEvent + `]}`))
	f.Add([]byte(`{"org.matrix.msc3202.device_lists":{"changed":["@a:l",1]},"device_one_time_keys_count":{"@b:l":{"D":{"signed_curve25519":2}}}}`))
	f.Add([]byte(`{"to_device":null,"device_lists":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p := appservice.ParseCryptoPush(zerolog.Nop(), body)
		if len(p.ToDevice) > 1000 || len(p.DeviceListChanged) > 10000 || len(p.OTKCounts) > 10000 {
			t.Fatalf("bounds exceeded: %d %d %d", len(p.ToDevice), len(p.DeviceListChanged), len(p.OTKCounts))
		}
		for _, evt := range p.ToDevice {
			if evt.ToUserID == "" || evt.ToDeviceID == "" || len(evt.ToUserID) > 255 || len(evt.ToDeviceID) > 255 || evt.Sender == "" {
				t.Fatalf("kept a to-device event without a plausible target: %+v", evt)
			}
		}
		for _, c := range p.OTKCounts {
			if c.UserID == "" || c.DeviceID == "" || c.SignedCurve25519 < 0 {
				t.Fatalf("kept an implausible key count: %+v", c)
			}
		}
	})
}

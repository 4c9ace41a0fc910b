package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// nioClient drives bridge/testdata/e2ee_client.py: matrix-nio with
// python-olm, an E2EE client independent of mautrix-go, as the user.
type nioClient struct {
	t     *testing.T
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startNio(t *testing.T, s *stack, localpart string) *nioClient {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import nio, olm").Run(); err != nil {
		t.Skip("python3-matrix-nio and python3-olm are not installed (scripts/prerequisites.sh installs them)")
	}
	cmd := exec.Command("/usr/bin/python3", "testdata/e2ee_client.py", s.hs.URL,
		string(s.hs.UserID(localpart)), s.hs.Password(localpart), t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testLogWriter{t: t}
	if err = cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	c := &nioClient{t: t, stdin: stdin, out: bufio.NewScanner(stdout)}
	c.out.Buffer(make([]byte, 1<<20), 1<<20)
	if r := c.read(); r["ready"] != true {
		t.Fatalf("nio client did not start: %v", r)
	}
	return c
}

// encryptedDMWithBob is the start most encrypted-DM tests share: the fake
// connector connects, alice's E2EE client opens an encrypted DM with bob's
// ghost saying hello, the hello reaches the connector, and bob's answer
// reaches the client. It returns the connector, the ghost, the client and
// the answer as the client saw it.
func encryptedDMWithBob(t *testing.T, s *stack, hello, answer string) (*fakeConnector, id.UserID, *nioClient, map[string]any) {
	t.Helper()
	f := s.connectFake(nil)
	ghost := s.ghost("bob@network")
	nio := startNio(t, s, "alice")
	nio.do(map[string]any{"cmd": "create_dm", "ghost": string(ghost), "text": hello})
	waitSent(t, f, 1)
	f.send(textFrom("bob@network", "r1", answer))
	seen := nio.do(map[string]any{"cmd": "expect", "body": answer, "timeout": 60})
	return f, ghost, nio, seen
}

type testLogWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Logf("nio: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (c *nioClient) read() map[string]any {
	c.t.Helper()
	if !c.out.Scan() {
		c.t.Fatalf("nio client ended: %v", c.out.Err())
	}
	var r map[string]any
	if err := json.Unmarshal(c.out.Bytes(), &r); err != nil {
		c.t.Fatalf("nio client said %q: %v", c.out.Text(), err)
	}
	return r
}

// sendText has the user send text from the client and waits until the
// connector has it as its nth send_message.
func (c *nioClient) sendText(f *fakeConnector, n int, text string) {
	c.t.Helper()
	c.do(map[string]any{"cmd": "send", "text": text})
	tesths.WaitFor(c.t, 60*time.Second, fmt.Sprintf("send_message %d (%q) at the connector", n, text), func() (bool, error) {
		cmds := f.commandsOf(connector.OpSendMessage)
		return len(cmds) == n && cmds[n-1].Text == text, nil
	})
}

func (c *nioClient) do(cmd map[string]any) map[string]any {
	c.t.Helper()
	data, _ := json.Marshal(cmd)
	if _, err := c.stdin.Write(append(data, '\n')); err != nil {
		c.t.Fatal(err)
	}
	r := c.read()
	if e, ok := r["error"]; ok && e != nil {
		c.t.Fatalf("nio %v: %v", cmd["cmd"], r)
	}
	return r
}

// expectFirstOnce waits for the first message of a new DM at the connector
// and checks that it came once, in plaintext, named after its event.
func expectFirstOnce(t *testing.T, f *fakeConnector, text string, eventID any) {
	t.Helper()
	tesths.WaitFor(t, 60*time.Second, "the first message at the connector", func() (bool, error) {
		return len(f.commandsOf(connector.OpSendMessage)) >= 1, nil
	})
	time.Sleep(2 * time.Second) // a second delivery would show by now
	if cmds := f.commandsOf(connector.OpSendMessage); len(cmds) != 1 || cmds[0].Text != text || cmds[0].Txn != eventID {
		t.Fatalf("send_message commands = %+v, want the first message once, in plaintext", cmds)
	}
}

// expectFromGhostDevice waits for the client to see the contact's message
// and checks that it was encrypted by the ghost's own device.
func expectFromGhostDevice(t *testing.T, s *stack, nio *nioClient, ghost id.UserID, body string) (map[string]any, *database.GhostDevice) {
	t.Helper()
	got := nio.do(map[string]any{"cmd": "expect", "body": body, "timeout": 60})
	dev, err := s.br.DB.GhostDev.Get(context.Background(), ghost)
	if err != nil || dev == nil {
		t.Fatalf("ghost device row: %v %v", dev, err)
	}
	if got["sender"] != string(ghost) || got["encrypted"] != true || got["device_id"] != string(dev.DeviceID) {
		t.Fatalf("contact's message as the client saw it = %v; want encrypted by %s's device %s", got, ghost, dev.DeviceID)
	}
	return got, dev
}

// requestLog counts the bridge's homeserver requests by method and path
// (ids taken out), through the test proxy.
type requestLog struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *requestLog) record(r *http.Request, _ []byte) (int, string) {
	p := r.URL.Path
	for _, marker := range []string{"/rooms/", "/profile/", "/sendToDevice/", "/user/"} {
		if i := strings.Index(p, marker); i >= 0 {
			p = p[:i+len(marker)] + "…"
		}
	}
	l.mu.Lock()
	l.n[r.Method+" "+p]++
	l.mu.Unlock()
	return 0, ""
}

func (l *requestLog) take() (map[string]int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, total := l.n, 0
	for _, v := range n {
		total += v
	}
	l.n = map[string]int{}
	return n, total
}

// TestEncryptedDM: the user's independent E2EE client starts an encrypted
// DM with a ghost the way Element X does and sends at once; the contact
// gets the plaintext exactly once. The contact's answer arrives encrypted,
// by a device of the ghost's own. A message under a session the bridge
// never got is answered with a "not delivered" reply. It runs on SQLite and
// on PostgreSQL: the crypto store and its queries are mautrix's, in the
// bridge's database.
func TestEncryptedDM(t *testing.T) {
	testdb.EachParallel(t, testEncryptedDM)
}

func testEncryptedDM(t *testing.T, target testdb.Target) {
	// Dendrite pushes no redactions: alice's come through her /sync.
	s := newStack(t, target, stackOptions{encryption: true, hsProxy: true,
		configure: func(c *config.Config) { c.DoublePuppet.Sync = true }})
	reqs := &requestLog{n: map[string]int{}}
	s.proxy.setRefuse(reqs.record)
	f := s.connectFake(nil)
	ghost := s.ghost("bob@network")
	nio := startNio(t, s, "alice")
	reqs.take()
	goroutines := runtime.NumGoroutine()
	var mem0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&mem0)

	dm := nio.do(map[string]any{"cmd": "create_dm", "ghost": string(ghost), "text": "first words"})
	roomID := id.RoomID(dm["room_id"].(string))
	expectFirstOnce(t, f, "first words", dm["event_id"])
	byPath, total := reqs.take()
	t.Logf("MEASURE new encrypted DM incl. first message: %d homeserver requests: %v", total, byPath)

	f.send(textFrom("bob@network", "r1", "hello back, encrypted"))
	time.Sleep(3 * time.Second)
	byPath, total = reqs.take()
	t.Logf("MEASURE first contact message (new outbound session): %d homeserver requests: %v", total, byPath)
	got, dev := expectFromGhostDevice(t, s, nio, ghost, "hello back, encrypted")
	t.Logf("ghost device %s; client's device list for the ghost: %v (nio has no cross-signing support)", dev.DeviceID, got["ghost_devices"])
	assertCrossSigned(t, s, ghost, dev.DeviceID)

	reqs.take()
	nio.do(map[string]any{"cmd": "send", "text": "second words"})
	tesths.WaitFor(t, 30*time.Second, "the second message at the connector", func() (bool, error) {
		return len(f.commandsOf(connector.OpSendMessage)) == 2, nil
	})
	f.send(textFrom("bob@network", "r2", "and a second answer"))
	answer := nio.do(map[string]any{"cmd": "expect", "body": "and a second answer", "timeout": 60})
	byPath, total = reqs.take()
	t.Logf("MEASURE one encrypted message each way (steady state): %d homeserver requests: %v", total, byPath)

	// Relations, encrypted both ways, handled like plain ones.
	second := f.commandsOf(connector.OpSendMessage)[1]
	react := nio.do(map[string]any{"cmd": "react", "target": answer["event_id"], "key": "👍"})
	edit := nio.do(map[string]any{"cmd": "edit", "target": second.Txn, "text": "second words, edited"})
	tesths.WaitFor(t, 60*time.Second, "the reaction and the edit at the connector", func() (bool, error) {
		return len(f.commandsOf(connector.OpReact)) == 1 && len(f.commandsOf(connector.OpEditMessage)) == 1, nil
	})
	if r := f.commandsOf(connector.OpReact)[0]; r.Key != "👍" || r.Target != "r2" || r.Txn != react["event_id"] {
		t.Fatalf("react command = %+v", r)
	}
	if e := f.commandsOf(connector.OpEditMessage)[0]; e.Text != "second words, edited" || e.Txn != edit["event_id"] {
		t.Fatalf("edit command = %+v", e)
	}
	s.waitFollowing(s.alice.UserID)
	red := nio.do(map[string]any{"cmd": "redact", "target": react["event_id"]})
	tesths.WaitFor(t, 60*time.Second, "the reaction's removal at the connector", func() (bool, error) {
		return len(f.commandsOf(connector.OpUnreact)) == 1, nil
	})
	if u := f.commandsOf(connector.OpUnreact)[0]; u.Txn != red["event_id"] || u.Key != "👍" || u.Target != "r2" {
		t.Fatalf("unreact command = %+v, want 👍 off r2 under %v", u, red["event_id"])
	}
	f.send(&connector.Event{Kind: connector.KindReaction, Login: testLogin, TS: time.Now().UnixMilli(), Chat: dmChat("bob@network"),
		Sender: &connector.Sender{ID: "bob@network"}, ID: "x1", Target: "r2", Key: "🎉"})
	if rx := nio.do(map[string]any{"cmd": "expect_reaction", "key": "🎉", "timeout": 60}); rx["encrypted"] != true ||
		rx["sender"] != string(ghost) || rx["target"] != answer["event_id"] {
		t.Fatalf("contact's reaction as the client saw it = %v, want encrypted, by the ghost, on %v", rx, answer["event_id"])
	}

	// An encrypted file from the user reaches the network decrypted.
	file := nio.do(map[string]any{"cmd": "send_file", "name": "note.txt", "data": "the file's secret contents"})
	tesths.WaitFor(t, 60*time.Second, "the encrypted file at the connector", func() (bool, error) {
		return len(f.commandsOf(connector.OpSendMessage)) == 3, nil
	})
	if c := f.commandsOf(connector.OpSendMessage)[2]; c.Txn != file["event_id"] || len(c.Attachments) != 1 ||
		string(c.Attachments[0].Data) != "the file's secret contents" || c.Attachments[0].Name != "note.txt" {
		t.Fatalf("send_message for the encrypted file = %+v", c)
	}

	// A contact's file reaches the user encrypted, its key in the event.
	f.send(&connector.Event{Kind: connector.KindMessage, Login: testLogin, TS: time.Now().UnixMilli(), Chat: dmChat("bob@network"),
		Sender: &connector.Sender{ID: "bob@network"}, ID: "r-file",
		Attachments: []connector.Attachment{{Name: "photo.txt", MimeType: "text/plain", Data: []byte("bob's private file")}}})
	if got := nio.do(map[string]any{"cmd": "expect_file", "name": "photo.txt", "timeout": 60}); got["data"] != "bob's private file" ||
		got["encrypted"] != true || got["plain_url"] != nil {
		t.Fatalf("contact's file as the client saw it = %v, want an encrypted event with an encrypted file", got)
	}

	// A restart keeps every session: the user's next message decrypts with
	// the stored inbound session, the ghost's answer uses the stored
	// outbound one.
	s.restartBridge()
	nio.do(map[string]any{"cmd": "send", "text": "after restart"})
	tesths.WaitFor(t, 60*time.Second, "the message after the restart at the connector", func() (bool, error) {
		return len(f.commandsOf(connector.OpSendMessage)) == 4, nil
	})
	if c := f.commandsOf(connector.OpSendMessage)[3]; c.Text != "after restart" {
		t.Fatalf("fourth send_message = %+v", c)
	}
	f.send(textFrom("bob@network", "r3", "answer after restart"))
	nio.do(map[string]any{"cmd": "expect", "body": "answer after restart", "timeout": 60})
	reqs.take()

	if idleMeasures(t) {
		time.Sleep(65 * time.Second)
		byPath, total = reqs.take()
		t.Logf("MEASURE idle 65 s, one ghost device: %d homeserver requests: %v", total, byPath)
	}
	var mem1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&mem1)
	t.Logf("MEASURE goroutines +%d, heap in use +%d KiB after one encrypted DM (one ghost device)",
		runtime.NumGoroutine()-goroutines, (int64(mem1.HeapInuse)-int64(mem0.HeapInuse))/1024)

	bad := nio.do(map[string]any{"cmd": "send_unknown_session"})
	notice := nio.do(map[string]any{"cmd": "expect", "body": "⚠️ Your message was not delivered", "timeout": 90})
	if notice["reply_to"] != bad["event_id"] || notice["encrypted"] != true {
		t.Fatalf("notice for the undecryptable event = %v, want an encrypted reply to %v", notice, bad["event_id"])
	}
	if n := len(f.commandsOf(connector.OpSendMessage)); n != 4 {
		t.Fatalf("%d send_message commands, want 4: the undecryptable event must not reach the network", n)
	}
	if roomID == "" {
		t.Fatal("no room id")
	}
}

// TestGhostCrossSigningOnDendrite: Dendrite v0.15.2 lets an appservice
// ghost's device upload cross-signing keys without user-interactive auth
// (no stage is asked for), so each ghost's device comes self-signed; the
// user's client sees the ghost's master key and the device signed by the
// ghost's self-signing key.
func TestGhostCrossSigningOnDendrite(t *testing.T) {
	s := newStack(t, testdb.Targets(t)[0], stackOptions{encryption: true})
	ctx := context.Background()
	ghost := s.ghost("carol@network")
	mach, err := s.br.E2EE.Active(ctx, ghost)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := s.br.DB.GhostDev.Get(ctx, ghost)
	if err != nil || dev == nil {
		t.Fatalf("ghost device row: %v %v", dev, err)
	}
	if mach.Client.DeviceID != dev.DeviceID {
		t.Fatalf("machine device %s, stored %s", mach.Client.DeviceID, dev.DeviceID)
	}
	assertCrossSigned(t, s, ghost, dev.DeviceID)
}

// assertCrossSigned waits until the user sees the ghost's device signed by
// the ghost's self-signing key. The bridge uploads the cross-signing keys
// and then the device's signature, so there is a moment when the keys are
// there and the signature is not yet.
func assertCrossSigned(t *testing.T, s *stack, ghost id.UserID, device id.DeviceID) {
	t.Helper()
	tesths.WaitFor(t, 30*time.Second, "the ghost's device cross-signed", func() (bool, error) {
		resp, err := s.alice.QueryKeys(context.Background(), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{ghost: {}}})
		if err != nil {
			return false, err
		}
		master, self := resp.MasterKeys[ghost], resp.SelfSigningKeys[ghost]
		if len(master.Keys) != 1 || len(self.Keys) != 1 {
			return false, fmt.Errorf("ghost's cross-signing keys as the user sees them: master %+v, self-signing %+v", master, self)
		}
		var selfKey id.Ed25519
		for _, k := range self.Keys {
			selfKey = k
		}
		keys, ok := resp.DeviceKeys[ghost][device]
		if !ok {
			return false, fmt.Errorf("ghost device %s not in the user's key query: %v", device, resp.DeviceKeys[ghost])
		}
		if _, signed := keys.Signatures[ghost][id.NewKeyID(id.KeyAlgorithmEd25519, selfKey.String())]; !signed {
			return false, fmt.Errorf("ghost device %s is not signed by the ghost's self-signing key %s: %v", device, selfKey, keys.Signatures)
		}
		return true, nil
	})
}

// joinedFirstPortal starts a stack with o, the fake connector and alice's
// nio client; the contact's first message (msgID, text) makes the bridge
// create the portal, whose invite the client joins. It returns what the
// client answered to the join, which says whether the room is encrypted.
func joinedFirstPortal(t *testing.T, o stackOptions, contact, msgID, text string) (*stack, *fakeConnector, *nioClient, map[string]any) {
	t.Helper()
	s := newStack(t, testdb.Targets(t)[0], o)
	f := s.connectFake(nil)
	nio := startNio(t, s, "alice")
	f.send(textFrom(contact, msgID, text))
	return s, f, nio, nio.do(map[string]any{"cmd": "join_invite", "timeout": 60})
}

// TestEncryptedBridgeCreatedPortals: with encryption.default the portal the
// bridge creates is encrypted from the contact's first message on; in a
// plain portal, the user switching encryption on makes both directions
// encrypted from then on.
func TestEncryptedBridgeCreatedPortals(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		s, f, nio, j := joinedFirstPortal(t, stackOptions{encryption: true, encryptByDefault: true},
			"dave@network", "d1", "first from dave")
		if j["encrypted"] != true {
			t.Fatalf("portal created under encryption.default is not encrypted: %v", j)
		}
		got := nio.do(map[string]any{"cmd": "expect", "body": "first from dave", "timeout": 60})
		dev, err := s.br.DB.GhostDev.Get(context.Background(), s.ghost("dave@network"))
		if err != nil || dev == nil {
			t.Fatalf("ghost device row: %v %v", dev, err)
		}
		if got["encrypted"] != true || got["device_id"] != string(dev.DeviceID) {
			t.Fatalf("first message as the client saw it = %v, want encrypted by the ghost's device %s", got, dev.DeviceID)
		}
		nio.sendText(f, 1, "hi dave")
	})
	t.Run("require", func(t *testing.T) {
		s, f, nio, j := joinedFirstPortal(t, stackOptions{encryption: true, requireEncryption: true},
			"hank@network", "h1", "encrypted since it is required")
		if j["encrypted"] != true {
			t.Fatalf("portal created under encryption.require is not encrypted: %v", j)
		}
		if got := nio.do(map[string]any{"cmd": "expect", "body": "encrypted since it is required", "timeout": 60}); got["encrypted"] != true {
			t.Fatalf("first message under encryption.require = %v, want encrypted", got)
		}
		// Another of the user's clients, without encryption, sends in the clear.
		plain, err := s.alice.SendText(context.Background(), s.roomOf("hank@network"), "in the clear")
		if err != nil {
			t.Fatal(err)
		}
		notice := nio.do(map[string]any{"cmd": "expect", "body": "⚠️ Your message was not delivered: this bridge only accepts encrypted", "timeout": 60})
		if notice["reply_to"] != string(plain.EventID) {
			t.Fatalf("notice = %v, want a reply to %s", notice, plain.EventID)
		}
		nio.do(map[string]any{"cmd": "send", "text": "encrypted words"})
		tesths.WaitFor(t, 60*time.Second, "the encrypted message at the connector", func() (bool, error) {
			return len(f.commandsOf(connector.OpSendMessage)) == 1, nil
		})
		if c := f.commandsOf(connector.OpSendMessage); len(c) != 1 || c[0].Text != "encrypted words" {
			t.Fatalf("send_message commands = %+v, want only the encrypted message", c)
		}
	})
	t.Run("switched on", func(t *testing.T) {
		s, f, nio, _ := joinedFirstPortal(t, stackOptions{encryption: true}, "erin@network", "e1", "plain hello")
		if got := nio.do(map[string]any{"cmd": "expect", "body": "plain hello", "timeout": 60}); got["encrypted"] != false {
			t.Fatalf("message before encryption = %v, want plain", got)
		}
		nio.do(map[string]any{"cmd": "enable_encryption"})
		ghost := s.ghost("erin@network")
		// The ghost has its device since the bridge made the portal.
		resp, err := s.alice.QueryKeys(context.Background(), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{ghost: {}}})
		if err != nil || len(resp.DeviceKeys[ghost]) != 1 {
			t.Fatalf("ghost's devices when encryption is switched on: %v %v", resp, err)
		}
		nio.sendText(f, 1, "now secret")
		f.send(textFrom("erin@network", "e2", "secret answer"))
		if got := nio.do(map[string]any{"cmd": "expect", "body": "secret answer", "timeout": 60}); got["encrypted"] != true {
			t.Fatalf("answer after encryption was switched on = %v, want encrypted", got)
		}
	})
}

// idleMeasures reports whether the idle-minute measurements of ghost devices
// run: each waits a minute of wall time, so they run under `make e2ee-cost`
// (DMBRIDGE_E2EE_IDLE=1), not in every `make test`.
func idleMeasures(t *testing.T) bool {
	if os.Getenv("DMBRIDGE_E2EE_IDLE") == "" {
		t.Log("idle-minute measurement skipped; make e2ee-cost runs it")
		return false
	}
	return true
}

// TestGhostDeviceCost measures what each ghost device with a running /sync
// loop costs the bridge: goroutines and heap (without the test proxy, whose
// own goroutines would count), then homeserver requests to create and per
// idle minute (through it).
func TestGhostDeviceCost(t *testing.T) {
	measureGhostDeviceCost(t, false)
}

// measureGhostDeviceCost activates ten ghost devices and measures them; with
// pushed (encryption.appservice) no device runs a /sync loop, so a device
// should cost no goroutine and no idle request.
func measureGhostDeviceCost(t *testing.T, pushed bool) {
	const n = 10
	ctx := context.Background()
	activate := func(s *stack, prefix string) {
		for i := range n {
			if _, err := s.br.E2EE.Active(ctx, s.ghost(prefix+string(rune('a'+i))+"@network")); err != nil {
				t.Fatal(err)
			}
		}
	}
	configure := func(c *config.Config) { c.Encryption.Appservice = pushed }
	mode := "/sync"
	maxGoroutines, maxIdle := 4.0, 4.0 // the /sync loop and its connection; 30 s long polls
	if pushed {
		mode, maxGoroutines, maxIdle = "pushed", 0.5, 0
	}
	s := newStack(t, testdb.Targets(t)[0], stackOptions{encryption: true, configure: configure})
	if _, err := s.br.E2EE.Active(ctx, s.ghost("warmup@network")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	activate(s, "cost")
	time.Sleep(2 * time.Second)
	runtime.GC()
	runtime.ReadMemStats(&after)
	perDevice := float64(runtime.NumGoroutine()-g0) / n
	t.Logf("MEASURE %s mode, per ghost device: %.1f goroutines, %.0f KiB heap in use",
		mode, perDevice, float64(int64(after.HeapInuse)-int64(before.HeapInuse))/1024/n)
	if perDevice > maxGoroutines {
		t.Errorf("%.1f goroutines per ghost device in %s mode, want at most %.1f", perDevice, mode, maxGoroutines)
	}
	s.stopBridge()
	if !idleMeasures(t) {
		return
	}

	p := newStack(t, testdb.Targets(t)[0], stackOptions{encryption: true, hsProxy: true, configure: configure})
	reqs := &requestLog{n: map[string]int{}}
	p.proxy.setRefuse(reqs.record)
	activate(p, "idle")
	byPath, setup := reqs.take()
	t.Logf("MEASURE %s mode, creating a ghost device: %.1f homeserver requests: %v", mode, float64(setup)/n, byPath)
	time.Sleep(62 * time.Second)
	byPath, idle := reqs.take()
	t.Logf("MEASURE %s mode, idle minute, %d ghost devices: %.1f requests per device: %v", mode, n, float64(idle)/n, byPath)
	if per := float64(idle) / n; per > maxIdle {
		t.Errorf("%.1f idle requests per device per minute in %s mode, want at most %.0f", per, mode, maxIdle)
	}
}

// TestLostCryptoStoreReplacesDevice: a ghost device whose keys are gone
// from the bridge's database is noticed at start, logged out and replaced by
// a new, cross-signed device; the user's client then sees only the new one.
func TestLostCryptoStoreReplacesDevice(t *testing.T) {
	s := newStack(t, testdb.Targets(t)[0], stackOptions{encryption: true})
	ctx := context.Background()
	ghost := s.ghost("frank@network")
	// A ghost whose device syncs is one in a portal: only those get their
	// device back at a start. (The connector's hello stores the login.)
	s.connectFake(nil)
	key := database.PortalKey{LoginID: testLogin, ChatID: "frank@network"}
	if _, err := s.br.DB.Portal.GetOrCreate(ctx, key, "frank@network"); err != nil {
		t.Fatal(err)
	}
	if err := s.br.DB.Portal.SetRoom(ctx, key, "!frank:localhost"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.br.E2EE.Active(ctx, ghost); err != nil {
		t.Fatal(err)
	}
	old, err := s.br.DB.GhostDev.Get(ctx, ghost)
	if err != nil || old == nil {
		t.Fatalf("ghost device row: %v %v", old, err)
	}
	if _, err = s.br.DB.Exec(ctx, "DELETE FROM crypto_account WHERE account_id=$1", string(ghost)); err != nil {
		t.Fatal(err)
	}
	s.restartBridge()
	tesths.WaitFor(t, 30*time.Second, "the replacement device", func() (bool, error) {
		dev, err := s.br.DB.GhostDev.Get(ctx, ghost)
		return err == nil && dev != nil && dev.DeviceID != old.DeviceID, err
	})
	dev, _ := s.br.DB.GhostDev.Get(ctx, ghost)
	resp, err := s.alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{ghost: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, stale := resp.DeviceKeys[ghost][old.DeviceID]; stale || len(resp.DeviceKeys[ghost]) != 1 {
		t.Fatalf("ghost's devices after the reset = %v, want only the new %s", resp.DeviceKeys[ghost], dev.DeviceID)
	}
	assertCrossSigned(t, s, ghost, dev.DeviceID)
}

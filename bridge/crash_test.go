package bridge_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// bridgeProcess runs the real bridge binary, so that a test can kill it
// with SIGKILL at any moment, as a crash or an OOM kill would.
type bridgeProcess struct {
	t      testing.TB
	binary string
	config string
	logDir string
	cmd    *exec.Cmd
	runs   int
}

func buildBridge(t testing.TB) string {
	t.Helper()
	// Every test that runs the binary runs it against Dendrite.
	testdb.SkipShort(t, "Dendrite")
	bin := filepath.Join(t.TempDir(), "dmbridge")
	out, err := exec.Command("go", "build", "-tags=goolm", "-o", bin, "github.com/dmbridge/dmbridge/cmd/bridge").CombinedOutput()
	if err != nil {
		t.Fatalf("build bridge: %v\n%s", err, out)
	}
	return bin
}

func (s *stack) writeConfig(t testing.TB) string {
	t.Helper()
	data, err := yaml.Marshal(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err = os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newProcessStack is a stack for a bridge that runs as its own process
// (newBridgeProcess, or the instances of an HA pair): the connector listener
// gets a fixed port, which a restarted process listens on again and the
// fake connector reconnects to, and the process logs JSON at debug level,
// which a failed test shows.
func newProcessStack(t *testing.T, target testdb.Target) *stack {
	t.Helper()
	s := newStack(t, target, stackOptions{noBridge: true})
	s.cfg.Connector.Listen = fmt.Sprintf("127.0.0.1:%d", tesths.FreePort(t))
	s.cfg.Logging.Format = "json"
	s.cfg.Logging.Level = "debug"
	return s
}

// newBridgeProcess builds the binary for s's config (written now) and
// kills it at the end of the test; a failed test shows the logs.
func newBridgeProcess(t testing.TB, s *stack) *bridgeProcess {
	proc := &bridgeProcess{t: t, binary: buildBridge(t), config: s.writeConfig(t), logDir: t.TempDir()}
	t.Cleanup(proc.kill)
	t.Cleanup(func() {
		if t.Failed() {
			for i := 1; i <= proc.runs; i++ {
				data, _ := os.ReadFile(filepath.Join(proc.logDir, fmt.Sprintf("bridge-%d.log", i)))
				t.Logf("bridge run %d log:\n%s", i, tail(string(data), 200))
			}
		}
	})
	return proc
}

func (p *bridgeProcess) start(listen string) {
	p.t.Helper()
	p.runs++
	logPath := filepath.Join(p.logDir, fmt.Sprintf("bridge-%d.log", p.runs))
	logFile, err := os.Create(logPath)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(p.binary, "-c", p.config)
	listening := 20 * time.Second
	if w := os.Getenv(benchWrapEnv); w != "" {
		// Under valgrind (goals_counters_test.go) the start is far slower.
		args := append(strings.Fields(w), p.binary, "-c", p.config)
		p.cmd = exec.Command(args[0], args[1:]...)
		listening = 2 * time.Minute
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err = p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	tesths.WaitFor(p.t, listening, "bridge process listening", func() (bool, error) {
		conn, err := net.Dial("tcp", listen)
		if err != nil {
			return false, nil
		}
		_ = conn.Close()
		return true, nil
	})
}

// countLogs counts the log lines of every run that contain text.
func (p *bridgeProcess) countLogs(text string) int {
	n := 0
	for i := 1; i <= p.runs; i++ {
		data, _ := os.ReadFile(filepath.Join(p.logDir, fmt.Sprintf("bridge-%d.log", i)))
		n += strings.Count(string(data), text)
	}
	return n
}

func (p *bridgeProcess) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// killRun is the size of a SIGKILL run. The short one runs in `go test`;
// DMBRIDGE_FAULTS=full (see `make faults`) runs the full one.
type killRun struct {
	kills, messages, replies int
	// grace overrides bridge.in_doubt_grace: each kill that cuts a send
	// off costs that long, and the short run must stay short.
	grace time.Duration
}

func killRunSize() killRun {
	if os.Getenv("DMBRIDGE_FAULTS") != "" {
		return killRun{kills: 10, messages: 200, replies: 30}
	}
	return killRun{kills: 3, messages: 60, replies: 10, grace: 5 * time.Second}
}

// TestKilledBridgeLosesNothing kills the bridge process with SIGKILL again
// and again while a contact sends a steady stream of messages and the user
// sends replies. Every remote message shows in the room exactly once, in
// order, and every reply reaches the network exactly once.
func TestKilledBridgeLosesNothing(t *testing.T) {
	run := killRunSize()
	testdb.EachParallel(t, func(t *testing.T, target testdb.Target) {
		s := newProcessStack(t, target)
		if run.grace > 0 {
			s.cfg.Bridge.InDoubtGrace = config.Duration(run.grace)
		}
		proc := newBridgeProcess(t, s)
		proc.start(s.cfg.Connector.Listen)
		ctx, f, roomID := s.runPortal(20 * time.Minute)
		sent := stream(ctx, t, s, f, roomID, run, proc)
		if err := f.client.WaitAcked(ctx, sent.lastSeq); err != nil {
			t.Fatal(err)
		}
		lost, doubled, repLost, repDoubled := s.deliveredOnce(ctx, f, roomID, run, sent, 2*time.Minute)
		if lost > 0 {
			explainMissing(ctx, t, s, proc, roomID, run.messages)
		}
		landed, resent := proc.countLogs("Send in doubt had landed"), proc.countLogs("Send in doubt did not land")
		t.Logf("SIGKILL x%d on %s: remote sent=%d delivered=%d lost=%d doubled=%d; replies sent=%d executed=%d lost=%d doubled=%d; "+
			"sends in doubt: %d had landed, %d sent again",
			proc.runs-1, target.Name, run.messages, run.messages-lost, lost, doubled,
			len(sent.replies), len(sent.replies)-repLost, repLost, repDoubled, landed, resent)
	})
}

// explainMissing says, for each remote message missing from the room's
// history, whether the bridge logged a send of it and whether the
// homeserver has that event: a loss by the bridge and an event that the
// homeserver stored but /messages does not list need different fixes.
func explainMissing(ctx context.Context, t *testing.T, s *stack, proc *bridgeProcess, roomID id.RoomID, messages int) {
	t.Helper()
	counts, _, err := roomBodies(ctx, s.alice, roomID)
	if err != nil {
		t.Logf("explain missing: %v", err)
		return
	}
	eventOf := regexp.MustCompile(`"remote_id":"m(\d+)".*"event_id":"([^"]+)".*"message":"Bridged message to Matrix"`)
	sent := map[string]string{}
	for i := 1; i <= proc.runs; i++ {
		data, _ := os.ReadFile(filepath.Join(proc.logDir, fmt.Sprintf("bridge-%d.log", i)))
		for _, m := range eventOf.FindAllStringSubmatch(string(data), -1) {
			sent[m[1]] = m[2]
		}
	}
	for n := 1; n <= messages; n++ {
		if counts[fmt.Sprintf("message %d", n)] > 0 {
			continue
		}
		eventID, ok := sent[strconv.Itoa(n)]
		if !ok {
			t.Logf("message %d: the bridge logged no send of it", n)
			continue
		}
		evt, err := s.alice.GetEvent(ctx, roomID, id.EventID(eventID))
		if err != nil {
			t.Logf("message %d: sent as %s, which the homeserver does not give: %v", n, eventID, err)
		} else {
			t.Logf("message %d: sent as %s, which the homeserver has (%s, body %v) but /messages does not list",
				n, eventID, evt.Type.Type, evt.Content.Raw["body"])
		}
	}
}

// explainUnlisted logs which of want the room's /messages does not list,
// and for the user's replies whether the homeserver has the event all the
// same (Dendrite's backward pagination has been seen to skip a stored
// event; the bridge's own messages are explained by explainMissing).
func (s *stack) explainUnlisted(ctx context.Context, roomID id.RoomID, want []string, replies []id.EventID) {
	counts, _, err := roomBodies(ctx, s.alice, roomID)
	if err != nil {
		s.t.Logf("explain unlisted: %v", err)
		return
	}
	for _, body := range want {
		if counts[body] > 0 {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(body, "reply %d", &n); err != nil || n < 1 || n > len(replies) {
			s.t.Logf("%q is not listed by /messages", body)
			continue
		}
		evt, err := s.alice.GetEvent(ctx, roomID, replies[n-1])
		if err != nil {
			s.t.Logf("%q (%s) is not listed by /messages, and the homeserver does not give it: %v", body, replies[n-1], err)
		} else {
			s.t.Logf("%q (%s) is not listed by /messages, yet the homeserver has it (body %v)", body, replies[n-1], evt.Content.Raw["body"])
		}
	}
}

type streamed struct {
	lastSeq int64
	replies []id.EventID
}

// stream sends messages 2..N from the contact, paced, with the user's
// replies spread among them, while another goroutine kills and restarts the
// bridge each time the room shows another share of the stream: the bridge
// is then busy applying the rest, so a send is likely in flight.
func stream(ctx context.Context, t *testing.T, s *stack, f *fakeConnector, roomID id.RoomID, run killRun, proc *bridgeProcess) streamed {
	t.Helper()
	var out streamed
	killerDone := make(chan error, 1)
	go func() {
		killerDone <- func() error {
			for k := 1; k <= run.kills; k++ {
				shown := k * run.messages / (run.kills + 1)
				if !eventually(5*time.Minute, 10*time.Millisecond, func() bool { return remoteShown(s.messagesIn(roomID)) >= shown }) {
					return fmt.Errorf("kill %d: the room stays below %d messages", k, shown)
				}
				time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
				proc.kill()
				proc.start(s.cfg.Connector.Listen)
			}
			return nil
		}()
	}()
	// DMBRIDGE_KILL_PACE (a duration) sends faster: with 1ms the chat's
	// events queue up, and the kills land while its sends run ahead of
	// their results' commits (portal/pipeline.go).
	pace := 20 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv("DMBRIDGE_KILL_PACE")); err == nil && d >= 0 {
		pace = d
	}
	sendStream(ctx, t, s, f, roomID, run, pace, &out)
	if err := <-killerDone; err != nil {
		t.Fatal(err)
	}
	if proc.runs-1 != run.kills {
		t.Fatalf("killed the bridge %d times, want %d", proc.runs-1, run.kills)
	}
	return out
}

// sendStream sends messages 2..N from the contact with the user's replies
// spread among them, pausing pace after each, and records the last seq and
// the replies in out. Both kill tests stream this way while their killer
// goroutine works.
func sendStream(ctx context.Context, t *testing.T, s *stack, f *fakeConnector, roomID id.RoomID, run killRun, pace time.Duration, out *streamed) {
	t.Helper()
	replyAt := func(i int) bool {
		for j := 1; j <= run.replies; j++ {
			if i == 1+j*(run.messages-1)/(run.replies+1) {
				return true
			}
		}
		return false
	}
	for i := 2; i <= run.messages; i++ {
		seq, err := f.client.Send(ctx, textFrom("bob@network", fmt.Sprintf("m%d", i), fmt.Sprintf("message %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		out.lastSeq = seq
		if replyAt(i) {
			// The homeserver takes the reply whichever bridge is up; it
			// reaches the bridge in its transaction, retried until taken.
			resp, err := s.alice.SendText(ctx, roomID, fmt.Sprintf("reply %d", len(out.replies)+1))
			if err != nil {
				t.Fatal(err)
			}
			out.replies = append(out.replies, resp.EventID)
		}
		time.Sleep(pace)
	}
}

// onlyJoinedRoom waits until alice is in exactly one room, the portal, and
// returns it.
func (s *stack) onlyJoinedRoom(ctx context.Context, timeout time.Duration) id.RoomID {
	s.t.Helper()
	var roomID id.RoomID
	tesths.WaitFor(s.t, timeout, "the portal", func() (bool, error) {
		joined, err := s.alice.JoinedRooms(ctx)
		if err != nil || len(joined.JoinedRooms) == 0 {
			return false, err
		}
		roomID = joined.JoinedRooms[0]
		return len(joined.JoinedRooms) == 1, nil
	})
	return roomID
}

// firstPortal sends the contact's first message, which makes the portal the
// replies of a kill run go to, and returns that room.
func (s *stack) firstPortal(ctx context.Context, f *fakeConnector) id.RoomID {
	s.t.Helper()
	f.send(textFrom("bob@network", "m1", "message 1"))
	return s.onlyJoinedRoom(ctx, 60*time.Second)
}

// runPortal sets up a kill run: it connects a fake connector with a store
// of its own (so it keeps its seqs across the bridge's restarts), opens the
// portal with firstPortal and returns the run's context, which ends after
// timeout or with the test, the connector and the portal.
func (s *stack) runPortal(timeout time.Duration) (context.Context, *fakeConnector, id.RoomID) {
	s.t.Helper()
	f := s.connectFake(sdk.NewMemoryStore())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	s.t.Cleanup(cancel)
	return ctx, f, s.firstPortal(ctx, f)
}

// deliveredOnce waits until every remote message of the run shows in the
// room and the connector got every reply (a wait that times out falls
// through to the count, which names what is missing), gives a late second
// copy time to show, and then checks that each arrived exactly once, the
// remote messages in order.
func (s *stack) deliveredOnce(ctx context.Context, f *fakeConnector, roomID id.RoomID, run killRun, sent streamed, replyWait time.Duration) (lost, doubled, repLost, repDoubled int) {
	s.t.Helper()
	want := append(numbered("message", 1, run.messages), numbered("reply", 1, len(sent.replies))...)
	allShown := func() bool {
		counts, _, err := roomBodies(ctx, s.alice, roomID)
		if err != nil {
			s.t.Logf("read the room: %v", err)
			return false
		}
		for _, body := range want {
			if counts[body] == 0 {
				return false
			}
		}
		return true
	}
	if !eventually(5*time.Minute, time.Second, allShown) {
		s.t.Error("timed out waiting for every message in the room")
		s.explainUnlisted(ctx, roomID, want, sent.replies)
	}
	if !eventually(replyWait, 100*time.Millisecond, func() bool { return len(f.commandsOf(connector.OpSendMessage)) >= len(sent.replies) }) {
		s.t.Error("timed out waiting for every reply at the connector")
	}
	time.Sleep(3 * time.Second) // a late second copy would show within this
	counts, order, err := roomBodies(ctx, s.alice, roomID)
	if err != nil {
		s.t.Fatal(err)
	}
	return countOnce(s.t, counts, order, f, want, run.messages, sent.replies)
}

// countOnce checks the room's message counts and the replies the network
// executed: each exactly once, the remote messages in order.
func countOnce(t testing.TB, counts map[string]int, order []int, f *fakeConnector, want []string, messages int, replies []id.EventID) (lost, doubled, repLost, repDoubled int) {
	t.Helper()
	executed := map[string]int{}
	for _, c := range f.commandsOf(connector.OpSendMessage) {
		executed[c.Txn]++
	}
	for _, body := range numbered("message", 1, messages) {
		switch n := counts[body]; {
		case n == 0:
			lost++
			t.Errorf("%q is missing from the room", body)
		case n > 1:
			doubled += n - 1
			t.Errorf("%q shows %d times in the room", body, n)
		}
	}
	for i, evtID := range replies {
		switch n := executed[string(evtID)]; {
		case n == 0:
			repLost++
			t.Errorf("reply %d (%s) never reached the network", i+1, evtID)
		case n > 1:
			repDoubled += n - 1
			t.Errorf("reply %d (%s) executed %d times on the network", i+1, evtID, n)
		}
	}
	for body, n := range counts {
		if !slices.Contains(want, body) {
			t.Errorf("unexpected message in the room (%d times): %q", n, body)
		}
	}
	if !slices.IsSorted(order) {
		t.Errorf("remote messages out of order: %v", order)
	}
	return lost, doubled, repLost, repDoubled
}

// eventually polls cond every interval until it holds or timeout passes.
func eventually(timeout, interval time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(interval) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// remoteShown counts the distinct remote messages among evts.
func remoteShown(evts []*event.Event) int {
	seen := map[string]bool{}
	for _, evt := range evts {
		if msg := evt.Content.AsMessage(); msg != nil && strings.HasPrefix(msg.Body, "message ") {
			seen[msg.Body] = true
		}
	}
	return len(seen)
}

// roomBodies reads the whole room through /messages as the user and counts
// each message body; order lists the numbers of the remote messages in
// timeline order, first copies only.
func roomBodies(ctx context.Context, c *mautrix.Client, roomID id.RoomID) (map[string]int, []int, error) {
	backwards, err := pageBodies(ctx, c, roomID, mautrix.DirectionBackward, 100)
	if err != nil {
		return nil, nil, err
	}
	counts := map[string]int{}
	for _, b := range backwards {
		counts[b]++
	}
	var order []int
	seen := map[int]bool{}
	for i := len(backwards) - 1; i >= 0; i-- {
		var n int
		if _, err := fmt.Sscanf(backwards[i], "message %d", &n); err == nil && !seen[n] {
			seen[n] = true
			order = append(order, n)
		}
	}
	return counts, order, nil
}

func tail(s string, lines int) string {
	n := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			n++
			if n > lines {
				return s[i+1:]
			}
		}
	}
	return s
}

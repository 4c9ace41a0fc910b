package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/internal/testdb"
)

// The demo is run as its users run it: the built binaries, a state
// directory, and its output read line by line. Free ports keep it out of
// the way of a developer's own `make demo`.

// runningDemo is a demo process whose output is collected as it comes.
type runningDemo struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error

	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced when a line arrives
}

func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-tags=goolm", "-o", dir+string(filepath.Separator),
		"github.com/dmbridge/dmbridge/cmd/bridge",
		"github.com/dmbridge/dmbridge/cmd/xmpp-connector",
		"github.com/dmbridge/dmbridge/cmd/dmbridge-demo").CombinedOutput()
	if err != nil {
		t.Fatalf("building the binaries: %v\n%s", err, out)
	}
	return dir
}

func startDemo(t *testing.T, args ...string) *runningDemo {
	t.Helper()
	testdb.SkipShort(t, "Dendrite and Prosody (the demo starts both)")
	bin := buildBinaries(t)
	state := filepath.Join(t.TempDir(), "state")
	cmd := exec.Command(filepath.Join(bin, "dmbridge-demo"), append([]string{"-state", state, "-free-ports"}, args...)...)
	cmd.Env = append(os.Environ(), "DEMO_EXIT_AFTER_PROOF=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &runningDemo{cmd: cmd, exited: make(chan struct{}), more: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.mu.Lock()
			d.lines = append(d.lines, sc.Text())
			close(d.more)
			d.more = make(chan struct{})
			d.mu.Unlock()
		}
		d.err = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", d.output())
			for _, log := range []string{"bridge.log", "xmpp-connector.log"} {
				data, _ := os.ReadFile(filepath.Join(state, "logs", log))
				t.Logf("%s:\n%s", log, data)
			}
		}
	})
	return d
}

func (d *runningDemo) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n")
}

// waitLine waits for an output line containing s.
func (d *runningDemo) waitLine(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		d.mu.Lock()
		more := d.more
		for _, l := range d.lines {
			if strings.Contains(l, s) {
				d.mu.Unlock()
				return
			}
		}
		d.mu.Unlock()
		select {
		case <-more:
		case <-d.exited:
			if !strings.Contains(d.output(), s) {
				t.Fatalf("demo exited (%v) without printing %q", d.err, s)
			}
			return
		case <-deadline:
			t.Fatalf("demo printed no %q within %s", s, timeout)
		}
	}
}

func (d *runningDemo) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-d.exited:
	case <-time.After(timeout):
		t.Fatalf("demo still running after %s", timeout)
	}
	if d.err != nil {
		t.Fatalf("demo exited with %v, want status 0", d.err)
	}
}

// coldStart covers building Dendrite on a machine that never did.
const coldStart = 6 * time.Minute

func TestDemoProvesDMAndExits(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "-exit-after-proof")
	d.wait(t, coldStart)
	out := d.output()
	checkProof(t, out)
	checkAllStopped(t, out)
}

func TestDemoStopsEverythingOnCtrlC(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	d.waitLine(t, "Press Ctrl-C", coldStart)
	checkProof(t, d.output())
	// What a terminal's Ctrl-C sends; the servers are in their own process
	// groups, so only the demo gets it and it must stop them.
	if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	d.wait(t, time.Minute)
	checkAllStopped(t, d.output())
}

var (
	roomLine  = regexp.MustCompile(`(?m)^DM room:\s+(!\S+:localhost)$`)
	ghostLine = regexp.MustCompile(`(?m)^bob's ghost:\s+(@\S+:localhost)$`)
)

// checkProof reads the proof back from the output: the demo checked it
// against the homeserver before printing PROOF OK, and the printed events
// must say the same.
func checkProof(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, "\nPROOF OK\n") {
		t.Fatal("no PROOF OK in the output")
	}
	room := submatch(t, roomLine, out)
	ghost := submatch(t, ghostLine, out)
	if ghost != "@dm_bob=40localhost:localhost" {
		t.Errorf("bob's ghost is %s", ghost)
	}
	var invite struct {
		Type     string `json:"type"`
		Sender   string `json:"sender"`
		StateKey string `json:"state_key"`
		Content  struct {
			Membership string `json:"membership"`
			IsDirect   bool   `json:"is_direct"`
		} `json:"content"`
	}
	jsonAfter(t, out, "alice's invite", &invite)
	if invite.Type != "m.room.member" || invite.Sender != ghost || invite.StateKey != "@alice:localhost" ||
		invite.Content.Membership != "invite" || !invite.Content.IsDirect {
		t.Errorf("invite shown as %+v, want an is_direct invite of @alice:localhost by %s", invite, ghost)
	}
	var direct map[string][]string
	jsonAfter(t, out, "alice's m.direct entry", &direct)
	if len(direct[ghost]) != 1 || direct[ghost][0] != room {
		t.Errorf("m.direct shown as %v, want %s: [%s]", direct, ghost, room)
	}
	var msg struct {
		Sender  string `json:"sender"`
		Content struct {
			Body string `json:"body"`
		} `json:"content"`
	}
	jsonAfter(t, out, "the message in alice's /sync", &msg)
	if msg.Sender != ghost || msg.Content.Body != "Hi Alice! This is Bob, writing from XMPP." {
		t.Errorf("message shown as %+v", msg)
	}
	for _, want := range []string{"homeserver  http://127.0.0.1:", "user        @alice:localhost", "account     bob@localhost / "} {
		if !strings.Contains(out, want) {
			t.Errorf("the login guide has no %q", want)
		}
	}
}

var pidOf = regexp.MustCompile(`started (\S+)\s.*\(pid (\d+)\)`)

// checkAllStopped checks that every process the demo said it started is
// gone.
func checkAllStopped(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, "All stopped; nothing left running.") {
		t.Error("the demo did not report a clean stop")
	}
	found := pidOf.FindAllStringSubmatch(out, -1)
	if len(found) != 4 {
		t.Fatalf("found %d started processes in the output, want 4", len(found))
	}
	for _, m := range found {
		pid, _ := strconv.Atoi(m[2])
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after the demo exited (kill -0: %v)", m[1], pid, err)
		}
	}
}

func submatch(t *testing.T, re *regexp.Regexp, out string) string {
	t.Helper()
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no match for %s in the output", re)
	}
	return m[1]
}

// jsonAfter decodes the JSON on the line after the one starting with label.
func jsonAfter(t *testing.T, out, label string, v any) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, label) && i+1 < len(lines) {
			if err := json.Unmarshal([]byte(strings.TrimSpace(lines[i+1])), v); err != nil {
				t.Fatalf("the line after %q is not JSON: %v", label, err)
			}
			return
		}
	}
	t.Fatalf("no %q in the output", label)
}

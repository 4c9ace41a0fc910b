package bridge_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// bridgeProcess runs the real bridge binary, so that a test can kill it
// with SIGKILL at any moment, as a crash or an OOM kill would.
type bridgeProcess struct {
	t      *testing.T
	binary string
	config string
	logDir string
	cmd    *exec.Cmd
	runs   int
}

func buildBridge(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dmbridge")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/dmbridge/dmbridge/cmd/bridge").CombinedOutput()
	if err != nil {
		t.Fatalf("build bridge: %v\n%s", err, out)
	}
	return bin
}

func (s *stack) writeConfig(t *testing.T) string {
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

func (p *bridgeProcess) start(listen string) {
	p.t.Helper()
	p.runs++
	logPath := filepath.Join(p.logDir, fmt.Sprintf("bridge-%d.log", p.runs))
	logFile, err := os.Create(logPath)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(p.binary, "-c", p.config)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err = p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	tesths.WaitFor(p.t, 20*time.Second, "bridge process listening", func() (bool, error) {
		conn, err := net.Dial("tcp", listen)
		if err != nil {
			return false, nil
		}
		_ = conn.Close()
		return true, nil
	})
}

func (p *bridgeProcess) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// TestKilledBridgeLosesNothing kills the bridge process with SIGKILL twice
// while a stream of remote messages and the user's replies are in flight.
// Every acked remote message shows exactly once, in order, and every reply
// reaches the network exactly once.
func TestKilledBridgeLosesNothing(t *testing.T) {
	for _, target := range testdb.Targets(t) {
		t.Run(target.Name, func(t *testing.T) {
			s := newStack(t, target, stackOptions{noBridge: true})
			s.cfg.Connector.Listen = fmt.Sprintf("127.0.0.1:%d", tesths.FreePort(t))
			s.cfg.Logging.Format = "json"
			s.cfg.Logging.Level = "debug"
			proc := &bridgeProcess{t: t, binary: buildBridge(t), config: s.writeConfig(t), logDir: t.TempDir()}
			t.Cleanup(proc.kill)
			t.Cleanup(func() {
				if t.Failed() {
					for i := 1; i <= proc.runs; i++ {
						data, _ := os.ReadFile(filepath.Join(proc.logDir, fmt.Sprintf("bridge-%d.log", i)))
						t.Logf("bridge run %d log:\n%s", i, tail(string(data), 400))
					}
				}
			})
			proc.start(s.cfg.Connector.Listen)
			store := connector.NewMemoryStore()
			f := s.connectFake(store)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			const total = 30
			var seqs []int64
			for i := 1; i <= total; i++ {
				seq, err := f.client.Send(ctx, textFrom("bob@network", fmt.Sprintf("m%d", i), fmt.Sprintf("message %d", i)))
				if err != nil {
					t.Fatal(err)
				}
				seqs = append(seqs, seq)
				if i == 10 || i == 20 {
					if err = f.client.WaitAcked(ctx, seqs[i-3]); err != nil {
						t.Fatal(err)
					}
					proc.kill()
					proc.start(s.cfg.Connector.Listen)
				}
			}
			if err := f.client.WaitAcked(ctx, seqs[total-1]); err != nil {
				t.Fatal(err)
			}
			var roomID id.RoomID
			tesths.WaitFor(t, 30*time.Second, "the portal", func() (bool, error) {
				joined, err := s.alice.JoinedRooms(ctx)
				if err != nil || len(joined.JoinedRooms) == 0 {
					return false, err
				}
				roomID = joined.JoinedRooms[0]
				return len(joined.JoinedRooms) == 1, nil
			})
			s.waitBodies(roomID, numbered("message", 1, total))

			// Replies from Matrix around another crash.
			var sent []id.EventID
			for i := 1; i <= 5; i++ {
				resp, err := s.alice.SendText(ctx, roomID, fmt.Sprintf("reply %d", i))
				if err != nil {
					t.Fatal(err)
				}
				sent = append(sent, resp.EventID)
				if i == 3 {
					proc.kill()
					proc.start(s.cfg.Connector.Listen)
				}
			}
			tesths.WaitFor(t, 60*time.Second, "5 replies at the connector", func() (bool, error) {
				return len(f.commandsOf(connector.OpSendMessage)) >= 5, nil
			})
			time.Sleep(500 * time.Millisecond)
			got := map[string]int{}
			for _, c := range f.commandsOf(connector.OpSendMessage) {
				got[c.Txn]++
			}
			for _, evtID := range sent {
				if got[string(evtID)] != 1 {
					t.Errorf("reply %s executed %d times on the network, want 1", evtID, got[string(evtID)])
				}
			}
		})
	}
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

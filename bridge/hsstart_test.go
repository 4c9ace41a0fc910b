package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestBridgeStartsBeforeHomeserver: on a fresh install the bridge binary is
// started while nothing answers at the homeserver's address (a machine
// booting, the homeserver restarting). It keeps running well past the ten
// seconds it used to give the homeserver before exiting, takes a
// connector's message in meanwhile, and once the homeserver answers the
// message is in the user's new DM exactly once.
func TestBridgeStartsBeforeHomeserver(t *testing.T) {
	testdb.EachParallel(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{noBridge: true, encryption: true})
		s.cfg.Connector.Listen = fmt.Sprintf("127.0.0.1:%d", tesths.FreePort(t))
		s.cfg.Logging.Format, s.cfg.Logging.Level = "json", "debug"
		hs, err := url.Parse(s.cfg.Homeserver.Address)
		if err != nil {
			t.Fatal(err)
		}
		later := fmt.Sprintf("127.0.0.1:%d", tesths.FreePort(t))
		s.cfg.Homeserver.Address = "http://" + later
		proc := newBridgeProcess(t, s)
		started := time.Now()
		proc.start(s.cfg.Connector.Listen)

		f := s.connectFake(sdk.NewMemoryStore())
		const body = "written while the homeserver was down"
		f.send(textFrom("bob@network", "m1", body))
		time.Sleep(time.Until(started.Add(12 * time.Second)))
		if !processAlive(proc.cmd) {
			t.Fatal("the bridge exited while the homeserver was down")
		}
		if n := proc.countLogs("Waiting for the homeserver"); n == 0 {
			t.Error("the bridge did not say it waits for the homeserver")
		}

		ln, err := net.Listen("tcp", later)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: httputil.NewSingleHostReverseProxy(hs), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })

		ctx := context.Background()
		roomID := s.onlyJoinedRoom(ctx, 90*time.Second)
		tesths.WaitFor(t, 60*time.Second, "the message in the DM", func() (bool, error) {
			got, err := s.timelineBodies(ctx, roomID)
			return got[body] > 0, err
		})
		time.Sleep(2 * time.Second) // a second copy has time to show
		got, err := s.timelineBodies(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		if got[body] != 1 {
			t.Fatalf("the message is in the DM %d times, want once", got[body])
		}
	})
}

// TestBridgeRefusedByHomeserverExits: a homeserver that answers and refuses
// the appservice (here: an as_token it does not know, as when the
// registration file is not in its config) will not change its mind, so the
// bridge stops at once with a line that says what to check, instead of
// waiting for ever.
func TestBridgeRefusedByHomeserverExits(t *testing.T) {
	testdb.SkipShort(t, "Dendrite")
	s := newStack(t, testdb.SQLite(t), stackOptions{noBridge: true})
	s.cfg.Connector.Listen = fmt.Sprintf("127.0.0.1:%d", tesths.FreePort(t))
	s.cfg.Appservice.ASToken = strings.Repeat("w", 64)
	proc := newBridgeProcess(t, s)
	var out bytes.Buffer
	cmd := exec.Command(proc.binary, "-c", proc.config)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("the bridge ended with %v, want exit status 1", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("the bridge still runs 30 s after the homeserver refused its appservice token:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "refuses the appservice") {
		t.Errorf("the bridge's last words do not say the homeserver refuses the appservice:\n%s", out.String())
	}
}

// processAlive reports whether the process runs (and is not a zombie
// waiting to be reaped).
func processAlive(cmd *exec.Cmd) bool {
	if cmd == nil || cmd.Process == nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

package bridge_test

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestFaultHALeaseLostWhileStarting: the active instance is still waiting
// for its homeserver (nothing answers at the address) when it is paused
// past its lease and the standby takes over. Woken up, it must exit with
// status 3, so that its supervisor brings it back as a standby, rather than
// go on waiting for ever with every request refused by its fence.
func TestFaultHALeaseLostWhileStarting(t *testing.T) {
	s := newProcessStack(t, testdb.Postgres(t))
	s.cfg.HA.Enabled = true
	bin, hs := buildBridge(t), s.cfg.Homeserver.Address
	down := fmt.Sprintf("http://127.0.0.1:%d", tesths.FreePort(t))
	writeConfig := func(string) string {
		s.cfg.Homeserver.Address = down
		defer func() { s.cfg.Homeserver.Address = hs }()
		return s.writeConfig(t)
	}
	a, b := newHAInstance(t, "a", bin, hs, writeConfig), newHAInstance(t, "b", bin, hs, writeConfig)
	a.start()
	tesths.WaitFor(t, 30*time.Second, "a waiting for the homeserver as the active", func() (bool, error) {
		return a.countLogs("Waiting for the homeserver") > 0, nil
	})
	b.start()

	a.signal(syscall.SIGSTOP)
	probe := &http.Client{Timeout: time.Second}
	tesths.WaitFor(t, 30*time.Second, "b taking over", func() (bool, error) { return b.ready(probe), nil })
	a.signal(syscall.SIGCONT)
	status, exited := a.waitExit(30 * time.Second)
	if !exited {
		t.Fatal("a still runs 30 s after it was woken up without its lease")
	}
	if status != 3 {
		t.Errorf("a exited with status %d, want 3 (lost the lease)", status)
	}
	if a.countLogs("Lost the active lease while starting") == 0 {
		t.Error("a's log does not say it lost the lease while starting")
	}
}

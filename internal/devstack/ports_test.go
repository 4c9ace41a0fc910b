package devstack

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestPortOrFallsBackWhenTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	got, err := PortOr(taken)
	if err != nil {
		t.Fatal(err)
	}
	if got == taken || got == 0 {
		t.Errorf("PortOr(%d) with the port in use = %d, want another port", taken, got)
	}

	free, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := PortOr(free); err != nil || got != free {
		t.Errorf("PortOr(%d) with the port free = %d, %v; want it back", free, got, err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", free))
	if err != nil {
		t.Fatalf("the port PortOr returned cannot be bound: %v", err)
	}
	_ = ln.Close()
}

func TestProsodyCanReach(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open", "state")
	private := filepath.Join(base, "private", "state")
	for dir, mode := range map[string]os.FileMode{filepath.Dir(open): 0o755, filepath.Dir(private): 0o700} {
		if err := os.MkdirAll(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		// Prosody runs as the caller, who can reach anything it can.
		if !ProsodyCanReach(private) {
			t.Error("not running as root, every directory should do")
		}
		return
	}
	// t.TempDir's own parent is private too; widen it for the open case.
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	if !ProsodyCanReach(open) {
		t.Errorf("%s has only searchable parents but is reported unreachable", open)
	}
	if ProsodyCanReach(private) {
		t.Errorf("%s is under a 0700 directory but is reported reachable", private)
	}
}

// TestFreePortNeverRepeats: many calls in a row never give one port twice,
// nor one that a port-0 listener could be given; a test stack's listeners
// would otherwise collide.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := make(map[int]bool)
	for i := 0; i < 500; i++ {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("FreePort returned %d twice", port)
		}
		if port >= ephemeralLow() {
			t.Fatalf("FreePort returned %d, in the range a port-0 listener may be given", port)
		}
		seen[port] = true
	}
}

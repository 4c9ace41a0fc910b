package devstack

import (
	"fmt"
	"net"
	"sync"
)

// FreePort returns a currently unused loopback TCP port, for listeners
// whose address has to be known before they start (an appservice URL in a
// registration that Dendrite reads at startup, a port in a config file).
// It never returns a port it returned before in this process: the probe is
// closed at once, so the kernel may well hand the same port out again on
// the next call, and two listeners of one test stack (the bridge and its
// Dendrite, say) would then be given one port.
func FreePort() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if handedOut.claim(port) {
			return port, nil
		}
	}
}

// handedOut is the ports FreePort returned in this process. It is the one
// piece of package state here: FreePort's callers are spread over tests
// and stacks that share nothing else.
var handedOut = &portSet{ports: make(map[int]bool)}

type portSet struct {
	mu    sync.Mutex
	ports map[int]bool
}

func (s *portSet) claim(port int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ports[port] {
		return false
	}
	s.ports[port] = true
	return true
}

// PortOr returns preferred if nothing listens on it on loopback, else a
// free port. Well-known ports make a local stack easy to point clients at;
// falling back keeps it working next to whatever already uses them.
func PortOr(preferred int) (int, error) {
	if preferred > 0 {
		// Bind on all interfaces: a server on 0.0.0.0:port (a system
		// Prosody, say) also blocks 127.0.0.1:port.
		if l, err := net.Listen("tcp", fmt.Sprintf(":%d", preferred)); err == nil {
			_ = l.Close()
			return preferred, nil
		}
	}
	return FreePort()
}

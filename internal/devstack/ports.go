package devstack

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// FreePort returns a currently unused loopback TCP port, for listeners
// whose address has to be known before they start (an appservice URL in a
// registration that Dendrite reads at startup, a port in a config file).
//
// Such a port is only reserved on paper until its listener binds it, so it
// is taken from below the kernel's ephemeral range: a listener on port 0
// (an httptest server, a metrics listener) gets its port from that range
// and can never take one handed out here (seen: the bridge's metrics
// listener took the port its appservice was about to bind). And it is
// never returned twice in this process.
func FreePort() (int, error) {
	lo, hi := fixedPortLow, ephemeralLow()
	for try := 0; hi > lo && try < 200; try++ {
		port := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use
		}
		_ = l.Close()
		if handedOut.claim(port) {
			return port, nil
		}
	}
	// No room below the ephemeral range: a port the kernel picks.
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

// fixedPortLow is the lowest port FreePort hands out: above the
// well-known and registered ports that local services tend to use.
const fixedPortLow = 15000

// ephemeralLow is the start of the kernel's range for port-0 binds
// (Linux's default 32768 where it cannot be read).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 32768
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return low
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

package devstack

import (
	"fmt"
	"net"
)

// FreePort returns a currently unused loopback TCP port, for listeners
// whose address has to be known before they start (an appservice URL in a
// registration that Dendrite reads at startup, a port in a config file).
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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

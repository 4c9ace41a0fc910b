// Package netguard keeps outgoing HTTP fetches of URLs that hostile parties
// chose (attachment links, avatars, upload slots) away from the machine's
// own network: loopback, private, link-local, CGNAT, multicast and other
// special-purpose addresses are refused unless the operator allowed them.
//
// The check runs when a connection is made, on the address actually dialled
// (after DNS resolution), so a name that resolves to a public address for a
// check and to 127.0.0.1 for the fetch (DNS rebinding) gains nothing, and it
// runs again for every redirect hop because every hop dials anew.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrRefused is wrapped by every refusal, so callers can tell "the address
// is not allowed" from "the server did not answer". Its text never names
// the address: callers may show it to users.
var ErrRefused = errors.New("refused to connect to a local or private network address")

// refusedError keeps the refused address for logs (Detail) while Error
// stays free of it.
type refusedError struct {
	detail string
}

func (e *refusedError) Error() string { return ErrRefused.Error() }
func (e *refusedError) Unwrap() error { return ErrRefused }

// Detail returns the internal explanation of a refusal (which address,
// why) for the operator's log, or "" if err is not a refusal.
func Detail(err error) string {
	var re *refusedError
	if errors.As(err, &re) {
		return re.detail
	}
	return ""
}

func refused(format string, args ...any) error {
	return &refusedError{detail: fmt.Sprintf(format, args...)}
}

// Policy decides which addresses may be dialled. The zero value refuses
// every special-purpose address and allows the rest of the internet.
type Policy struct {
	prefixes []netip.Prefix
	addrs    []netip.AddrPort // an address allowed on one port only
	hosts    map[string]bool  // "name" or "name:port"
}

// NewPolicy builds a policy from the operator's allowlist. Each entry is a
// CIDR ("10.1.0.0/16"), an address ("192.168.1.5"), an address with a port
// ("127.0.0.1:29351", "[::1]:29351"), a host name ("media.internal", every
// address it resolves to is allowed) or a host name with a port.
func NewPolicy(allow []string) (*Policy, error) {
	p := &Policy{hosts: map[string]bool{}}
	for _, entry := range allow {
		if err := p.add(strings.TrimSpace(entry)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// ValidateEntry reports whether one allowlist entry is well formed, for
// config validation.
func ValidateEntry(entry string) error {
	return (&Policy{hosts: map[string]bool{}}).add(entry)
}

func (p *Policy) add(entry string) error {
	if entry == "" {
		return errors.New("empty entry")
	}
	if strings.Contains(entry, "/") {
		prefix, err := netip.ParsePrefix(entry)
		if err != nil {
			return fmt.Errorf("%q is not a valid CIDR", entry)
		}
		p.prefixes = append(p.prefixes, prefix.Masked())
		return nil
	}
	if addr, err := netip.ParseAddr(entry); err == nil {
		p.prefixes = append(p.prefixes, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
		return nil
	}
	if ap, err := netip.ParseAddrPort(entry); err == nil {
		p.addrs = append(p.addrs, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		return nil
	}
	host, port := entry, ""
	if h, pt, err := net.SplitHostPort(entry); err == nil {
		if n, err := strconv.Atoi(pt); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("%q has an invalid port", entry)
		}
		host, port = h, pt
	}
	if !validHostname(host) {
		return fmt.Errorf("%q is neither a CIDR, an address nor a host name", entry)
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if port != "" {
		host = net.JoinHostPort(host, port)
	}
	p.hosts[host] = true
	return nil
}

func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// HostAllowed reports whether the operator allowed a host name (as written
// in the URL, before resolution) on a port; such a host may resolve to any
// address.
func (p *Policy) HostAllowed(host, port string) bool {
	if p == nil || len(p.hosts) == 0 {
		return false
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return p.hosts[host] || p.hosts[net.JoinHostPort(host, port)]
}

// CheckAddr returns nil when ap may be dialled, or a refusal.
func (p *Policy) CheckAddr(ap netip.AddrPort) error {
	addr := ap.Addr().Unmap()
	if p != nil {
		for _, prefix := range p.prefixes {
			if prefix.Contains(addr) {
				return nil
			}
		}
		for _, allowed := range p.addrs {
			if allowed.Addr() == addr && allowed.Port() == ap.Port() {
				return nil
			}
		}
	}
	if why := special(addr); why != "" {
		return refused("%s is %s", ap, why)
	}
	return nil
}

package netguard

import "net/netip"

// blockedRanges are the special-purpose ranges (IANA registries for IPv4
// and IPv6) that are not the public internet, beyond what netip's own
// predicates cover.
var blockedRanges = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a 'this network' address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "an IETF protocol address"},
	{netip.MustParsePrefix("192.0.2.0/24"), "a documentation address"},
	{netip.MustParsePrefix("198.18.0.0/15"), "a benchmarking address"},
	{netip.MustParsePrefix("198.51.100.0/24"), "a documentation address"},
	{netip.MustParsePrefix("203.0.113.0/24"), "a documentation address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	{netip.MustParsePrefix("100::/64"), "a discard-only address"},
	{netip.MustParsePrefix("2001:db8::/32"), "a documentation address"},
	{netip.MustParsePrefix("fec0::/10"), "a site-local address"},
}

// Prefixes whose addresses embed an IPv4 address that is what is actually
// reached: NAT64 (well-known and local-use) and 6to4. The embedded address
// is checked like any other.
var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour      = netip.MustParsePrefix("2002::/16")
	teredo         = netip.MustParsePrefix("2001::/32")
)

// special says why addr is not a public unicast address, or "" if it is.
func special(addr netip.Addr) string {
	addr = addr.Unmap()
	switch {
	case !addr.IsValid():
		return "not a valid address"
	case addr.IsUnspecified():
		return "the unspecified address"
	case addr.IsLoopback():
		return "a loopback address"
	case addr.IsPrivate():
		return "a private address"
	case addr.IsLinkLocalUnicast():
		return "a link-local address"
	case addr.IsMulticast(), addr.IsLinkLocalMulticast(), addr.IsInterfaceLocalMulticast():
		return "a multicast address"
	case addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the broadcast address"
	}
	if addr.Is6() {
		b := addr.As16()
		switch {
		case nat64WellKnown.Contains(addr):
			if why := special(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})); why != "" {
				return "a NAT64 form of " + why
			}
		case nat64Local.Contains(addr):
			return "a local-use NAT64 address"
		case sixToFour.Contains(addr):
			if why := special(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})); why != "" {
				return "a 6to4 form of " + why
			}
		case teredo.Contains(addr):
			return "a Teredo address"
		}
		// IPv4-compatible (::a.b.c.d, deprecated) addresses.
		if addr.Is6() && [12]byte(b[:12]) == [12]byte{} {
			return "an IPv4-compatible address"
		}
	}
	for _, r := range blockedRanges {
		if r.prefix.Contains(addr) {
			return r.why
		}
	}
	return ""
}

package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
)

// MaxRedirects is how many redirects a guarded client follows.
const MaxRedirects = 5

// DialContext wraps a dialer so that every connection it makes is checked
// against the policy. The check is the dialer's Control hook, which sees the
// address the socket is about to connect to, after name resolution.
func (p *Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	guarded := *d
	guarded.Control = func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return refused("unparsable dial address %q", address)
		}
		return p.CheckAddr(ap)
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && p.HostAllowed(host, port) {
			return d.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
}

// NewTransport is an http.Transport that dials only what the policy allows.
// It never uses a proxy from the environment: through a proxy the address
// finally reached could not be checked. The caller may set timeouts and
// pool sizes on the result.
func (p *Policy) NewTransport(d *net.Dialer) *http.Transport {
	return &http.Transport{
		Proxy:             nil,
		DialContext:       p.DialContext(d),
		ForceAttemptHTTP2: true,
	}
}

// NewClient wraps a guarded transport in a client that follows at most
// MaxRedirects redirects, and only to http or https.
func (p *Policy) NewClient(t *http.Transport) *http.Client {
	return &http.Client{Transport: t, CheckRedirect: CheckRedirect}
}

// CheckRedirect is an http.Client CheckRedirect that bounds the number of
// hops and refuses any scheme but http and https. The address of each hop is
// checked when it is dialled.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= MaxRedirects {
		return fmt.Errorf("stopped after %d redirects", MaxRedirects)
	}
	return CheckScheme(req.URL.Scheme)
}

// CheckScheme refuses every URL scheme but http and https.
func CheckScheme(scheme string) error {
	if scheme != "http" && scheme != "https" {
		return refused("scheme %q", scheme)
	}
	return nil
}

// IsRefused reports whether err (or anything it wraps) is a refusal.
func IsRefused(err error) bool {
	return errors.Is(err, ErrRefused)
}

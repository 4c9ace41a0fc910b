package fence

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// gatedConn is a connection whose every write first asks gate.
type gatedConn struct {
	net.Conn
	gate func() error
}

// Write sends b only while gate passes; once it fails the connection is
// closed, so that a request checked before a pause and written after it is
// never completed (a partly sent one the server discards).
func (c gatedConn) Write(b []byte) (int, error) {
	if err := c.gate(); err != nil {
		_ = c.Conn.Close()
		return 0, fmt.Errorf("%w: %w", ErrFenced, err)
	}
	return c.Conn.Write(b)
}

// Transport returns a copy of base whose connections ask gate before every
// write. A check when a request starts (a RoundTripper's) is not enough:
// the transport may still dial, wait for a connection or hand the request
// to its writer goroutine, and a process paused meanwhile and resumed after
// losing its lease would send a request checked before the pause. Here the
// check is the last thing before the write system call. TLS, HTTP/2 and a
// proxy's CONNECT all write through the dialled connection.
func Transport(base *http.Transport, gate func() error) *http.Transport {
	t := base.Clone()
	dial := t.DialContext
	switch {
	case dial == nil && t.Dial != nil:
		dial = contextless(t.Dial)
	case dial == nil:
		// http.DefaultTransport's dialer.
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	t.DialContext, t.Dial = fenced(dial, gate), nil
	dialTLS := t.DialTLSContext
	if dialTLS == nil && t.DialTLS != nil {
		dialTLS = contextless(t.DialTLS)
	}
	if dialTLS != nil {
		t.DialTLSContext, t.DialTLS = fenced(dialTLS, gate), nil
	}
	return t
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func fenced(dial dialFunc, gate func() error) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return gatedConn{Conn: c, gate: gate}, nil
	}
}

// contextless adapts http.Transport's deprecated Dial and DialTLS.
func contextless(dial func(network, addr string) (net.Conn, error)) dialFunc {
	return func(_ context.Context, network, addr string) (net.Conn, error) { return dial(network, addr) }
}

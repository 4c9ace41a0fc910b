package matrix

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// BoundInTransport moves the homeserver client's overall bound (mautrix sets
// http.Client.Timeout, 180 s) into its transport, as a deadline on each
// request's context. The bound is the same; what it costs is not: net/http
// enforces Client.Timeout cheaply only for a transport it knows
// (*http.Transport), and the bridge wraps that one (metrics, the HA fence).
// For any other it sets Request.Cancel, starts a goroutine with a timer to
// close it, and Transport starts another one to watch that channel: two
// goroutines, a timer, channels and closures for every message sent. A
// context deadline travels the transport's own path.
//
// Like Client.Timeout, it bounds each attempt from the request, through its
// redirects, to the end of its body, and its error matches context.DeadlineExceeded (as a
// Client.Timeout error does).
func BoundInTransport(c *http.Client) {
	if c.Timeout <= 0 {
		return
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = deadlineTransport{base: base, timeout: c.Timeout}
	c.Timeout = 0
}

type deadlineTransport struct {
	base    http.RoundTripper
	timeout time.Duration
}

// Unbounded is the transport under BoundInTransport's deadline, for a
// client that must have none (the e2ee /sync long polls), or rt itself.
func Unbounded(rt http.RoundTripper) http.RoundTripper {
	if t, ok := rt.(deadlineTransport); ok {
		return t.base
	}
	return rt
}

func (t deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	deadline := time.Now().Add(t.timeout)
	if prev := req.Response; prev != nil && prev.Request != nil {
		// A redirect, which Client.Timeout bounds together with the
		// request that led to it: the first hop's deadline (each hop's
		// request carries it) holds for the whole chain, not 180 s more
		// per hop.
		if d, ok := prev.Request.Context().Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
	}
	if d, ok := req.Context().Deadline(); ok && !deadline.Before(d) {
		// The caller's own deadline comes first (net/http skips it too).
		return t.base.RoundTrip(req)
	}
	ctx, cancel := context.WithDeadline(req.Context(), deadline)
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	// The body is read after RoundTrip returns: its context must live
	// until it is read or closed.
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelBody releases the request's deadline once its body is done with:
// read to the end (or failed), or closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
	once   sync.Once
}

func (b *cancelBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.cancel)
	}
	return n, err
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.cancel)
	return err
}

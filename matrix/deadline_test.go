package matrix

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// The bound moved into the transport still ends a request that hangs, in
// its headers or in its body, with an error that matches
// context.DeadlineExceeded as Client.Timeout's does; a body read in time is
// whole, and the connection is reused afterwards.
func TestBoundInTransport(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow-headers":
			<-release
		case "/slow-body":
			w.Header().Set("Content-Length", "10")
			_, _ = w.Write([]byte("12345"))
			w.(http.Flusher).Flush()
			<-release
		default:
			_, _ = io.WriteString(w, `{"event_id":"$x"}`)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	// Before Close, which waits for the handlers (defers run last first).
	defer close(release)
	base := srv.Client().Transport
	c := &http.Client{Timeout: 300 * time.Millisecond, Transport: base}
	BoundInTransport(c)
	if c.Timeout != 0 || Unbounded(c.Transport) != base {
		t.Fatalf("the bound did not move into the transport: timeout %v", c.Timeout)
	}
	if Unbounded(base) != base {
		t.Fatal("Unbounded changed a transport without a bound")
	}

	for i := 0; i < 3; i++ {
		resp, err := c.Get(srv.URL + "/fast")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || string(body) != `{"event_id":"$x"}` {
			t.Fatalf("body %q, %v", body, err)
		}
	}

	// Releasing the deadline at the body's end must not cost the
	// connection: the requests share one.
	if n := conns.Load(); n != 1 {
		t.Fatalf("3 requests read to the end opened %d connections, want 1", n)
	}

	start := time.Now()
	_, err := c.Get(srv.URL + "/slow-headers")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging headers: got %v, want a deadline error", err)
	}
	resp, err := c.Get(srv.URL + "/slow-body")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging body: got %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the bound of 300 ms took %v", d)
	}

	// A caller's earlier deadline is the one that counts.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow-headers", nil)
	start = time.Now()
	if _, err = c.Do(req); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 250*time.Millisecond {
		t.Fatalf("caller's deadline: %v after %v", err, time.Since(start))
	}
}

// BenchmarkHomeserverClient compares a request through a wrapped transport
// with the bound as Client.Timeout (what mautrix sets) and in the
// transport (BoundInTransport); the server's share is the same in both.
func BenchmarkHomeserverClient(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"event_id":"$x"}`)
	}))
	defer srv.Close()
	for _, inTransport := range []bool{false, true} {
		name := map[bool]string{false: "ClientTimeout", true: "InTransport"}[inTransport]
		b.Run(name, func(b *testing.B) {
			// A wrapper, as the bridge's metrics and HA fence are.
			c := &http.Client{Timeout: 180 * time.Second, Transport: wrapped{srv.Client().Transport}}
			if inTransport {
				BoundInTransport(c)
			}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Get(srv.URL)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
}

type wrapped struct{ base http.RoundTripper }

func (w wrapped) RoundTrip(r *http.Request) (*http.Response, error) { return w.base.RoundTrip(r) }

// Client.Timeout bounds a request together with its redirects; so does the
// bound in the transport: three hops of 200 ms do not fit in 500 ms, though
// each hop would.
func TestBoundInTransportRedirects(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		switch r.URL.Path {
		case "/a":
			http.Redirect(w, r, "/b", http.StatusFound)
		case "/b":
			http.Redirect(w, r, "/c", http.StatusFound)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	defer srv.Close()
	c := &http.Client{Timeout: 500 * time.Millisecond, Transport: srv.Client().Transport}
	BoundInTransport(c)
	resp, err := c.Get(srv.URL + "/a")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("three hops of 200 ms under a bound of 500 ms: got %v, want a deadline error", err)
	}
	// A chain that fits still goes, on the same client.
	c2 := &http.Client{Timeout: 2 * time.Second, Transport: srv.Client().Transport}
	BoundInTransport(c2)
	resp, err = c2.Get(srv.URL + "/a")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || string(body) != "ok" {
		t.Fatalf("body %q, %v", body, err)
	}
}

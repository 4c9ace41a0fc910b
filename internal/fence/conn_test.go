package fence

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestTransportFencesPooledConnections: a request on a kept-alive connection
// (no dial in between) is checked right before it is written, so it does not
// go out once the gate shuts.
func TestTransportFencesPooledConnections(t *testing.T) {
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	defer srv.Close()
	closed, gate := switchableGate()
	var dials atomic.Int32
	base := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	client := &http.Client{Transport: Transport(base, gate)}
	post := func() error {
		resp, err := client.Post(srv.URL, "text/plain", strings.NewReader("hello"))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		return err
	}
	if err := post(); err != nil {
		t.Fatal(err)
	}
	closed.Store(true)
	if err := post(); err == nil {
		t.Error("a request went out with the gate shut")
	}
	// The transport retries a request refused before its first byte on a
	// fresh connection, which is refused too.
	if n := got.Load(); n != 1 {
		t.Errorf("the server got %d requests (over %d connections), want only the first", n, dials.Load())
	}
}

package appservice

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// TestHomeserverTransportReusesConnections: 400 calls, 32 at a time (twice
// the default homeserver_concurrency), open about as many connections as
// are in flight at once (a call may start a moment before another's
// connection is back in the pool, hence the slack). With
// http.DefaultTransport, which keeps two idle connections per host, most
// calls opened a connection of their own (276 to 400 seen).
func TestHomeserverTransportReusesConnections(t *testing.T) {
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("{}"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	const parallel, calls = 32, 400
	client := &http.Client{Transport: homeserverTransport(16)}
	work := make(chan struct{})
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				resp, err := client.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}()
	}
	for range calls {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	if n := opened.Load(); n > 2*parallel {
		t.Fatalf("%d calls, %d at a time, opened %d connections; want at most %d", calls, parallel, n, 2*parallel)
	}
}

package bridge

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/ha"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestFencedTransportSendsOnlyWhileActive: the homeserver transport lets a
// request through while the lease is held, and none once it is gone.
func TestFencedTransportSendsOnlyWhileActive(t *testing.T) {
	target := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got.Add(1) }))
	defer hs.Close()
	lease, err := ha.New(ctx, target.URI, ha.Options{Lease: 2 * time.Second}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: fenceTransport(nil, lease.Check)}
	if _, err = client.Get(hs.URL); err == nil {
		t.Fatal("a standby's request went out")
	}
	if err = lease.WaitActive(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(hs.URL)
	if err != nil {
		t.Fatalf("the active's request: %v", err)
	}
	_ = resp.Body.Close()
	lease.Release(ctx)
	if _, err = client.Get(hs.URL); err == nil {
		t.Fatal("a request went out after the lease was given up")
	}
	if n := got.Load(); n != 1 {
		t.Errorf("the homeserver got %d requests, want 1", n)
	}
	if fenceTransport(http.DefaultTransport, nil) != http.DefaultTransport {
		t.Error("without ha the transport is wrapped")
	}
}

// TestFencedTransportChecksAtTheWrite: a request that passed the lease check
// when it started, and whose process was then paused before the request was
// written (here: while the transport dials) and resumed after losing the
// lease, must not reach the homeserver. The paused-active fault test counts
// every request a resumed former active sends.
func TestFencedTransportChecksAtTheWrite(t *testing.T) {
	var got atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got.Add(1) }))
	defer hs.Close()
	var lost atomic.Bool
	gate := func() error {
		if lost.Load() {
			return errors.New("lost the lease")
		}
		return nil
	}
	dialing, resume := make(chan struct{}), make(chan struct{})
	base := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		close(dialing)
		<-resume // the pause
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	client := &http.Client{Transport: fenceTransport(base, gate)}
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Post(hs.URL, "application/json", strings.NewReader(`{}`))
		if err == nil {
			_ = resp.Body.Close()
		}
		errc <- err
	}()
	<-dialing
	lost.Store(true)
	close(resume)
	if err := <-errc; err == nil {
		t.Error("the request checked before the pause got an answer after it")
	}
	if n := got.Load(); n != 0 {
		t.Errorf("the homeserver got %d requests from an instance that had lost its lease, want none", n)
	}
}

package bridge

import (
	"context"
	"net/http"
	"net/http/httptest"
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
	client := &http.Client{Transport: fenceTransport(nil, lease)}
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

package metrics

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A profile someone is taking must not hold back Stop: a standby stops
// this listener on its way to becoming active, and an orderly shutdown
// releases the HA lease only after it. Stop cuts the profile off.
func TestStopDoesNotWaitForAProfile(t *testing.T) {
	t.Parallel()
	srv, err := New().Listen("127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		resp, err := http.Get("http://" + srv.Addr().String() + "/debug/pprof/profile?seconds=60")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	}()
	// The handler sends its headers only at the end; give the request
	// time to reach it.
	time.Sleep(300 * time.Millisecond)
	begin := time.Now()
	if err := srv.Stop(context.Background()); err != nil {
		t.Logf("Stop: %v", err)
	}
	if took := time.Since(begin); took > 2*stopGrace+time.Second {
		t.Fatalf("Stop took %v with a profile running, want about %v", took, stopGrace)
	}
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("the profile request still runs after Stop")
	}
}

package puppet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
)

// slowDirect is directServer with a delay on every request, so that changes
// pile up while a write is under way.
type slowDirect struct{ directServer }

func (s *slowDirect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	time.Sleep(5 * time.Millisecond)
	s.directServer.ServeHTTP(w, r)
}

// TestDirectApplyCoalesces: many new DMs of one user at once are written in
// fewer writes than DMs, every one of them lands, and the user's own entries
// stay.
func TestDirectApplyCoalesces(t *testing.T) {
	srv := &slowDirect{directServer{content: `{"@carol:x":["!c:x"]}`}}
	client := aliceOn(t, srv)
	d := NewDirect(zerolog.Nop())
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ghost := id.UserID(fmt.Sprintf("@dm_%d:x", i))
			_, err := d.Apply(context.Background(), client, DirectChange{Add: map[id.UserID][]id.RoomID{ghost: {id.RoomID(fmt.Sprintf("!r%d:x", i))}}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var got map[string][]string
	_ = json.Unmarshal([]byte(srv.content), &got)
	for i := 0; i < n; i++ {
		if r := got[fmt.Sprintf("@dm_%d:x", i)]; len(r) != 1 || r[0] != fmt.Sprintf("!r%d:x", i) {
			t.Errorf("DM %d: %v", i, r)
		}
	}
	if len(got["@carol:x"]) != 1 {
		t.Errorf("the user's own entry went: %s", srv.content)
	}
	if srv.puts >= n/2 {
		t.Errorf("%d writes for %d DMs, want them coalesced", srv.puts, n)
	}
	if len(d.queues) != 0 {
		t.Errorf("%d queues left behind", len(d.queues))
	}
}

// TestDirectApplyCancelledWaiter: a caller that gives up while queued
// withdraws its change and the others still get written.
func TestDirectApplyCancelledWaiter(t *testing.T) {
	srv := &slowDirect{}
	client := aliceOn(t, srv)
	d := NewDirect(zerolog.Nop())
	add := func(ctx context.Context, i int) error {
		ghost := id.UserID(fmt.Sprintf("@dm_%d:x", i))
		_, err := d.Apply(ctx, client, DirectChange{Add: map[id.UserID][]id.RoomID{ghost: {id.RoomID(fmt.Sprintf("!r%d:x", i))}}})
		return err
	}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i)*3*time.Millisecond)
			defer cancel()
			_ = add(ctx, i)
		}()
	}
	wg.Wait()
	// Whatever was given up, the queue is free and a new change lands.
	if err := add(context.Background(), 99); err != nil {
		t.Fatal(err)
	}
	var got map[string][]string
	_ = json.Unmarshal([]byte(srv.content), &got)
	if len(got["@dm_99:x"]) != 1 {
		t.Errorf("m.direct = %s, want @dm_99:x", srv.content)
	}
	if len(d.queues) != 0 {
		t.Errorf("%d queues left behind", len(d.queues))
	}
}

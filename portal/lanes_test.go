package portal

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestPauseGivesTheSlotBack: with one slot, a job waiting to retry must not
// keep another lane's job from running, and its own lane's next job must
// still wait for it.
func TestPauseGivesTheSlotBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newLanes(ctx, 1, zerolog.Nop())
	events := make(chan string, 10)
	var bRan atomic.Bool
	l.submit("a", "a1", func(ctx context.Context) {
		events <- "a1 waits"
		// Short pauses until b1 has run, rather than one long one that
		// b1 surely fits in: b1 can only run while a1 has given the slot
		// back, and a pause that kept it makes a1 give up after 10 s and
		// come first.
		for began := time.Now(); !bRan.Load() && time.Since(began) < 10*time.Second; {
			if !pause(ctx, 20*time.Millisecond) {
				events <- "a1 pause ended early"
				return
			}
		}
		events <- "a1 done"
	})
	l.submit("a", "a2", func(context.Context) { events <- "a2" })
	if got := <-events; got != "a1 waits" {
		t.Fatalf("first %q", got)
	}
	l.submit("b", "b1", func(context.Context) {
		bRan.Store(true)
		events <- "b1"
	})
	want := []string{"b1", "a1 done", "a2"}
	for _, w := range want {
		select {
		case got := <-events:
			if got != w {
				t.Fatalf("got %q, want %q (order %v)", got, w, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for %q", w)
		}
	}
	l.stop()
}

// TestStopEndsAPause: stopping the lanes ends a job's wait at once.
func TestStopEndsAPause(t *testing.T) {
	l := newLanes(context.Background(), 1, zerolog.Nop())
	started, result := make(chan struct{}), make(chan bool, 1)
	l.submit("a", "a1", func(ctx context.Context) {
		close(started)
		result <- pause(ctx, time.Hour)
	})
	<-started
	begin := time.Now()
	l.stop()
	if ok := <-result; ok || time.Since(begin) > 5*time.Second {
		t.Fatalf("pause returned %v after %s, want false at once", ok, time.Since(begin))
	}
}

// TestUnslottedGivesTheSlotBack: with one slot, a job waiting for a room
// key (unslotted) must not keep another lane's job from running.
func TestUnslottedGivesTheSlotBack(t *testing.T) {
	l := newLanes(context.Background(), 1, zerolog.Nop())
	defer l.stop()
	keyCame, b1 := make(chan struct{}), make(chan struct{})
	waiting, back := make(chan struct{}), make(chan bool, 1)
	l.submit("a", "a1", func(ctx context.Context) {
		back <- unslotted(ctx, func() {
			close(waiting)
			<-keyCame
		})
	})
	<-waiting
	l.submit("b", "b1", func(context.Context) { close(b1) })
	select {
	case <-b1:
	case <-time.After(10 * time.Second):
		t.Fatal("another chat's job did not run while a job waited for a key")
	}
	close(keyCame)
	if ok := <-back; !ok {
		t.Fatal("unslotted did not take a slot again")
	}
}

package sdk

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// A long backlog drains completely and in order, read from the store a
// page at a time: the session never holds much more than two windows, and
// events sent meanwhile follow the backlog.
func TestBacklogDrainsInPages(t *testing.T) {
	const window = 8
	const stored = 1000
	h := connectortest.NewHarness(t, func(o *server.Options) { o.MaxInFlight = window })
	ctx := ctxTimeout(t, 20*time.Second)
	store := NewMemoryStore()
	for i := 1; i <= stored; i++ {
		if err := store.Append(ctx, int64(i), connectortest.Message(i)); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, h, "c", func(o *ClientOptions) { o.Store = store })
	runClient(t, c)
	var most int
	sendDone := make(chan error, 1)
	go func() {
		for i := stored + 1; i <= stored+20; i++ {
			if _, err := c.Send(ctx, connectortest.Message(i)); err != nil {
				sendDone <- err
				return
			}
		}
		sendDone <- nil
	}()
	for {
		c.mu.Lock()
		if c.sess != nil {
			most = max(most, len(c.sess.queue))
		}
		acked := c.acked
		c.mu.Unlock()
		if acked >= stored+20 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("acked %d of %d", acked, stored+20)
		case <-time.After(time.Millisecond):
		}
	}
	if err := <-sendDone; err != nil {
		t.Fatal(err)
	}
	checkStored(t, h.Store.Snapshot("c"), stored+20)
	if most > 2*window+1 {
		t.Errorf("session held up to %d events with a window of %d", most, window)
	}
}

// A stored event the bridge's frame limit refuses, in the middle of the
// backlog, is set aside: a stand-in goes under its seq, OnDropped hears of
// it, and the events after it keep their seqs and are delivered.
func TestOversizeStoredEventSetAside(t *testing.T) {
	h := connectortest.NewHarness(t, func(o *server.Options) { o.MaxFrameBytes = 4096 })
	ctx := ctxTimeout(t, 10*time.Second)
	store := NewMemoryStore()
	for i := 1; i <= 5; i++ {
		ev := connectortest.Message(i)
		if i == 3 {
			ev.Text = strings.Repeat("x", 8192)
		}
		if err := store.Append(ctx, int64(i), ev); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var dropped []int64
	c := newClient(t, h, "c", func(o *ClientOptions) {
		o.Store = store
		o.OnDropped = func(seq int64, ev *connector.Event, why error) {
			if !errors.Is(why, ErrEventTooLarge) || ev.ID != "m3" {
				t.Errorf("OnDropped(%d, %s, %v)", seq, ev.ID, why)
			}
			mu.Lock()
			dropped = append(dropped, seq)
			mu.Unlock()
		}
	})
	runClient(t, c)
	if err := c.WaitAcked(ctx, 5); err != nil {
		t.Fatal(err)
	}
	got := h.Store.Snapshot("c")
	if len(got) != 5 || got[2].Ev != nil || got[3].Ev == nil || got[3].Ev.ID != "m4" || got[4].Seq != 5 {
		t.Fatalf("bridge stored %+v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dropped) != 1 || dropped[0] != 3 {
		t.Fatalf("OnDropped heard of %v, want [3]", dropped)
	}
}

// A welcomed connection that the bridge closes with 1009 does not reset
// the backoff: the next one would likely meet the same frame.
func TestTooBigCloseKeepsBackoff(t *testing.T) {
	t.Parallel()
	url, conns := fakeBridge(t, func(ws *websocket.Conn) {
		if !fakeHandshake(t, ws, connector.Welcome{Protocol: 1, MaxInFlight: 8}) {
			return
		}
		_ = ws.WriteControl(websocket.CloseMessage, connws.CloseMessage(websocket.CloseMessageTooBig, "frame too large"), connws.Deadline(time.Second))
		_, _, _ = ws.ReadMessage()
	})
	c := NewClient(ClientOptions{URL: url, Token: "t", Hello: *connectortest.Hello("c"), Log: connectortest.Log(t),
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 5 * time.Second})
	const span = 400 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), span)
	defer cancel()
	_ = c.Run(ctx)
	// Doubling from 5 ms (jittered down to half) fits at most about 8
	// attempts into 400 ms; resetting after each welcome would fit dozens.
	if n := conns.Load(); n > 10 {
		t.Fatalf("%d connections in %v", n, span)
	}
}

package sdk

// Tests written during a review; each failed on the code before the fixes
// that follow it and shows one defect. The two invalid-UTF-8 ones now skip,
// since Send refuses such an event (client_fix_test.go covers the loop).

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
)

// ctxStore behaves like every database/sql-backed ClientStore (the XMPP
// connector's among them): a call with a cancelled context fails.
type ctxStore struct{ *MemoryStore }

func (s ctxStore) TxnResult(ctx context.Context, txn string) (*connector.Result, *connector.Error, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, false, err
	}
	return s.MemoryStore.TxnResult(ctx, txn)
}

func (s ctxStore) SaveTxnResult(ctx context.Context, txn string, res *connector.Result, e *connector.Error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.MemoryStore.SaveTxnResult(ctx, txn, res, e)
}

// A graceful shutdown (SIGTERM cancels Run's ctx) while a command handler is
// finishing: the handler did send on the network, but the SDK records the
// txn outcome with the cancelled Run ctx, so nothing is recorded. After the
// restart the bridge re-sends the command with the same txn and the
// connector sends the message a second time.
func TestRegressionTxnOutcomeLostOnShutdown(t *testing.T) {
	h := connectortest.NewHarness(t, func(o *server.Options) { o.CommandTimeout = 5 * time.Second })
	store := ctxStore{NewMemoryStore()}
	var sent atomic.Int32
	acted := make(chan struct{}, 1)
	release := make(chan struct{})
	handle := func(ctx context.Context, op string, cmd *connector.Command) (*connector.Result, error) {
		sent.Add(1) // the message went out on the network
		select {
		case acted <- struct{}{}:
		default:
		}
		<-release // e.g. the handler records its own bookkeeping
		return &connector.Result{ID: "net-" + cmd.Txn, TS: 1}, nil
	}
	first := newClient(t, h, "c", func(o *ClientOptions) { o.Store = store; o.Handle = handle })
	ctx1, stop1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- first.Run(ctx1) }()
	connectortest.Eventually(t, "bridge sees first", func() bool { return h.Srv.Connected("c") })

	cmd := &connector.Command{Login: "alice@testnet", Chat: connectortest.DMChat(), Txn: "$ev1", Text: "hi"}
	ctx := ctxTimeout(t, 15*time.Second)
	go func() { _, _ = h.Srv.Command(ctx, "c", connector.OpSendMessage, cmd) }()
	select {
	case <-acted:
	case <-time.After(5 * time.Second):
		t.Fatal("command never reached the handler")
	}
	stop1()        // SIGTERM
	close(release) // the handler finishes after the send succeeded
	select {
	case <-done1:
	case <-time.After(10 * time.Second):
		t.Fatal("first client did not stop")
	}
	// The bridge notices the first connection's end before the restart:
	// otherwise "connected" below can be the old connection's, and the
	// command goes out on it as it closes (M_NOT_CONNECTED).
	connectortest.Eventually(t, "bridge sees first go", func() bool { return !h.Srv.Connected("c") })

	// The restarted process, same store. The bridge re-sends the command.
	second := newClient(t, h, "c", func(o *ClientOptions) { o.Store = store; o.Handle = handle })
	runClient(t, second)
	connectortest.Eventually(t, "bridge sees second", func() bool { return h.Srv.Connected("c") })
	if _, err := h.Srv.Command(ctx, "c", connector.OpSendMessage, cmd); err != nil {
		t.Fatal(err)
	}
	if n := sent.Load(); n != 1 {
		t.Fatalf("txn $ev1 was carried out %d times on the network, want 1", n)
	}
}

// An event stored while the bridge's (smaller) frame limit is not known yet
// (Send before the first welcome of this process: connector started while
// the bridge was down, or the bridge's max_frame_bytes lowered since) is
// replayed into a 1009 close on every connection, for ever: every event
// after it is stuck, and the client reconnects at minimum backoff, since
// each attempt was welcomed.
func TestRegressionOversizeStoredEventStallsStream(t *testing.T) {
	h := connectortest.NewHarness(t, func(o *server.Options) { o.MaxFrameBytes = 4096 })
	c := newClient(t, h, "c", func(o *ClientOptions) { o.MinBackoff = 20 * time.Millisecond; o.MaxBackoff = time.Second })
	ctx := ctxTimeout(t, 10*time.Second)
	big := connectortest.Message(1)
	big.Text = strings.Repeat("x", 8192) // fits the client's 1 MiB, not the bridge's 4 KiB
	if _, err := c.Send(ctx, big); err != nil {
		t.Fatalf("Send while disconnected: %v", err)
	}
	seq, err := c.Send(ctx, connectortest.Message(2))
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, c)
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err = c.WaitAcked(wctx, seq)
	h.Handler.Mu.Lock()
	hellos := h.Handler.Hellos
	h.Handler.Mu.Unlock()
	t.Logf("handshakes in 3 s: %d", hellos)
	if err != nil {
		t.Fatalf("event %d after the oversize one is never delivered (%d reconnects in 3 s): %v", seq, hellos, err)
	}
}

// After an outage the whole backlog is read from the store and encoded into
// memory at once (startSession), although at most max_in_flight events can
// be on the wire: memory grows with the length of the outage, and a backlog
// too large for RAM crashes the connector on every start, so it never
// drains.
func TestRegressionReplayBacklogUnbounded(t *testing.T) {
	const window = 4
	const stored = 5000
	ctx := ctxTimeout(t, 10*time.Second)
	store := NewMemoryStore()
	for i := 1; i <= stored; i++ {
		if err := store.Append(ctx, int64(i), connectortest.Message(i)); err != nil {
			t.Fatal(err)
		}
	}
	url, _ := fakeBridge(t, func(ws *websocket.Conn) {
		if !fakeHandshake(t, ws, connector.Welcome{Protocol: 1, MaxInFlight: window}) {
			return
		}
		for { // never acks
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	})
	c := NewClient(ClientOptions{URL: url, Token: "t", Hello: *connectortest.Hello("c"), Log: connectortest.Log(t), Store: store, MinBackoff: 10 * time.Millisecond})
	runClient(t, c)
	waitConnected(t, c)
	c.mu.Lock()
	var held int
	if c.sess != nil {
		held = len(c.sess.queue)
	}
	c.mu.Unlock()
	if held > 4*window {
		t.Fatalf("client holds %d encoded events in memory with a window of %d", held, window)
	}
}

// Send validates the Go value, but the bridge validates what JSON made of
// it: each invalid UTF-8 byte becomes U+FFFD (3 bytes) on the wire. An id
// that passes the SDK's 1024-byte check can so arrive longer than 1024
// bytes; the bridge answers M_BAD_FRAME and never acks it, and every later
// event waits behind it for good ("cannot happen with the SDK", 7.3).
func TestRegressionInvalidUTF8IDStallsStream(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	c := newClient(t, h, "c", nil)
	runClient(t, c)
	waitConnected(t, c)
	ctx := ctxTimeout(t, 10*time.Second)
	ev := connectortest.Message(1)
	ev.ID = strings.Repeat("a", 1000) + strings.Repeat("\xff", 20) // 1020 bytes
	if _, err := c.Send(ctx, ev); err != nil {
		t.Skipf("Send refused the event (that would be the fix): %v", err)
	}
	seq, err := c.Send(ctx, connectortest.Message(2))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.WaitAcked(wctx, seq); err != nil {
		t.Fatalf("the stream is stuck behind an event Send accepted: %v", err)
	}
}

// Once one event is stuck on M_BAD_FRAME, the next one in flight gets
// M_BAD_SEQ; the SDK rewinds to acked+1 and resends both at once, the
// bridge answers the same two errors, and so on: a busy loop that floods
// both sides (and the bridge's warn log) with thousands of frames a second,
// never tripping the 100-bad-frames limit since M_BAD_SEQ resets it.
func TestRegressionBadFrameResendHotLoop(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	var badFrames atomic.Int32
	c := newClient(t, h, "c", func(o *ClientOptions) {
		o.OnError = func(e *connector.Error, _ *connector.Frame) {
			if e.Code == connector.ErrBadFrame {
				badFrames.Add(1)
			}
		}
	})
	runClient(t, c)
	waitConnected(t, c)
	ctx := ctxTimeout(t, 10*time.Second)
	ev := connectortest.Message(1)
	ev.ID = strings.Repeat("a", 1000) + strings.Repeat("\xff", 20)
	if _, err := c.Send(ctx, ev); err != nil {
		t.Skipf("Send refused the event: %v", err)
	}
	if _, err := c.Send(ctx, connectortest.Message(2)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := badFrames.Load(); n > 10 {
		t.Fatalf("the same stuck event was resent and refused %d times in 1 s", n)
	}
}

// A connector whose MaxFrameBytes is below the bridge's cannot tell the
// bridge (hello has no such field), and a command bigger than its own limit
// is not refused with M_TOO_LARGE but kills the whole connection (1009).
// The bridge re-sends the command after the reconnect, with the same result.
func TestRegressionOversizeCommandKillsConnection(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	c := newClient(t, h, "c", func(o *ClientOptions) {
		o.MaxFrameBytes = 4096
		o.Handle = func(context.Context, string, *connector.Command) (*connector.Result, error) {
			return &connector.Result{ID: "x"}, nil
		}
	})
	runClient(t, c)
	waitConnected(t, c)
	connectortest.Eventually(t, "bridge sees client", func() bool { return h.Srv.Connected("c") })
	ctx := ctxTimeout(t, 10*time.Second)
	_, err := h.Srv.Command(ctx, "c", connector.OpSendMessage, &connector.Command{
		Login: "alice@testnet", Chat: connectortest.DMChat(), Txn: "$big", Text: strings.Repeat("x", 8192)})
	time.Sleep(500 * time.Millisecond)
	h.Handler.Mu.Lock()
	hellos := h.Handler.Hellos
	h.Handler.Mu.Unlock()
	if hellos > 1 {
		t.Fatalf("an oversize command dropped the connection (command error: %v; %d handshakes)", err, hellos)
	}
}

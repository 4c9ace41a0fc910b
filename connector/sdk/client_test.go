package sdk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
	"github.com/dmbridge/dmbridge/internal/connws"
)

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func waitConnected(t testing.TB, c *Client) {
	t.Helper()
	connectortest.Eventually(t, "client connected", c.Connected)
}

func checkStored(t testing.TB, got []connectortest.AcceptedEvent, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("bridge stored %d events, want %d", len(got), n)
	}
	for i, a := range got {
		if a.Seq != int64(i+1) || a.Ev == nil || a.Ev.ID != fmt.Sprintf("m%d", i+1) {
			t.Fatalf("stored[%d] = seq %d %+v", i, a.Seq, a.Ev)
		}
	}
}

func TestClientDeliversAcrossDisconnects(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	h.Store.Delay = time.Millisecond
	var kicked atomic.Bool
	h.Store.OnSeq = func(id string, seq int64) {
		if seq == 5 && kicked.CompareAndSwap(false, true) {
			go h.Kick(id)
		}
	}
	c := newClient(t, h, "c", nil)
	runClient(t, c)
	waitConnected(t, c)
	ctx := ctxTimeout(t, 10*time.Second)
	var last int64
	for i := 1; i <= 10; i++ {
		seq, err := c.Send(ctx, connectortest.Message(i))
		if err != nil {
			t.Fatal(err)
		}
		if seq != int64(i) {
			t.Fatalf("Send %d got seq %d", i, seq)
		}
		last = seq
	}
	if err := c.WaitAcked(ctx, last); err != nil {
		t.Fatal(err)
	}
	if !kicked.Load() {
		t.Fatal("the connection was never dropped")
	}
	checkStored(t, h.Store.Snapshot("c"), 10)
	h.Handler.WaitEvents(t, "connected:c", "disconnected:c", "connected:c")
}

func TestClientSendsWhileDisconnectedAndAfterRestart(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	store := NewMemoryStore()
	first := newClient(t, h, "c", func(o *ClientOptions) { o.Store = store })
	ctx := ctxTimeout(t, 10*time.Second)
	// Not running: Send only stores.
	for i := 1; i <= 3; i++ {
		if _, err := first.Send(ctx, connectortest.Message(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A new process on the same store delivers them, then continues the sequence.
	second := newClient(t, h, "c", func(o *ClientOptions) { o.Store = store })
	runClient(t, second)
	if err := second.WaitAcked(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if seq, err := second.Send(ctx, connectortest.Message(4)); err != nil || seq != 4 {
		t.Fatalf("Send = %d, %v", seq, err)
	}
	if err := second.WaitAcked(ctx, 4); err != nil {
		t.Fatal(err)
	}
	checkStored(t, h.Store.Snapshot("c"), 4)
	// The store forgets after the ack moved the window, which is what
	// WaitAcked watches.
	connectortest.Eventually(t, "store forgets acked events", func() bool {
		left, _ := store.Unacked(ctx, 0, 0)
		return len(left) == 0
	})
}

func TestClientStoreBehindBridge(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	h.Store.SetAcked("c", 52)
	c := newClient(t, h, "c", nil)
	runClient(t, c)
	waitConnected(t, c)
	ctx := ctxTimeout(t, 5*time.Second)
	seq, err := c.Send(ctx, connectortest.Message(53))
	if err != nil || seq != 53 {
		t.Fatalf("Send = %d, %v; want seq 53 after the bridge's acked_seq", seq, err)
	}
	if err := c.WaitAcked(ctx, 53); err != nil {
		t.Fatal(err)
	}
}

// A bridge restored from a backup welcomes with an acked_seq below events
// the connector has already forgotten. Resending from acked_seq+1 is then
// impossible; without renumbering, the stream stops on M_BAD_SEQ for good.
func TestClientBridgeBehindStore(t *testing.T) {
	for _, unacked := range []int{0, 2} {
		t.Run(fmt.Sprintf("unacked=%d", unacked), func(t *testing.T) {
			ctx := ctxTimeout(t, 5*time.Second)
			store := NewMemoryStore()
			for i := 1; i <= 10; i++ {
				if err := store.Append(ctx, int64(i), connectortest.Message(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := store.Acked(ctx, int64(10-unacked)); err != nil {
				t.Fatal(err)
			}
			h := connectortest.NewHarness(t, nil)
			h.Store.SetAcked("c", 3)
			c := newClient(t, h, "c", func(o *ClientOptions) { o.Store = store })
			runClient(t, c)
			waitConnected(t, c)
			seq, err := c.Send(ctx, connectortest.Message(11))
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(3 + unacked + 1); seq != want {
				t.Fatalf("Send got seq %d, want %d right after the bridge's acked_seq and the renumbered backlog", seq, want)
			}
			if err := c.WaitAcked(ctx, seq); err != nil {
				t.Fatal(err)
			}
			got := h.Store.Snapshot("c")
			if len(got) != unacked+1 || got[len(got)-1].Ev.ID != "m11" {
				t.Fatalf("bridge stored %d events, want the %d unacked ones and m11", len(got), unacked)
			}
		})
	}
}

func TestClientSendRefusals(t *testing.T) {
	store := NewMemoryStore()
	c := NewClient(ClientOptions{URL: "ws://127.0.0.1:1", Store: store, MaxFrameBytes: 2048})
	ctx := context.Background()
	var ve *connector.ValidationError
	if _, err := c.Send(ctx, &connector.Event{Kind: connector.KindMessage, Login: "a"}); !errors.As(err, &ve) {
		t.Errorf("invalid event: %v", err)
	}
	big := connectortest.Message(1)
	big.Text = strings.Repeat("x", 4096)
	if _, err := c.Send(ctx, big); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("oversize event: %v, want ErrEventTooLarge", err)
	}
	if next, _ := store.NextSeq(ctx); next != 1 {
		t.Errorf("refused events were stored; next seq %d", next)
	}
	if err := c.SendEphemeral(ctx, &connector.Ephemeral{Kind: connector.KindPresence, Login: "a", Contact: "b", Presence: connector.PresenceOnline}); err != nil {
		t.Errorf("ephemeral while disconnected: %v", err)
	}
	if err := c.SendEphemeral(ctx, &connector.Ephemeral{Kind: connector.KindPresence, Login: "a"}); !errors.As(err, &ve) {
		t.Errorf("invalid ephemeral: %v", err)
	}
	if err := NewClient(ClientOptions{URL: "ftp://x"}).Run(ctx); err == nil {
		t.Error("bad URL accepted")
	}
}

func TestClientEphemeral(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	c := newClient(t, h, "c", nil)
	runClient(t, c)
	waitConnected(t, c)
	err := c.SendEphemeral(context.Background(), &connector.Ephemeral{Kind: connector.KindTyping, Login: "a", Chat: connectortest.DMChat(), Sender: connectortest.Bob(), Typing: true})
	if err != nil {
		t.Fatal(err)
	}
	connectortest.Eventually(t, "typing", func() bool {
		h.Handler.Mu.Lock()
		defer h.Handler.Mu.Unlock()
		return len(h.Handler.Ephemerals) == 1
	})
}

func TestClientReplaced(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	first := newClient(t, h, "c", nil)
	firstDone := runClient(t, first)
	waitConnected(t, first)
	second := newClient(t, h, "c", nil)
	runClient(t, second)
	select {
	case err := <-firstDone:
		if !errors.Is(err, ErrReplaced) {
			t.Fatalf("first Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("replaced client kept running")
	}
	waitConnected(t, second)
}

// fakeBridge serves one scripted bridge per connection.
func fakeBridge(t testing.TB, script func(ws *websocket.Conn)) (url string, conns *atomic.Int32) {
	t.Helper()
	conns = new(atomic.Int32)
	up := websocket.Upgrader{Subprotocols: []string{connector.Subprotocol}}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		conns.Add(1)
		script(ws)
	}))
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http"), conns
}

func fakeHandshake(t testing.TB, ws *websocket.Conn, w connector.Welcome) bool {
	var f connector.Frame
	err := ws.ReadJSON(&f)
	if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		// The client shut down (the test is ending) while it was
		// reconnecting: no hello is owed.
		return false
	}
	if err != nil || f.Type != connector.TypeHello {
		t.Errorf("fake bridge: want hello, got %+v %v", f, err)
		return false
	}
	b, _ := connws.EncodeFrame(connector.Frame{Type: connector.TypeWelcome}, &w)
	return ws.WriteMessage(websocket.TextMessage, b) == nil
}

func TestClientMaxInFlight(t *testing.T) {
	t.Parallel() // mostly waits out the silence checks
	const window = 4
	const total = 20
	finished := make(chan struct{})
	url, _ := fakeBridge(t, func(ws *websocket.Conn) {
		if !fakeHandshake(t, ws, connector.Welcome{Protocol: 1, MaxInFlight: window}) {
			return
		}
		frames := make(chan connector.Frame, 100)
		go func() {
			defer close(frames)
			for {
				var f connector.Frame
				if ws.ReadJSON(&f) != nil {
					return
				}
				frames <- f
			}
		}()
		var acked int64
		// expect reads exactly the given seqs, then checks for silence:
		// the client must not exceed the window. This runs on the fake
		// bridge's goroutine, so failures are Errorf plus an early return.
		expect := func(seqs ...int64) bool {
			for _, want := range seqs {
				select {
				case f := <-frames:
					if f.Type != connector.TypeEvent || f.Seq != want {
						t.Errorf("want event %d, got %s %d", want, f.Type, f.Seq)
						return false
					}
					if f.Seq > acked+window {
						t.Errorf("seq %d in flight with acked %d: window %d exceeded", f.Seq, acked, window)
						return false
					}
				case <-time.After(5 * time.Second):
					t.Errorf("want event %d, got nothing", want)
					return false
				}
			}
			select {
			case f := <-frames:
				t.Errorf("window exceeded: got %s %d with acked %d", f.Type, f.Seq, acked)
				return false
			case <-time.After(100 * time.Millisecond):
				return true
			}
		}
		ack := func(seq int64) {
			acked = seq
			_ = ws.WriteJSON(connector.Frame{Type: connector.TypeAck, Seq: seq})
		}
		defer func() { <-finished }()
		if !expect(1, 2, 3, 4) {
			return
		}
		ack(2)
		if !expect(5, 6) {
			return
		}
		// A gap report makes the client resend from acked+1.
		_ = ws.WriteJSON(connector.Frame{Type: connector.TypeErr, Seq: 7, Error: &connector.Error{Code: connector.ErrBadSeq, Message: "expected seq 3", Retryable: true}})
		if !expect(3, 4, 5, 6) {
			return
		}
		ack(6)
		if !expect(7, 8, 9, 10) {
			return
		}
		for acked < total {
			ack(acked + 1)
			if acked+window <= total && !expect(acked+window) {
				return
			}
		}
	})
	c := NewClient(ClientOptions{URL: url, Token: "t", Hello: *connectortest.Hello("c"), Log: connectortest.Log(t), MinBackoff: 10 * time.Millisecond})
	runClient(t, c)
	ctx := ctxTimeout(t, 20*time.Second)
	var sendErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= total; i++ {
			if _, err := c.Send(ctx, connectortest.Message(i)); err != nil {
				sendErr = err
				return
			}
		}
	}()
	err := c.WaitAcked(ctx, total)
	close(finished)
	if t.Failed() {
		return
	}
	wg.Wait()
	if err != nil || sendErr != nil {
		t.Fatal(err, sendErr)
	}
}

func TestClientDetectsDeadBridge(t *testing.T) {
	url, conns := fakeBridge(t, func(ws *websocket.Conn) {
		if !fakeHandshake(t, ws, connector.Welcome{Protocol: 1, MaxInFlight: 8}) {
			return
		}
		// Never ping, never answer; just hold the connection open.
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	})
	c := NewClient(ClientOptions{URL: url, Token: "t", Hello: *connectortest.Hello("c"), Log: connectortest.Log(t),
		DeadAfter: 150 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	runClient(t, c)
	connectortest.Eventually(t, "reconnect after silence", func() bool { return conns.Load() >= 2 })
}

// commandHarness is a bridge plus a connected client with scripted command handlers.
type commandHarness struct {
	*connectortest.Harness
	calls   sync.Map // txn → *atomic.Int32
	release chan struct{}
}

func newCommandHarness(t *testing.T) *commandHarness {
	ch := &commandHarness{release: make(chan struct{})}
	ch.Harness = connectortest.NewHarness(t, func(o *server.Options) { o.CommandTimeout = 300 * time.Millisecond })
	c := newClient(t, ch.Harness, "c", func(o *ClientOptions) {
		o.Handle = func(ctx context.Context, op string, cmd *connector.Command) (*connector.Result, error) {
			switch op {
			case connector.OpSendMessage:
				n, _ := ch.calls.LoadOrStore(cmd.Txn, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
				if cmd.Text == "slow" {
					time.Sleep(100 * time.Millisecond)
				}
				return &connector.Result{ID: "net-" + cmd.Txn, TS: 42}, nil
			case connector.OpGetContact:
				return nil, fmt.Errorf("lookup: %w", &connector.Error{Code: connector.ErrNotFound, Message: "no such contact"})
			case connector.OpMarkRead:
				return nil, errors.New("boom")
			case connector.OpSetPresence:
				select {
				case <-ch.release:
				case <-ctx.Done():
				}
				return nil, nil
			case connector.OpBackfill:
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return nil, &connector.Error{Code: connector.ErrUnsupported, Message: op}
		}
	})
	runClient(t, c)
	waitConnected(t, c)
	connectortest.Eventually(t, "bridge sees client", func() bool { return ch.Srv.Connected("c") })
	return ch
}

func (ch *commandHarness) count(txn string) int32 {
	n, ok := ch.calls.Load(txn)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

func TestCommands(t *testing.T) {
	h := newCommandHarness(t)
	ctx := ctxTimeout(t, 10*time.Second)
	cmd := func(op string, c *connector.Command) (*connector.Result, error) {
		return h.Srv.Command(ctx, "c", op, c)
	}

	res, err := cmd(connector.OpSendMessage, &connector.Command{Login: "a", Chat: connectortest.DMChat(), Txn: "$ev1", Text: "hi"})
	if err != nil || res.ID != "net-$ev1" || res.TS != 42 {
		t.Fatalf("round trip: %+v %v", res, err)
	}
	// The same txn again is answered from the store.
	res, err = cmd(connector.OpSendMessage, &connector.Command{Login: "a", Chat: connectortest.DMChat(), Txn: "$ev1", Text: "hi"})
	if err != nil || res.ID != "net-$ev1" || h.count("$ev1") != 1 {
		t.Fatalf("repeated txn: %+v %v, handler ran %d times", res, err, h.count("$ev1"))
	}
	// Two copies at once run once.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res, err := cmd(connector.OpSendMessage, &connector.Command{Login: "a", Chat: connectortest.DMChat(), Txn: "$ev2", Text: "slow"}); err != nil || res.ID != "net-$ev2" {
				t.Errorf("concurrent txn: %+v %v", res, err)
			}
		}()
	}
	wg.Wait()
	if n := h.count("$ev2"); n != 1 {
		t.Errorf("concurrent copies of a txn ran %d times", n)
	}

	var pe *connector.Error
	if _, err := cmd(connector.OpGetContact, &connector.Command{Login: "a", ID: "zed"}); !errors.As(err, &pe) || pe.Code != connector.ErrNotFound {
		t.Errorf("*Error from handler: %v", err)
	}
	if _, err := cmd(connector.OpMarkRead, &connector.Command{Login: "a", Chat: connectortest.DMChat(), UpTo: "m1"}); !errors.As(err, &pe) || pe.Code != connector.ErrUnknown || pe.Retryable {
		t.Errorf("plain error from handler: %+v", err)
	}
	if _, err := cmd("frobnicate", &connector.Command{Login: "a"}); !errors.As(err, &pe) || pe.Code != connector.ErrUnsupported {
		t.Errorf("unknown op: %v", err)
	}

	start := time.Now()
	if _, err := cmd(connector.OpBackfill, &connector.Command{Login: "a", Chat: connectortest.DMChat(), Limit: 10}); !errors.As(err, &pe) || pe.Code != connector.ErrTimeout || !pe.Retryable {
		t.Errorf("timeout: %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("timeout after %s, want ~300ms", d)
	}

	if _, err := h.Srv.Command(ctx, "nobody", connector.OpSetPresence, &connector.Command{Login: "a"}); !errors.Is(err, server.ErrNotConnected) {
		t.Errorf("unknown connector: %v", err)
	}
	if !errors.As(server.ErrNotConnected, &pe) || !pe.Retryable {
		t.Error("ErrNotConnected should be a retryable *Error")
	}

	// A connector that goes away while a command waits.
	errc := make(chan error, 1)
	go func() {
		_, err := cmd(connector.OpSetPresence, &connector.Command{Login: "a", Presence: connector.PresenceOnline})
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	h.Kick("c")
	select {
	case err := <-errc:
		if !errors.Is(err, server.ErrNotConnected) {
			t.Errorf("disconnect while waiting: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("command still waiting after disconnect")
	}
	close(h.release)
}

// The same window rule against the real server, with a slow store so that
// events pile up: sampled, the client never has more than 4 unacked on the wire.
func TestClientMaxInFlightRealServer(t *testing.T) {
	const window = 4
	h := connectortest.NewHarness(t, func(o *server.Options) { o.MaxInFlight = window; o.AckDelay = time.Millisecond })
	h.Store.Delay = 2 * time.Millisecond
	c := newClient(t, h, "c", nil)
	runClient(t, c)
	waitConnected(t, c)
	ctx := ctxTimeout(t, 20*time.Second)

	stop := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var worst int64
		defer func() { peak <- worst }()
		for {
			c.mu.Lock()
			if s := c.sess; s != nil {
				worst = max(worst, s.maxSent-c.acked)
			}
			c.mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	var last int64
	for i := 1; i <= 60; i++ {
		seq, err := c.Send(ctx, connectortest.Message(i))
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	err := c.WaitAcked(ctx, last)
	close(stop)
	if err != nil {
		t.Fatal(err)
	}
	if worst := <-peak; worst > window || worst < 2 {
		t.Errorf("peak in flight %d; want 2..%d (the slow store should fill the window)", worst, window)
	}
	checkStored(t, h.Store.Snapshot("c"), 60)
}

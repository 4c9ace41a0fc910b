package server_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
	"github.com/dmbridge/dmbridge/internal/connws"
	"github.com/dmbridge/dmbridge/internal/rawconn"
)

// batchStore is a connectortest.Store that implements BatchStore. hold, if set, makes
// the first AcceptBatch wait until it is closed, so a test can queue events
// behind a batch in progress. A batch that contains failAt fails whole.
type batchStore struct {
	*connectortest.Store
	hold   chan struct{}
	failAt atomic.Int64

	mu      sync.Mutex
	batches [][]int64
}

func (s *batchStore) AcceptBatch(ctx context.Context, id string, items []server.Accepted) error {
	seqs := make([]int64, len(items))
	for i, it := range items {
		seqs[i] = it.Seq
	}
	s.mu.Lock()
	s.batches = append(s.batches, seqs)
	first := len(s.batches) == 1
	s.mu.Unlock()
	if first && s.hold != nil {
		select {
		case <-s.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if slices.Contains(seqs, s.failAt.Load()) {
		return errors.New("disk on fire")
	}
	for _, it := range items {
		// connectortest.Store checks that every seq comes exactly once, in order.
		if err := s.Store.Accept(ctx, id, it.Seq, it.Event); err != nil {
			return err
		}
	}
	return nil
}

func (s *batchStore) seen() [][]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

func newBatchHarness(t *testing.T, bs *batchStore, mutate func(*server.Options)) *connectortest.Harness {
	h := connectortest.NewHarness(t, func(o *server.Options) {
		bs.Store = connectortest.NewStore(t)
		o.Store = bs
		if mutate != nil {
			mutate(o)
		}
	})
	h.Store = bs.Store
	return h
}

// waitQueued waits until n events of connector id wait behind the batch
// being stored.
func waitQueued(t *testing.T, h *connectortest.Harness, id string, n int) {
	t.Helper()
	connectortest.Eventually(t, "events queued for the committer", func() bool {
		return h.Srv.QueuedForCommit(id) == n
	})
}

// frames reads rc on a goroutine, so a test can wait for "nothing" without
// a read deadline, which would break the connection for good.
func frames(rc *rawconn.Conn) <-chan *connector.Frame {
	ch := make(chan *connector.Frame, 64)
	go func() {
		defer close(ch)
		for {
			f, err := rc.ReadFrame(10 * time.Second)
			if err != nil {
				return
			}
			ch <- f
		}
	}()
	return ch
}
func TestEventsArrivingTogetherShareABatch(t *testing.T) {
	bs := &batchStore{hold: make(chan struct{})}
	h := newBatchHarness(t, bs, nil)
	var checked atomic.Int32
	h.Handler.CheckFunc = func(*connector.Event) *connector.Error { checked.Add(1); return nil }
	rc, _ := h.Connect(t, "c")

	connectortest.SendEvent(t, rc, 1, connectortest.Message(1))
	connectortest.Eventually(t, "first batch", func() bool { return len(bs.seen()) == 1 })
	connectortest.SendMessages(t, rc, 2, 20)
	waitQueued(t, h, "c", 19)
	// Check runs as each event is read, before it is stored.
	if n := checked.Load(); n != 20 {
		t.Fatalf("Check ran %d times before storing, want 20", n)
	}
	// A replay of a queued event must not be acked early either, and the
	// seq rules count queued events: 21 is next, not 2.
	in := frames(rc)
	connectortest.SendEvent(t, rc, 5, connectortest.Message(5))
	timeout := time.After(100 * time.Millisecond)
quiet:
	for {
		select {
		case f := <-in:
			t.Fatalf("got %+v while nothing was stored yet", f)
		case <-timeout:
			break quiet
		}
	}

	close(bs.hold)
	for f := range in {
		if f.Type == connector.TypeErr {
			t.Fatalf("unexpected err %+v", f.Error)
		}
		if f.Type == connector.TypeAck && f.Seq == 20 {
			break
		}
	}
	if got, want := bs.seen(), [][]int64{{1}, seqRange(2, 20)}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches %v, want %v", got, want)
	}
	if n := len(h.Store.Snapshot("c")); n != 20 {
		t.Fatalf("stored %d events, want 20", n)
	}
}

func TestFailedBatchAcksNothingAndCloses(t *testing.T) {
	bs := &batchStore{hold: make(chan struct{})}
	bs.failAt.Store(4)
	// A batch holds at most 4 events, so 6 and later queue behind the
	// failing batch 2-5.
	h := newBatchHarness(t, bs, func(o *server.Options) { o.MaxInFlight = 4 })
	rc, _ := h.Connect(t, "c")

	connectortest.SendEvent(t, rc, 1, connectortest.Message(1))
	connectortest.Eventually(t, "first batch", func() bool { return len(bs.seen()) == 1 })
	connectortest.SendMessages(t, rc, 2, 9)
	waitQueued(t, h, "c", 4)
	close(bs.hold)

	maxAck := highestAckBeforeClose(t, rc, 1011)
	if maxAck > 1 {
		t.Fatalf("acked %d, but only 1 was stored", maxAck)
	}
	if got, want := bs.seen(), [][]int64{{1}, seqRange(2, 5)}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("batches %v, want %v: nothing may be stored after a failed batch", got, want)
	}
	stored := h.Store.Snapshot("c")
	if len(stored) != 1 || stored[0].Seq != 1 {
		t.Fatalf("stored %v, want seq 1 only", stored)
	}

	// The connector resumes from what was stored.
	bs.failAt.Store(0)
	rc, w := h.Connect(t, "c")
	if w.AckedSeq != 1 {
		t.Fatalf("acked_seq after the failure %d, want 1", w.AckedSeq)
	}
	connectortest.SendMessages(t, rc, 2, 9)
	connectortest.WaitAck(t, rc, 9)
}

func TestPlainStoreFailureAcksOnlyTheStoredPrefix(t *testing.T) {
	// A Store without AcceptBatch stores one event per call, so what went
	// before the failing event is stored and may be acked; nothing after.
	fs := &failingStore{Store: connectortest.NewStore(t), failAt: 4}
	h := connectortest.NewHarness(t, func(o *server.Options) { o.Store = fs })
	rc, _ := h.Connect(t, "c")
	connectortest.SendMessages(t, rc, 1, 8)
	maxAck := highestAckBeforeClose(t, rc, 1011)
	if maxAck > 3 {
		t.Fatalf("acked %d, but only 3 were stored", maxAck)
	}
	if n := len(fs.Snapshot("c")); n != 3 {
		t.Fatalf("stored %d events, want 3", n)
	}
}

// failingStore is a plain Store (no AcceptBatch) that fails at failAt.
type failingStore struct {
	*connectortest.Store
	failAt int64
}

func (s *failingStore) Accept(ctx context.Context, id string, seq int64, ev *connector.Event) error {
	if seq == s.failAt {
		return errors.New("disk on fire")
	}
	return s.Store.Accept(ctx, id, seq, ev)
}

func TestReplacementWaitsForTheOldBatch(t *testing.T) {
	bs := &batchStore{hold: make(chan struct{})}
	h := newBatchHarness(t, bs, nil)
	old, _ := h.Connect(t, "c")
	connectortest.SendEvent(t, old, 1, connectortest.Message(1))
	connectortest.Eventually(t, "first batch", func() bool { return len(bs.seen()) == 1 })
	connectortest.SendMessages(t, old, 2, 5)
	waitQueued(t, h, "c", 4)
	go func() {
		// The old connector answers the 4001 as a live one would.
		for {
			if _, err := old.ReadFrame(5 * time.Second); err != nil {
				return
			}
		}
	}()

	var released atomic.Bool
	go func() {
		time.Sleep(200 * time.Millisecond)
		released.Store(true)
		close(bs.hold)
	}()
	_, w := h.Connect(t, "c")
	if !released.Load() {
		t.Fatal("welcome came while the old connection was still storing")
	}
	// The old connection stored what it had queued before it stopped.
	if w.AckedSeq != 5 {
		t.Fatalf("acked_seq %d, want 5", w.AckedSeq)
	}
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// highestAckBeforeClose reads frames until the bridge closes the connection
// with code, and returns the highest seq acked before that.
func highestAckBeforeClose(t *testing.T, rc *rawconn.Conn, code int) int64 {
	t.Helper()
	var maxAck int64
	for {
		f, err := rc.ReadFrame(5 * time.Second)
		if err != nil {
			_ = rc.Close()
			if connws.CloseCode(err) != code {
				t.Fatalf("want close %d, got %v", code, err)
			}
			return maxAck
		}
		if f.Type == connector.TypeAck {
			maxAck = max(maxAck, f.Seq)
		}
	}
}

// TestStoredBeforeAck: a lone event is stored (and so, by the store, handed
// to the bridge's workers) at once, not when its ack (held back to batch acks
// for up to AckDelay) goes out; otherwise every quiet-time message would wait
// out AckDelay.
func TestStoredBeforeAck(t *testing.T) {
	h := connectortest.NewHarness(t, func(o *server.Options) {
		o.AckDelay = time.Minute
		o.MaxInFlight, o.AckEvery = 256, 256
	})
	rc, _ := h.Connect(t, "c")
	connectortest.SendEvent(t, rc, 1, connectortest.Message(1))
	connectortest.Eventually(t, "a lone event stored before its ack", func() bool {
		return len(h.Store.Snapshot("c")) == 1
	})
}

// rawStore records the Raw of every accepted event.
type rawStore struct {
	*connectortest.Store
	mu  sync.Mutex
	raw map[int64]string
}

func (s *rawStore) AcceptBatch(ctx context.Context, id string, items []server.Accepted) error {
	for _, it := range items {
		s.mu.Lock()
		s.raw[it.Seq] = string(it.Raw)
		s.mu.Unlock()
		if err := s.Store.Accept(ctx, id, it.Seq, it.Event); err != nil {
			return err
		}
	}
	return nil
}

// TestStoreGetsTheBytesAsSent: a BatchStore gets each event's data exactly
// as the connector sent it, so it need not encode the event again; data
// that is not valid UTF-8 comes as the decoded event's encoding, which a
// text column takes.
func TestStoreGetsTheBytesAsSent(t *testing.T) {
	rs := &rawStore{raw: map[int64]string{}}
	h := connectortest.NewHarness(t, func(o *server.Options) {
		rs.Store = connectortest.NewStore(t)
		o.Store = rs
	})
	h.Store = rs.Store
	rc, _ := h.Connect(t, "c")
	sent := `{ "kind":"message", "login":"alice@testnet","chat":{"id":"c1","type":"dm","with":"bob"},"sender":{"id":"bob"},"id":"m1","text":"hi","x-new":true }`
	bad := strings.Replace(sent, `"hi"`, "\"h\xffi\"", 1)
	bad = strings.Replace(bad, `"m1"`, `"m2"`, 1)
	for i, data := range []string{sent, bad} {
		if err := rc.WriteText([]byte(fmt.Sprintf(`{"type":"event","seq":%d,"data":%s}`, i+1, data))); err != nil {
			t.Fatal(err)
		}
	}
	connectortest.WaitAck(t, rc, 2)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.raw[1] != sent {
		t.Errorf("store got %s, want the bytes as sent: %s", rs.raw[1], sent)
	}
	if !utf8.ValidString(rs.raw[2]) || !strings.Contains(rs.raw[2], "\"text\":\"h\ufffdi\"") || !strings.Contains(rs.raw[2], `"id":"m2"`) {
		t.Errorf("store got %q for data that is not UTF-8, want the decoded event's encoding", rs.raw[2])
	}
}

// An expected event refused as M_BAD_FRAME leaves the gap open: resending
// it and the window behind it earns no second M_BAD_SEQ (a connector that
// rewinds on each one would otherwise spin with the bridge for ever), and
// the gap closes, with acks, once a valid event comes under that seq.
func TestRefusedEventKeepsGapReported(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	rc, _ := h.Connect(t, "c")
	bad := []byte(`{"type":"event","seq":1,"data":{"kind":"message","login":"alice@testnet","chat":{"id":"c","type":"dm","with":"b"},"id":"m","text":"no sender"}}`)
	var badSeqs int
	for round := range 3 {
		if err := rc.WriteText(bad); err != nil {
			t.Fatal(err)
		}
		connectortest.SendEvent(t, rc, 2, connectortest.Message(2))
		f := connectortest.MustRead(t, rc)
		if f.Type != connector.TypeErr || f.Error.Code != connector.ErrBadFrame || f.Seq != 1 {
			t.Fatalf("round %d: want M_BAD_FRAME for seq 1, got %+v", round, f)
		}
		if round == 0 {
			f = connectortest.MustRead(t, rc)
			if f.Type != connector.TypeErr || f.Error.Code != connector.ErrBadSeq || f.Seq != 2 {
				t.Fatalf("want M_BAD_SEQ for seq 2, got %+v", f)
			}
			badSeqs++
		}
	}
	connectortest.SendMessages(t, rc, 1, 2)
	connectortest.ReadUntil(t, rc, "ack 2", func(f *connector.Frame) bool {
		if f.Type == connector.TypeErr {
			t.Errorf("unexpected err (after %d M_BAD_SEQ): %+v", badSeqs, f.Error)
		}
		return f.Type == connector.TypeAck && f.Seq >= 2
	})
	// A new gap is reported again.
	connectortest.SendEvent(t, rc, 5, connectortest.Message(5))
	if f := connectortest.MustRead(t, rc); f.Type != connector.TypeErr || f.Error.Code != connector.ErrBadSeq || f.Seq != 5 {
		t.Fatalf("want M_BAD_SEQ for a new gap, got %+v", f)
	}
}

// A connector that says in its hello how large a frame it reads gets
// M_TOO_LARGE for a larger command instead of a frame that would close its
// connection with 1009.
func TestCommandOverConnectorFrameLimit(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	rc := h.Dial(t)
	hello := connectortest.Hello("c")
	hello.MaxFrameBytes = 4096
	if err := rc.WriteFrame(connector.Frame{Type: connector.TypeHello}, hello); err != nil {
		t.Fatal(err)
	}
	if f := connectortest.MustRead(t, rc); f.Type != connector.TypeWelcome {
		t.Fatalf("want welcome, got %+v", f)
	}
	// The welcome goes out just before the connection is registered.
	connectortest.Eventually(t, "the connection registered", func() bool { return h.Srv.Connected("c") })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := h.Srv.Command(ctx, "c", connector.OpSendMessage, &connector.Command{
		Login: "alice@testnet", Chat: connectortest.DMChat(), Txn: "$big", Text: strings.Repeat("x", 8192)})
	var pe *connector.Error
	if !errors.As(err, &pe) || pe.Code != connector.ErrTooLarge || pe.Retryable {
		t.Fatalf("want M_TOO_LARGE, got %v", err)
	}
}

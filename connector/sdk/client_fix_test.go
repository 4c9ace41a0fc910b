package sdk

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connectortest"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// failingTxnStore refuses to save txn outcomes while failing is set.
type failingTxnStore struct {
	*MemoryStore
	failing atomic.Bool
}

func (s *failingTxnStore) SaveTxnResult(ctx context.Context, txn string, res *connector.Result, e *connector.Error) error {
	if s.failing.Load() {
		return errors.New("database is locked")
	}
	return s.MemoryStore.SaveTxnResult(ctx, txn, res, e)
}

// An outcome the store refused is kept in memory: a repeat of the txn is
// answered from it, and it reaches the store once the store works again.
func TestTxnOutcomeKeptWhenSaveFails(t *testing.T) {
	store := &failingTxnStore{MemoryStore: NewMemoryStore()}
	store.failing.Store(true)
	var calls atomic.Int32
	c := NewClient(ClientOptions{URL: "ws://127.0.0.1:1", Log: connectortest.Log(t), Store: store,
		Handle: func(_ context.Context, _ string, cmd *connector.Command) (*connector.Result, error) {
			calls.Add(1)
			return &connector.Result{ID: "net-" + cmd.Txn}, nil
		}})
	ctx := ctxTimeout(t, 5*time.Second)
	cmd := &connector.Command{Login: "a", Chat: connectortest.DMChat(), Txn: "$t", Text: "hi"}
	if res, perr := c.execute(ctx, connector.OpSendMessage, cmd); perr != nil || res.ID != "net-$t" {
		t.Fatalf("first run: %+v %v", res, perr)
	}
	if res, perr := c.execute(ctx, connector.OpSendMessage, cmd); perr != nil || res.ID != "net-$t" || calls.Load() != 1 {
		t.Fatalf("repeat: %+v %v, handler ran %d times", res, perr, calls.Load())
	}
	if _, _, ok, _ := store.MemoryStore.TxnResult(ctx, "$t"); ok {
		t.Fatal("outcome saved although the store refused it")
	}
	store.failing.Store(false)
	c.flushTxns(ctx)
	if res, _, ok, _ := store.MemoryStore.TxnResult(ctx, "$t"); !ok || res.ID != "net-$t" {
		t.Fatalf("outcome not saved after the store recovered: %+v %v", res, ok)
	}
	if _, ok := c.unsavedTxn("$t"); ok {
		t.Error("saved outcome still held in memory")
	}
}

// Send validates what the bridge will decode: invalid UTF-8 bytes grow to
// U+FFFD on the wire, and an id that fits in Go may not fit there.
func TestSendValidatesEncodedForm(t *testing.T) {
	c := NewClient(ClientOptions{URL: "ws://127.0.0.1:1", Log: connectortest.Log(t)})
	ctx := ctxTimeout(t, 5*time.Second)
	ev := connectortest.Message(1)
	ev.ID = strings.Repeat("a", 1000) + strings.Repeat("\xff", 20)
	var ve *connector.ValidationError
	if _, err := c.Send(ctx, ev); !errors.As(err, &ve) || ve.Field != "id" {
		t.Fatalf("Send of an id that grows past 1024 bytes: %v", err)
	}
	// Invalid bytes where no bound is crossed are still carried (as U+FFFD).
	ev.ID = "m\xff"
	if _, err := c.Send(ctx, ev); err != nil {
		t.Fatalf("Send of a short id with an invalid byte: %v", err)
	}
	ok := connectortest.Message(2)
	ok.Text = `a literal \ufffd in the text`
	if _, err := c.Send(ctx, ok); err != nil {
		t.Fatalf("Send of text with a literal escape: %v", err)
	}
}

// A bridge that refuses seq 1 as malformed and reports every later event
// as a gap (as bridges did before they kept the gap reported) gets one
// resend, not a flood of them.
func TestBadSeqRewindsOncePerAck(t *testing.T) {
	t.Parallel()
	var frames atomic.Int32
	url, _ := fakeBridge(t, func(ws *websocket.Conn) {
		if !fakeHandshake(t, ws, connector.Welcome{Protocol: 1, MaxInFlight: 8}) {
			return
		}
		for {
			var f connector.Frame
			if err := ws.ReadJSON(&f); err != nil {
				return
			}
			if f.Type != connector.TypeEvent {
				continue
			}
			frames.Add(1)
			e := &connector.Error{Code: connector.ErrBadSeq, Message: "expected seq 1", Retryable: true}
			if f.Seq == 1 {
				e = &connector.Error{Code: connector.ErrBadFrame, Message: "event: refused"}
			}
			if ws.WriteMessage(websocket.TextMessage, connws.ErrFrame("", f.Seq, e)) != nil {
				return
			}
		}
	})
	c := NewClient(ClientOptions{URL: url, Token: "t", Hello: *connectortest.Hello("c"), Log: connectortest.Log(t), MinBackoff: 10 * time.Millisecond})
	runClient(t, c)
	waitConnected(t, c)
	ctx := ctxTimeout(t, 5*time.Second)
	for i := 1; i <= 3; i++ {
		if _, err := c.Send(ctx, connectortest.Message(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A client that rewinds on every M_BAD_SEQ, not once per ack, loops
	// as fast as the frames cross: hundreds within this span.
	const span = 300 * time.Millisecond
	time.Sleep(span)
	if n := frames.Load(); n > 12 {
		t.Fatalf("the bridge got %d event frames in %v for 3 events", n, span)
	}
}

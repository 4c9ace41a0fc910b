package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
)

// faults make rawTarget break one rule of the protocol each.
type faults struct {
	skipSeq      bool // the first event produced skips a seq
	ignoreWindow bool // sends every event at once, whatever max_in_flight says
	noReplay     bool // forgets unacked events when a connection ends
	alterReplay  bool // resends events with changed text
	txnTwice     bool // runs every copy of a txn again, with a fresh result
	okUnknownOp  bool // answers unknown ops with an empty result
	noPong       bool // ignores pings
	ignoreBadSeq bool // does not resend after M_BAD_SEQ
	dropOnReset  bool // drops pending events when welcome.acked_seq is beyond its store
	newestFirst  bool // answers backfill newest first
	dupChats     bool // names a chat twice in list_chats
}

const (
	rawLogin   = "carol@raw.invalid"
	rawContact = "dave@raw.invalid"
)

// rawTarget is a connector written from the protocol document alone,
// without the SDK, on a bare websocket. Without faults it conforms; its
// state lives in the struct, so it survives Stop like a database would.
type rawTarget struct {
	f faults

	mu       sync.Mutex
	events   map[int64]connector.Event // not yet acked, by seq
	next     int64
	acked    int64
	maxSent  int64
	txns     map[string]json.RawMessage
	sent     map[string]int
	outs     int
	produced int
	wake     chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

func newRawTarget(f faults) *rawTarget {
	return &rawTarget{f: f, events: make(map[int64]connector.Event), next: 1,
		txns: make(map[string]json.RawMessage), sent: make(map[string]int), wake: make(chan struct{}, 1)}
}

func (t *rawTarget) Login() string { return rawLogin }
func (t *rawTarget) Chat() *connector.Chat {
	return &connector.Chat{ID: rawContact, Type: connector.ChatTypeDM, With: rawContact}
}

func (t *rawTarget) Delivered(_ context.Context, text string) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sent[text], nil
}

func (t *rawTarget) Produce(_ context.Context, n int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f.skipSeq && t.produced == 0 {
		t.next++
	}
	for range n {
		t.produced++
		t.events[t.next] = connector.Event{Kind: connector.KindMessage, Login: rawLogin, Chat: t.Chat(),
			Sender: &connector.Sender{ID: rawContact}, ID: fmt.Sprintf("raw-%d", t.produced), Text: fmt.Sprintf("raw %d", t.produced)}
		t.next++
	}
	t.poke()
	return nil
}

func (t *rawTarget) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *rawTarget) Start(ctx context.Context, url, token string) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.cancel, t.done = cancel, make(chan struct{})
	go func() {
		defer close(t.done)
		for runCtx.Err() == nil {
			_ = t.connection(runCtx, url, token)
			select {
			case <-runCtx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return nil
}

func (t *rawTarget) Stop(context.Context) error {
	if t.cancel != nil {
		t.cancel()
		<-t.done
		t.cancel = nil
	}
	return nil
}

// rawConn is one connection's writer side.
type rawConn struct {
	ws *websocket.Conn
	mu sync.Mutex
}

func (c *rawConn) write(v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws.WriteJSON(v)
}

func (t *rawTarget) connection(ctx context.Context, url, token string) error {
	d := websocket.Dialer{Subprotocols: []string{connector.Subprotocol}}
	ws, _, err := d.DialContext(ctx, url, http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		return err
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	defer stop()
	if t.f.noPong {
		ws.SetPingHandler(func(string) error { return nil })
	}
	c := &rawConn{ws: ws}
	hello := connector.Hello{Protocol: []int{1}, Connector: connector.Software{ID: "raw", Name: "raw", Version: "0"},
		Network: connector.Network{ID: "raw"}, Logins: []connector.Login{{ID: rawLogin, MatrixUser: "@carol:raw.invalid"}},
		Capabilities: connector.Capabilities{Backfill: true, ListChats: true}}
	if err := c.write(map[string]any{"type": "hello", "data": hello}); err != nil {
		return err
	}
	var f connector.Frame
	if err := ws.ReadJSON(&f); err != nil || f.Type != connector.TypeWelcome {
		return fmt.Errorf("no welcome: %v", err)
	}
	var w connector.Welcome
	if err := json.Unmarshal(f.Data, &w); err != nil {
		return err
	}
	sent := t.welcome(w)
	go t.writer(ctx, c, w, sent)
	defer t.poke() // lets the writer notice the end
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			if t.f.noReplay {
				t.mu.Lock()
				clear(t.events)
				t.mu.Unlock()
			}
			return err
		}
		t.onFrame(c, msg, sent)
	}
}

// welcome lines up the replay; the returned counter is the highest seq
// sent on this connection, shared by reader and writer under t.mu.
func (t *rawTarget) welcome(w connector.Welcome) *int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w.AckedSeq >= t.next && t.f.dropOnReset {
		t.next = w.AckedSeq + 1
	} else if w.AckedSeq >= t.next {
		// The bridge has seen more than this store ever wrote: move what
		// is still pending after it, or it would be dropped as replays.
		pending := make([]connector.Event, 0, len(t.events))
		for seq := t.acked + 1; seq < t.next; seq++ {
			if ev, ok := t.events[seq]; ok {
				pending = append(pending, ev)
			}
		}
		clear(t.events)
		t.next = w.AckedSeq + 1
		for _, ev := range pending {
			t.events[t.next] = ev
			t.next++
		}
	}
	t.ackLocked(w.AckedSeq)
	sent := w.AckedSeq
	return &sent
}

func (t *rawTarget) ackLocked(seq int64) {
	for s := t.acked + 1; s <= seq; s++ {
		delete(t.events, s)
	}
	t.acked = max(t.acked, seq)
}

func (t *rawTarget) writer(ctx context.Context, c *rawConn, w connector.Welcome, sent *int64) {
	for {
		t.mu.Lock()
		var out []map[string]any
		for seq := *sent + 1; seq < t.next && (t.f.ignoreWindow || seq-t.acked <= int64(w.MaxInFlight)); seq++ {
			ev, ok := t.events[seq]
			if !ok {
				continue // a hole only a fault can make
			}
			if t.f.alterReplay && seq <= t.maxSent {
				ev.Text += " (changed)"
			}
			out = append(out, map[string]any{"type": "event", "seq": seq, "data": ev})
			*sent, t.maxSent = seq, max(t.maxSent, seq)
		}
		t.mu.Unlock()
		for _, f := range out {
			if c.write(f) != nil {
				return
			}
		}
		select {
		case <-t.wake:
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
			if c.write(map[string]any{"type": "ephemeral", "data": map[string]any{"kind": "presence", "login": rawLogin, "contact": rawContact, "presence": "online"}}) != nil {
				return // the connection is gone
			}
		}
	}
}

func (t *rawTarget) onFrame(c *rawConn, msg []byte, sent *int64) {
	var f connector.Frame
	if err := json.Unmarshal(msg, &f); err != nil {
		_ = c.write(map[string]any{"type": "err", "error": connector.Error{Code: connector.ErrBadFrame, Message: err.Error()}})
		return
	}
	switch f.Type {
	case connector.TypeAck:
		t.mu.Lock()
		t.ackLocked(min(f.Seq, t.maxSent))
		t.mu.Unlock()
		t.poke()
	case connector.TypeErr:
		if f.Error != nil && f.Error.Code == connector.ErrBadSeq && !t.f.ignoreBadSeq {
			t.mu.Lock()
			*sent = t.acked
			t.mu.Unlock()
			t.poke()
		}
	case connector.TypeCmd:
		res, e := t.command(&f)
		if e != nil {
			_ = c.write(map[string]any{"type": "err", "id": f.ID, "error": e})
			return
		}
		_ = c.write(map[string]any{"type": "res", "id": f.ID, "data": res})
	default:
		_ = c.write(map[string]any{"type": "err", "id": f.ID, "error": connector.Error{Code: connector.ErrUnknownKind, Message: "unknown type"}})
	}
}

func (t *rawTarget) command(f *connector.Frame) (json.RawMessage, *connector.Error) {
	var cmd connector.Command
	if f.ID == "" || f.Op == "" || json.Unmarshal(f.Data, &cmd) != nil {
		return nil, &connector.Error{Code: connector.ErrBadFrame, Message: "id, op and data are required"}
	}
	if cmd.Login != rawLogin {
		return nil, &connector.Error{Code: connector.ErrNotFound, Message: "no such login"}
	}
	if res, ok := t.history(f.Op, &cmd); ok {
		return res, nil
	}
	if f.Op != connector.OpSendMessage {
		if t.f.okUnknownOp {
			return json.RawMessage(`{}`), nil
		}
		return nil, &connector.Error{Code: connector.ErrUnsupported, Message: "unsupported op"}
	}
	if cmd.Chat == nil || cmd.Text == "" {
		return nil, &connector.Error{Code: connector.ErrBadFrame, Message: "chat and text are required"}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if res, ok := t.txns[cmd.Txn]; ok && !t.f.txnTwice {
		return res, nil
	}
	t.outs++
	t.sent[cmd.Text]++
	res, _ := json.Marshal(connector.Result{ID: fmt.Sprintf("raw-out-%d", t.outs), TS: time.Now().UnixMilli()})
	t.txns[cmd.Txn] = res
	return res, nil
}

// history answers backfill and list_chats from a fixed history of the chat
// with rawContact.
func (t *rawTarget) history(op string, cmd *connector.Command) (json.RawMessage, bool) {
	chat := connector.Chat{ID: rawContact, Type: connector.ChatTypeDM, With: rawContact}
	var res connector.Result
	switch op {
	case connector.OpBackfill:
		for i := 1; i <= 2; i++ {
			ev := connector.Event{Kind: connector.KindMessage, Login: rawLogin, TS: int64(1000 * i),
				Chat: &chat, Sender: &connector.Sender{ID: rawContact}, ID: fmt.Sprintf("raw-old-%d", i), Text: "old"}
			if i == 2 {
				// The bridge fills in login and chat (protocol 7.5).
				ev.Login, ev.Chat = "", nil
			}
			res.Messages = append(res.Messages, ev)
		}
		if t.f.newestFirst {
			slices.Reverse(res.Messages)
		}
	case connector.OpListChats:
		res.Chats = []connector.Chat{chat}
		if t.f.dupChats {
			res.Chats = append(res.Chats, chat)
		}
	default:
		return nil, false
	}
	data, _ := json.Marshal(res)
	return data, true
}

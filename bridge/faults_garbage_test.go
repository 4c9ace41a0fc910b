package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/rawconn"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// garbageSender plays a hostile token holder: connection after connection,
// it sends frames that must each be refused, never stored.
type garbageSender struct {
	s      *stack
	rnd    *rand.Rand
	sent   int // bad frames written
	conns  int
	byKind map[string]int
}

// validEvent is the shape every mutation starts from: a message the bridge
// would store if nothing were wrong with it.
func validEvent(login, msgID string) map[string]any {
	return map[string]any{
		"kind": "message", "login": login, "ts": time.Now().UnixMilli(),
		"chat":   map[string]any{"id": "mallet@network", "type": "dm", "with": "mallet@network"},
		"sender": map[string]any{"id": "mallet@network"}, "id": msgID, "text": "garbage",
	}
}

func frameJSON(typ string, seq int64, data any) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "seq": seq, "data": data})
	return b
}

// next returns one bad frame for a connection whose next expected seq is
// *seq (a frame the bridge acks without storing moves it on), and the name
// of the mutation.
func (g *garbageSender) next(login, goodLogin string, seq *int64) (int, []byte, string) {
	r := g.rnd
	ev := validEvent(login, fmt.Sprintf("g%d", g.sent))
	switch r.IntN(15) {
	case 0:
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return websocket.TextMessage, b, "random bytes"
	case 1:
		return websocket.BinaryMessage, frameJSON("event", *seq, ev), "binary frame"
	case 2:
		b := frameJSON("event", *seq, ev)
		return websocket.TextMessage, b[:1+r.IntN(len(b)-1)], "truncated frame"
	case 3:
		field := []string{"chat", "sender", "id", "login", "kind"}[r.IntN(5)]
		delete(ev, field)
		return websocket.TextMessage, frameJSON("event", *seq, ev), "missing " + field
	case 4:
		switch r.IntN(5) {
		case 0:
			ev["chat"] = "mallet@network"
		case 1:
			ev["sender"] = 5
		case 2:
			ev["attachments"] = map[string]any{"url": "x"}
		case 3:
			ev["text"] = []int{1}
		default:
			return websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"event","seq":"%d","data":{}}`, *seq)), "wrong types"
		}
		return websocket.TextMessage, frameJSON("event", *seq, ev), "wrong types"
	case 5:
		return websocket.TextMessage, frameJSON("event", -r.Int64N(5), ev), "seq < 1"
	case 6:
		return websocket.TextMessage, frameJSON("event", *seq+1+r.Int64N(1000), ev), "seq gap"
	case 7:
		if r.IntN(2) == 0 {
			ev["attachments"] = []any{map[string]any{"name": "f", "url": "https://example.org/f", "data": "aGk="}}
		} else {
			ev["attachments"] = []any{map[string]any{"name": "f"}}
			ev["text"] = ""
		}
		return websocket.TextMessage, frameJSON("event", *seq, ev), "bad attachment"
	case 8:
		typ := []string{"hello", "welcome", "ack", "cmd", ""}[r.IntN(5)]
		return websocket.TextMessage, frameJSON(typ, *seq, ev), "unexpected type"
	case 9:
		depth := 10001 + r.IntN(5000)
		return websocket.TextMessage, []byte(`{"type":"event","seq":1,"data":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`), "deep nesting"
	case 10:
		// Well formed, but for the good connector's login: acked, not stored.
		ev["login"] = goodLogin
		*seq++
		return websocket.TextMessage, frameJSON("event", *seq-1, ev), "someone else's login"
	case 11:
		ev["chat"] = map[string]any{"id": "room", "type": "group"}
		*seq++
		return websocket.TextMessage, frameJSON("event", *seq-1, ev), "group chat"
	case 12:
		ev["kind"] = "hologram"
		*seq++
		return websocket.TextMessage, frameJSON("event", *seq-1, ev), "unknown kind"
	case 13:
		e := map[string]any{"kind": "typing", "login": login}
		if r.IntN(2) == 0 {
			e = map[string]any{"kind": "presence", "login": login, "contact": "x", "presence": "dancing"}
		}
		return websocket.TextMessage, frameJSON("ephemeral", 0, e), "bad ephemeral"
	default:
		if r.IntN(2) == 0 {
			return websocket.TextMessage, []byte(`{"type":"err","id":"nobody","error":{}}`), "bad err"
		}
		return websocket.TextMessage, []byte(`{"type":"res","id":"nobody","data":[1]}`), "bad res"
	}
}

// connection runs one hostile connection: most say hello first, some send
// garbage instead of a hello. It stops after n frames, or when the bridge
// hangs up, and drops the TCP connection without a close frame.
func (g *garbageSender) connection(ctx context.Context, t *testing.T, goodLogin string, n int) {
	g.conns++
	conn, _, err := rawconn.Dial(ctx, "ws://"+g.s.cfg.Connector.Listen+connector.Path, testConnectorToken, []string{connector.Subprotocol})
	if err != nil {
		t.Errorf("garbage connection %d: %v", g.conns, err)
		return
	}
	defer conn.Close()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			if _, err := conn.ReadFrame(time.Minute); err != nil {
				return
			}
		}
	}()
	id := fmt.Sprintf("garbage-%d", g.conns)
	login := id + "-login"
	seq := int64(1)
	if g.rnd.IntN(10) == 0 {
		typ, msg, kind := g.next(login, goodLogin, &seq)
		g.byKind["before hello: "+kind]++
		g.sent++
		_ = conn.WS.WriteMessage(typ, msg)
		<-closed
		return
	}
	hello := helloFor(connector.Login{ID: login, MatrixUser: string(g.s.alice.UserID)})
	hello.Connector.ID = id
	if err = conn.WriteFrame(connector.Frame{Type: connector.TypeHello}, hello); err != nil {
		t.Errorf("garbage hello: %v", err)
		return
	}
	for range n {
		select {
		case <-closed:
			return
		default:
		}
		typ, msg, kind := g.next(login, goodLogin, &seq)
		_ = conn.WS.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if conn.WS.WriteMessage(typ, msg) != nil {
			return
		}
		g.byKind[kind]++
		g.sent++
	}
	// Let the bridge answer what it read before the connection goes.
	time.Sleep(50 * time.Millisecond)
}

// TestFaultGarbageFrames: thousands of malformed or hostile frames on extra
// connections, while a good connector streams. The good stream is exact, no
// inbox row is written for the garbage, and the bridge stays up.
func TestFaultGarbageFrames(t *testing.T) {
	total := faultSize(200, 2000)
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		good := s.connectFake(sdk.NewMemoryStore())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		stream, roomID := s.startStream(ctx, t, good, "steady", 20*time.Millisecond, total/10, total)
		g := &garbageSender{s: s, rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9)), byKind: map[string]int{}}
		for g.sent < total {
			g.connection(ctx, t, testLogin, min(1+g.rnd.IntN(90), total-g.sent))
		}
		sent := stream.finish(ctx, t)
		got := s.waitTimeline(t, roomID, sent, 3*time.Minute)
		r := tally(fmt.Sprintf("garbage frames x%d on %d connections", g.sent, g.conns), target.Name, sent, got)
		r.check(t)
		s.explainMissing(t, roomID, r)
		t.Logf("garbage by kind: %v", g.byKind)

		var inbox int
		if err := s.br.DB.QueryRow(ctx, "SELECT COUNT(*) FROM inbox WHERE connector_id LIKE 'garbage-%'").Scan(&inbox); err != nil {
			t.Fatal(err)
		}
		if inbox != 0 {
			t.Errorf("garbage left %d inbox rows", inbox)
		}
		if r.Unexpected != 0 {
			t.Errorf("%d messages in the room that nobody sent: %q", r.Unexpected, r.unexpectedSample)
		}
		// Still up: the good connector goes on, and a new one is welcomed.
		good.send(textFrom("bob@network", "after", "after the garbage"))
		s.waitMessage(roomID, "after the garbage")
	})
}

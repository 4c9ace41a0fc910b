package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
	"github.com/dmbridge/dmbridge/internal/connws"
	"github.com/dmbridge/dmbridge/internal/rawconn"
)

func TestAuthAndSubprotocol(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	cases := []struct {
		name   string
		token  string
		protos []string
		status int
	}{
		{"no token", "", []string{connector.Subprotocol}, http.StatusUnauthorized},
		{"wrong token", "nope", []string{connector.Subprotocol}, http.StatusUnauthorized},
		{"token prefix", connectortest.Token[:4], []string{connector.Subprotocol}, http.StatusUnauthorized},
		{"no subprotocol", connectortest.Token, nil, http.StatusBadRequest},
		{"wrong subprotocol", connectortest.Token, []string{"dmbridge.v2"}, http.StatusBadRequest},
	}
	for _, tc := range cases {
		rc, resp, err := rawconn.Dial(context.Background(), h.URL, tc.token, tc.protos)
		if err == nil {
			_ = rc.Close()
			t.Errorf("%s: connected", tc.name)
			continue
		}
		if resp == nil || resp.StatusCode != tc.status {
			t.Errorf("%s: want HTTP %d, got %v %v", tc.name, tc.status, resp, err)
		}
	}
	// The token is checked before the subprotocol.
	if _, resp, _ := rawconn.Dial(context.Background(), h.URL, "", nil); resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token, no subprotocol: want 401, got %v", resp)
	}
	// Another subprotocol offered alongside ours is fine.
	rc, _, err := rawconn.Dial(context.Background(), h.URL, connectortest.Token, []string{"other", connector.Subprotocol})
	if err != nil {
		t.Fatal(err)
	}
	if rc.WS.Subprotocol() != connector.Subprotocol {
		t.Errorf("server chose %q", rc.WS.Subprotocol())
	}
	_ = rc.Close()
	if h.Handler.Hellos != 0 || len(h.Store.Snapshot("x")) != 0 {
		t.Error("refused connections reached the handler or store")
	}
}

func TestHandshake(t *testing.T) {
	h := connectortest.NewHarness(t, func(o *server.Options) { o.MaxInFlight = 100; o.AckEvery = 10 })
	h.Store.SetAcked("xmpp", 52)
	h.Handler.Refuse = map[string]string{"@mallory:hs": ""}

	rc := h.Dial(t)
	hello := connectortest.Hello("xmpp")
	hello.Logins = append(hello.Logins, connector.Login{ID: "mallory@testnet", MatrixUser: "@mallory:hs"})
	if err := rc.WriteFrame(connector.Frame{Type: connector.TypeHello}, hello); err != nil {
		t.Fatal(err)
	}
	f := connectortest.MustRead(t, rc)
	var w connector.Welcome
	if f.Type != connector.TypeWelcome || json.Unmarshal(f.Data, &w) != nil {
		t.Fatalf("want welcome, got %+v", f)
	}
	want := connector.Welcome{Protocol: 1, AckedSeq: 52, MaxInFlight: 100, MaxFrameBytes: 1 << 20, Bridge: connector.Software{Name: "dmbridge", Version: "test"}}
	if w != want {
		t.Errorf("welcome %+v, want %+v", w, want)
	}
	f = connectortest.MustRead(t, rc)
	if f.Type != connector.TypeErr || f.Error.Code != connector.ErrForbidden || f.Error.Login != "mallory@testnet" ||
		!strings.Contains(f.Error.Message, "mallory@testnet") {
		t.Errorf("want M_FORBIDDEN for mallory, got %+v %+v", f, f.Error)
	}
	connectortest.Eventually(t, "connected", func() bool { return h.Srv.Connected("xmpp") })
	if ids := h.Srv.ConnectorIDs(); !slices.Equal(ids, []string{"xmpp"}) {
		t.Errorf("ConnectorIDs = %v", ids)
	}
	if caps, ok := h.Srv.Capabilities("xmpp"); !ok || !caps.Edit || !caps.HasFormat("plain") {
		t.Errorf("Capabilities = %+v %v", caps, ok)
	}
	if got, ok := h.Srv.Hello("xmpp"); !ok || got.Network.ID != "testnet" {
		t.Errorf("Hello = %+v %v", got, ok)
	}
	h.Handler.WaitEvents(t, "connected:xmpp")
}

func TestHandshakeRefusals(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	cases := []struct {
		name  string
		frame string
		code  string
	}{
		{"event first", `{"type":"event","seq":1,"data":{}}`, connector.ErrBadFrame},
		{"not json", `{"type":`, connector.ErrBadFrame},
		{"hello without data", `{"type":"hello"}`, connector.ErrBadFrame},
		{"hello without connector id", `{"type":"hello","data":{"protocol":[1],"network":{"id":"n"}}}`, connector.ErrBadFrame},
		{"login without matrix user", `{"type":"hello","data":{"protocol":[1],"connector":{"id":"x"},"network":{"id":"n"},"logins":[{"id":"a"}]}}`, connector.ErrBadFrame},
		{"protocol 2 only", `{"type":"hello","data":{"protocol":[2],"connector":{"id":"x"},"network":{"id":"n"}}}`, connector.ErrUnsupported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := h.Dial(t)
			if err := rc.WriteText([]byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			f := connectortest.MustRead(t, rc)
			if f.Type != connector.TypeErr || f.Error.Code != tc.code {
				t.Errorf("want err %s, got %+v", tc.code, f)
			}
			connectortest.ExpectClose(t, rc, connector.CloseProtocolError)
		})
	}
	if h.Srv.Connected("x") {
		t.Error("a refused hello left a live connection")
	}
}

func TestSequencing(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	// sendTen connects, expecting the welcome to carry acked, and sends
	// events 1 to 10; the store must hold exactly those ten afterwards.
	sendTen := func(what string, acked int64) *rawconn.Conn {
		t.Helper()
		rc, w := h.Connect(t, "c")
		if w.AckedSeq != acked {
			t.Fatalf("%s: acked_seq %d, want %d", what, w.AckedSeq, acked)
		}
		connectortest.SendMessages(t, rc, 1, 10)
		connectortest.WaitAck(t, rc, 10)
		if n := len(h.Store.Snapshot("c")); n != 10 {
			t.Fatalf("%s: stored %d events, want 10", what, n)
		}
		return rc
	}
	rc := sendTen("first connection", 0)
	// A reconnect that replays everything from seq 1 changes nothing.
	_ = rc.Close()
	rc = sendTen("replay after reconnect", 10)

	// A gap gets M_BAD_SEQ once; later events are dropped until 11 comes.
	connectortest.SendEvent(t, rc, 13, connectortest.Message(13))
	f := connectortest.ReadUntil(t, rc, "M_BAD_SEQ", func(f *connector.Frame) bool { return f.Type == connector.TypeErr })
	if f.Error.Code != connector.ErrBadSeq || f.Seq != 13 || !strings.Contains(f.Error.Message, "11") {
		t.Fatalf("want M_BAD_SEQ for 13 naming 11, got %+v %+v", f, f.Error)
	}
	connectortest.SendEvent(t, rc, 14, connectortest.Message(14))
	connectortest.SendMessages(t, rc, 11, 14)
	f = connectortest.ReadUntil(t, rc, "ack 14", func(f *connector.Frame) bool {
		if f.Type == connector.TypeErr {
			t.Errorf("unexpected err after the gap: %+v", f.Error)
		}
		return f.Type == connector.TypeAck && f.Seq >= 14
	})
	got := h.Store.Snapshot("c")
	if len(got) != 14 || got[13].Ev.ID != "m14" {
		t.Fatalf("stored %d events", len(got))
	}
}

func TestUnknownKindsAndTypes(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	rc, _ := h.Connect(t, "c")
	if err := rc.WriteText([]byte(`{"type":"event","seq":1,"data":{"kind":"poll","login":"a","question":"?"}}`)); err != nil {
		t.Fatal(err)
	}
	f := connectortest.MustRead(t, rc)
	if f.Type != connector.TypeErr || f.Error.Code != connector.ErrUnknownKind || f.Seq != 1 {
		t.Fatalf("want M_UNKNOWN_KIND for seq 1, got %+v", f)
	}
	connectortest.WaitAck(t, rc, 1)
	if got := h.Store.Snapshot("c"); len(got) != 1 || got[0].Ev != nil {
		t.Fatalf("unknown kind should be acked without storing: %+v", got)
	}

	_ = rc.WriteText([]byte(`{"type":"ephemeral","data":{"kind":"mood","login":"a"}}`))
	if f := connectortest.MustRead(t, rc); f.Type != connector.TypeErr || f.Error.Code != connector.ErrUnknownKind {
		t.Fatalf("want M_UNKNOWN_KIND for ephemeral, got %+v", f)
	}
	_ = rc.WriteText([]byte(`{"type":"gossip","id":"g1"}`))
	if f := connectortest.MustRead(t, rc); f.Type != connector.TypeErr || f.Error.Code != connector.ErrUnknownKind || f.ID != "g1" {
		t.Fatalf("want M_UNKNOWN_KIND for type, got %+v", f)
	}
	// Known kinds still flow.
	connectortest.SendEvent(t, rc, 2, connectortest.Message(2))
	connectortest.WaitAck(t, rc, 2)
}

func TestBadFramesChangeNothing(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	rc, _ := h.Connect(t, "c")
	cases := []struct {
		frame string
		id    string
		seq   int64
	}{
		{`not json at all`, "", 0},
		{`{"type":"event","seq":"1","id":"x"}`, "x", 0},
		{`{"type":"event","data":{"kind":"login","login":"a","state":"connected"}}`, "", 0},
		{`{"type":"event","seq":1}`, "", 1},
		{`{"type":"event","seq":1,"data":{"kind":"message","login":"a","chat":{"id":"c","type":"dm","with":"b"},"id":"m","text":"no sender"}}`, "", 1},
		{`{"type":"event","seq":1,"data":{"kind":"message","login":"a","chat":{"id":"c","type":"dm","with":"b"},"sender":{"id":"b"},"id":"m","attachments":[{"data":"!!not base64"}]}}`, "", 1},
		{`{"type":"event","seq":1,"data":{"login":"a"}}`, "", 1},
		{`{"type":"ephemeral","data":{"kind":"typing","login":"a"}}`, "", 0},
		{`{"type":"res","data":{}}`, "", 0},
		{`{"type":"err","id":"c-1"}`, "c-1", 0},
		{`{"type":"hello","data":{}}`, "", 0},
		{`{"seq":3}`, "", 3},
	}
	for _, tc := range cases {
		if err := rc.WriteText([]byte(tc.frame)); err != nil {
			t.Fatal(err)
		}
		f := connectortest.MustRead(t, rc)
		if f.Type != connector.TypeErr || f.Error.Code != connector.ErrBadFrame || f.ID != tc.id || f.Seq != tc.seq {
			t.Errorf("%s: want M_BAD_FRAME id=%q seq=%d, got %+v %+v", tc.frame, tc.id, tc.seq, f, f.Error)
		}
	}
	if err := rc.WS.WriteMessage(websocket.BinaryMessage, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if f := connectortest.MustRead(t, rc); f.Type != connector.TypeErr || f.Error.Code != connector.ErrBadFrame {
		t.Errorf("binary frame: got %+v", f)
	}
	if got := h.Store.Snapshot("c"); len(got) != 0 {
		t.Fatalf("bad frames changed the store: %+v", got)
	}
	// Same connection, still working, still expecting seq 1.
	connectortest.SendEvent(t, rc, 1, connectortest.Message(1))
	connectortest.WaitAck(t, rc, 1)
	if got := h.Store.Snapshot("c"); len(got) != 1 {
		t.Fatalf("stored %d events", len(got))
	}
}

func TestTooManyBadFrames(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	rc, _ := h.Connect(t, "c")
	bad := []byte(`{"type":`)
	for range server.MaxBadInRow {
		_ = rc.WriteText(bad)
	}
	// A good frame resets the count.
	connectortest.SendEvent(t, rc, 1, connectortest.Message(1))
	connectortest.WaitAck(t, rc, 1)
	for range server.MaxBadInRow {
		_ = rc.WriteText(bad)
	}
	time.Sleep(50 * time.Millisecond)
	if !h.Srv.Connected("c") {
		t.Fatal("disconnected after exactly 100 bad frames in a row")
	}
	_ = rc.WriteText(bad)
	connectortest.ExpectClose(t, rc, connector.CloseProtocolError)
	connectortest.Eventually(t, "disconnect", func() bool { return !h.Srv.Connected("c") })
}

func TestOversizeFrame(t *testing.T) {
	h := connectortest.NewHarness(t, func(o *server.Options) { o.MaxFrameBytes = 4096 })
	rc, w := h.Connect(t, "c")
	if w.MaxFrameBytes != 4096 {
		t.Errorf("welcome max_frame_bytes %d", w.MaxFrameBytes)
	}
	ev := connectortest.Message(1)
	ev.Text = strings.Repeat("x", 5000)
	connectortest.SendEvent(t, rc, 1, ev)
	connectortest.ExpectClose(t, rc, websocket.CloseMessageTooBig)
	if got := h.Store.Snapshot("c"); len(got) != 0 {
		t.Fatalf("oversize event stored: %+v", got)
	}
}

func TestReplacedConnection(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	old, _ := h.Connect(t, "c")
	connectortest.SendEvent(t, old, 1, connectortest.Message(1))
	connectortest.WaitAck(t, old, 1)

	// The old connector reads on, as a live one would, and so answers the close.
	oldClosed := make(chan error, 1)
	go func() {
		for {
			if _, err := old.ReadFrame(5 * time.Second); err != nil {
				oldClosed <- err
				return
			}
		}
	}()
	_, w := h.Connect(t, "c")
	if w.AckedSeq != 1 {
		t.Errorf("new connection's acked_seq %d", w.AckedSeq)
	}
	if err := <-oldClosed; connws.CloseCode(err) != connector.CloseReplaced {
		t.Errorf("old connection: want close 4001, got %v", err)
	}
	h.Handler.WaitEvents(t, "connected:c", "disconnected:c", "connected:c")
	if !h.Srv.Connected("c") {
		t.Error("replacement not connected")
	}
}

// A connection that dropped (no replacement yet) must still say
// Disconnected before the next connection of its id says Connected; a
// handler tracking the state would otherwise end on "disconnected" while
// the connector is there. Disconnected is held so the next connection
// arrives while the first one is still tearing down.
func TestDroppedConnectionDisconnectsBeforeNextConnects(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	entered := make(chan struct{})
	var once sync.Once
	h.Handler.Mu.Lock()
	h.Handler.BeforeDisconnected = func(string) {
		once.Do(func() {
			close(entered)
			time.Sleep(300 * time.Millisecond)
		})
	}
	h.Handler.Mu.Unlock()
	h.Connect(t, "c")
	h.Kick("c")
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the dropped connection never reached Disconnected")
	}
	h.Connect(t, "c")
	h.Handler.WaitEvents(t, "connected:c", "disconnected:c", "connected:c")
	if !h.Srv.Connected("c") {
		t.Error("the new connection is not connected")
	}
}

func TestCheckAndUnsupportedChat(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	h.Handler.CheckFunc = func(ev *connector.Event) *connector.Error {
		if ev.Login == "mallory" {
			return &connector.Error{Code: connector.ErrForbidden, Message: "login mallory is not allowed"}
		}
		return nil
	}
	rc, _ := h.Connect(t, "c")
	ev := connectortest.Message(1)
	ev.Login = "mallory"
	connectortest.SendEvent(t, rc, 1, ev)
	if f := connectortest.MustRead(t, rc); f.Type != connector.TypeErr || f.Error.Code != connector.ErrForbidden || f.Seq != 1 {
		t.Fatalf("want M_FORBIDDEN for seq 1, got %+v", f)
	}
	ev = connectortest.Message(2)
	ev.Chat = &connector.Chat{ID: "room", Type: "group"}
	connectortest.SendEvent(t, rc, 2, ev)
	if f := connectortest.MustRead(t, rc); f.Type != connector.TypeErr || f.Error.Code != connector.ErrUnsupported || f.Seq != 2 {
		t.Fatalf("want M_UNSUPPORTED for seq 2, got %+v", f)
	}
	connectortest.SendEvent(t, rc, 3, connectortest.Message(3))
	connectortest.WaitAck(t, rc, 3)
	got := h.Store.Snapshot("c")
	if len(got) != 3 || got[0].Ev != nil || got[1].Ev != nil || got[2].Ev == nil {
		t.Fatalf("store: %+v", got)
	}
}

func TestEphemeral(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	rc, _ := h.Connect(t, "c")
	_ = rc.WriteFrame(connector.Frame{Type: connector.TypeEphemeral}, &connector.Ephemeral{Kind: connector.KindTyping, Login: "a", Chat: connectortest.DMChat(), Sender: connectortest.Bob(), Typing: true, TimeoutMS: 5000})
	_ = rc.WriteFrame(connector.Frame{Type: connector.TypeEphemeral}, &connector.Ephemeral{Kind: connector.KindPresence, Login: "a", Contact: "bob", Presence: connector.PresenceOnline})
	connectortest.Eventually(t, "ephemerals", func() bool {
		h.Handler.Mu.Lock()
		defer h.Handler.Mu.Unlock()
		return len(h.Handler.Ephemerals) == 2
	})
	if e := h.Handler.Ephemerals[0]; !e.Typing || e.TimeoutMS != 5000 {
		t.Errorf("typing arrived as %+v", e)
	}
}

func TestKeepAlive(t *testing.T) {
	h := connectortest.NewHarness(t, func(o *server.Options) {
		o.PingInterval = 20 * time.Millisecond
		o.DeadAfter = 100 * time.Millisecond
	})
	// A connector that reads answers pings (gorilla pongs while reading).
	live, _ := h.Connect(t, "live")
	go func() {
		for {
			if _, err := live.ReadFrame(time.Minute); err != nil {
				return
			}
		}
	}()
	// One that never reads again never pongs, and is dead after DeadAfter.
	_, _ = h.Connect(t, "mute")
	start := time.Now()
	connectortest.Eventually(t, "mute connector declared dead", func() bool { return !h.Srv.Connected("mute") })
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dead detection took %s", d)
	}
	time.Sleep(300 * time.Millisecond)
	if !h.Srv.Connected("live") {
		t.Error("a connector answering pings was dropped")
	}
}

// TestConnectorTokenBoundToID: a connector's own token is good for its own
// id only, the shared token not for an id that has its own, and a refused
// hello never disturbs the connection that holds the id.
func TestConnectorTokenBoundToID(t *testing.T) {
	const ownToken = "token-of-connector-own-0123456789"
	h := connectortest.NewHarness(t, func(o *server.Options) { o.ConnectorTokens = map[string]string{"own": ownToken} })
	hello := func(token, id string) *rawconn.Conn {
		t.Helper()
		rc, _, err := rawconn.Dial(context.Background(), h.URL, token, []string{connector.Subprotocol})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rc.Close() })
		if err := rc.WriteFrame(connector.Frame{Type: connector.TypeHello}, connectortest.Hello(id)); err != nil {
			t.Fatal(err)
		}
		return rc
	}
	refused := func(rc *rawconn.Conn, what string) {
		t.Helper()
		f := connectortest.MustRead(t, rc)
		if f.Type != connector.TypeErr || f.Error == nil || f.Error.Code != connector.ErrForbidden {
			t.Fatalf("%s: got %+v, want err M_FORBIDDEN", what, f)
		}
		connectortest.ExpectClose(t, rc, connector.CloseProtocolError)
	}
	holder := hello(ownToken, "own")
	if f := connectortest.MustRead(t, holder); f.Type != connector.TypeWelcome {
		t.Fatalf("own token, own id: %+v", f)
	}
	connectortest.Eventually(t, "connector own live", func() bool { return h.Srv.Connected("own") })
	refused(hello(ownToken, "other"), "own token, other id")
	refused(hello(connectortest.Token, "own"), "shared token, an id with its own token")
	if !h.Srv.Connected("own") || h.Srv.Connected("other") {
		t.Errorf("connected: own %v, other %v; want the holder untouched", h.Srv.Connected("own"), h.Srv.Connected("other"))
	}
	shared := hello(connectortest.Token, "shared")
	if f := connectortest.MustRead(t, shared); f.Type != connector.TypeWelcome {
		t.Fatalf("shared token, free id: %+v", f)
	}
}

func TestServerClose(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	rc, _ := h.Connect(t, "c")
	done := make(chan struct{})
	go func() {
		h.Srv.Close()
		close(done)
	}()
	connectortest.ExpectClose(t, rc, websocket.CloseGoingAway)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, resp, err := rawconn.Dial(context.Background(), h.URL, connectortest.Token, []string{connector.Subprotocol}); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after Close: %v %v", resp, err)
	}
}

func TestNewServerOptions(t *testing.T) {
	base := server.Options{Token: "t", Store: connectortest.NewStore(t), Handler: connectortest.NewHandler()}
	bad := []func(*server.Options){
		func(o *server.Options) { o.Token = "" },
		func(o *server.Options) { o.ConnectorTokens = map[string]string{"a": "t"} },
		func(o *server.Options) { o.ConnectorTokens = map[string]string{"": "x"} },
		func(o *server.Options) { o.Store = nil },
		func(o *server.Options) { o.Handler = nil },
		func(o *server.Options) { o.MaxInFlight = 4; o.AckEvery = 8 },
		func(o *server.Options) { o.PingInterval = time.Minute; o.DeadAfter = time.Second },
	}
	for i, mutate := range bad {
		o := base
		mutate(&o)
		if _, err := server.New(o); err == nil {
			t.Errorf("case %d: accepted", i)
		}
	}
	s, err := server.New(base)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestRetryableCheckFailureIsNotAcked: when the handler cannot decide on an
// event for a passing reason, the event must not be acked (the connector
// would drop it): the bridge closes with 1011, and the replay on the next
// connection is stored.
func TestRetryableCheckFailureIsNotAcked(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	var failing atomic.Bool
	failing.Store(true)
	h.Handler.CheckFunc = func(ev *connector.Event) *connector.Error {
		if ev.ID == "m2" && failing.Load() {
			return &connector.Error{Code: connector.ErrUnknown, Message: "database unavailable", Retryable: true}
		}
		return nil
	}
	rc, _ := h.Connect(t, "c")
	connectortest.SendEvent(t, rc, 1, connectortest.Message(1))
	connectortest.SendEvent(t, rc, 2, connectortest.Message(2))
	if maxAck := highestAckBeforeClose(t, rc, 1011); maxAck >= 2 {
		t.Fatalf("event 2 was acked (ack %d) although its check failed", maxAck)
	}
	// The close can reach the connector before the committer has stored
	// event 1 (teardown stores what was queued), so wait for it.
	connectortest.Eventually(t, "event 1 stored", func() bool { return len(h.Store.Snapshot("c")) > 0 })
	if got := h.Store.Snapshot("c"); len(got) != 1 || got[0].Ev == nil || got[0].Ev.ID != "m1" {
		t.Fatalf("store after the failed check: %+v", got)
	}
	failing.Store(false)
	rc, w := h.Connect(t, "c")
	if w.AckedSeq != 1 {
		t.Fatalf("welcome acked_seq %d, want 1", w.AckedSeq)
	}
	connectortest.SendEvent(t, rc, 2, connectortest.Message(2))
	connectortest.WaitAck(t, rc, 2)
	if got := h.Store.Snapshot("c"); len(got) != 2 || got[1].Ev == nil || got[1].Ev.ID != "m2" {
		t.Fatalf("store after the replay: %+v", got)
	}
}

// An error answer's code and message are cut at the edge: both reach the
// log, the user's room and the provisioning API, and a connector could
// answer with a code of a megabyte. The command still gets the answer.
func TestOversizedErrorAnswerIsCut(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	rc, _ := h.Connect(t, "c")
	connectortest.Eventually(t, "the connection registered", func() bool { return h.Srv.Connected("c") })
	type answer struct {
		err error
	}
	done := make(chan answer, 1)
	go func() {
		_, err := h.Srv.Command(t.Context(), "c", connector.OpSendMessage, &connector.Command{Login: "a", Chat: connectortest.DMChat(), Txn: "t1", Text: "hi"})
		done <- answer{err}
	}()
	cmd := connectortest.ReadUntil(t, rc, "the command", func(f *connector.Frame) bool {
		select {
		case a := <-done:
			t.Fatalf("the command ended before the connector saw it: %v", a.err)
		default:
		}
		return f.Type == connector.TypeCmd
	})
	huge := strings.Repeat("é", 100_000)
	if err := rc.WriteText([]byte(`{"type":"err","id":"` + cmd.ID + `","error":{"code":"` + huge + `","message":"` + huge + `"}}`)); err != nil {
		t.Fatal(err)
	}
	var a answer
	select {
	case a = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the command got no answer")
	}
	var cerr *connector.Error
	if !errors.As(a.err, &cerr) {
		t.Fatalf("answer = %v, want a connector error", a.err)
	}
	if len(cerr.Code) > connector.MaxErrorCodeBytes || len(cerr.Message) > connector.MaxErrorMessageBytes ||
		!utf8.ValidString(cerr.Code) || !utf8.ValidString(cerr.Message) || !strings.HasPrefix(huge, cerr.Code) {
		t.Fatalf("error kept %d-byte code and %d-byte message", len(cerr.Code), len(cerr.Message))
	}
}

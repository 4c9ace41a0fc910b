package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestAuthAndSubprotocol(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		name   string
		token  string
		protos []string
		status int
	}{
		{"no token", "", []string{Subprotocol}, http.StatusUnauthorized},
		{"wrong token", "nope", []string{Subprotocol}, http.StatusUnauthorized},
		{"token prefix", testToken[:4], []string{Subprotocol}, http.StatusUnauthorized},
		{"no subprotocol", testToken, nil, http.StatusBadRequest},
		{"wrong subprotocol", testToken, []string{"dmbridge.v2"}, http.StatusBadRequest},
	}
	for _, tc := range cases {
		rc, resp, err := DialRaw(context.Background(), h.url, tc.token, tc.protos)
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
	if _, resp, _ := DialRaw(context.Background(), h.url, "", nil); resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token, no subprotocol: want 401, got %v", resp)
	}
	// Another subprotocol offered alongside ours is fine.
	rc, _, err := DialRaw(context.Background(), h.url, testToken, []string{"other", Subprotocol})
	if err != nil {
		t.Fatal(err)
	}
	if rc.WS.Subprotocol() != Subprotocol {
		t.Errorf("server chose %q", rc.WS.Subprotocol())
	}
	_ = rc.Close()
	if h.handler.hellos != 0 || len(h.store.snapshot("x")) != 0 {
		t.Error("refused connections reached the handler or store")
	}
}

func TestHandshake(t *testing.T) {
	h := newHarness(t, func(o *ServerOptions) { o.MaxInFlight = 100; o.AckEvery = 10 })
	h.store.setAcked("xmpp", 52)
	h.handler.refuse = map[string]string{"@mallory:hs": ""}

	rc := h.dial(t)
	hello := testHello("xmpp")
	hello.Logins = append(hello.Logins, Login{ID: "mallory@testnet", MatrixUser: "@mallory:hs"})
	if err := rc.WriteFrame(Frame{Type: TypeHello}, hello); err != nil {
		t.Fatal(err)
	}
	f := mustRead(t, rc)
	var w Welcome
	if f.Type != TypeWelcome || json.Unmarshal(f.Data, &w) != nil {
		t.Fatalf("want welcome, got %+v", f)
	}
	want := Welcome{Protocol: 1, AckedSeq: 52, MaxInFlight: 100, MaxFrameBytes: 1 << 20, Bridge: Software{Name: "dmbridge", Version: "test"}}
	if w != want {
		t.Errorf("welcome %+v, want %+v", w, want)
	}
	f = mustRead(t, rc)
	if f.Type != TypeErr || f.Error.Code != ErrForbidden || f.Error.Login != "mallory@testnet" ||
		!strings.Contains(f.Error.Message, "mallory@testnet") {
		t.Errorf("want M_FORBIDDEN for mallory, got %+v %+v", f, f.Error)
	}
	eventually(t, "connected", func() bool { return h.srv.Connected("xmpp") })
	if ids := h.srv.ConnectorIDs(); !slices.Equal(ids, []string{"xmpp"}) {
		t.Errorf("ConnectorIDs = %v", ids)
	}
	if caps, ok := h.srv.Capabilities("xmpp"); !ok || !caps.Edit || !caps.HasFormat("plain") {
		t.Errorf("Capabilities = %+v %v", caps, ok)
	}
	if got, ok := h.srv.Hello("xmpp"); !ok || got.Network.ID != "testnet" {
		t.Errorf("Hello = %+v %v", got, ok)
	}
	eventually(t, "Connected callback", func() bool { return len(h.handler.events()) > 0 })
	if got := h.handler.events(); !slices.Equal(got, []string{"connected:xmpp"}) {
		t.Errorf("handler saw %v", got)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		name  string
		frame string
		code  string
	}{
		{"event first", `{"type":"event","seq":1,"data":{}}`, ErrBadFrame},
		{"not json", `{"type":`, ErrBadFrame},
		{"hello without data", `{"type":"hello"}`, ErrBadFrame},
		{"hello without connector id", `{"type":"hello","data":{"protocol":[1],"network":{"id":"n"}}}`, ErrBadFrame},
		{"login without matrix user", `{"type":"hello","data":{"protocol":[1],"connector":{"id":"x"},"network":{"id":"n"},"logins":[{"id":"a"}]}}`, ErrBadFrame},
		{"protocol 2 only", `{"type":"hello","data":{"protocol":[2],"connector":{"id":"x"},"network":{"id":"n"}}}`, ErrUnsupported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := h.dial(t)
			if err := rc.WriteText([]byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			f := mustRead(t, rc)
			if f.Type != TypeErr || f.Error.Code != tc.code {
				t.Errorf("want err %s, got %+v", tc.code, f)
			}
			expectClose(t, rc, CloseProtocolError)
		})
	}
	if h.srv.Connected("x") {
		t.Error("a refused hello left a live connection")
	}
}

func TestSequencing(t *testing.T) {
	h := newHarness(t, nil)
	rc, w := h.connect(t, "c")
	if w.AckedSeq != 0 {
		t.Fatalf("acked_seq %d", w.AckedSeq)
	}
	for i := 1; i <= 10; i++ {
		sendEvent(t, rc, int64(i), message(i))
	}
	waitAck(t, rc, 10)
	if n := len(h.store.snapshot("c")); n != 10 {
		t.Fatalf("stored %d events", n)
	}

	// A reconnect that replays everything from seq 1 changes nothing.
	_ = rc.Close()
	rc, w = h.connect(t, "c")
	if w.AckedSeq != 10 {
		t.Fatalf("acked_seq after reconnect %d, want 10", w.AckedSeq)
	}
	for i := 1; i <= 10; i++ {
		sendEvent(t, rc, int64(i), message(i))
	}
	waitAck(t, rc, 10)
	if n := len(h.store.snapshot("c")); n != 10 {
		t.Fatalf("replay stored something: %d events", n)
	}

	// A gap gets M_BAD_SEQ once; later events are dropped until 11 comes.
	sendEvent(t, rc, 13, message(13))
	f := readUntil(t, rc, "M_BAD_SEQ", func(f *Frame) bool { return f.Type == TypeErr })
	if f.Error.Code != ErrBadSeq || f.Seq != 13 || !strings.Contains(f.Error.Message, "11") {
		t.Fatalf("want M_BAD_SEQ for 13 naming 11, got %+v %+v", f, f.Error)
	}
	sendEvent(t, rc, 14, message(14))
	for i := 11; i <= 14; i++ {
		sendEvent(t, rc, int64(i), message(i))
	}
	f = readUntil(t, rc, "ack 14", func(f *Frame) bool {
		if f.Type == TypeErr {
			t.Errorf("unexpected err after the gap: %+v", f.Error)
		}
		return f.Type == TypeAck && f.Seq >= 14
	})
	got := h.store.snapshot("c")
	if len(got) != 14 || got[13].ev.ID != "m14" {
		t.Fatalf("stored %d events", len(got))
	}
}

func TestUnknownKindsAndTypes(t *testing.T) {
	h := newHarness(t, nil)
	rc, _ := h.connect(t, "c")
	if err := rc.WriteText([]byte(`{"type":"event","seq":1,"data":{"kind":"poll","login":"a","question":"?"}}`)); err != nil {
		t.Fatal(err)
	}
	f := mustRead(t, rc)
	if f.Type != TypeErr || f.Error.Code != ErrUnknownKind || f.Seq != 1 {
		t.Fatalf("want M_UNKNOWN_KIND for seq 1, got %+v", f)
	}
	waitAck(t, rc, 1)
	if got := h.store.snapshot("c"); len(got) != 1 || got[0].ev != nil {
		t.Fatalf("unknown kind should be acked without storing: %+v", got)
	}

	_ = rc.WriteText([]byte(`{"type":"ephemeral","data":{"kind":"mood","login":"a"}}`))
	if f := mustRead(t, rc); f.Type != TypeErr || f.Error.Code != ErrUnknownKind {
		t.Fatalf("want M_UNKNOWN_KIND for ephemeral, got %+v", f)
	}
	_ = rc.WriteText([]byte(`{"type":"gossip","id":"g1"}`))
	if f := mustRead(t, rc); f.Type != TypeErr || f.Error.Code != ErrUnknownKind || f.ID != "g1" {
		t.Fatalf("want M_UNKNOWN_KIND for type, got %+v", f)
	}
	// Known kinds still flow.
	sendEvent(t, rc, 2, message(2))
	waitAck(t, rc, 2)
}

func TestBadFramesChangeNothing(t *testing.T) {
	h := newHarness(t, nil)
	rc, _ := h.connect(t, "c")
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
		f := mustRead(t, rc)
		if f.Type != TypeErr || f.Error.Code != ErrBadFrame || f.ID != tc.id || f.Seq != tc.seq {
			t.Errorf("%s: want M_BAD_FRAME id=%q seq=%d, got %+v %+v", tc.frame, tc.id, tc.seq, f, f.Error)
		}
	}
	if err := rc.WS.WriteMessage(websocket.BinaryMessage, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if f := mustRead(t, rc); f.Type != TypeErr || f.Error.Code != ErrBadFrame {
		t.Errorf("binary frame: got %+v", f)
	}
	if got := h.store.snapshot("c"); len(got) != 0 {
		t.Fatalf("bad frames changed the store: %+v", got)
	}
	// Same connection, still working, still expecting seq 1.
	sendEvent(t, rc, 1, message(1))
	waitAck(t, rc, 1)
	if got := h.store.snapshot("c"); len(got) != 1 {
		t.Fatalf("stored %d events", len(got))
	}
}

func TestTooManyBadFrames(t *testing.T) {
	h := newHarness(t, nil)
	rc, _ := h.connect(t, "c")
	bad := []byte(`{"type":`)
	for range maxBadInRow {
		_ = rc.WriteText(bad)
	}
	// A good frame resets the count.
	sendEvent(t, rc, 1, message(1))
	waitAck(t, rc, 1)
	for range maxBadInRow {
		_ = rc.WriteText(bad)
	}
	time.Sleep(50 * time.Millisecond)
	if !h.srv.Connected("c") {
		t.Fatal("disconnected after exactly 100 bad frames in a row")
	}
	_ = rc.WriteText(bad)
	expectClose(t, rc, CloseProtocolError)
	eventually(t, "disconnect", func() bool { return !h.srv.Connected("c") })
}

func TestOversizeFrame(t *testing.T) {
	h := newHarness(t, func(o *ServerOptions) { o.MaxFrameBytes = 4096 })
	rc, w := h.connect(t, "c")
	if w.MaxFrameBytes != 4096 {
		t.Errorf("welcome max_frame_bytes %d", w.MaxFrameBytes)
	}
	ev := message(1)
	ev.Text = strings.Repeat("x", 5000)
	sendEvent(t, rc, 1, ev)
	expectClose(t, rc, websocket.CloseMessageTooBig)
	if got := h.store.snapshot("c"); len(got) != 0 {
		t.Fatalf("oversize event stored: %+v", got)
	}
}

func TestReplacedConnection(t *testing.T) {
	h := newHarness(t, nil)
	old, _ := h.connect(t, "c")
	sendEvent(t, old, 1, message(1))
	waitAck(t, old, 1)

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
	_, w := h.connect(t, "c")
	if w.AckedSeq != 1 {
		t.Errorf("new connection's acked_seq %d", w.AckedSeq)
	}
	if err := <-oldClosed; CloseCode(err) != CloseReplaced {
		t.Errorf("old connection: want close 4001, got %v", err)
	}
	want := []string{"connected:c", "disconnected:c", "connected:c"}
	eventually(t, "handler callbacks", func() bool { return len(h.handler.events()) >= len(want) })
	if got := h.handler.events(); !slices.Equal(got, want) {
		t.Errorf("handler saw %v, want %v", got, want)
	}
	if !h.srv.Connected("c") {
		t.Error("replacement not connected")
	}
}

func TestCheckAndUnsupportedChat(t *testing.T) {
	h := newHarness(t, nil)
	h.handler.check = func(ev *Event) *Error {
		if ev.Login == "mallory" {
			return &Error{Code: ErrForbidden, Message: "login mallory is not allowed"}
		}
		return nil
	}
	rc, _ := h.connect(t, "c")
	ev := message(1)
	ev.Login = "mallory"
	sendEvent(t, rc, 1, ev)
	if f := mustRead(t, rc); f.Type != TypeErr || f.Error.Code != ErrForbidden || f.Seq != 1 {
		t.Fatalf("want M_FORBIDDEN for seq 1, got %+v", f)
	}
	ev = message(2)
	ev.Chat = &Chat{ID: "room", Type: "group"}
	sendEvent(t, rc, 2, ev)
	if f := mustRead(t, rc); f.Type != TypeErr || f.Error.Code != ErrUnsupported || f.Seq != 2 {
		t.Fatalf("want M_UNSUPPORTED for seq 2, got %+v", f)
	}
	sendEvent(t, rc, 3, message(3))
	waitAck(t, rc, 3)
	got := h.store.snapshot("c")
	if len(got) != 3 || got[0].ev != nil || got[1].ev != nil || got[2].ev == nil {
		t.Fatalf("store: %+v", got)
	}
}

func TestEphemeral(t *testing.T) {
	h := newHarness(t, nil)
	rc, _ := h.connect(t, "c")
	_ = rc.WriteFrame(Frame{Type: TypeEphemeral}, &Ephemeral{Kind: KindTyping, Login: "a", Chat: dmChat(), Sender: bob(), Typing: true, TimeoutMS: 5000})
	_ = rc.WriteFrame(Frame{Type: TypeEphemeral}, &Ephemeral{Kind: KindPresence, Login: "a", Contact: "bob", Presence: PresenceOnline})
	eventually(t, "ephemerals", func() bool {
		h.handler.mu.Lock()
		defer h.handler.mu.Unlock()
		return len(h.handler.ephemerals) == 2
	})
	if e := h.handler.ephemerals[0]; !e.Typing || e.TimeoutMS != 5000 {
		t.Errorf("typing arrived as %+v", e)
	}
}

func TestKeepAlive(t *testing.T) {
	h := newHarness(t, func(o *ServerOptions) {
		o.PingInterval = 20 * time.Millisecond
		o.DeadAfter = 100 * time.Millisecond
	})
	// A connector that reads answers pings (gorilla pongs while reading).
	live, _ := h.connect(t, "live")
	go func() {
		for {
			if _, err := live.ReadFrame(time.Minute); err != nil {
				return
			}
		}
	}()
	// One that never reads again never pongs, and is dead after DeadAfter.
	_, _ = h.connect(t, "mute")
	start := time.Now()
	eventually(t, "mute connector declared dead", func() bool { return !h.srv.Connected("mute") })
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dead detection took %s", d)
	}
	time.Sleep(300 * time.Millisecond)
	if !h.srv.Connected("live") {
		t.Error("a connector answering pings was dropped")
	}
}

func TestMediaEndpoint(t *testing.T) {
	const ownToken = "token-of-connector-own-0123456789"
	h := newHarness(t, func(o *ServerOptions) {
		o.ConnectorTokens = map[string]string{"own": ownToken}
		o.Media = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("media:" + strings.TrimPrefix(r.URL.Path, MediaPathPrefix)))
		})
	})
	get := func(url, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if _, ok := h.srv.MediaURL("c", "hs.example", "abc"); ok {
		t.Error("a media URL for a connector that is not connected")
	}
	h.connect(t, "c")
	// The welcome can arrive a moment before the server counts the
	// connection as live.
	eventually(t, "connector c live", func() bool { return h.srv.Connected("c") })
	url, ok := h.srv.MediaURL("c", "hs.example", "abc")
	if !ok || !strings.HasPrefix(url, h.hs.URL+MediaPathPrefix+"hs.example/abc?") {
		t.Fatalf("MediaURL = %q, %v", url, ok)
	}
	if code, _ := get(url, ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}
	if code, _ := get(url, "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", code)
	}
	if code, body := get(url, testToken); code != http.StatusOK || body != "media:hs.example/abc" {
		t.Errorf("signed URL with token: %d %q", code, body)
	}
	// Anything the bridge did not hand out gets 403 and no bytes.
	expired := time.Now().Add(-time.Minute).Unix()
	forbidden := map[string]string{
		"unsigned":               h.hs.URL + MediaPathPrefix + "hs.example/abc",
		"other media":            strings.Replace(url, "/abc?", "/abd?", 1),
		"other connector":        strings.Replace(url, "connector=c", "connector=d", 1),
		"bad signature":          url[:len(url)-2] + "AA",
		"own connector's id":     strings.Replace(url, "connector=c", "connector=own", 1),
		"expired":                fmt.Sprintf("%s%s?connector=c&expires=%d&sig=%s", h.hs.URL, MediaPath("hs.example", "abc"), expired, h.srv.mediaSignature("c", "hs.example", "abc", expired)),
		"no expiry":              strings.Replace(url, "expires=", "expired=", 1),
		"a path that is not one": h.hs.URL + MediaPathPrefix + "hs.example/abc/x?" + strings.SplitN(url, "?", 2)[1],
	}
	for name, u := range forbidden {
		if code, body := get(u, testToken); code != http.StatusForbidden || strings.Contains(body, "media:") {
			t.Errorf("%s: %d %q, want 403 without the media", name, code, body)
		}
	}
	// A connector's own token fetches only what was signed for it.
	if code, _ := get(url, ownToken); code != http.StatusForbidden {
		t.Errorf("another connector's media with an own token: %d, want 403", code)
	}
	rc, _, err := DialRaw(context.Background(), h.url, ownToken, []string{Subprotocol})
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.WriteFrame(Frame{Type: TypeHello}, testHello("own")); err != nil {
		t.Fatal(err)
	}
	if f := mustRead(t, rc); f.Type != TypeWelcome {
		t.Fatalf("own token, own id: %+v", f)
	}
	eventually(t, "connector own live", func() bool { return h.srv.Connected("own") })
	ownURL, _ := h.srv.MediaURL("own", "hs.example", "abc")
	if code, _ := get(ownURL, testToken); code != http.StatusForbidden {
		t.Errorf("an own connector's media with the shared token: %d, want 403", code)
	}
	if code, body := get(ownURL, ownToken); code != http.StatusOK || body != "media:hs.example/abc" {
		t.Errorf("own media with own token: %d %q", code, body)
	}
	resp, err := http.Get(h.hs.URL + "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("other path: %d", resp.StatusCode)
	}
}

// TestConnectorTokenBoundToID: a connector's own token is good for its own
// id only, the shared token not for an id that has its own, and a refused
// hello never disturbs the connection that holds the id.
func TestConnectorTokenBoundToID(t *testing.T) {
	const ownToken = "token-of-connector-own-0123456789"
	h := newHarness(t, func(o *ServerOptions) { o.ConnectorTokens = map[string]string{"own": ownToken} })
	hello := func(token, id string) *RawConn {
		t.Helper()
		rc, _, err := DialRaw(context.Background(), h.url, token, []string{Subprotocol})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rc.Close() })
		if err := rc.WriteFrame(Frame{Type: TypeHello}, testHello(id)); err != nil {
			t.Fatal(err)
		}
		return rc
	}
	refused := func(rc *RawConn, what string) {
		t.Helper()
		f := mustRead(t, rc)
		if f.Type != TypeErr || f.Error == nil || f.Error.Code != ErrForbidden {
			t.Fatalf("%s: got %+v, want err M_FORBIDDEN", what, f)
		}
		expectClose(t, rc, CloseProtocolError)
	}
	holder := hello(ownToken, "own")
	if f := mustRead(t, holder); f.Type != TypeWelcome {
		t.Fatalf("own token, own id: %+v", f)
	}
	eventually(t, "connector own live", func() bool { return h.srv.Connected("own") })
	refused(hello(ownToken, "other"), "own token, other id")
	refused(hello(testToken, "own"), "shared token, an id with its own token")
	if !h.srv.Connected("own") || h.srv.Connected("other") {
		t.Errorf("connected: own %v, other %v; want the holder untouched", h.srv.Connected("own"), h.srv.Connected("other"))
	}
	shared := hello(testToken, "shared")
	if f := mustRead(t, shared); f.Type != TypeWelcome {
		t.Fatalf("shared token, free id: %+v", f)
	}
}

func TestServerClose(t *testing.T) {
	h := newHarness(t, nil)
	rc, _ := h.connect(t, "c")
	done := make(chan struct{})
	go func() {
		h.srv.Close()
		close(done)
	}()
	expectClose(t, rc, websocket.CloseGoingAway)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, resp, err := DialRaw(context.Background(), h.url, testToken, []string{Subprotocol}); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after Close: %v %v", resp, err)
	}
}

func TestNewServerOptions(t *testing.T) {
	base := ServerOptions{Token: "t", Store: newTestStore(t), Handler: newTestHandler()}
	bad := []func(*ServerOptions){
		func(o *ServerOptions) { o.Token = "" },
		func(o *ServerOptions) { o.ConnectorTokens = map[string]string{"a": "t"} },
		func(o *ServerOptions) { o.ConnectorTokens = map[string]string{"": "x"} },
		func(o *ServerOptions) { o.Store = nil },
		func(o *ServerOptions) { o.Handler = nil },
		func(o *ServerOptions) { o.MaxInFlight = 4; o.AckEvery = 8 },
		func(o *ServerOptions) { o.PingInterval = time.Minute; o.DeadAfter = time.Second },
	}
	for i, mutate := range bad {
		o := base
		mutate(&o)
		if _, err := NewServer(o); err == nil {
			t.Errorf("case %d: accepted", i)
		}
	}
	s, err := NewServer(base)
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
	h := newHarness(t, nil)
	var failing atomic.Bool
	failing.Store(true)
	h.handler.check = func(ev *Event) *Error {
		if ev.ID == "m2" && failing.Load() {
			return &Error{Code: ErrUnknown, Message: "database unavailable", Retryable: true}
		}
		return nil
	}
	rc, _ := h.connect(t, "c")
	sendEvent(t, rc, 1, message(1))
	sendEvent(t, rc, 2, message(2))
	if maxAck := highestAckBeforeClose(t, rc, 1011); maxAck >= 2 {
		t.Fatalf("event 2 was acked (ack %d) although its check failed", maxAck)
	}
	if got := h.store.snapshot("c"); len(got) != 1 || got[0].ev == nil || got[0].ev.ID != "m1" {
		t.Fatalf("store after the failed check: %+v", got)
	}
	failing.Store(false)
	rc, w := h.connect(t, "c")
	if w.AckedSeq != 1 {
		t.Fatalf("welcome acked_seq %d, want 1", w.AckedSeq)
	}
	sendEvent(t, rc, 2, message(2))
	waitAck(t, rc, 2)
	if got := h.store.snapshot("c"); len(got) != 2 || got[1].ev == nil || got[1].ev.ID != "m2" {
		t.Fatalf("store after the replay: %+v", got)
	}
}

package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

const testToken = "s3cret-token"

func testLog(t testing.TB) zerolog.Logger {
	if os.Getenv("CONNECTOR_TEST_LOG") != "" {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

// testStore is an in-memory bridge Store that also checks the server's
// promise to accept every seq exactly once and in order.
type testStore struct {
	t      testing.TB
	mu     sync.Mutex
	acked  map[string]int64
	events map[string][]acceptedEvent
	delay  time.Duration
	onSeq  func(connectorID string, seq int64) // runs after each accept, outside the lock
}

type acceptedEvent struct {
	seq int64
	ev  *Event // nil: acked without storing
}

func newTestStore(t testing.TB) *testStore {
	return &testStore{t: t, acked: map[string]int64{}, events: map[string][]acceptedEvent{}}
}

func (s *testStore) AckedSeq(_ context.Context, id string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked[id], nil
}

func (s *testStore) Accept(ctx context.Context, id string, seq int64, ev *Event) error {
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	if want := s.acked[id] + 1; seq != want {
		s.t.Errorf("Accept(%s, seq %d): want seq %d", id, seq, want)
	}
	s.acked[id] = seq
	s.events[id] = append(s.events[id], acceptedEvent{seq: seq, ev: ev})
	hook := s.onSeq
	s.mu.Unlock()
	if hook != nil {
		hook(id, seq)
	}
	return nil
}

func (s *testStore) snapshot(id string) []acceptedEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]acceptedEvent(nil), s.events[id]...)
}

func (s *testStore) setAcked(id string, seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acked[id] = seq
}

// testHandler records what the server hands to the bridge.
type testHandler struct {
	mu         sync.Mutex
	refuse     map[string]string
	check      func(*Event) *Error
	hellos     int
	log        []string // "connected:x", "disconnected:x", in order
	ephemerals []Ephemeral
	accepted   int
	changed    chan struct{}
}

func newTestHandler() *testHandler {
	return &testHandler{changed: make(chan struct{}, 1)}
}

func (h *testHandler) note() {
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

func (h *testHandler) Hello(_ context.Context, _ string, hello *Hello) []LoginRefusal {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hellos++
	var out []LoginRefusal
	for _, l := range hello.Logins {
		if msg, ok := h.refuse[l.MatrixUser]; ok {
			out = append(out, LoginRefusal{Login: l.ID, Message: msg})
		}
	}
	return out
}

func (h *testHandler) Check(_ context.Context, _ string, ev *Event) *Error {
	h.mu.Lock()
	check := h.check
	h.mu.Unlock()
	if check != nil {
		return check(ev)
	}
	return nil
}

func (h *testHandler) Accepted(string) {
	h.mu.Lock()
	h.accepted++
	h.mu.Unlock()
	h.note()
}

func (h *testHandler) Ephemeral(_ context.Context, _ string, e *Ephemeral) {
	h.mu.Lock()
	h.ephemerals = append(h.ephemerals, *e)
	h.mu.Unlock()
	h.note()
}

func (h *testHandler) Connected(id string) {
	h.mu.Lock()
	h.log = append(h.log, "connected:"+id)
	h.mu.Unlock()
	h.note()
}

func (h *testHandler) Disconnected(id string) {
	h.mu.Lock()
	h.log = append(h.log, "disconnected:"+id)
	h.mu.Unlock()
	h.note()
}

func (h *testHandler) events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.log...)
}

// harness is a Server behind an httptest listener.
type harness struct {
	srv     *Server
	hs      *httptest.Server
	store   *testStore
	handler *testHandler
	url     string
}

func newHarness(t testing.TB, mutate func(*ServerOptions)) *harness {
	t.Helper()
	h := &harness{store: newTestStore(t), handler: newTestHandler()}
	opts := ServerOptions{
		Token:   testToken,
		Bridge:  Software{Name: "dmbridge", Version: "test"},
		Store:   h.store,
		Handler: h.handler,
		Log:     testLog(t),
	}
	if mutate != nil {
		mutate(&opts)
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	h.hs = httptest.NewServer(srv)
	h.url = "ws" + strings.TrimPrefix(h.hs.URL, "http") + Path
	t.Cleanup(func() {
		srv.Close()
		h.hs.Close()
	})
	return h
}

func testHello(id string) *Hello {
	return &Hello{
		Protocol:     []int{1},
		Connector:    Software{ID: id, Name: "test connector", Version: "0.0.1"},
		Network:      Network{ID: "testnet", Name: "Test network"},
		Capabilities: Capabilities{Formats: []string{"plain"}, Edit: true},
		Logins:       []Login{{ID: "alice@testnet", MatrixUser: "@alice:hs", State: LoginConnected}},
	}
}

func (h *harness) dial(t testing.TB) *RawConn {
	t.Helper()
	rc, _, err := DialRaw(context.Background(), h.url, testToken, []string{Subprotocol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// connect dials, says hello and returns the welcome.
func (h *harness) connect(t testing.TB, id string) (*RawConn, Welcome) {
	t.Helper()
	rc := h.dial(t)
	if err := rc.WriteFrame(Frame{Type: TypeHello}, testHello(id)); err != nil {
		t.Fatal(err)
	}
	f := mustRead(t, rc)
	if f.Type != TypeWelcome {
		t.Fatalf("want welcome, got %+v", f)
	}
	var w Welcome
	if err := json.Unmarshal(f.Data, &w); err != nil {
		t.Fatal(err)
	}
	return rc, w
}

func mustRead(t testing.TB, rc *RawConn) *Frame {
	t.Helper()
	f, err := rc.ReadFrame(5 * time.Second)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

// readUntil reads frames until pred accepts one, and returns it.
func readUntil(t testing.TB, rc *RawConn, what string, pred func(*Frame) bool) *Frame {
	t.Helper()
	for {
		f, err := rc.ReadFrame(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if pred(f) {
			return f
		}
	}
}

func waitAck(t testing.TB, rc *RawConn, seq int64) {
	t.Helper()
	readUntil(t, rc, fmt.Sprintf("ack %d", seq), func(f *Frame) bool { return f.Type == TypeAck && f.Seq >= seq })
}

// expectClose reads until the connection closes and checks the code.
func expectClose(t testing.TB, rc *RawConn, code int) {
	t.Helper()
	for {
		_, err := rc.ReadFrame(5 * time.Second)
		if err == nil {
			continue
		}
		// Like a real client: once the close frames crossed, hang up.
		_ = rc.Close()
		if got := CloseCode(err); got != code {
			t.Fatalf("want close %d, got %v", code, err)
		}
		return
	}
}

func message(i int) *Event {
	return &Event{
		Kind: KindMessage, Login: "alice@testnet", TS: int64(1000 + i),
		Chat: dmChat(), Sender: bob(), ID: fmt.Sprintf("m%d", i), Text: fmt.Sprintf("hello %d", i),
	}
}

func sendEvent(t testing.TB, rc *RawConn, seq int64, ev *Event) {
	t.Helper()
	if err := rc.WriteFrame(Frame{Type: TypeEvent, Seq: seq}, ev); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// runClient runs c until the test ends and returns Run's result channel.
func runClient(t testing.TB, c *Client) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("client did not stop")
		}
	})
	return done
}

func (h *harness) client(t testing.TB, id string, mutate func(*ClientOptions)) *Client {
	t.Helper()
	opts := ClientOptions{
		URL:        h.url,
		Token:      testToken,
		Hello:      *testHello(id),
		Log:        testLog(t),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&opts)
	}
	return NewClient(opts)
}

// kick drops a connector's TCP connection without a goodbye, like a network failure.
func (h *harness) kick(id string) {
	if c := h.srv.live(id); c != nil {
		_ = c.ws.NetConn().Close()
	}
}

// Package connectortest runs the connector protocol's server behind an
// httptest listener with an in-memory Store and a recording Handler, for the
// tests of the server, the SDK and its users.
package connectortest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connws"
	"github.com/dmbridge/dmbridge/internal/rawconn"
)

const Token = "s3cret-token"

func Log(t testing.TB) zerolog.Logger {
	if os.Getenv("CONNECTOR_TEST_LOG") != "" {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

// testStore is an in-memory bridge Store that also checks the server's
// promise to accept every seq exactly once and in order.
type Store struct {
	T      testing.TB
	Mu     sync.Mutex
	Acked  map[string]int64
	Events map[string][]AcceptedEvent
	Delay  time.Duration
	OnSeq  func(connectorID string, seq int64) // runs after each accept, outside the lock
}

type AcceptedEvent struct {
	Seq int64
	Ev  *connector.Event // nil: acked without storing
}

func NewStore(t testing.TB) *Store {
	return &Store{T: t, Acked: map[string]int64{}, Events: map[string][]AcceptedEvent{}}
}

func (s *Store) AckedSeq(_ context.Context, id string) (int64, error) {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	return s.Acked[id], nil
}

func (s *Store) Accept(ctx context.Context, id string, seq int64, ev *connector.Event) error {
	if s.Delay > 0 {
		select {
		case <-time.After(s.Delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.Mu.Lock()
	if want := s.Acked[id] + 1; seq != want {
		s.T.Errorf("Accept(%s, seq %d): want seq %d", id, seq, want)
	}
	s.Acked[id] = seq
	s.Events[id] = append(s.Events[id], AcceptedEvent{Seq: seq, Ev: ev})
	hook := s.OnSeq
	s.Mu.Unlock()
	if hook != nil {
		hook(id, seq)
	}
	return nil
}

func (s *Store) Snapshot(id string) []AcceptedEvent {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	return append([]AcceptedEvent(nil), s.Events[id]...)
}

func (s *Store) SetAcked(id string, seq int64) {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	s.Acked[id] = seq
}

// testHandler records what the server hands to the bridge.
type Handler struct {
	Mu         sync.Mutex
	Refuse     map[string]string
	CheckFunc  func(*connector.Event) *connector.Error
	Hellos     int
	Logins     map[string]bool // every login id a hello named
	Log        []string        // "connected:x", "disconnected:x", in order
	Ephemerals []connector.Ephemeral
	Changed    chan struct{}
	// BeforeDisconnected, if set, runs at the start of Disconnected, to
	// hold a teardown where a race would show.
	BeforeDisconnected func(id string)
}

func NewHandler() *Handler {
	return &Handler{Changed: make(chan struct{}, 1)}
}

func (h *Handler) Note() {
	select {
	case h.Changed <- struct{}{}:
	default:
	}
}

func (h *Handler) Hello(_ context.Context, _ string, hello *connector.Hello) []server.LoginRefusal {
	h.Mu.Lock()
	defer h.Mu.Unlock()
	h.Hellos++
	if h.Logins == nil {
		h.Logins = make(map[string]bool)
	}
	var out []server.LoginRefusal
	for _, l := range hello.Logins {
		h.Logins[l.ID] = true
		if msg, ok := h.Refuse[l.MatrixUser]; ok {
			out = append(out, server.LoginRefusal{Login: l.ID, Message: msg})
		}
	}
	return out
}

// KnowsLogin reports whether a hello named the login, as the bridge requires
// of every event's login.
func (h *Handler) KnowsLogin(id string) bool {
	h.Mu.Lock()
	defer h.Mu.Unlock()
	return h.Logins[id]
}

func (h *Handler) Check(_ context.Context, _ string, ev *connector.Event) *connector.Error {
	h.Mu.Lock()
	check := h.CheckFunc
	h.Mu.Unlock()
	if check != nil {
		return check(ev)
	}
	return nil
}

func (h *Handler) Ephemeral(_ context.Context, _ string, e *connector.Ephemeral) {
	h.Mu.Lock()
	h.Ephemerals = append(h.Ephemerals, *e)
	h.Mu.Unlock()
	h.Note()
}

func (h *Handler) Connected(id string) {
	h.Mu.Lock()
	h.Log = append(h.Log, "connected:"+id)
	h.Mu.Unlock()
	h.Note()
}

func (h *Handler) Disconnected(id string) {
	h.Mu.Lock()
	before := h.BeforeDisconnected
	h.Mu.Unlock()
	if before != nil {
		before(id)
	}
	h.Mu.Lock()
	h.Log = append(h.Log, "disconnected:"+id)
	h.Mu.Unlock()
	h.Note()
}

func (h *Handler) Events() []string {
	h.Mu.Lock()
	defer h.Mu.Unlock()
	return append([]string(nil), h.Log...)
}

// WaitEvents waits until the handler has seen as many callbacks as want
// and fails the test unless they were want, in that order.
func (h *Handler) WaitEvents(t testing.TB, want ...string) {
	t.Helper()
	Eventually(t, "handler callbacks", func() bool { return len(h.Events()) >= len(want) })
	if got := h.Events(); !slices.Equal(got, want) {
		t.Errorf("handler saw %v, want %v", got, want)
	}
}

// harness is a Server behind an httptest listener.
type Harness struct {
	Srv     *server.Server
	HS      *httptest.Server
	Store   *Store
	Handler *Handler
	URL     string

	ConnsMu sync.Mutex
	Conns   []net.Conn // upgraded connections, for kick
}

func NewHarness(t testing.TB, mutate func(*server.Options)) *Harness {
	t.Helper()
	h := &Harness{Store: NewStore(t), Handler: NewHandler()}
	opts := server.Options{
		Token:   Token,
		Bridge:  connector.Software{Name: "dmbridge", Version: "test"},
		Store:   h.Store,
		Handler: h.Handler,
		Log:     Log(t),
	}
	if mutate != nil {
		mutate(&opts)
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Srv = srv
	h.HS = httptest.NewUnstartedServer(srv)
	h.HS.Config.ConnState = func(c net.Conn, state http.ConnState) {
		if state == http.StateHijacked { // a websocket upgrade
			h.ConnsMu.Lock()
			h.Conns = append(h.Conns, c)
			h.ConnsMu.Unlock()
		}
	}
	h.HS.Start()
	h.URL = "ws" + strings.TrimPrefix(h.HS.URL, "http") + connector.Path
	t.Cleanup(func() {
		srv.Close()
		h.HS.Close()
	})
	return h
}

func Hello(id string) *connector.Hello {
	return &connector.Hello{
		Protocol:     []int{1},
		Connector:    connector.Software{ID: id, Name: "test connector", Version: "0.0.1"},
		Network:      connector.Network{ID: "testnet", Name: "Test network"},
		Capabilities: connector.Capabilities{Formats: []string{"plain"}, Edit: true},
		Logins:       []connector.Login{{ID: "alice@testnet", MatrixUser: "@alice:hs", State: connector.LoginConnected}},
	}
}

func (h *Harness) Dial(t testing.TB) *rawconn.Conn {
	t.Helper()
	rc, _, err := rawconn.Dial(context.Background(), h.URL, Token, []string{connector.Subprotocol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// connect dials, says hello and returns the welcome.
func (h *Harness) Connect(t testing.TB, id string) (*rawconn.Conn, connector.Welcome) {
	t.Helper()
	rc := h.Dial(t)
	if err := rc.WriteFrame(connector.Frame{Type: connector.TypeHello}, Hello(id)); err != nil {
		t.Fatal(err)
	}
	f := MustRead(t, rc)
	if f.Type != connector.TypeWelcome {
		t.Fatalf("want welcome, got %+v", f)
	}
	var w connector.Welcome
	if err := json.Unmarshal(f.Data, &w); err != nil {
		t.Fatal(err)
	}
	return rc, w
}

func MustRead(t testing.TB, rc *rawconn.Conn) *connector.Frame {
	t.Helper()
	f, err := rc.ReadFrame(5 * time.Second)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

// readUntil reads frames until pred accepts one, and returns it.
func ReadUntil(t testing.TB, rc *rawconn.Conn, what string, pred func(*connector.Frame) bool) *connector.Frame {
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

func WaitAck(t testing.TB, rc *rawconn.Conn, seq int64) {
	t.Helper()
	ReadUntil(t, rc, fmt.Sprintf("ack %d", seq), func(f *connector.Frame) bool { return f.Type == connector.TypeAck && f.Seq >= seq })
}

// expectClose reads until the connection closes and checks the code.
func ExpectClose(t testing.TB, rc *rawconn.Conn, code int) {
	t.Helper()
	for {
		_, err := rc.ReadFrame(5 * time.Second)
		if err == nil {
			continue
		}
		// Like a real client: once the close frames crossed, hang up.
		_ = rc.Close()
		if got := connws.CloseCode(err); got != code {
			t.Fatalf("want close %d, got %v", code, err)
		}
		return
	}
}

func Message(i int) *connector.Event {
	return &connector.Event{
		Kind: connector.KindMessage, Login: "alice@testnet", TS: int64(1000 + i),
		Chat: DMChat(), Sender: Bob(), ID: fmt.Sprintf("m%d", i), Text: fmt.Sprintf("hello %d", i),
	}
}

func SendEvent(t testing.TB, rc *rawconn.Conn, seq int64, ev *connector.Event) {
	t.Helper()
	if err := rc.WriteFrame(connector.Frame{Type: connector.TypeEvent, Seq: seq}, ev); err != nil {
		t.Fatal(err)
	}
}

// SendMessages sends Message(i) as the event of seq i for every i from first
// to last, the stream most protocol tests feed the server.
func SendMessages(t testing.TB, rc *rawconn.Conn, first, last int) {
	t.Helper()
	for i := first; i <= last; i++ {
		SendEvent(t, rc, int64(i), Message(i))
	}
}

// eventually polls cond until it holds or a deadline passes.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// kick drops a connector's TCP connection without a goodbye, like a network
// failure. It drops every websocket the harness accepted so far: the tests
// that kick have one connector connected at a time.
func (h *Harness) Kick(id string) {
	h.ConnsMu.Lock()
	conns := h.Conns
	h.Conns = nil
	h.ConnsMu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func DMChat() *connector.Chat {
	return &connector.Chat{ID: "c1", Type: connector.ChatTypeDM, With: "bob"}
}

func Bob() *connector.Sender { return &connector.Sender{ID: "bob"} }

package xmppconnector

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

const (
	bridgeToken = "test-connector-token"
	alicePW     = "alice-pw"
	bobPW       = "bob-pw"
	waitLong    = 15 * time.Second
)

// fakeBridge is the bridge side of the protocol: the real server.Server
// with an in-memory store that records every accepted event.
type fakeBridge struct {
	srv  *server.Server
	http *httptest.Server

	mu         sync.Mutex
	acked      map[string]int64
	events     []connector.Event
	ephemerals []connector.Ephemeral
	changed    chan struct{}
}

func newFakeBridge(t *testing.T) *fakeBridge {
	b := &fakeBridge{acked: make(map[string]int64), changed: make(chan struct{})}
	srv, err := server.New(server.Options{
		Token:   bridgeToken,
		Store:   b,
		Handler: bridgeHandler{b},
		Log:     testLogger(t).With().Str("side", "bridge").Logger(),
		// Commands in these tests wait for a real XMPP round trip at most.
		CommandTimeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.srv = srv
	b.http = httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		b.http.Close()
	})
	return b
}

func (b *fakeBridge) AckedSeq(_ context.Context, id string) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.acked[id], nil
}

func (b *fakeBridge) Accept(_ context.Context, id string, seq int64, ev *connector.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.acked[id] = seq
	if ev != nil {
		b.events = append(b.events, *ev)
	}
	b.notify()
	return nil
}

// notify wakes waiters; b.mu must be held.
func (b *fakeBridge) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

type bridgeHandler struct{ b *fakeBridge }

func (bridgeHandler) Hello(context.Context, string, *connector.Hello) []server.LoginRefusal {
	return nil
}
func (bridgeHandler) Check(context.Context, string, *connector.Event) *connector.Error { return nil }
func (bridgeHandler) Connected(string)                                                 {}
func (bridgeHandler) Disconnected(string)                                              {}
func (h bridgeHandler) Ephemeral(_ context.Context, _ string, e *connector.Ephemeral) {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	h.b.ephemerals = append(h.b.ephemerals, *e)
	h.b.notify()
}

// waitFor waits until cond holds for the recorded events and ephemerals.
func (b *fakeBridge) waitFor(t *testing.T, what string, cond func(evs []connector.Event, eph []connector.Ephemeral) bool) {
	t.Helper()
	deadline := time.After(waitLong)
	for {
		b.mu.Lock()
		ok := cond(b.events, b.ephemerals)
		changed := b.changed
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; events so far:\n%s", what, b.dump())
		}
	}
}

// waitEvent waits for the first event matching pred and returns it.
func (b *fakeBridge) waitEvent(t *testing.T, what string, pred func(*connector.Event) bool) connector.Event {
	t.Helper()
	var found connector.Event
	b.waitFor(t, what, func(evs []connector.Event, _ []connector.Ephemeral) bool {
		for i := range evs {
			if pred(&evs[i]) {
				found = evs[i]
				return true
			}
		}
		return false
	})
	return found
}

// matching returns the recorded events matching pred.
func (b *fakeBridge) matching(pred func(*connector.Event) bool) []connector.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []connector.Event
	for i := range b.events {
		if pred(&b.events[i]) {
			out = append(out, b.events[i])
		}
	}
	return out
}

func (b *fakeBridge) dump() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s string
	for _, ev := range b.events {
		s += eventString(ev) + "\n"
	}
	return s
}

func eventString(ev connector.Event) string {
	s := ev.Kind + " id=" + ev.ID
	if ev.Chat != nil {
		s += " chat=" + ev.Chat.ID
	}
	if ev.Sender != nil {
		s += " sender=" + ev.Sender.ID
		if ev.Sender.IsMe {
			s += "(me)"
		}
	}
	s += " text=" + ev.Text + " target=" + ev.Target + " key=" + ev.Key + " txn=" + ev.Txn + " state=" + ev.State
	if ev.Contact != nil {
		s += " contact=" + ev.Contact.ID + "/" + ev.Contact.Name
	}
	return s
}

// command runs a command on the connector as the bridge would.
func (b *fakeBridge) command(t *testing.T, op string, cmd *connector.Command) (*connector.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLong)
	defer cancel()
	for !b.srv.Connected("xmpp") {
		select {
		case <-ctx.Done():
			t.Fatal("connector never connected to the bridge")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return b.srv.Command(ctx, "xmpp", op, cmd)
}

func testLogger(t *testing.T) zerolog.Logger {
	if os.Getenv("XMPP_TEST_LOG") == "" {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

// env is one test's world: Prosody with alice and bob, the fake bridge, and
// the connector's config (alice's account).
type env struct {
	xmpp   *testxmpp.Server
	bridge *fakeBridge
	cfg    *Config
	alice  string
	bob    string
}

func newEnv(t *testing.T, opts ...testxmpp.Option) *env {
	t.Helper()
	srv := testxmpp.Start(t, opts...)
	srv.Register(t, "alice", alicePW)
	srv.Register(t, "bob", bobPW)
	b := newFakeBridge(t)
	cfg := aliceConfig(t, srv)
	cfg.Bridge = BridgeConfig{URL: b.http.URL, Token: bridgeToken}
	// Prosody's upload service is on loopback, which uploads refuse by
	// default.
	cfg.XMPP.UploadAllow = []string{"127.0.0.0/8", "::1/128", "localhost"}
	cfg.Avatars = AvatarConfig{Listen: "127.0.0.1:0"}
	return &env{xmpp: srv, bridge: b, cfg: &cfg, alice: srv.JID("alice"), bob: srv.JID("bob")}
}

// aliceConfig is the connector's config for alice's account on srv (where
// she is registered with alicePW), with a fresh database and short
// reconnect and ping intervals so that tests of outages stay short.
func aliceConfig(t *testing.T, srv *testxmpp.Server) Config {
	return Config{
		Database: filepath.Join(t.TempDir(), "xmpp-connector.db"),
		XMPP: XMPPConfig{
			Server:       srv.Addr(),
			TLS:          TLSPlaintext,
			MinBackoff:   100 * time.Millisecond,
			MaxBackoff:   time.Second,
			PingInterval: 2 * time.Second,
		},
		Accounts: []AccountConfig{{JID: srv.JID("alice"), Password: alicePW, MatrixUser: "@alice:localhost"}},
	}
}

// startWithBob is newEnv and start, with bob logged in on his own XMPP
// client: the setup of a test of alice's chat with bob.
func startWithBob(t *testing.T) (*env, *testxmpp.Client) {
	t.Helper()
	return startConfiguredWithBob(t, nil)
}

// startConfiguredWithBob is startWithBob on a server started with opts,
// after setup (if not nil) has changed the env (its connector config).
func startConfiguredWithBob(t *testing.T, setup func(*env), opts ...testxmpp.Option) (*env, *testxmpp.Client) {
	t.Helper()
	e := newEnv(t, opts...)
	if setup != nil {
		setup(e)
	}
	e.start(t)
	return e, e.xmpp.Dial(t, "bob", bobPW)
}

// bobChat is alice's chat with bob as the connector names it to the bridge.
func (e *env) bobChat() *connector.Chat {
	return &connector.Chat{ID: e.bob, Type: connector.ChatTypeDM, With: e.bob}
}

// start runs the connector until the returned stop is called (or the test
// ends) and waits until its account is connected to XMPP.
func (e *env) start(t *testing.T) (stop func()) {
	t.Helper()
	cfg := *e.cfg
	cfg.Accounts = slices.Clone(e.cfg.Accounts)
	c, err := New(t.Context(), &cfg, testLogger(t).With().Str("side", "connector").Logger())
	if err != nil {
		t.Fatal(err)
	}
	before := len(e.bridge.matching(isLogin(connector.LoginConnected)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("connector Run: %v", err)
			}
			_ = c.Close()
		})
	}
	t.Cleanup(stop)
	e.bridge.waitFor(t, "login connected", func(evs []connector.Event, _ []connector.Ephemeral) bool {
		return countMatching(evs, isLogin(connector.LoginConnected)) > before
	})
	return stop
}

func isLogin(state string) func(*connector.Event) bool {
	return func(ev *connector.Event) bool { return ev.Kind == connector.KindLogin && ev.State == state }
}

func isMessage(text string) func(*connector.Event) bool {
	return func(ev *connector.Event) bool { return ev.Kind == connector.KindMessage && ev.Text == text }
}

func countMatching(evs []connector.Event, pred func(*connector.Event) bool) int {
	n := 0
	for i := range evs {
		if pred(&evs[i]) {
			n++
		}
	}
	return n
}

// addToRoster makes who one of alice's roster contacts the way the user
// does from Matrix: by starting a chat, which asks for who's presence.
func (e *env) addToRoster(t *testing.T, who string) {
	t.Helper()
	if _, err := e.bridge.command(t, connector.OpResolveIdentifier, &connector.Command{Login: e.alice, Identifier: who, Create: true}); err != nil {
		t.Fatalf("resolve %s: %v", who, err)
	}
}

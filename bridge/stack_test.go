package bridge_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/bridge"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/memhs"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

const (
	testConnectorToken = "connector-secret-for-tests-0123456789"
	testLogin          = "alice@network"
)

// stack is one end-to-end setup: a real Dendrite, a real database, the
// bridge, and a fake connector built on the project's SDK.
type stack struct {
	t      testing.TB
	hs     *tesths.Homeserver
	cfg    *config.Config
	br     *bridge.Bridge
	alice  *mautrix.Client
	sync   *tesths.SyncWatcher
	fake   *fakeConnector
	target testdb.Target
	// proxy is set with stackOptions.hsProxy: the bridge reaches Dendrite
	// through it.
	proxy *hsProxy
	// pushes is set with stackOptions.asProxy: Dendrite's transactions
	// reach the bridge through it.
	pushes *asProxy
	// logTo, if set, also gets the bridge's log, from debug level on.
	logTo io.Writer
	// mem is the in-memory homeserver of a stackOptions.memHS stack.
	mem *memhs.Server
}

type stackOptions struct {
	noDoublePuppet bool
	permissions    config.Permissions
	// noBridge leaves starting the bridge to the test (e.g. as a process).
	noBridge bool
	// mediaFetchAllow is bridge.media_fetch_allow. Every test server is on
	// loopback, which the bridge refuses to fetch from by default, so a
	// test whose media or avatars come from one opens it here.
	mediaFetchAllow []string
	// hsProxy puts a fault-injecting proxy between bridge and Dendrite.
	hsProxy bool
	// asProxy puts one between Dendrite's pushes and the bridge.
	asProxy bool
	// xmpp configures the Prosody of an XMPP stack; noConnector leaves
	// starting its connector to the test.
	xmpp        []testxmpp.Option
	noConnector bool
	// memHS runs the bridge against internal/memhs instead of Dendrite
	// (benchmarks only: s.hs and s.sync stay nil, s.mem is set).
	memHS bool
	// configure adjusts the bridge config before the bridge starts (the
	// config is shared with the running bridge, so it must not change
	// afterwards).
	configure func(*config.Config)
	// encryption gives the bridge a pickle key, which turns
	// encryption.allow (on by default) into a working e2ee manager.
	encryption bool
	// encryptByDefault sets encryption.default, requireEncryption
	// encryption.require (with encryption).
	encryptByDefault, requireEncryption bool
}

// loopbackMedia opens loopback to the bridge's media fetches, for tests
// whose file servers, avatar servers or XMPP upload services run there.
var loopbackMedia = []string{"127.0.0.0/8", "::1/128", "localhost"}

func newStack(t testing.TB, target testdb.Target, opts ...stackOptions) *stack {
	t.Helper()
	var o stackOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	cfg := config.Default()
	cfg.Homeserver.Domain = "localhost"
	port := tesths.FreePort(t)
	cfg.Appservice.Address = fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg.Appservice.Hostname = "127.0.0.1"
	cfg.Appservice.Port = port
	cfg.Appservice.ID = "dmbridge"
	cfg.Appservice.Bot = config.BotConfig{Username: "dmbridgebot", Displayname: "DM bridge bot"}
	cfg.Database.Type, cfg.Database.URI = target.Type, target.URI
	// Port 0 on the first start; startBridge pins the port it got so that a
	// restart listens where connectors reconnect to.
	cfg.Connector.Listen = "127.0.0.1:0"
	cfg.Connector.Token = testConnectorToken
	cfg.Connector.CommandTimeout = config.Duration(10 * time.Second)
	if !o.noBridge {
		// In-process bridges serve metrics, as an operator's would; port 0
		// is fine here but not in a config file (see writeConfig's users).
		cfg.Metrics.Listen = "127.0.0.1:0"
	}
	cfg.Permissions = config.Permissions{"localhost": config.LevelUser}
	if o.permissions != nil {
		cfg.Permissions = o.permissions
	}
	cfg.Bridge.MediaFetchAllow = o.mediaFetchAllow
	if o.encryption {
		cfg.Encryption.PickleKey = "pickle-key-for-tests-0123456789abcdef"
		cfg.Encryption.Default = o.encryptByDefault
		cfg.Encryption.Require = o.requireEncryption
	}
	reg := cfg.GenerateRegistration()
	regs := []*mas.Registration{reg}
	var pushes *asProxy
	if o.asProxy {
		pushes = newASProxy(t, cfg.Appservice.Address)
		reg.URL = pushes.srv.URL
	}
	if !o.noDoublePuppet {
		dp := tesths.DoublePuppetRegistration("localhost")
		regs = append(regs, dp)
		cfg.DoublePuppet.Secrets = map[string]string{"localhost": "as_token:" + dp.AppToken}
	}
	if o.memHS {
		return newMemStack(t, cfg, target, regs, o)
	}
	hs := tesths.Start(t, regs...)
	cfg.Homeserver.Address = hs.URL
	s := &stack{t: t, hs: hs, cfg: cfg, target: target, pushes: pushes}
	if o.hsProxy {
		s.proxy = newHSProxy(t, hs.URL)
		cfg.Homeserver.Address = s.proxy.srv.URL
	}
	s.alice = hs.CreateUser(t, "alice")
	s.sync = tesths.NewSyncWatcher(t, s.alice)
	s.configureAndStart(o)
	return s
}

// configureAndStart applies o.configure to the config and, unless
// o.noBridge, starts the bridge until the test ends.
func (s *stack) configureAndStart(o stackOptions) {
	s.t.Helper()
	if o.configure != nil {
		o.configure(s.cfg)
	}
	if !o.noBridge {
		s.startBridge()
		s.t.Cleanup(s.stopBridge)
	}
}

func (s *stack) startBridge() {
	s.t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(s.t)).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	if s.logTo != nil {
		toTest := &zerolog.FilteredLevelWriter{Writer: zerolog.LevelWriterAdapter{Writer: zerolog.NewTestWriter(s.t)}, Level: zerolog.InfoLevel}
		log = zerolog.New(zerolog.MultiLevelWriter(toTest, s.logTo)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	}
	br, err := bridge.New(context.Background(), s.cfg, log)
	if err != nil {
		s.t.Fatalf("new bridge: %v", err)
	}
	if err = br.Start(context.Background()); err != nil {
		s.t.Fatalf("start bridge: %v", err)
	}
	s.br = br
	s.cfg.Connector.Listen = br.ConnectorAddr().String()
}

func (s *stack) stopBridge() {
	if s.br == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.br.Stop(ctx); err != nil {
		s.t.Logf("stop bridge: %v", err)
	}
	s.br = nil
}

func (s *stack) restartBridge() {
	s.t.Helper()
	s.stopBridge()
	s.startBridge()
}

// ghost is the Matrix id of a contact's ghost.
func (s *stack) ghost(contactID string) id.UserID { return s.cfg.GhostUserID(contactID) }

// waitMessage waits until alice's sync shows a message with the body in a room.
func (s *stack) waitMessage(roomID id.RoomID, body string) *event.Event {
	s.t.Helper()
	return s.sync.WaitEvent(s.t, 20*time.Second, func(evt *event.Event) bool {
		if evt.RoomID != roomID || evt.Type != event.EventMessage {
			return false
		}
		_ = evt.Content.ParseRaw(evt.Type)
		msg := evt.Content.AsMessage()
		return msg != nil && msg.Body == body
	})
}

// messagesIn returns the bodies of the m.room.message events alice's sync has
// seen in the room, in order.
func (s *stack) messagesIn(roomID id.RoomID) []*event.Event {
	var out []*event.Event
	for _, evt := range s.sync.Events(roomID) {
		if evt.Type == event.EventMessage {
			_ = evt.Content.ParseRaw(evt.Type)
			out = append(out, evt)
		}
	}
	return out
}

// roomOf returns the portal room of a chat from the bridge's database.
func (s *stack) roomOf(chatID string) id.RoomID {
	s.t.Helper()
	return s.roomWithin(chatID, 20*time.Second)
}

// bobPortal sends bob's text message msgID, the first of his chat or not,
// and returns his portal room once alice sees the text in it.
func (s *stack) bobPortal(f *fakeConnector, msgID, text string) id.RoomID {
	s.t.Helper()
	f.send(textFrom("bob@network", msgID, text))
	roomID := s.roomOf("bob@network")
	s.waitMessage(roomID, text)
	return roomID
}

// roomWithin is roomOf with its own timeout.
func (s *stack) roomWithin(chatID string, timeout time.Duration) id.RoomID {
	s.t.Helper()
	return s.portalRoom(timeout, "portal room for "+chatID, testLogin, chatID, "")
}

// portalRoom waits up to timeout (failing with what) for the portal of
// login's chat to have a room, one other than old unless old is "", and
// returns it: the one poll of the portal table behind roomOf, roomOfOther
// and the other stacks' and logins' portal lookups.
func (s *stack) portalRoom(timeout time.Duration, what, login, chatID string, old id.RoomID) id.RoomID {
	s.t.Helper()
	var room id.RoomID
	tesths.WaitFor(s.t, timeout, what, func() (bool, error) {
		var roomStr *string
		err := s.br.DB.QueryRow(context.Background(),
			"SELECT room_id FROM portal WHERE login_id=$1 AND chat_id=$2", login, chatID).Scan(&roomStr)
		if err != nil || roomStr == nil || (old != "" && id.RoomID(*roomStr) == old) {
			return false, err
		}
		room = id.RoomID(*roomStr)
		return true, nil
	})
	return room
}

// fakeConnector is a connector written with the project's SDK; it records
// the commands it gets and answers them like a network would.
type fakeConnector struct {
	t      testing.TB
	client *sdk.Client
	store  *sdk.MemoryStore
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	commands []recordedCommand
	nextID   int
	fail     map[string]*connector.Error
	// blank makes the op succeed with an empty result, as a buggy network would.
	blank map[string]bool
	// avatar is the picture resolve_identifier gives its contacts, if any.
	avatar *connector.Avatar
	// backfill answers backfill commands (see backfill_test.go).
	backfill func(cmd *connector.Command) *connector.Result
	// chats answers list_chats.
	chats []connector.Chat
}

type recordedCommand struct {
	Op  string
	Cmd connector.Command
	At  time.Time
	// ID is the network id the fake answered with, if any.
	ID string
}

func helloFor(logins ...connector.Login) connector.Hello {
	return connector.Hello{
		Protocol:  []int{connector.ProtocolVersion},
		Connector: connector.Software{ID: "fake", Name: "Fake connector", Version: "0.0.1"},
		Network:   connector.Network{ID: "fakenet", Name: "Fake network"},
		Capabilities: connector.Capabilities{
			Formats: []string{"plain", "html"}, Media: true, Edit: true, Delete: true, Reactions: true,
			Replies: true, ReadReceipts: true, Typing: true, Presence: true, ResolveIdentifier: true,
		},
		Logins: logins,
	}
}

func (s *stack) connectFake(store *sdk.MemoryStore, logins ...connector.Login) *fakeConnector {
	s.t.Helper()
	return s.connectFakeWith(fakeSetup{store: store, logins: logins})
}

// fakeSetup varies the fake connector: its logins, what its network can do,
// and work it does on a command before answering (such as fetching an
// attachment).
type fakeSetup struct {
	logins []connector.Login
	caps   *connector.Capabilities
	store  *sdk.MemoryStore
	before func(ctx context.Context, c *sdk.Client, op string, cmd *connector.Command) error
	// id and token replace the fake's connector id and the shared token.
	id, token string
	// backfill answers backfill commands; without it they get an empty result.
	backfill func(cmd *connector.Command) *connector.Result
	// chats answers list_chats.
	chats []connector.Chat
}

// connectFakeWith starts a fake connector and waits for its welcome. A new
// fake with the same connector id replaces the old one; pass the old store
// to keep its seq.
func (s *stack) connectFakeWith(o fakeSetup) *fakeConnector {
	s.t.Helper()
	if len(o.logins) == 0 {
		o.logins = []connector.Login{{ID: testLogin, MatrixUser: string(s.alice.UserID), Name: "Alice", State: connector.LoginConnected}}
	}
	if o.store == nil {
		o.store = sdk.NewMemoryStore()
	}
	hello := helloFor(o.logins...)
	if o.caps != nil {
		hello.Capabilities = *o.caps
	}
	if o.id != "" {
		hello.Connector.ID = o.id
	}
	token := testConnectorToken
	if o.token != "" {
		token = o.token
	}
	f := &fakeConnector{t: s.t, store: o.store, done: make(chan struct{}), fail: map[string]*connector.Error{}, blank: map[string]bool{}, backfill: o.backfill, chats: o.chats}
	welcomed := make(chan struct{}, 1)
	handle := f.handle
	if o.before != nil {
		handle = func(ctx context.Context, op string, cmd *connector.Command) (*connector.Result, error) {
			if err := o.before(ctx, f.client, op, cmd); err != nil {
				return nil, err
			}
			return f.handle(ctx, op, cmd)
		}
	}
	f.client = sdk.NewClient(sdk.ClientOptions{
		URL:        "ws://" + s.cfg.Connector.Listen,
		Token:      token,
		Hello:      hello,
		Store:      o.store,
		Handle:     handle,
		Log:        zerolog.New(zerolog.NewTestWriter(s.t)).Level(zerolog.WarnLevel),
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond,
		OnWelcome: func(connector.Welcome) {
			select {
			case welcomed <- struct{}{}:
			default:
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		defer close(f.done)
		_ = f.client.Run(ctx)
	}()
	s.t.Cleanup(f.stop)
	select {
	case <-welcomed:
	case <-time.After(15 * time.Second):
		s.t.Fatal("fake connector got no welcome")
	}
	s.fake = f
	return f
}

func (f *fakeConnector) stop() {
	f.cancel()
	<-f.done
}

func (f *fakeConnector) handle(ctx context.Context, op string, cmd *connector.Command) (*connector.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, recordedCommand{Op: op, Cmd: *cmd, At: time.Now()})
	if e := f.fail[op]; e != nil {
		return nil, e
	}
	if f.blank[op] {
		return &connector.Result{}, nil
	}
	f.nextID++
	switch op {
	case connector.OpSendMessage, connector.OpEditMessage, connector.OpReact, connector.OpUnreact:
		f.commands[len(f.commands)-1].ID = fmt.Sprintf("net-%d", f.nextID)
		return &connector.Result{ID: f.commands[len(f.commands)-1].ID, TS: time.Now().UnixMilli()}, nil
	case connector.OpResolveIdentifier:
		return &connector.Result{
			Contact: &connector.Contact{ID: cmd.Identifier, Name: "Resolved " + cmd.Identifier, Avatar: f.avatar},
			Chat:    &connector.Chat{ID: cmd.Identifier, Type: connector.ChatTypeDM, With: cmd.Identifier},
		}, nil
	case connector.OpGetContact:
		return &connector.Result{Contact: &connector.Contact{ID: cmd.ID, Name: "Contact " + cmd.ID}}, nil
	case connector.OpBackfill:
		if f.backfill != nil {
			return f.backfill(cmd), nil
		}
	case connector.OpListChats:
		return &connector.Result{Chats: f.chats}, nil
	}
	return &connector.Result{}, nil
}

// answeredID is the network id the fake gave the command of op with txn,
// or "".
func (f *fakeConnector) answeredID(op, txn string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.commands {
		if c.Op == op && c.Cmd.Txn == txn {
			return c.ID
		}
	}
	return ""
}

// commandsOf returns the recorded commands with the op.
func (f *fakeConnector) commandsOf(op string) []connector.Command {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []connector.Command
	for _, c := range f.commands {
		if c.Op == op {
			out = append(out, c.Cmd)
		}
	}
	return out
}

// lastCommandAt is when the newest command with the op arrived.
func (f *fakeConnector) lastCommandAt(op string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var last time.Time
	for _, c := range f.commands {
		if c.Op == op && c.At.After(last) {
			last = c.At
		}
	}
	return last
}

// send sends an event and waits until the bridge acked it.
func (f *fakeConnector) send(ev *connector.Event) int64 {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seq, err := f.client.Send(ctx, ev)
	if err != nil {
		f.t.Fatalf("send %s: %v", ev.Kind, err)
	}
	if err = f.client.WaitAcked(ctx, seq); err != nil {
		f.t.Fatalf("wait ack of %d: %v", seq, err)
	}
	return seq
}

func dmChat(contact string) *connector.Chat {
	return &connector.Chat{ID: contact, Type: connector.ChatTypeDM, With: contact}
}

func textFrom(contact, msgID, text string) *connector.Event {
	return &connector.Event{
		Kind: connector.KindMessage, Login: testLogin, TS: time.Now().UnixMilli(),
		Chat: dmChat(contact), Sender: &connector.Sender{ID: contact}, ID: msgID, Text: text,
	}
}

// Package server is the bridge's side of the connector protocol: the
// websocket endpoint connectors dial, the seq rules, the committer that
// hands accepted events to a Store before they are acked, commands to the
// connector and the signed media endpoint.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
	"github.com/dmbridge/dmbridge/internal/fence"
)

// Store is the bridge's durable record of what each connector has delivered.
type Store interface {
	// AckedSeq is the highest seq durably accepted from connectorID, ever (0 if none).
	AckedSeq(ctx context.Context, connectorID string) (int64, error)
	// Accept durably stores ev (already validated) and advances acked_seq to
	// seq, in one database transaction. ev == nil means: advance acked_seq
	// only (unknown kind, unsupported chat type, refused login). The server
	// calls it with seq = acked_seq+1 only, one call at a time per
	// connector id, from a goroutine of its own (not the reader);
	// deduplicating by (login, chat.id, id) is the store's part, as the
	// protocol promises it. A Store that also implements BatchStore gets
	// AcceptBatch instead. The server tells nobody that events were
	// stored: a store with readers wakes them itself once its transaction
	// commits, so that an event is applied at once and not only when its
	// (batched, possibly delayed) ack goes out.
	Accept(ctx context.Context, connectorID string, seq int64, ev *connector.Event) error
}

// Handler is how the server hands a connection's traffic to the bridge.
//
// Every method runs on the connection's reader goroutine and must return
// quickly: while it runs, no frame of that connector is read, so no
// ack and no command answer moves. Anything that talks to the homeserver
// belongs on a worker that the call merely wakes.
type Handler interface {
	// Hello runs after a valid hello, before welcome. It returns the logins
	// it refuses; each gets an err frame M_FORBIDDEN naming the login.
	Hello(ctx context.Context, connectorID string, hello *connector.Hello) (refused []LoginRefusal)
	// Check runs for each validated event before it is queued for storing;
	// events before it may still be waiting to be stored. A non-nil *Error
	// is sent as an err frame (with the seq) and the event is acked without
	// being stored.
	Check(ctx context.Context, connectorID string, ev *connector.Event) *connector.Error
	// Ephemeral receives a validated ephemeral frame.
	Ephemeral(ctx context.Context, connectorID string, e *connector.Ephemeral)
	// Connected is called after welcome was sent; Command works from then on.
	Connected(connectorID string)
	// Disconnected is called once the connection stopped reading. It comes
	// before the Connected of the id's next connection, whether that one
	// replaced it or came after it had dropped.
	Disconnected(connectorID string)
}

// LoginRefusal names a login of a hello that the bridge will not serve.
type LoginRefusal struct {
	Login   string
	Message string
}

// ServerOptions configures NewServer. Zero durations and sizes take the defaults.
type Options struct {
	// Token is the shared bearer token: a connector presenting it may use
	// any connector id that has no token of its own. Required unless
	// ConnectorTokens has one.
	Token string
	// ConnectorTokens maps a connector id to a token of its own. A
	// connector presenting it may say only that id in its hello, and that
	// id is refused with the shared token.
	ConnectorTokens map[string]string
	// MediaURLTTL is how long a media URL handed out in a command stays
	// valid (default 1h).
	MediaURLTTL time.Duration
	// MaxFrameBytes is the largest frame accepted (default 1 MiB).
	MaxFrameBytes int64
	// MaxInFlight is sent in welcome (default 256).
	MaxInFlight int
	// CommandTimeout bounds how long Command waits for an answer (default 60s).
	CommandTimeout time.Duration
	// PingInterval and DeadAfter implement the keep-alive (defaults 30s and 90s).
	PingInterval, DeadAfter time.Duration
	// Acks are cumulative and batched: one goes out AckDelay (default 20ms)
	// after the first unacknowledged event, or after AckEvery (default 64)
	// events, whichever comes first. AckEvery may not exceed MaxInFlight, or
	// a connector at its limit would wait for the timer on every batch.
	AckDelay time.Duration
	AckEvery int
	// Bridge names the bridge in welcome.
	Bridge connector.Software
	// Media serves GET MediaPathPrefix+"<server>/<media id>"; the server puts
	// the bearer-token check in front of it. Nil answers 404.
	Media   http.Handler
	Store   Store
	Handler Handler
	Log     zerolog.Logger
	// Gate, when set, is asked before every frame written to a connector
	// (acks, commands, welcome, pings, close frames); an error drops the
	// connection instead, without a word.
	// High availability fences a former active with it.
	Gate func() error
}

func (o *Options) setDefaults() {
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = connector.DefaultMaxFrameBytes
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = connector.DefaultMaxInFlight
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 60 * time.Second
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = 90 * time.Second
	}
	if o.AckDelay <= 0 {
		o.AckDelay = 20 * time.Millisecond
	}
	if o.MediaURLTTL <= 0 {
		o.MediaURLTTL = time.Hour
	}
	if o.AckEvery <= 0 {
		o.AckEvery = min(64, o.MaxInFlight)
	}
}

// Server is the bridge side of the connector protocol: an http.Handler that
// accepts connector websockets and serves media to them.
type Server struct {
	opts     Options
	log      zerolog.Logger
	upgrader websocket.Upgrader
	// fenced is route behind Options.Gate.
	fenced http.Handler
	tokens tokenSet
	// mediaKey signs the media URLs handed to connectors. It lives only
	// as long as the process: commands get fresh URLs when they are
	// (re)sent, so nothing signed needs to survive a restart.
	mediaKey []byte

	ctx    context.Context // cancelled by Close; parent of every connection's context
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per ServeHTTP that upgraded

	mu     sync.Mutex
	closed bool
	byID   map[string]*serverConn   // the current connection of each connector id
	all    map[*serverConn]struct{} // every upgraded connection, for Close

	nextCmd atomic.Uint64
}

// NewServer checks the options and returns a server ready to be mounted.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Token == "" && len(opts.ConnectorTokens) == 0:
		return nil, errors.New("connector server: token is required")
	case opts.Store == nil:
		return nil, errors.New("connector server: store is required")
	case opts.Handler == nil:
		return nil, errors.New("connector server: handler is required")
	}
	opts.setDefaults()
	if opts.AckEvery > opts.MaxInFlight {
		return nil, errors.New("connector server: ack_every must not exceed max_in_flight")
	}
	if opts.DeadAfter <= opts.PingInterval {
		return nil, errors.New("connector server: dead_after must be longer than ping_interval")
	}
	tokens, err := newTokenSet(opts.Token, opts.ConnectorTokens)
	if err != nil {
		return nil, err
	}
	mediaKey := make([]byte, 32)
	if _, err := rand.Read(mediaKey); err != nil {
		return nil, fmt.Errorf("connector server: media key: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:     opts,
		log:      opts.Log.With().Str("component", "connector_server").Logger(),
		tokens:   tokens,
		mediaKey: mediaKey,
		ctx:      ctx,
		cancel:   cancel,
		byID:     make(map[string]*serverConn),
		all:      make(map[*serverConn]struct{}),
	}
	s.fenced = fence.Handler(http.HandlerFunc(s.route), opts.Gate, nil)
	s.upgrader = websocket.Upgrader{
		Subprotocols:     []string{connector.Subprotocol},
		HandshakeTimeout: connws.WriteWait,
	}
	return s, nil
}

// ServeHTTP routes the websocket endpoint and the media endpoint; both need
// the bearer token. A websocket request blocks for the connection's lifetime.
// Behind Options.Gate: a bridge that may not act answers nothing, not even an
// error or the upgrade (see package fence).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.fenced.ServeHTTP(w, r)
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == connector.Path:
		s.serveWebsocket(w, r)
	case strings.HasPrefix(r.URL.Path, connector.MediaPathPrefix):
		s.serveMedia(w, r)
	default:
		http.NotFound(w, r)
	}
}

// Connected reports whether connectorID has a live, welcomed connection.
func (s *Server) Connected(connectorID string) bool {
	return s.live(connectorID) != nil
}

// ConnectorIDs lists the connectors with a live connection, sorted.
func (s *Server) ConnectorIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.byID))
	for id, c := range s.byID {
		if c.ready.Load() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Capabilities returns what the live connection of connectorID said in its hello.
func (s *Server) Capabilities(connectorID string) (connector.Capabilities, bool) {
	if c := s.live(connectorID); c != nil {
		return c.hello.Capabilities, true
	}
	return connector.Capabilities{}, false
}

// Hello returns the hello of connectorID's live connection. Callers must not modify it.
func (s *Server) Hello(connectorID string) (*connector.Hello, bool) {
	if c := s.live(connectorID); c != nil {
		return c.hello, true
	}
	return nil, false
}

// Close closes every connection with 1001 and waits until their readers and
// writers have stopped. The server refuses new connections afterwards.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*serverConn, 0, len(s.all))
	for c := range s.all {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(websocket.CloseGoingAway, "bridge shutting down")
	}
	s.wg.Wait()
	s.cancel()
}

// live returns the welcomed connection of connectorID, or nil.
func (s *Server) live(connectorID string) *serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.byID[connectorID]; c != nil && c.ready.Load() {
		return c
	}
	return nil
}

// track registers an upgraded connection so Close can reach it; false if
// the server is already closed.
func (s *Server) track(c *serverConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.all[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// claim makes c the current connection of its connector id and returns the
// one it replaces, if any.
func (s *Server) claim(c *serverConn) (old *serverConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old = s.byID[c.id]
	s.byID[c.id] = c
	return old
}

// isCurrent reports whether c is still the current connection of its id.
func (s *Server) isCurrent(c *serverConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[c.id] == c
}

// release forgets c; its id stays claimed only if another connection took it.
func (s *Server) release(c *serverConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.id != "" && s.byID[c.id] == c {
		delete(s.byID, c.id)
	}
	delete(s.all, c)
}

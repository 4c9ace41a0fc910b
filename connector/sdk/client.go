// Package sdk is the kit for writing a connector in Go: a Client that dials
// the bridge, stores events before sending them, replays what the bridge has
// not acked and runs commands idempotently by txn, the ClientStore it keeps
// that state in (MemoryStore for tests), and OpenAttachment for media.
package sdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// CommandHandler executes one command on the network. Returning an *Error
// (possibly wrapped) sends that error. Any other error is sent as M_UNKNOWN
// with retryable false, because the SDK cannot know whether the handler
// already acted: a retry might send a message twice. Handlers that know a
// failure is safe to retry return an *Error with Retryable set.
type CommandHandler func(ctx context.Context, op string, cmd *connector.Command) (*connector.Result, error)

// ClientOptions configures NewClient. Zero values take the defaults.
type ClientOptions struct {
	// URL of the bridge's connector listener, e.g. ws://127.0.0.1:29334.
	// Path is appended when the URL has none; http(s) means ws(s).
	URL string
	// URLs are more bridges to try, in turn after URL, for a bridge with
	// several instances (high availability) without a load balancer in
	// front: a dial that fails (refused, or 503 from a standby) goes on to
	// the next URL at once, and the client stays with the one that answered.
	URLs  []string
	Token string
	// Hello is sent on every connect. Protocol defaults to [1]; Logins is
	// replaced by SetLogins.
	Hello connector.Hello
	// Store holds the event log and txn outcomes. Nil means a MemoryStore:
	// unacked events then die with the process.
	Store  ClientStore
	Handle CommandHandler
	Log    zerolog.Logger
	// OnWelcome runs after each handshake, OnError for every err frame the
	// bridge sends (including M_BAD_SEQ, which the SDK also handles itself).
	// Both run on the connection's reader and must return quickly.
	OnWelcome func(connector.Welcome)
	OnError   func(*connector.Error, *connector.Frame)
	// OnDropped runs for a stored event that cannot reach the bridge: too
	// large for the frame limit its welcome announced (stored while that
	// was not known yet, or before the limit was lowered), or invalid as
	// encoded. A stand-in goes out under its seq instead, so the stream
	// moves on and the event is lost; the connector may tell the user or
	// send it again in smaller pieces, from another goroutine: it runs
	// while Send is held off (calling Send from it would deadlock), must
	// return quickly, and runs again for the same seq if the stand-in is
	// replayed after a reconnect.
	OnDropped func(seq int64, ev *connector.Event, why error)
	// Reconnect backoff, doubled per failed attempt (defaults 500ms, 30s).
	MinBackoff, MaxBackoff time.Duration
	// DeadAfter is how long the bridge may stay silent, pings included,
	// before the connection counts as dead (default 90s).
	DeadAfter time.Duration
	// MaxFrameBytes limits frames both ways (default 1 MiB); the bridge's
	// own limit from welcome applies too when it is smaller. It should be
	// at least the bridge's limit (connector.max_frame_bytes): the hello
	// tells the bridge, which then fails larger commands with M_TOO_LARGE,
	// but a bridge that does not know that field sends them anyway and the
	// connection drops (1009). The SDK warns at welcome when it is smaller.
	MaxFrameBytes int64
	// MaxConcurrentCommands bounds the commands handled at once (default
	// 32); beyond it, commands are answered M_RATE_LIMITED (retryable).
	MaxConcurrentCommands int
}

func (o *ClientOptions) setDefaults() {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = 90 * time.Second
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = connector.DefaultMaxFrameBytes
	}
	if o.MaxConcurrentCommands <= 0 {
		o.MaxConcurrentCommands = 32
	}
	if len(o.Hello.Protocol) == 0 {
		o.Hello.Protocol = []int{connector.ProtocolVersion}
	}
	if o.Store == nil {
		o.Store = NewMemoryStore()
	}
}

// Client is the connector side of the protocol. It keeps one connection to
// the bridge, reconnecting with backoff, delivers events exactly in seq
// order with at most max_in_flight unacked, replays unacked events after a
// reconnect, and runs commands with txn idempotency.
type Client struct {
	opts    ClientOptions
	urls    []string      // normalised URL, then URLs
	urlIdx  atomic.Uint32 // the one dialled last, which media requests use
	urlErr  error
	log     zerolog.Logger
	running atomic.Bool

	// sendMu serialises seq assignment, Append and queueing, so events reach
	// the store and the wire in seq order, and a starting session sees each
	// event exactly once: either in the store's backlog or queued by Send.
	sendMu sync.Mutex

	mu     sync.Mutex
	logins []connector.Login
	// loginsGen counts the changes of logins that need a new hello (see
	// SetLogins); a handshake notes the one it announced.
	loginsGen uint64
	// rehello tells Run that the connection ended for a new hello, which
	// is not a failure to back off from.
	rehello atomic.Bool
	sess    *clientSession // the welcomed connection, nil while disconnected
	acked   int64          // the bridge's cumulative ack, as last heard
	lastSeq int64          // the highest seq appended
	// bridgeMaxFrame is the frame limit the last welcome announced, so Send
	// can refuse oversize events while disconnected too.
	bridgeMaxFrame int64
	changed        chan struct{} // closed and replaced whenever sess or acked change

	txnMu   sync.Mutex
	txnRuns map[string]*txnRun
	// unsaved holds txn outcomes the store refused to record, until a
	// retry succeeds: forgetting them would let a repeat act twice.
	unsaved map[string]txnOutcome

	cmdSlots chan struct{}
	cmdWG    sync.WaitGroup
}

// NewClient returns a client; Run connects it.
func NewClient(opts ClientOptions) *Client {
	opts.setDefaults()
	c := &Client{
		opts:           opts,
		log:            opts.Log.With().Str("component", "connector_client").Str("connector_id", opts.Hello.Connector.ID).Logger(),
		logins:         slices.Clone(opts.Hello.Logins),
		changed:        make(chan struct{}),
		bridgeMaxFrame: opts.MaxFrameBytes,
		txnRuns:        make(map[string]*txnRun),
		unsaved:        make(map[string]txnOutcome),
		cmdSlots:       make(chan struct{}, opts.MaxConcurrentCommands),
	}
	for _, raw := range append([]string{opts.URL}, opts.URLs...) {
		u, err := connws.NormalizeURL(raw)
		if err != nil {
			c.urlErr = err
			break
		}
		c.urls = append(c.urls, u)
	}
	return c
}

// url is the bridge URL dialled last.
func (c *Client) url() string {
	if len(c.urls) == 0 {
		return ""
	}
	return c.urls[int(c.urlIdx.Load())%len(c.urls)]
}

// Run connects and keeps the connection up until ctx ends (returning
// ctx.Err()) or another process with the same connector id replaces this
// one (returning ErrReplaced). Any other failure is retried with backoff,
// including a refused token, since the bridge may be mid-reconfiguration.
func (c *Client) Run(ctx context.Context) error {
	if c.urlErr != nil {
		return c.urlErr
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("client is already running")
	}
	defer c.running.Store(false)
	// Command handlers get ctx; wait for them so none outlives Run, then
	// make a last attempt at saving txn outcomes the store refused.
	defer c.flushTxns(ctx)
	defer c.cmdWG.Wait()

	delay := c.opts.MinBackoff
	for {
		// Outcomes the store refused before get another chance to be saved.
		c.flushTxns(ctx)
		welcomed, err := c.connectOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Replaced wins over a new hello: reconnecting would take the id
		// back from the process that took it over.
		if connws.CloseCode(err) == connector.CloseReplaced {
			c.log.Error().Msg("Another connector process with the same id took over; not reconnecting")
			return ErrReplaced
		}
		if c.rehello.Swap(false) {
			delay = c.opts.MinBackoff
			continue
		}
		// A welcomed connection resets the backoff, except one the bridge
		// closed for an oversize frame: the same frame would close the next
		// one too, and that must not turn into a tight reconnect loop.
		if welcomed && connws.CloseCode(err) != websocket.CloseMessageTooBig {
			delay = c.opts.MinBackoff
		}
		wait := delay/2 + rand.N(delay/2+1)
		c.log.Warn().Err(err).Dur("retry_in", wait).Msg("Connection to bridge ended")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		delay = min(2*delay, c.opts.MaxBackoff)
	}
}

// Connected reports whether the client currently has a welcomed connection.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

// SetLogins replaces the logins announced in the hello. The bridge learns
// which logins a connector serves from its hello only, and refuses (and
// acks: they are lost) events of any other. So when logins are added,
// SetLogins ends the current connection at once and the client connects
// again with a hello that names them; events sent after SetLogins returns go
// out on that connection only. Other changes (a name, a state, a login
// dropped) need no new hello: Send a login event for them.
func (c *Client) SetLogins(logins []connector.Login) {
	c.mu.Lock()
	added := false
	for _, l := range logins {
		if !slices.ContainsFunc(c.logins, func(old connector.Login) bool {
			return old.ID == l.ID && old.MatrixUser == l.MatrixUser
		}) {
			added = true
		}
	}
	c.logins = slices.Clone(logins)
	var old *clientSession
	if added {
		// A handshake under way notices the change when it ends.
		c.loginsGen++
		if old = c.sess; old != nil {
			c.sess = nil
			c.rehello.Store(true)
			c.broadcast()
		}
	}
	c.mu.Unlock()
	if old != nil {
		c.log.Info().Int("logins", len(logins)).Msg("Logins added; connecting again to announce them")
		old.closeForHello()
	}
}

// broadcast wakes everyone waiting on a change; c.mu must be held.
func (c *Client) broadcast() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// WaitAcked blocks until the bridge has acked seq, or ctx ends.
func (c *Client) WaitAcked(ctx context.Context, seq int64) error {
	for {
		c.mu.Lock()
		acked, changed := c.acked, c.changed
		c.mu.Unlock()
		if acked >= seq {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for ack of seq %d (acked %d): %w", seq, acked, ctx.Err())
		}
	}
}

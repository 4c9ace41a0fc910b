package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// errClosing ends a handshake whose connection was closed from elsewhere
// (replaced again, or the server shutting down) while it waited.
var errClosing = errors.New("connection is closing")

// serverConn is one connector websocket on the bridge side. Its reader
// goroutine (the one that called ServeHTTP) does the handshake, processes
// every incoming frame in order and tears the connection down; its writer
// goroutine owns all data writes, batches acks and sends pings.
type serverConn struct {
	srv *Server
	ws  *websocket.Conn
	log zerolog.Logger // safe for any goroutine; no connector id yet

	ctx    context.Context
	cancel context.CancelFunc

	// Set by the reader during the handshake, before the connection is
	// claimed; read by other goroutines only after they found it through
	// Server.mu or received something from the reader over a channel.
	id    string
	hello *connector.Hello
	ready atomic.Bool // welcome sent and not yet torn down
	// mediaBase is the scheme://host the connector dialed, set before the
	// connection runs; media URLs handed to this connector are built on it.
	mediaBase string
	// who is what the bearer token authenticated as; set before run.
	who identity

	out        chan outFrame
	acks       chan ackNote
	stopWriter chan struct{}
	writerDone chan struct{}
	stopped    chan struct{} // closed once no frame of this connection will be processed or stored again

	closing   atomic.Bool
	closingCh chan struct{} // closed together with closing becoming true

	pendMu     sync.Mutex
	pending    map[string]chan cmdReply
	pendClosed bool

	// The committer (server_commit.go) stores what the reader queued on
	// commitIn, in order; commitDone is closed when it has stopped, for
	// good after a store failure. committed is the highest seq known
	// durably stored, so ackable: set by the reader in the handshake, then
	// by the committer (by its syncer for a SyncStore, server_sync.go).
	commitIn   chan Accepted
	commitDone chan struct{}
	committed  atomic.Int64

	// Reader goroutine only; rlog is also read by the committer, which
	// starts after the handshake set it.
	rlog        zerolog.Logger // log with the connector id
	welcomed    bool
	committing  bool   // the committer runs; teardown must stop it
	queued      int64  // the last seq accepted from this connector: stored or queued for storing
	gapReported bool   // M_BAD_SEQ sent for the current gap; stay quiet until it is filled
	closeQueued bool   // sendClose was called; the writer will send the close frame
	readFailed  bool   // the websocket reader returned an error and is unusable
	rbuf        []byte // read's buffer, reused for every frame
	badInRow    int
}

// outFrame is one item of the writer's queue: a frame, or a request to close
// after the frames before it went out (so an err frame precedes its close).
type outFrame struct {
	data        []byte
	closeCode   int
	closeReason string
}

func newServerConn(s *Server, ws *websocket.Conn, log zerolog.Logger) *serverConn {
	ctx, cancel := context.WithCancel(s.ctx)
	return &serverConn{
		srv:        s,
		ws:         ws,
		log:        log,
		rlog:       log,
		ctx:        ctx,
		cancel:     cancel,
		out:        make(chan outFrame, 64),
		acks:       make(chan ackNote, 64),
		stopWriter: make(chan struct{}),
		writerDone: make(chan struct{}),
		stopped:    make(chan struct{}),
		closingCh:  make(chan struct{}),
		commitIn:   make(chan Accepted, s.opts.batchLimit()),
		commitDone: make(chan struct{}),
		pending:    make(map[string]chan cmdReply),
	}
}

// run serves the connection until it ends.
func (c *serverConn) run() {
	opts := &c.srv.opts
	c.ws.SetReadLimit(opts.MaxFrameBytes)
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(connws.Deadline(opts.DeadAfter))
	})
	// gorilla's own handlers answer a ping with a pong and a close with a
	// close from inside a read, past every gate: these ask the gate first.
	c.ws.SetPingHandler(func(data string) error {
		if c.gate() != nil {
			return nil
		}
		err := c.ws.WriteControl(websocket.PongMessage, []byte(data), connws.Deadline(connws.WriteWait))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	c.ws.SetCloseHandler(func(code int, _ string) error {
		if c.gate() != nil {
			return nil
		}
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), connws.Deadline(connws.WriteWait))
		return nil
	})
	go c.writeLoop()
	err := c.handshake()
	if err == nil {
		c.startCommitter()
		err = c.readLoop()
	}
	c.teardown(err)
}

func (c *serverConn) handshake() error {
	opts := &c.srv.opts
	typ, msg, err := c.read()
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	hello, refs, perr := parseHello(typ, msg)
	if perr != nil {
		c.rlog.Warn().Str("code", perr.Code).Str("reason", perr.Message).Msg("Refused connector handshake")
		c.sendErr(refs, perr)
		c.sendClose(connector.CloseProtocolError, perr.Message)
		return perr
	}
	// Before claiming the id: a token that may not use it must not even
	// replace the connection that rightly holds it.
	if reason := c.srv.mayUse(c.who, hello.Connector.ID); reason != "" {
		c.rlog.Warn().Str("connector_id", hello.Connector.ID).Str("reason", reason).Msg("Refused connector handshake")
		perr := &connector.Error{Code: connector.ErrForbidden, Message: reason}
		c.sendErr(refs, perr)
		c.sendClose(connector.CloseProtocolError, "forbidden connector id")
		return perr
	}
	c.id, c.hello = hello.Connector.ID, hello
	c.rlog = c.log.With().Str("connector_id", c.id).Logger()

	if old := c.srv.claim(c); old != nil {
		if old.ready.Load() {
			c.rlog.Info().Msg("New connection replaces the old one of this connector")
		} else {
			c.rlog.Debug().Msg("New connection waits for the old one of this connector to end")
		}
		old.closeWith(connector.CloseReplaced, "replaced")
		// The old committer may still be storing; reading acked_seq before
		// it finished would hand out a stale value, and two committers for
		// one id could store an event twice.
		select {
		case <-old.stopped:
		case <-c.closingCh:
			return errClosing
		}
	}
	if !c.srv.isCurrent(c) {
		return errClosing
	}

	refused := opts.Handler.Hello(c.ctx, c.id, hello)
	acked, err := opts.Store.AckedSeq(c.ctx, c.id)
	if err != nil {
		c.rlog.Error().Err(err).Msg("Could not read acked_seq")
		c.sendClose(websocket.CloseInternalServerErr, "bridge could not read acked_seq")
		return fmt.Errorf("read acked_seq: %w", err)
	}
	c.queued = acked
	c.committed.Store(acked)
	welcome, err := connws.EncodeFrame(connector.Frame{Type: connector.TypeWelcome}, &connector.Welcome{
		Protocol:      connector.ProtocolVersion,
		AckedSeq:      acked,
		MaxInFlight:   opts.MaxInFlight,
		MaxFrameBytes: opts.MaxFrameBytes,
		Bridge:        opts.Bridge,
	})
	if err != nil {
		return err
	}
	c.send(welcome)
	for _, r := range refused {
		msg := r.Message
		if msg == "" {
			msg = fmt.Sprintf("login %s is not allowed to use this bridge", r.Login)
		}
		c.rlog.Warn().Str("login", r.Login).Str("reason", msg).Msg("Refused login")
		c.send(connws.ErrFrame("", 0, &connector.Error{Code: connector.ErrForbidden, Message: msg, Login: r.Login}))
	}
	c.welcomed = true
	c.ready.Store(true)
	c.rlog.Info().
		Str("connector", hello.Connector.Name).Str("version", hello.Connector.Version).
		Int64("acked_seq", acked).Int("logins", len(hello.Logins)).
		Msg("Connector connected")
	opts.Handler.Connected(c.id)
	return nil
}

// parseHello decodes and checks the first frame. On failure it returns the
// error to send and whatever id/seq the frame carried.
func parseHello(typ int, msg []byte) (*connector.Hello, connws.Refs, *connector.Error) {
	bad := func(reason string) *connector.Error {
		return &connector.Error{Code: connector.ErrBadFrame, Message: reason}
	}
	if typ != websocket.TextMessage {
		return nil, connws.Refs{}, bad("the first frame must be a hello text frame")
	}
	var f connector.Frame
	if err := json.Unmarshal(msg, &f); err != nil {
		return nil, connws.SalvageRefs(msg), bad("the first frame must be hello: " + err.Error())
	}
	refs := connws.Refs{ID: f.ID, Seq: f.Seq}
	if f.Type != connector.TypeHello {
		return nil, refs, bad(fmt.Sprintf("the first frame must be hello, not %q", f.Type))
	}
	if len(f.Data) == 0 {
		return nil, refs, bad("hello: data is required")
	}
	var h connector.Hello
	if err := json.Unmarshal(f.Data, &h); err != nil {
		return nil, refs, bad("hello: " + err.Error())
	}
	switch {
	case len(h.Protocol) == 0:
		return nil, refs, bad("hello: data.protocol is required")
	case h.Connector.ID == "":
		return nil, refs, bad("hello: data.connector.id is required")
	case h.Network.ID == "":
		return nil, refs, bad("hello: data.network.id is required")
	}
	for i, l := range h.Logins {
		switch {
		case l.ID == "":
			return nil, refs, bad(fmt.Sprintf("hello: data.logins[%d].id is required", i))
		case l.MatrixUser == "":
			return nil, refs, bad(fmt.Sprintf("hello: data.logins[%d].matrix_user is required", i))
		}
		switch l.State {
		case "", connector.LoginConnected, connector.LoginDisconnected, connector.LoginBadCredentials:
		default:
			return nil, refs, bad(fmt.Sprintf("hello: data.logins[%d].state %q is not a login state", i, l.State))
		}
	}
	if !slices.Contains(h.Protocol, connector.ProtocolVersion) {
		return nil, refs, &connector.Error{Code: connector.ErrUnsupported, Message: fmt.Sprintf("this bridge speaks protocol version %d only", connector.ProtocolVersion)}
	}
	return &h, refs, nil
}

// read reads the next message and remembers a failure, after which gorilla's
// reader must not be used again. The peer gets DeadAfter from the moment we
// wait, so time spent in Store or Handler never counts as its silence;
// pongs extend the wait. Reader goroutine only.
//
// The message is read into the reader's buffer, which the next read
// reuses: what is kept of a frame is copied out of it by decoding (strings
// and the event's raw data), so its bytes are dead once the frame is
// handled, and a buffer per frame (gorilla's ReadMessage) was one of the
// largest allocations per bridged message.
func (c *serverConn) read() (int, []byte, error) {
	_ = c.ws.SetReadDeadline(connws.Deadline(c.srv.opts.DeadAfter))
	typ, r, err := c.ws.NextReader()
	if err == nil {
		if cap(c.rbuf) > maxKeptReadBuf {
			c.rbuf = nil
		}
		buf := bytes.NewBuffer(c.rbuf[:0])
		_, err = buf.ReadFrom(r)
		c.rbuf = buf.Bytes()
	}
	if err != nil {
		c.readFailed = true
	}
	return typ, c.rbuf, err
}

// maxKeptReadBuf bounds the read buffer a connection keeps between frames:
// a rare large frame (up to MaxFrameBytes) is not held for the
// connection's life.
const maxKeptReadBuf = 64 << 10

// closeWith starts the closing handshake: it sends a close frame now and
// drops the TCP connection after closeGrace if the peer has not closed by
// then. Safe from any goroutine; only the first call has an effect.
func (c *serverConn) closeWith(code int, reason string) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	close(c.closingCh)
	if c.gate() != nil {
		// Not even a close frame from a bridge that may not act.
		_ = c.ws.NetConn().Close()
		return
	}
	err := c.ws.WriteControl(websocket.CloseMessage, connws.CloseMessage(code, reason), connws.Deadline(connws.CloseGrace))
	if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
		_ = c.ws.NetConn().Close()
		return
	}
	time.AfterFunc(connws.CloseGrace, func() { _ = c.ws.NetConn().Close() })
}

// teardown runs on the reader goroutine once reading ended.
func (c *serverConn) teardown(readErr error) {
	ev := c.rlog.Info()
	if code := connws.CloseCode(readErr); code != 0 {
		ev = ev.Int("close_code", code)
	} else if readErr != nil {
		ev = ev.Str("reason", readErr.Error())
	}
	ev.Msg("Connector connection ended")

	c.ready.Store(false)
	// Release comes after stopped: until then a connection of the same id
	// finds this one and waits for stopped, so it never reads acked_seq
	// while we still store, and its Connected never comes before our
	// Disconnected, whether it replaced us or we had dropped first.
	c.stopCommitter()
	c.failPending()

	// How to end the TCP connection without losing the last words. The
	// server closes first once both close frames have crossed (RFC 6455
	// 7.1.1). Closing with unread input makes the kernel send RST, which can
	// destroy a close frame still in flight, so when the peer still has
	// something to say, read it first.
	const (
		closeNow   = iota // handshake done, or nobody left to talk to
		awaitClose        // our close is queued: read until the peer's arrives
		drainRawly        // gorilla's reader is spent (1009); discard bytes until EOF
	)
	mode := closeNow
	switch {
	case connws.CloseCode(readErr) != 0:
	case errors.Is(readErr, websocket.ErrReadLimit):
		mode = drainRawly
	case !c.readFailed && (c.closeQueued || c.closing.Load()):
		mode = awaitClose
	}
	if mode == closeNow {
		// Also makes a writer stuck on a dead peer give up at once.
		_ = c.ws.NetConn().Close()
	}
	close(c.stopWriter)
	<-c.writerDone // sends whatever was queued, the close frame included
	if c.welcomed {
		c.srv.opts.Handler.Disconnected(c.id)
	}
	close(c.stopped)
	c.srv.release(c)
	switch mode {
	case awaitClose:
		_ = c.ws.SetReadDeadline(connws.Deadline(connws.CloseGrace))
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				break
			}
		}
	case drainRawly:
		nc := c.ws.NetConn()
		_ = nc.SetReadDeadline(connws.Deadline(connws.CloseGrace))
		_, _ = io.Copy(io.Discard, nc)
	}
	_ = c.ws.NetConn().Close()
	c.cancel()
}

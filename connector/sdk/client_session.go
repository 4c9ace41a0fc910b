package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// clientSession is one welcomed connection to the bridge.
type clientSession struct {
	ws          *websocket.Conn
	log         zerolog.Logger
	welcome     connector.Welcome
	maxInFlight int64
	maxFrame    int64

	out        chan []byte   // res, err and ephemeral frames for the writer
	wake       chan struct{} // nudges the writer to look at the event queue
	done       chan struct{} // closed when the session ended
	writerDone chan struct{} // closed when the writer gave up or stopped

	// Guarded by Client.mu.
	queue   []queuedEvent // unacked events, consecutive seqs, oldest first
	loaded  int64         // highest seq read into queue (or acked); later ones are in the store only
	sent    int64         // highest seq written, rewound on M_BAD_SEQ
	maxSent int64         // highest seq ever written on this session
	// rewound and rewoundAt note the ack level of the last M_BAD_SEQ
	// rewind, so that the same level is not rewound to twice.
	rewound   bool
	rewoundAt int64
}

// queuedEvent is an event ready for the wire.
type queuedEvent struct {
	seq   int64
	frame []byte
}

// frameOverhead is what the envelope adds to an event's data, generously.
const frameOverhead = 64

// connectOnce runs one connection from dial to close. welcomed reports
// whether the handshake completed, which resets the reconnect backoff.
func (c *Client) connectOnce(ctx context.Context) (welcomed bool, err error) {
	ws, err := c.dial(ctx)
	if err != nil {
		return false, err
	}
	defer ws.Close()

	// Closing on ctx end through the close handshake lets the bridge see a
	// clean 1000 instead of a dead TCP connection.
	stopWatch := context.AfterFunc(ctx, func() {
		_ = ws.WriteControl(websocket.CloseMessage, connws.CloseMessage(websocket.CloseNormalClosure, "connector shutting down"), connws.Deadline(connws.CloseGrace))
		time.AfterFunc(connws.CloseGrace, func() { _ = ws.NetConn().Close() })
	})
	defer stopWatch()

	welcome, gen, err := c.handshake(ws)
	if err != nil {
		return false, err
	}
	s, err := c.startSession(ctx, ws, welcome, gen)
	if errors.Is(err, errLoginsChanged) {
		c.rehello.Store(true)
		_ = ws.WriteControl(websocket.CloseMessage, connws.CloseMessage(websocket.CloseNormalClosure, "logins changed"), connws.Deadline(connws.CloseGrace))
		return true, err
	}
	if err != nil {
		_ = ws.WriteControl(websocket.CloseMessage, connws.CloseMessage(websocket.CloseInternalServerErr, "connector store failed"), connws.Deadline(connws.CloseGrace))
		return false, err
	}
	if c.opts.OnWelcome != nil {
		c.opts.OnWelcome(welcome)
	}
	go func() {
		defer close(s.writerDone)
		c.writeLoop(ctx, s)
	}()
	err = c.readLoop(ctx, s)

	c.mu.Lock()
	c.sess = nil
	c.broadcast()
	c.mu.Unlock()
	close(s.done)
	<-s.writerDone
	return true, err
}

// dial connects to the bridge URL that answered last, or else to each of
// the others in turn.
func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	start := c.urlIdx.Load()
	var errs []error
	for i := range uint32(len(c.urls)) {
		idx := (start + i) % uint32(len(c.urls))
		ws, err := c.dialURL(ctx, c.urls[idx])
		if err == nil {
			c.urlIdx.Store(idx)
			return ws, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (c *Client) dialURL(ctx context.Context, target string) (*websocket.Conn, error) {
	dialer := websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: connws.WriteWait,
		Subprotocols:     []string{connector.Subprotocol},
	}
	header := http.Header{"Authorization": {"Bearer " + c.opts.Token}}
	ws, resp, err := dialer.DialContext(ctx, target, header)
	if err != nil {
		if resp != nil {
			if resp.StatusCode == http.StatusUnauthorized {
				return nil, fmt.Errorf("dial %s: bridge refused the token (HTTP 401): %w", target, err)
			}
			return nil, fmt.Errorf("dial %s: HTTP %d: %w", target, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	if ws.Subprotocol() != connector.Subprotocol {
		_ = ws.Close()
		return nil, fmt.Errorf("dial %s: bridge did not agree to subprotocol %s", target, connector.Subprotocol)
	}
	return ws, nil
}

// handshake sends hello and waits for welcome. Err frames before welcome
// (such as a protocol version refusal) go to OnError; the close that
// follows them ends the handshake.
func (c *Client) handshake(ws *websocket.Conn) (w connector.Welcome, loginsGen uint64, err error) {
	ws.SetReadLimit(c.opts.MaxFrameBytes)
	ws.SetPingHandler(func(data string) error {
		_ = ws.SetReadDeadline(connws.Deadline(c.opts.DeadAfter))
		err := ws.WriteControl(websocket.PongMessage, []byte(data), connws.Deadline(connws.WriteWait))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})

	hello := c.opts.Hello
	// Tell the bridge what this side reads, so that it refuses a larger
	// command instead of sending it into a 1009 close.
	hello.MaxFrameBytes = c.opts.MaxFrameBytes
	c.mu.Lock()
	hello.Logins = slices.Clone(c.logins)
	loginsGen = c.loginsGen
	c.mu.Unlock()
	b, err := connws.EncodeFrame(connector.Frame{Type: connector.TypeHello}, &hello)
	if err != nil {
		return w, 0, err
	}
	_ = ws.SetWriteDeadline(connws.Deadline(connws.WriteWait))
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return w, 0, fmt.Errorf("send hello: %w", err)
	}
	for {
		_, msg, err := c.read(ws)
		if err != nil {
			return w, 0, fmt.Errorf("wait for welcome: %w", err)
		}
		var f connector.Frame
		if err := json.Unmarshal(msg, &f); err != nil {
			return w, 0, fmt.Errorf("wait for welcome: %w", err)
		}
		switch f.Type {
		case connector.TypeErr:
			c.reportErr(&f)
		case connector.TypeWelcome:
			if err := json.Unmarshal(f.Data, &w); err != nil {
				return w, 0, fmt.Errorf("decode welcome: %w", err)
			}
			if w.Protocol != connector.ProtocolVersion {
				return w, 0, fmt.Errorf("bridge chose protocol %d, this SDK speaks %d", w.Protocol, connector.ProtocolVersion)
			}
			if w.MaxFrameBytes > c.opts.MaxFrameBytes {
				// A bridge that ignores hello.max_frame_bytes may send a
				// command this side cannot read, which drops the connection.
				c.log.Warn().Int64("max_frame_bytes", c.opts.MaxFrameBytes).Int64("bridge_max_frame_bytes", w.MaxFrameBytes).
					Msg("MaxFrameBytes is below the bridge's frame limit; commands larger than it fail (or, with an older bridge, drop the connection)")
			}
			return w, loginsGen, nil
		default:
			return w, 0, fmt.Errorf("expected welcome, got a %q frame", f.Type)
		}
	}
}

// errLoginsChanged ends a connection whose hello missed logins added while
// it was made (SetLogins); the next one announces them.
var errLoginsChanged = errors.New("logins added during the handshake")

// closeForHello ends the session so that the next connection's hello can
// announce new logins: a normal close, and the connection cut if the
// bridge does not answer it.
func (s *clientSession) closeForHello() {
	_ = s.ws.WriteControl(websocket.CloseMessage, connws.CloseMessage(websocket.CloseNormalClosure, "logins changed"), connws.Deadline(connws.CloseGrace))
	time.AfterFunc(connws.CloseGrace, func() { _ = s.ws.NetConn().Close() })
}

// startSession lines up the replay: it forgets what the bridge has acked,
// loads the first page of the rest and makes the session current, all under sendMu
// so that no concurrent Send falls between the backlog and the live queue.
func (c *Client) startSession(ctx context.Context, ws *websocket.Conn, w connector.Welcome, loginsGen uint64) (*clientSession, error) {
	s := &clientSession{
		ws:          ws,
		log:         c.log.With().Int64("welcome_acked_seq", w.AckedSeq).Logger(),
		welcome:     w,
		maxInFlight: int64(max(w.MaxInFlight, 1)),
		maxFrame:    c.opts.MaxFrameBytes,
		out:         make(chan []byte, 64),
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		writerDone:  make(chan struct{}),
		sent:        w.AckedSeq,
		maxSent:     w.AckedSeq,
	}
	if w.MaxFrameBytes > 0 {
		s.maxFrame = min(s.maxFrame, w.MaxFrameBytes)
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	// Only the first pages of the backlog go into memory; topUp reads the
	// rest as acks make room, so a long outage costs no more memory than a
	// short one.
	next, err := c.prepareBacklog(ctx, s, w)
	if err != nil {
		return nil, err
	}

	c.mu.Lock()
	if loginsGen != c.loginsGen {
		c.mu.Unlock()
		return nil, errLoginsChanged
	}
	c.acked = w.AckedSeq
	c.lastSeq = next - 1
	c.bridgeMaxFrame = s.maxFrame
	c.sess = s
	c.broadcast()
	c.mu.Unlock()
	s.wakeWriter()
	return s, nil
}

func (s *clientSession) wakeWriter() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writeLoop is the session's only writer of data frames. Events go out from
// the queue as far as the max_in_flight window allows.
func (c *Client) writeLoop(ctx context.Context, s *clientSession) {
	write := func(b []byte) bool {
		_ = s.ws.SetWriteDeadline(connws.Deadline(connws.WriteWait))
		if err := s.ws.WriteMessage(websocket.TextMessage, b); err != nil {
			if !errors.Is(err, websocket.ErrCloseSent) {
				s.log.Debug().Err(err).Msg("Write to bridge failed")
				_ = s.ws.NetConn().Close()
			}
			return false
		}
		return true
	}
	var batch []queuedEvent
	for {
		select {
		case <-s.done:
			return
		case b := <-s.out:
			if !write(b) {
				return
			}
		case <-s.wake:
			for {
				// The backlog beyond what is in memory is read here, where
				// acks make room for it.
				if err := c.topUp(ctx, s); err != nil {
					s.failStore(err)
					return
				}
				batch = c.nextEvents(s, batch[:0])
				if len(batch) == 0 {
					break
				}
				for _, q := range batch {
					if !write(q.frame) {
						return
					}
				}
			}
		}
	}
}

// nextEvents claims the queued events after s.sent that fit into the window.
func (c *Client) nextEvents(s *clientSession, buf []queuedEvent) []queuedEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := c.acked + s.maxInFlight
	i := sort.Search(len(s.queue), func(i int) bool { return s.queue[i].seq > s.sent })
	for ; i < len(s.queue) && s.queue[i].seq <= limit; i++ {
		buf = append(buf, s.queue[i])
	}
	if n := len(buf); n > 0 {
		s.sent = buf[n-1].seq
		s.maxSent = max(s.maxSent, s.sent)
	}
	return buf
}

// readLoop handles the bridge's frames until the connection ends.
func (c *Client) readLoop(ctx context.Context, s *clientSession) error {
	for {
		typ, msg, err := c.read(s.ws)
		if err != nil {
			return err
		}
		if typ != websocket.TextMessage {
			c.sendOn(s, connws.ErrFrame("", 0, &connector.Error{Code: connector.ErrBadFrame, Message: "frames must be text frames"}))
			continue
		}
		var f connector.Frame
		if err := json.Unmarshal(msg, &f); err != nil {
			refs := connws.SalvageRefs(msg)
			c.sendOn(s, connws.ErrFrame(refs.ID, refs.Seq, &connector.Error{Code: connector.ErrBadFrame, Message: "not a valid frame: " + err.Error()}))
			continue
		}
		switch f.Type {
		case connector.TypeAck:
			if f.Seq < 1 {
				c.sendOn(s, connws.ErrFrame(f.ID, f.Seq, &connector.Error{Code: connector.ErrBadFrame, Message: "ack: seq must be an integer >= 1"}))
				continue
			}
			c.onAck(ctx, s, f.Seq)
		case connector.TypeCmd:
			c.onCmd(ctx, s, &f)
		case connector.TypeErr:
			c.onErrFrame(s, &f)
		case connector.TypeWelcome, connector.TypeHello, connector.TypeEvent, connector.TypeEphemeral, connector.TypeRes:
			c.sendOn(s, connws.ErrFrame(f.ID, f.Seq, &connector.Error{Code: connector.ErrBadFrame, Message: fmt.Sprintf("a %s frame is not expected from the bridge here", f.Type)}))
		default:
			c.sendOn(s, connws.ErrFrame(f.ID, f.Seq, &connector.Error{Code: connector.ErrUnknownKind, Message: fmt.Sprintf("unknown frame type %q", f.Type)}))
		}
	}
}

// read waits DeadAfter for the bridge's next frame; pings extend the wait.
func (c *Client) read(ws *websocket.Conn) (int, []byte, error) {
	_ = ws.SetReadDeadline(connws.Deadline(c.opts.DeadAfter))
	return ws.ReadMessage()
}

// onAck moves the window and lets the store forget what the bridge holds.
func (c *Client) onAck(ctx context.Context, s *clientSession, seq int64) {
	c.mu.Lock()
	if seq > s.maxSent {
		// Never forget an event on the word of an ack for something not
		// yet sent; the bridge would be wrong, and the event lost.
		s.log.Warn().Int64("ack", seq).Int64("max_sent", s.maxSent).Msg("Bridge acked a seq that was not sent; ignoring the excess")
		seq = s.maxSent
	}
	advanced := seq > c.acked
	if advanced {
		c.acked = seq
		i := sort.Search(len(s.queue), func(i int) bool { return s.queue[i].seq > seq })
		s.queue = s.queue[i:]
		if len(s.queue) == 0 {
			s.queue = nil
		}
		c.broadcast()
	}
	c.mu.Unlock()
	if !advanced {
		return
	}
	s.wakeWriter()
	if err := c.opts.Store.Acked(ctx, seq); err != nil {
		// Harmless until the next welcome, which repeats the bridge's acked_seq.
		s.log.Warn().Err(err).Int64("seq", seq).Msg("Could not record ack in store")
	}
}

func (c *Client) onErrFrame(s *clientSession, f *connector.Frame) {
	if f.Error == nil {
		c.sendOn(s, connws.ErrFrame(f.ID, f.Seq, &connector.Error{Code: connector.ErrBadFrame, Message: "err: error is required"}))
		return
	}
	if f.Error.Code == connector.ErrBadSeq {
		c.mu.Lock()
		// One rewind per ack level: if the bridge still reports a gap after
		// the resend, the event at acked+1 was refused (M_BAD_FRAME), and
		// resending it with the window behind it only earns the same answers
		// again, a busy loop on both sides. The next ack allows a rewind.
		again := s.rewound && s.rewoundAt == c.acked
		if !again {
			s.log.Warn().Int64("seq", f.Seq).Int64("resend_from", c.acked+1).Str("message", f.Error.Message).Msg("Bridge reported a seq gap; resending")
			s.sent = c.acked
			s.rewound, s.rewoundAt = true, c.acked
		} else {
			s.log.Error().Int64("seq", f.Seq).Int64("acked", c.acked).Str("message", f.Error.Message).
				Msg("Bridge reported a seq gap again after a resend; not resending until an ack moves the stream")
		}
		c.mu.Unlock()
		if !again {
			s.wakeWriter()
		}
	}
	c.reportErr(f)
}

func (c *Client) reportErr(f *connector.Frame) {
	if f.Error == nil {
		return
	}
	if f.Error.Code == connector.ErrBadFrame && f.Seq > 0 {
		// The bridge neither stores nor acks it, and everything after it
		// waits: only a fixed connector (or store) gets the stream moving.
		c.log.Error().Int64("seq", f.Seq).Str("message", f.Error.Message).Msg("Bridge refused a stored event as malformed; the event stream is stuck on it")
	}
	c.log.Warn().Str("id", f.ID).Int64("seq", f.Seq).Str("code", f.Error.Code).Str("login", f.Error.Login).
		Str("message", f.Error.Message).Msg("Bridge sent an error")
	if c.opts.OnError != nil {
		c.opts.OnError(f.Error, f)
	}
}

// sendOn queues a frame on session s; it is dropped if s has ended.
func (c *Client) sendOn(s *clientSession, b []byte) {
	select {
	case s.out <- b:
	case <-s.done:
	case <-s.writerDone:
	}
}

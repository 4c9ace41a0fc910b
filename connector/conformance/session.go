package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// writeWait bounds each write, so a connector that stops reading cannot
// hang the suite.
const writeWait = 5 * time.Second

// inFrame is one message the connector sent.
type inFrame struct {
	raw    []byte
	frame  connector.Frame
	badErr error // set if raw is not a JSON frame, or not a text message
}

// session is one websocket from the connector. A reader goroutine queues
// everything that arrives, so the connection keeps answering pings while a
// check deliberately reads nothing.
type session struct {
	ws *websocket.Conn

	mu      sync.Mutex
	queue   []inFrame
	arrived chan struct{} // closed and replaced on every change
	err     error         // why reading stopped; set once
	pongs   []string      // payloads of the pongs received
	done    chan struct{}

	writeMu sync.Mutex
}

func newSession(ws *websocket.Conn, maxFrame int64) *session {
	ws.SetReadLimit(maxFrame)
	s := &session{ws: ws, arrived: make(chan struct{}), done: make(chan struct{})}
	ws.SetPongHandler(func(data string) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.pongs = append(s.pongs, data)
		s.notify()
		return nil
	})
	go s.read()
	return s
}

func (s *session) read() {
	defer close(s.done)
	for {
		typ, msg, err := s.ws.ReadMessage()
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.notify()
			s.mu.Unlock()
			return
		}
		in := inFrame{raw: msg}
		if typ != websocket.TextMessage {
			in.badErr = errors.New("binary frame; frames must be text")
		} else if err := json.Unmarshal(msg, &in.frame); err != nil {
			in.badErr = fmt.Errorf("not a JSON frame: %w", err)
		}
		s.mu.Lock()
		s.queue = append(s.queue, in)
		s.notify()
		s.mu.Unlock()
	}
}

// notify wakes next; s.mu must be held.
func (s *session) notify() {
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// errTimeout is what next returns when nothing arrived in time.
var errTimeout = errors.New("nothing arrived")

// next returns the next frame, waiting at most wait. Once the queue is
// empty and the connection has ended, it returns why it ended.
func (s *session) next(ctx context.Context, wait time.Duration) (inFrame, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			in := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return in, nil
		}
		arrived, err := s.arrived, s.err
		s.mu.Unlock()
		if err != nil {
			return inFrame{}, &closedError{err: err}
		}
		select {
		case <-arrived:
		case <-timer.C:
			return inFrame{}, errTimeout
		case <-ctx.Done():
			return inFrame{}, ctx.Err()
		}
	}
}

// closedError says the connector's connection ended.
type closedError struct{ err error }

func (e *closedError) Error() string {
	if code := connws.CloseCode(e.err); code != 0 {
		return fmt.Sprintf("connection closed by the connector with code %d (%v)", code, e.err)
	}
	return fmt.Sprintf("connection lost: %v", e.err)
}

func (e *closedError) Unwrap() error { return e.err }

// send writes a frame whose data is v (nil for none).
func (s *session) send(f connector.Frame, v any) error {
	if v != nil {
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s data: %w", f.Type, err)
		}
		f.Data = data
	}
	b, err := json.Marshal(&f)
	if err != nil {
		return fmt.Errorf("encode %s frame: %w", f.Type, err)
	}
	return s.sendRaw(b)
}

// sendRaw writes b as one text frame, whatever it contains.
func (s *session) sendRaw(b []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.ws.SetWriteDeadline(time.Now().Add(writeWait))
	if err := s.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("write to connector: %w", err)
	}
	return nil
}

// ping sends a websocket ping and waits for the pong with its payload.
// Frames that arrive meanwhile stay queued.
func (s *session) ping(ctx context.Context, payload string, wait time.Duration) error {
	s.writeMu.Lock()
	err := s.ws.WriteControl(websocket.PingMessage, []byte(payload), time.Now().Add(writeWait))
	s.writeMu.Unlock()
	if err != nil {
		return fmt.Errorf("send ping: %w", err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got := slices.Contains(s.pongs, payload)
		arrived, rerr := s.arrived, s.err
		s.mu.Unlock()
		switch {
		case got:
			return nil
		case rerr != nil:
			return &closedError{err: rerr}
		}
		select {
		case <-arrived:
		case <-timer.C:
			return fmt.Errorf("no pong within %s", wait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// drop ends the connection as a bridge going away would: a close frame,
// then the TCP connection, without waiting for the connector to agree.
func (s *session) drop(code int, reason string) {
	s.writeMu.Lock()
	_ = s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	s.writeMu.Unlock()
	s.kill()
}

// kill drops TCP at once and waits for the reader to notice.
func (s *session) kill() {
	_ = s.ws.Close()
	<-s.done
}

// ended reports whether the connection has stopped reading.
func (s *session) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// waitEnded waits up to wait for the connector to close the connection.
func (s *session) waitEnded(ctx context.Context, wait time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(wait):
		return false
	case <-ctx.Done():
		return false
	}
}

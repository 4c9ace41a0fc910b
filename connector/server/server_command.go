package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// cmdReply is the answer to one command: a result, or an error.
type cmdReply struct {
	res *connector.Result
	err error
}

// Command sends a cmd frame to connectorID and waits for its res or err.
//
// An err frame comes back as *Error. ErrNotConnected (retryable) means the
// connector was not connected or went away before answering; the command
// may or may not have run, so commands that change the network must carry a
// txn for the retry to be safe. After CommandTimeout the result is an *Error
// with code M_TIMEOUT, also retryable for the same reason.
func (s *Server) Command(ctx context.Context, connectorID string, op string, cmd *connector.Command) (*connector.Result, error) {
	if op == "" {
		return nil, errors.New("command op is required")
	}
	c := s.live(connectorID)
	if c == nil {
		return nil, fmt.Errorf("connector %q: %w", connectorID, ErrNotConnected)
	}
	id := "c-" + strconv.FormatUint(s.nextCmd.Add(1), 10)
	b, err := connws.EncodeFrame(connector.Frame{Type: connector.TypeCmd, ID: id, Op: op}, cmd)
	if err != nil {
		return nil, err
	}
	// The connector's own read limit (hello.max_frame_bytes) counts too: a
	// larger frame would close its connection with 1009, and the re-send
	// after the reconnect would do the same.
	limit := s.opts.MaxFrameBytes
	if h := c.hello; h != nil && h.MaxFrameBytes > 0 {
		limit = min(limit, h.MaxFrameBytes)
	}
	if int64(len(b)) > limit {
		return nil, &connector.Error{Code: connector.ErrTooLarge, Message: fmt.Sprintf("%s command is %d bytes, more than the %d a frame may have", op, len(b), limit)}
	}
	reply, ok := c.addPending(id)
	if !ok {
		return nil, fmt.Errorf("connector %q: %w", connectorID, ErrNotConnected)
	}
	defer c.removePending(id)
	select {
	case c.out <- outFrame{data: b}:
	case <-c.writerDone:
		return nil, fmt.Errorf("connector %q: %w", connectorID, ErrNotConnected)
	case <-ctx.Done():
		return nil, fmt.Errorf("sending %s to connector %q: %w", op, connectorID, ctx.Err())
	}
	timeout := time.NewTimer(s.opts.CommandTimeout)
	defer timeout.Stop()
	select {
	case r := <-reply:
		if r.err != nil {
			return nil, r.err
		}
		return r.res, nil
	case <-timeout.C:
		return nil, &connector.Error{
			Code:      connector.ErrTimeout,
			Message:   fmt.Sprintf("connector %q did not answer %s within %s", connectorID, op, s.opts.CommandTimeout),
			Retryable: true,
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for %s on connector %q: %w", op, connectorID, ctx.Err())
	}
}

// addPending registers a command id before its frame goes out, so an answer
// can never arrive unclaimed. It fails once the connection is torn down.
func (c *serverConn) addPending(id string) (chan cmdReply, bool) {
	c.pendMu.Lock()
	defer c.pendMu.Unlock()
	if c.pendClosed {
		return nil, false
	}
	ch := make(chan cmdReply, 1)
	c.pending[id] = ch
	return ch, true
}

func (c *serverConn) removePending(id string) {
	c.pendMu.Lock()
	defer c.pendMu.Unlock()
	delete(c.pending, id)
}

// resolve delivers an answer; false if nobody waits for that id.
func (c *serverConn) resolve(id string, r cmdReply) bool {
	c.pendMu.Lock()
	defer c.pendMu.Unlock()
	ch, ok := c.pending[id]
	if ok {
		delete(c.pending, id)
		ch <- r
	}
	return ok
}

// failPending answers every waiting command with ErrNotConnected.
func (c *serverConn) failPending() {
	c.pendMu.Lock()
	defer c.pendMu.Unlock()
	c.pendClosed = true
	for id, ch := range c.pending {
		delete(c.pending, id)
		ch <- cmdReply{err: fmt.Errorf("connector %q disconnected before answering: %w", c.id, ErrNotConnected)}
	}
}

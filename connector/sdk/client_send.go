package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// Send validates ev, gives it the next seq and stores it durably before it
// goes anywhere, then queues it for the bridge. It returns once the event is
// stored: delivery, including replay after reconnects and restarts, is the
// client's job from then on; WaitAcked waits for the bridge's ack.
//
// While connected with max_in_flight events unacked, Send blocks until the
// bridge acks some or ctx ends; that error comes before anything is stored.
// While disconnected it only stores. An event that fails validation or does
// not fit into a frame is refused rather than stored: replayed, it would
// stall the stream for good.
func (c *Client) Send(ctx context.Context, ev *connector.Event) (int64, error) {
	if err := ev.Validate(); err != nil {
		return 0, err
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("encode %s event: %w", ev.Kind, err)
	}
	if err := validateWire(data, new(connector.Event)); err != nil {
		return 0, err
	}
	if limit := c.frameLimit(); int64(len(data))+frameOverhead > limit {
		return 0, fmt.Errorf("%w: %s event is %d bytes, too large for a %d-byte frame", ErrEventTooLarge, ev.Kind, len(data), limit)
	}
	if err := c.waitForRoom(ctx); err != nil {
		return 0, err
	}

	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	seq, err := c.opts.Store.NextSeq(ctx)
	if err != nil {
		return 0, fmt.Errorf("read next seq: %w", err)
	}
	if err := c.opts.Store.Append(ctx, seq, ev); err != nil {
		return 0, fmt.Errorf("store event %d: %w", seq, err)
	}
	frame := eventFrame(seq, data)
	c.mu.Lock()
	c.lastSeq = seq
	s := c.sess
	// Queued only if the session has read the whole backlog into memory;
	// otherwise topUp reads this event from the store in its turn.
	if s != nil && s.loaded == seq-1 {
		s.queue = append(s.queue, queuedEvent{seq: seq, frame: frame})
		s.loaded = seq
	}
	c.mu.Unlock()
	if s != nil {
		s.wakeWriter()
	}
	return seq, nil
}

// validateWire validates an event or ephemeral (wire points to a zero
// value of its type) as the bridge will see it. encoding/json writes each
// invalid UTF-8 byte as \ufffd, which decodes to three bytes, so a string
// that passed Validate can arrive over a length bound: the bridge would
// answer M_BAD_FRAME and, for an event, never ack it, stalling the stream.
// Only data containing that escape can differ from the Go value, so the
// common case costs one scan.
func validateWire(data []byte, wire interface{ Validate() error }) error {
	if !bytes.Contains(data, []byte(`\ufffd`)) {
		return nil
	}
	if err := json.Unmarshal(data, wire); err != nil {
		return fmt.Errorf("decode what was encoded: %w", err)
	}
	if err := wire.Validate(); err != nil {
		return fmt.Errorf("as encoded (invalid UTF-8 becomes U+FFFD): %w", err)
	}
	return nil
}

// eventFrame builds an event frame around already encoded data; marshalling
// a Frame would validate and copy data once more.
func eventFrame(seq int64, data []byte) []byte {
	b := make([]byte, 0, len(data)+40)
	b = append(b, `{"type":"event","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// frameLimit is the largest frame both ends accept, as far as known.
func (c *Client) frameLimit() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil {
		return c.sess.maxFrame
	}
	return min(c.opts.MaxFrameBytes, c.bridgeMaxFrame)
}

// waitForRoom blocks while connected with a full window.
func (c *Client) waitForRoom(ctx context.Context) error {
	for {
		c.mu.Lock()
		s := c.sess
		full := s != nil && c.lastSeq-c.acked >= s.maxInFlight
		changed := c.changed
		c.mu.Unlock()
		if !full {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for room in the in-flight window: %w", ctx.Err())
		}
	}
}

// SendEphemeral sends e if connected and silently drops it otherwise:
// ephemerals are never stored or replayed, and a stale typing notice is
// worse than none.
func (c *Client) SendEphemeral(ctx context.Context, e *connector.Ephemeral) error {
	if err := e.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode %s ephemeral: %w", e.Kind, err)
	}
	// The bridge validates what JSON made of e; see validateWire.
	if err := validateWire(data, new(connector.Ephemeral)); err != nil {
		return err
	}
	b, err := connws.EncodeFrame(connector.Frame{Type: connector.TypeEphemeral}, e)
	if err != nil {
		return err
	}
	if int64(len(b)) > s.maxFrame {
		return fmt.Errorf("%s ephemeral is %d bytes, too large for a %d-byte frame", e.Kind, len(b), s.maxFrame)
	}
	select {
	case s.out <- b:
		return nil
	case <-s.done:
		return nil
	case <-s.writerDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

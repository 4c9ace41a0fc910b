package sdk

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// droppedKind is the kind of the stand-in that goes out under the seq of a
// stored event the bridge would refuse for good (see standIn).
const droppedKind = "dropped_by_connector"

// prepareBacklog lines the store up with the welcome's acked_seq (renumbering
// where the two cannot agree otherwise), queues the first page of the
// backlog on s and returns the store's next seq. Called under sendMu, before
// s is current.
func (c *Client) prepareBacklog(ctx context.Context, s *clientSession, w connector.Welcome) (int64, error) {
	store := c.opts.Store
	next, err := store.NextSeq(ctx)
	if err != nil {
		return 0, fmt.Errorf("read next seq: %w", err)
	}
	if w.AckedSeq >= next {
		s.log.Warn().Int64("store_next_seq", next).
			Msg("Bridge has acked seqs this store never wrote (store reset?); renumbering stored events after the bridge's acked_seq")
		if err := store.Rebase(ctx, w.AckedSeq); err != nil {
			return 0, fmt.Errorf("renumber stored events: %w", err)
		}
	} else if err := store.Acked(ctx, w.AckedSeq); err != nil {
		return 0, fmt.Errorf("forget acked events: %w", err)
	}
	// Only the first event matters for the check below; the rest of the
	// backlog is read a page at a time as acks make room (topUp).
	first, err := store.Unacked(ctx, w.AckedSeq, 1)
	if err != nil {
		return 0, fmt.Errorf("load unacked events: %w", err)
	}
	if w.AckedSeq < next-1 && (len(first) == 0 || first[0].Seq != w.AckedSeq+1) {
		// The bridge is behind events this store already forgot (its
		// database was restored?). They cannot be resent, and anything
		// numbered after them would meet M_BAD_SEQ for good.
		s.log.Warn().Int64("store_next_seq", next).
			Msg("Bridge's acked_seq is behind events this store already forgot (bridge restored?); renumbering stored events after it")
		if err := store.Rebase(ctx, w.AckedSeq); err != nil {
			return 0, fmt.Errorf("renumber stored events: %w", err)
		}
	}
	if next, err = store.NextSeq(ctx); err != nil {
		return 0, fmt.Errorf("read next seq: %w", err)
	}
	s.loaded = w.AckedSeq
	if next-1 > w.AckedSeq {
		s.log.Info().Int64("events", next-1-w.AckedSeq).Msg("Replaying unacked events")
	}
	page, err := c.loadPage(ctx, s, s.loaded, min(next-1, w.AckedSeq+pageAhead(s)))
	if err != nil {
		return 0, err
	}
	s.queue = page
	if n := len(page); n > 0 {
		s.loaded = page[n-1].seq
	}
	return next, nil
}

// pageAhead is how far past the ack the session keeps events in memory:
// two windows, so that each store read fetches about a window's worth.
func pageAhead(s *clientSession) int64 {
	return 2 * s.maxInFlight
}

// loadPage reads the stored events after from, up to upTo, and encodes
// them for the wire. It takes no locks.
func (c *Client) loadPage(ctx context.Context, s *clientSession, from, upTo int64) ([]queuedEvent, error) {
	if upTo <= from {
		return nil, nil
	}
	evs, err := c.opts.Store.Unacked(ctx, from, int(upTo-from))
	if err != nil {
		return nil, fmt.Errorf("load unacked events after %d: %w", from, err)
	}
	page := make([]queuedEvent, 0, len(evs))
	for i := range evs {
		se := &evs[i]
		if want := from + 1 + int64(i); se.Seq != want {
			// The bridge will answer M_BAD_SEQ and wait for a seq that no
			// longer exists; only an operator can sort that out.
			s.log.Error().Int64("want_seq", want).Int64("have_seq", se.Seq).Msg("Event log has a gap after the bridge's acked_seq; the stream cannot proceed")
		}
		f, err := c.encodeStored(s, se)
		if err != nil {
			return nil, err
		}
		page = append(page, queuedEvent{seq: se.Seq, frame: f})
	}
	return page, nil
}

// encodeStored makes the frame of a stored event, or of its stand-in if the
// bridge would refuse it for good: too large for the frame limit the
// welcome announced (stored before it was known, or before the bridge's
// limit was lowered; replayed, it closes every connection with 1009), or
// invalid as encoded (stored by an SDK that did not check the encoding).
// Either would block every later event for ever.
func (c *Client) encodeStored(s *clientSession, se *StoredEvent) ([]byte, error) {
	data, err := json.Marshal(&se.Event)
	if err != nil {
		return nil, fmt.Errorf("encode stored event %d: %w", se.Seq, err)
	}
	var why error
	if err := se.Event.Validate(); err != nil {
		why = err
	} else if err := validateWire(data, new(connector.Event)); err != nil {
		why = err
	} else if f := eventFrame(se.Seq, data); int64(len(f)) > s.maxFrame {
		why = fmt.Errorf("%w: %s event is %d bytes, the bridge's frames %d at most", ErrEventTooLarge, se.Event.Kind, len(f), s.maxFrame)
	} else {
		return f, nil
	}
	return c.standIn(s, se, why), nil
}

// standIn sets a stored event aside: it is logged and handed to OnDropped,
// and under its seq goes an event of an unknown kind instead, which the
// bridge answers M_UNKNOWN_KIND and acks (section 2 of the protocol), so
// the stream moves on and every seq keeps the number Send returned for it.
// Renumbering the events after it instead would need all earlier ones
// acked first and would change seqs callers wait for with WaitAcked.
func (c *Client) standIn(s *clientSession, se *StoredEvent, why error) []byte {
	s.log.Error().Err(why).Int64("seq", se.Seq).Str("kind", se.Event.Kind).Str("login", se.Event.Login).
		Str("id", se.Event.ID).Msg("Stored event cannot reach the bridge; sending a stand-in under its seq, the event is lost")
	if c.opts.OnDropped != nil {
		c.opts.OnDropped(se.Seq, &se.Event, why)
	}
	data, _ := json.Marshal(struct {
		Kind   string `json:"kind"`
		Reason string `json:"reason"`
	}{droppedKind, truncateUTF8(why.Error(), 512)})
	return eventFrame(se.Seq, data)
}

// truncateUTF8 cuts s to at most n bytes at a character boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// topUp reads the next page of the backlog once acks have made room in the
// window for events not yet in memory. Writer goroutine only.
func (c *Client) topUp(ctx context.Context, s *clientSession) error {
	c.mu.Lock()
	need := s.loaded < c.acked+s.maxInFlight && s.loaded < c.lastSeq
	c.mu.Unlock()
	if !need {
		return nil
	}
	// sendMu keeps Send from queueing a newer event between the read and
	// the append below, which would put the queue out of seq order.
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	from, upTo := s.loaded, min(c.lastSeq, c.acked+pageAhead(s))
	c.mu.Unlock()
	page, err := c.loadPage(ctx, s, from, upTo)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.queue = append(s.queue, page...)
	if n := len(page); n > 0 {
		s.loaded = page[n-1].seq
	} else {
		// The store lacks events it said it had; loadPage logged nothing,
		// so say it here, and do not read the same nothing again and again.
		s.log.Error().Int64("after", from).Int64("last_seq", c.lastSeq).Msg("Event log has no events where the backlog should go on; the stream cannot proceed")
		s.loaded = c.lastSeq
	}
	return nil
}

// failStore ends a session whose store failed while it ran, as startSession
// does for a failure before: the next connection starts over.
func (s *clientSession) failStore(err error) {
	s.log.Error().Err(err).Msg("Connector store failed; closing the connection")
	_ = s.ws.WriteControl(websocket.CloseMessage, connws.CloseMessage(websocket.CloseInternalServerErr, "connector store failed"), connws.Deadline(connws.CloseGrace))
	_ = s.ws.NetConn().Close()
}

package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
)

// Accepted is one event of a batch handed to BatchStore: its seq and the
// validated event, or nil to advance acked_seq only (as for Store.Accept).
type Accepted struct {
	Seq   int64
	Event *connector.Event
	// Raw is the event's data exactly as the connector sent it, which
	// decodes to Event: a store keeps these bytes rather than encoding
	// Event again. Only data that is not valid UTF-8 (which JSON decoding
	// repairs, and a text column refuses) is replaced by Event's encoding.
	Raw json.RawMessage
}

// BatchStore is an optional extension of Store. When the Store implements it,
// the server stores the events that arrived while the previous batch was
// being stored all at once, which costs one durable commit instead of one per
// event.
type BatchStore interface {
	Store
	// AcceptBatch durably stores items and advances acked_seq to the last
	// item's seq, all in one transaction: after an error the batch is not
	// acked, and it is stored wholly or not at all (AckedSeq, which the
	// next connection reads, says which). items is non-empty, its seqs
	// run from acked_seq+1 up by exactly one, and the server calls it one
	// call at a time per connector id. items is reused after the call
	// returns and must not be retained.
	AcceptBatch(ctx context.Context, connectorID string, items []Accepted) error
}

// maxBatch bounds the events stored in one batch, and so the work queued
// between the reader and the committer.
const maxBatch = 256

// errStoreFailed ends a connection whose committer could not store a batch.
var errStoreFailed = errors.New("bridge could not store events")

// batchLimit is how many events may wait for the committer and go into one
// batch: never more than a connector may have in flight, since more could
// not arrive before an ack anyway.
func (o *Options) batchLimit() int {
	return min(maxBatch, o.MaxInFlight)
}

// startCommitter starts the goroutine that stores what the reader queues.
// Reader goroutine, after the handshake.
func (c *serverConn) startCommitter() {
	c.committing = true
	go c.commitLoop()
}

// stopCommitter lets the committer store what is still queued and waits for
// it, so that nothing of this connection is stored afterwards. Reader
// goroutine, in teardown.
func (c *serverConn) stopCommitter() {
	if !c.committing {
		return
	}
	close(c.commitIn)
	<-c.commitDone
}

// enqueue hands a validated event (or nil, for acked without storing) to the
// committer, in seq order. It blocks while the queue is full, which is the
// back-pressure the connector meets. Once the committer has failed it
// returns errStoreFailed: the connection is closing with 1011 and nothing
// more may be stored. Reader goroutine only.
func (c *serverConn) enqueue(seq int64, ev *connector.Event, raw json.RawMessage) error {
	if c.commitFailed() {
		return c.storeFailed()
	}
	select {
	case c.commitIn <- Accepted{Seq: seq, Event: ev, Raw: raw}:
		c.queued = seq
		// The expected seq is accepted, so a gap reported before is filled;
		// the next one deserves its own M_BAD_SEQ.
		c.gapReported = false
		return nil
	case <-c.commitDone:
		return c.storeFailed()
	}
}

func (c *serverConn) commitFailed() bool {
	select {
	case <-c.commitDone:
		return true
	default:
		return false
	}
}

// storeFailed records on the reader side that the committer queued a close
// (for teardown's choice of how to end the TCP connection) and returns the
// error that ends the read loop.
func (c *serverConn) storeFailed() error {
	c.closeQueued = true
	return fmt.Errorf("%w after seq %d", errStoreFailed, c.committed.Load())
}

// commitLoop stores queued events in batches: it waits for one, takes
// whatever else is queued by then (up to the batch limit) and stores them
// together. While a batch is being stored the next one accumulates, so the
// slower the store, the larger the batches. Only stored events are reported
// to the writer for acking; with a SyncStore, once the syncer made them
// durable (server_sync.go), while this loop stores the next batch. On a
// failure it closes the connection with 1011 and stops; what was queued
// behind the failed batch is never stored or acked, and the connector
// replays it from acked_seq on its next connection.
func (c *serverConn) commitLoop() {
	defer close(c.commitDone)
	var syncing *syncer
	var failed <-chan struct{}
	if ss, ok := c.srv.opts.Store.(SyncStore); ok {
		syncing = newSyncer()
		failed = syncing.failed
		go c.syncLoop(ss, syncing)
		defer syncing.stop()
	}
	limit := c.srv.opts.batchLimit()
	batch := make([]Accepted, 0, limit)
	for {
		var first Accepted
		var ok bool
		select {
		case first, ok = <-c.commitIn:
		case <-failed:
			return // the syncer closed the connection
		}
		if !ok {
			return
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < limit {
			select {
			case it, ok := <-c.commitIn:
				if !ok {
					break fill // store this last batch; the next receive returns
				}
				batch = append(batch, it)
			default:
				break fill
			}
		}
		stored, durable, err := c.store(batch)
		if stored > 0 {
			if syncing != nil {
				syncing.stored(batch[stored-1].Seq, stored, durable)
			} else {
				c.committed.Store(batch[stored-1].Seq)
				c.noteStored(batch[stored-1].Seq, stored)
			}
		}
		if err != nil {
			if syncing != nil {
				// What was stored before is acked first, unless a
				// failed Sync closes the connection already.
				syncing.stop()
				select {
				case <-failed:
					return
				default:
				}
			}
			c.failCommit(err, batch[stored].Seq)
			return
		}
	}
}

// store writes batch and returns how many of its events, from the start,
// are stored, and whether durably (a SyncStore's may not be yet). A
// BatchStore stores all or nothing; a plain Store one event per
// transaction, so a failure may come after a stored prefix.
func (c *serverConn) store(batch []Accepted) (stored int, durable bool, err error) {
	switch st := c.srv.opts.Store.(type) {
	case SyncStore:
		if durable, err = st.StoreBatch(c.ctx, c.id, batch); err != nil {
			return 0, false, err
		}
		return len(batch), durable, nil
	case BatchStore:
		if err := st.AcceptBatch(c.ctx, c.id, batch); err != nil {
			return 0, false, err
		}
		return len(batch), true, nil
	}
	for i, it := range batch {
		if err := c.srv.opts.Store.Accept(c.ctx, c.id, it.Seq, it.Event); err != nil {
			return i, true, err
		}
	}
	return len(batch), true, nil
}

// failCommit closes the connection with 1011 after a store failure: the
// connector reconnects and replays from the store's acked_seq, which is the
// only state both sides can trust then. The close goes behind the frames
// already queued (acks of earlier batches among them), as sendClose does;
// sendClose itself belongs to the reader.
func (c *serverConn) failCommit(err error, seq int64) {
	if c.closing.Load() {
		return // already going away; the failure is likely the cause's echo
	}
	c.rlog.Error().Err(err).Int64("seq", seq).Msg("Could not store events")
	const reason = "bridge could not store the event"
	select {
	case c.out <- outFrame{closeCode: websocket.CloseInternalServerErr, closeReason: reason}:
	case <-c.writerDone:
		c.closeWith(websocket.CloseInternalServerErr, reason)
	}
}

package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
)

// Entry is a stored event waiting to be applied.
type Entry struct {
	ConnectorID string
	Seq         int64
	LoginID     string
	ChatID      string
	Kind        string
	// Attempts counts failed attempts to apply it so far, across restarts.
	Attempts int
	// Event is the decoded event; nil if the stored data does not parse
	// (the caller parks such an entry).
	Event *connector.Event

	in *Inbox
}

// Done marks the entry applied. The caller runs it in the transaction of
// its own writes, so that the event is applied exactly once.
func (e *Entry) Done(ctx context.Context) error {
	return e.in.db.Inbox.MarkDone(ctx, e.ConnectorID, e.Seq, "")
}

// Park marks the entry done with the reason the bridge gave up on it; it
// stays in the table (Prune keeps it) for the operator.
func (e *Entry) Park(ctx context.Context, reason error) error {
	return e.in.db.Inbox.MarkDone(ctx, e.ConnectorID, e.Seq, reason.Error())
}

// Failed counts a failed attempt, so that the backoff carries on where it
// was after a restart.
func (e *Entry) Failed(ctx context.Context, reason error) error {
	return e.in.db.Inbox.AddAttempt(ctx, e.ConnectorID, e.Seq, reason.Error())
}

// Reader reads the stored events of every connector in seq order, each
// once per reader. The inbox has one reader at a time.
type Reader struct {
	in    *Inbox
	after map[string]int64 // per connector: the last seq returned
}

// Reader starts reading from the oldest event not yet done, of every
// connector.
func (in *Inbox) Reader() *Reader {
	in.accepted.setAll()
	return &Reader{in: in, after: make(map[string]int64)}
}

// Rescan makes the next call look at every connector with pending events,
// not only those whose events were stored since the last call: the
// periodic look that covers a lost wake.
func (r *Reader) Rescan() { r.in.accepted.setAll() }

// Next returns the following events not yet done, at most perConnector of
// each connector, in seq order within a connector. It looks at the
// connectors whose events were stored since its last call, or at all of
// them after a Rescan, a failure or a full page. more is true when a
// connector filled its page (more may be stored); failed when a query
// failed (logged; the caller looks again soon, no wake may come for it).
//
// The rows this process stored since the last call come from memory, not
// from the database (see acceptedConns): every row not yet done with a seq
// above the last one returned was either returned by an earlier look or
// stored after that look began, and so handed over. Rows handed over that
// an earlier database look returned already are skipped by their seq.
func (r *Reader) Next(ctx context.Context, perConnector int) (entries []*Entry, more, failed bool) {
	stored, all, rewound := r.in.accepted.take()
	for connID, seq := range rewound {
		if r.after[connID] > seq {
			r.after[connID] = seq
		}
	}
	var conns []string
	if all {
		listed, err := r.in.db.Inbox.Connectors(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.in.log.Err(err).Msg("Failed to list connectors with pending events")
			}
			failed = true
		} else {
			conns = listed
		}
	} else {
		for connID, s := range stored {
			if s.overflow {
				conns = append(conns, connID)
				continue
			}
			var n int
			for _, row := range s.rows {
				if row.Seq <= r.after[connID] {
					continue
				}
				if n == perConnector {
					more = true
					break
				}
				entries = append(entries, r.in.entry(row))
				r.after[connID] = row.Seq
				n++
			}
		}
	}
	for _, connID := range conns {
		rows, err := r.in.db.Inbox.Pending(ctx, connID, r.after[connID], perConnector)
		if err != nil {
			if ctx.Err() == nil {
				r.in.log.Err(err).Str("connector_id", connID).Msg("Failed to load pending events")
			}
			failed = true
			continue
		}
		for _, row := range rows {
			entries = append(entries, r.in.entry(row))
			r.after[connID] = row.Seq
		}
		more = more || len(rows) == perConnector
	}
	if more || failed {
		r.in.accepted.setAll()
	}
	return entries, more, failed
}

// entry decodes a row, unless the writer in this process handed its event
// over: then the event has been decoded once, at the connector server, and
// the stored bytes are those it was decoded from.
func (in *Inbox) entry(row *database.InboxRow) *Entry {
	e := &Entry{
		ConnectorID: row.ConnectorID, Seq: row.Seq, LoginID: row.LoginID, ChatID: row.ChatID,
		Kind: row.Kind, Attempts: row.Attempts, in: in,
	}
	if ev := in.handoff.take(row.ConnectorID, row.Seq); ev != nil {
		e.Event = ev
		return e
	}
	var ev connector.Event
	if err := json.Unmarshal(row.Data, &ev); err != nil || ev.Kind == "" {
		in.log.Warn().Err(err).Str("connector_id", row.ConnectorID).Int64("seq", row.Seq).Msg("Stored event does not parse")
		return e
	}
	e.Event = &ev
	return e
}

// ErrUnparsable is the reason to park an entry whose Event is nil.
var ErrUnparsable = errors.New("stored event does not parse")

// maxHandoff bounds the decoded events kept for the reader; beyond it the
// reader decodes the stored bytes, as after a restart. The reader takes
// events about as fast as they commit unless the homeserver falls behind,
// and then a bounded backlog is all that is worth keeping in memory.
const maxHandoff = 4096

type key struct {
	connectorID string
	seq         int64
}

// handoff carries events decoded by the connector server from the writer
// to the reader of this process, so that a live event is decoded once.
type handoff struct {
	mu     sync.Mutex
	events map[key]*connector.Event
}

func (h *handoff) put(connectorID string, items []server.Accepted) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, it := range items {
		if it.Event == nil || len(h.events) >= maxHandoff {
			continue
		}
		h.events[key{connectorID, it.Seq}] = it.Event
	}
}

func (h *handoff) drop(connectorID string, items []server.Accepted) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, it := range items {
		delete(h.events, key{connectorID, it.Seq})
	}
}

func (h *handoff) take(connectorID string, seq int64) *connector.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := key{connectorID, seq}
	ev := h.events[k]
	delete(h.events, k)
	return ev
}

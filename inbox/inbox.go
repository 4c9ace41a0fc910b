// Package inbox is the bridge's durable queue of connector events: the one
// place that writes an accepted event, wakes the reader, reads it back and
// marks it done. The connector server hands it each event's data as the
// connector sent it (validated there); the inbox stores those bytes as they
// are, in the same transaction that moves the connector's acked_seq, so an
// ack always means the event survives a crash. The portal manager reads the
// events back in seq order and marks each done in the transaction that
// applies it.
package inbox

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/metrics"
)

// Inbox is the connector server's Store and the portal manager's source of
// connector events. It has one reader (see Reader).
type Inbox struct {
	db      *database.Database
	metrics *metrics.Metrics
	log     zerolog.Logger
	wake    chan struct{}
	handoff handoff
	// accepted names the connectors whose events were stored since the
	// reader last looked, with the rows.
	accepted acceptedConns
	// storing holds a *stream per connector id.
	storing sync.Map
}

// stream is what the writer keeps of one connector's stream.
type stream struct {
	// mu is held while a batch is committed and handed to accepted, so the
	// reader gets each connector's rows in seq order even when an old and
	// a new connection of it overlap.
	mu sync.Mutex
	// handed is the highest seq handed to the reader. A batch that starts
	// at or below it is stored again after PostgreSQL lost it (see
	// AcceptBatch).
	handed int64
}

var _ server.SyncStore = (*Inbox)(nil)

// New returns an inbox on db; mx may be nil.
func New(db *database.Database, mx *metrics.Metrics, log zerolog.Logger) *Inbox {
	return &Inbox{
		db:       db,
		metrics:  mx,
		log:      log.With().Str("component", "inbox").Logger(),
		wake:     make(chan struct{}, 1),
		handoff:  handoff{events: make(map[key]*connector.Event)},
		accepted: acceptedConns{conns: make(map[string]*storedRows), all: true},
	}
}

// AckedSeq is the highest seq stored from connectorID, ever. It is what a
// new connection's welcome tells the connector it may forget, so it first
// makes durable what an earlier connection committed without the WAL flush
// and could not flush (see AcceptBatch).
func (in *Inbox) AckedSeq(ctx context.Context, connectorID string) (int64, error) {
	if err := in.db.Stream.Flush(ctx, connectorID); err != nil {
		return 0, fmt.Errorf("flush stream %s: %w", connectorID, err)
	}
	return in.db.Stream.AckedSeq(ctx, connectorID)
}

// Accept stores one event; the server uses AcceptBatch, this is for Store.
// Without the bytes the connector sent, ev is encoded.
func (in *Inbox) Accept(ctx context.Context, connectorID string, seq int64, ev *connector.Event) error {
	it := server.Accepted{Seq: seq, Event: ev}
	if ev != nil {
		raw, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event %d: %w", seq, err)
		}
		it.Raw = raw
	}
	return in.AcceptBatch(ctx, connectorID, []server.Accepted{it})
}

// AcceptBatch stores the events of items as the connector sent them and moves
// acked_seq to the last item's seq, in one transaction, and returns once
// that is durable: StoreBatch, then Sync when it has to. After an error the
// batch is stored either wholly or not at all, and AckedSeq says which.
func (in *Inbox) AcceptBatch(ctx context.Context, connectorID string, items []server.Accepted) error {
	durable, err := in.StoreBatch(ctx, connectorID, items)
	if err == nil && !durable {
		err = in.Sync(ctx, connectorID)
	}
	return err
}

// Sync makes durable what StoreBatch stored for connectorID without
// waiting for that (on PostgreSQL, a batch of up to four events: see
// StoreBatch).
func (in *Inbox) Sync(ctx context.Context, connectorID string) error {
	if err := in.db.Stream.Flush(ctx, connectorID); err != nil {
		return fmt.Errorf("flush the events of connector %s: %w", connectorID, err)
	}
	return nil
}

// StoreBatch stores the events of items as the connector sent them and
// moves acked_seq to the last item's seq, in one transaction. Once it
// commits, the reader is woken: acks go out batched and possibly delayed,
// and a lone event must not wait for that, nor, on PostgreSQL, for the
// log's flush: a small batch there commits without it and durable is
// false. The connector server then stores its next batch while a Sync
// makes this one durable, and acks it after that (server.SyncStore).
func (in *Inbox) StoreBatch(ctx context.Context, connectorID string, items []server.Accepted) (durable bool, err error) {
	if len(items) == 0 {
		return true, nil
	}
	first, last := items[0].Seq, items[len(items)-1].Seq
	// The intake of an event is where its bridge latency starts.
	takenIn := time.Now()
	// Rows are built before the transaction opens, so it holds its locks
	// only for the writes.
	rows := make([]*database.InboxRow, 0, len(items))
	for i, it := range items {
		// AdvanceFrom only checks the ends; a hole or a repeat in between
		// would be acked without being stored.
		if it.Seq != first+int64(i) {
			return false, fmt.Errorf("batch of connector %s is not consecutive at seq %d", connectorID, it.Seq)
		}
		if it.Event == nil {
			continue
		}
		if len(it.Raw) == 0 {
			return false, fmt.Errorf("event %d of connector %s comes without its data", it.Seq, connectorID)
		}
		row := &database.InboxRow{ConnectorID: connectorID, Seq: it.Seq, LoginID: it.Event.Login, Kind: it.Event.Kind, Data: it.Raw}
		if it.Event.Chat != nil {
			row.ChatID = it.Event.Chat.ID
		}
		rows = append(rows, row)
	}
	st, _ := in.storing.LoadOrStore(connectorID, &stream{})
	s := st.(*stream)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Handed over before the commit, so that the reader, which can see the
	// rows only after it, always finds them; taken back if the commit fails.
	in.handoff.put(connectorID, items)
	// Timed before the commit too: once it commits, the reader may apply a
	// row before this call returns, and an untimed row observes no latency.
	for _, r := range rows {
		in.metrics.RemoteTakenIn(connectorID, r.Seq, takenIn)
	}
	// From first-1: if acked_seq is anything else, another writer got here
	// first and none of this may commit.
	done, err := in.db.Inbox.StoreAdvancing(ctx, connectorID, rows, first-1, last)
	if err != nil {
		err = fmt.Errorf("store events %d-%d: %w", first, last, err)
	} else if !done {
		err = in.db.DoTxn(ctx, nil, func(ctx context.Context) error {
			if err := in.db.Inbox.InsertMany(ctx, rows); err != nil {
				return fmt.Errorf("store events %d-%d: %w", first, last, err)
			}
			return in.db.Stream.AdvanceFrom(ctx, connectorID, first-1, last)
		})
	}
	if err != nil {
		in.handoff.drop(connectorID, items)
		for _, r := range rows {
			in.metrics.RemoteForgotten(connectorID, r.Seq)
		}
		return false, err
	}
	if first <= s.handed {
		// These seqs were stored and handed over before, and acked_seq
		// went back below them since: PostgreSQL crashed before the batch
		// that held them reached the disk (below), and the connector,
		// never acked, sends them again. The reader, which may have
		// returned them, would skip them as returned; it reads them again
		// instead (an event applied twice is applied once: the second
		// finds the first's mapping or marker).
		in.accepted.rewind(connectorID, first-1)
	}
	s.handed = last
	if len(rows) > 0 {
		in.accepted.add(connectorID, rows)
		in.Wake()
	}
	// StoreAdvancing commits without waiting for the WAL flush, so that
	// the reader can start on the rows at once; the connector may forget
	// them only once they are durable, which Sync makes them. If
	// PostgreSQL loses them before, they were never acked and the
	// connector sends them again.
	return !done, nil
}

// Wake makes the reader look for stored events, as after a commit. Wakes
// do not queue up: one pending wake covers any number.
func (in *Inbox) Wake() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// Woken delivers the wakes.
func (in *Inbox) Woken() <-chan struct{} { return in.wake }

// Prune deletes events applied without error, keeping the table small;
// parked ones stay for the operator.
func (in *Inbox) Prune(ctx context.Context) error {
	return in.db.Inbox.Prune(ctx)
}

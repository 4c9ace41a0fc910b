package sdk

import (
	"context"
	"fmt"
	"sync"

	"github.com/dmbridge/dmbridge/connector"
)

// ClientStore is a connector's durable state: the event log that makes
// delivery survive crashes of either side, and the outcomes of commands for
// idempotency. A real connector keeps it in a database; MemoryStore is for
// tests and for connectors that can afford to lose unacked events.
type ClientStore interface {
	// NextSeq returns the seq the next Append must use: one more than the
	// highest seq ever appended or acked, 1 for a fresh store. It reserves
	// nothing, so a crash between NextSeq and Append cannot leave a gap in
	// the sequence (a gap would stall the stream on M_BAD_SEQ for good).
	NextSeq(ctx context.Context) (int64, error)
	// Append durably stores an event that is not yet acked, under the seq
	// NextSeq returned.
	Append(ctx context.Context, seq int64, ev *connector.Event) error
	// Unacked returns the stored events with a seq greater than after, in
	// seq order, at most limit of them (all if limit <= 0). The SDK reads
	// its backlog in pages of about max_in_flight events, so that a long
	// outage costs store reads rather than memory.
	Unacked(ctx context.Context, after int64, limit int) ([]StoredEvent, error)
	// Acked forgets the events up to and including upTo. If upTo is at or
	// beyond the highest seq appended, NextSeq must return upTo+1 from now
	// on: the bridge has acked seqs this store never saw (it was reset), and
	// reusing them would make the bridge drop new events as replays.
	Acked(ctx context.Context, upTo int64) error
	// Rebase renumbers every stored event, keeping their order, to after+1,
	// after+2, ..., and NextSeq continues after them. The SDK calls it when
	// the bridge has acked seqs this store never wrote (the store was reset
	// or restored): under their old numbers the bridge would drop the
	// stored events as replays, and it deduplicates them by message id.
	// It also calls it when the bridge is behind events this store has
	// forgotten (the bridge was restored), which can no longer be resent.
	Rebase(ctx context.Context, after int64) error
	// TxnResult returns the recorded outcome of a command txn: its result or
	// its error, and whether there was one.
	TxnResult(ctx context.Context, txn string) (*connector.Result, *connector.Error, bool, error)
	// SaveTxnResult records the final outcome of a command txn. The SDK
	// calls it for results and for non-retryable errors only.
	SaveTxnResult(ctx context.Context, txn string, res *connector.Result, e *connector.Error) error
}

// StoredEvent is an event in the client's log.
type StoredEvent struct {
	Seq   int64
	Event connector.Event
}

// MemoryStore is a ClientStore that lives in memory. Its txn outcomes are
// never forgotten, which suits tests and short-lived processes.
type MemoryStore struct {
	mu     sync.Mutex
	next   int64
	events []StoredEvent
	txns   map[string]txnOutcome
}

type txnOutcome struct {
	res *connector.Result
	err *connector.Error
}

var _ ClientStore = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store whose first seq is 1.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{next: 1, txns: make(map[string]txnOutcome)}
}

func (m *MemoryStore) NextSeq(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.next, nil
}

func (m *MemoryStore) Append(_ context.Context, seq int64, ev *connector.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq != m.next {
		return fmt.Errorf("append seq %d: the next seq is %d", seq, m.next)
	}
	m.events = append(m.events, StoredEvent{Seq: seq, Event: *ev})
	m.next++
	return nil
}

func (m *MemoryStore) Unacked(_ context.Context, after int64, limit int) ([]StoredEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := m.indexAfter(after)
	n := len(m.events) - i
	if limit > 0 {
		// A page, not the whole backlog: the SDK asks for a window's worth.
		n = min(n, limit)
	}
	out := make([]StoredEvent, n)
	copy(out, m.events[i:i+n])
	return out, nil
}

func (m *MemoryStore) Acked(_ context.Context, upTo int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := m.indexAfter(upTo)
	if i == len(m.events) {
		m.events = nil
	} else {
		m.events = m.events[i:]
	}
	if upTo >= m.next {
		m.next = upTo + 1
	}
	return nil
}

func (m *MemoryStore) Rebase(_ context.Context, after int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.events {
		m.events[i].Seq = after + 1 + int64(i)
	}
	m.next = after + 1 + int64(len(m.events))
	return nil
}

// indexAfter is the index of the first event with a seq greater than seq.
// Events are consecutive, so it is arithmetic rather than a search.
func (m *MemoryStore) indexAfter(seq int64) int {
	if len(m.events) == 0 {
		return 0
	}
	i := seq - m.events[0].Seq + 1
	return int(min(max(i, 0), int64(len(m.events))))
}

func (m *MemoryStore) TxnResult(_ context.Context, txn string) (*connector.Result, *connector.Error, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.txns[txn]
	return o.res, o.err, ok, nil
}

func (m *MemoryStore) SaveTxnResult(_ context.Context, txn string, res *connector.Result, e *connector.Error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.txns[txn] = txnOutcome{res: res, err: e}
	return nil
}

package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/metrics"
)

// streamStore is the connector server's durable side: accepted events go
// into the inbox and acked_seq moves, in one transaction, so that an ack
// always means the event survives a crash. It is a server.BatchStore:
// events that arrive together share one transaction, and so one fsync.
type streamStore struct {
	db      *database.Database
	metrics *metrics.Metrics
}

var _ server.BatchStore = (*streamStore)(nil)

func (s *streamStore) AckedSeq(ctx context.Context, connectorID string) (int64, error) {
	return s.db.Stream.AckedSeq(ctx, connectorID)
}

func (s *streamStore) Accept(ctx context.Context, connectorID string, seq int64, ev *connector.Event) error {
	return s.AcceptBatch(ctx, connectorID, []server.Accepted{{Seq: seq, Event: ev}})
}

func (s *streamStore) AcceptBatch(ctx context.Context, connectorID string, items []server.Accepted) error {
	if len(items) == 0 {
		return nil
	}
	first, last := items[0].Seq, items[len(items)-1].Seq
	// The intake of an event is where its bridge latency starts.
	takenIn := time.Now()
	// Encode before the transaction opens, so it holds its locks only for
	// the writes.
	rows := make([]*database.InboxRow, 0, len(items))
	for i, it := range items {
		// AdvanceFrom only checks the ends; a hole or a repeat in between
		// would be acked without being stored.
		if it.Seq != first+int64(i) {
			return fmt.Errorf("batch of connector %s is not consecutive at seq %d", connectorID, it.Seq)
		}
		if it.Event == nil {
			continue
		}
		data, err := json.Marshal(it.Event)
		if err != nil {
			return fmt.Errorf("encode event %d: %w", it.Seq, err)
		}
		row := &database.InboxRow{ConnectorID: connectorID, Seq: it.Seq, LoginID: it.Event.Login, Kind: it.Event.Kind, Data: data}
		if it.Event.Chat != nil {
			row.ChatID = it.Event.Chat.ID
		}
		rows = append(rows, row)
	}
	err := s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if err := s.db.Inbox.InsertMany(ctx, rows); err != nil {
			return fmt.Errorf("store events %d-%d: %w", first, last, err)
		}
		// From first-1: if acked_seq is anything else, another writer got
		// here first and none of this may commit.
		return s.db.Stream.AdvanceFrom(ctx, connectorID, first-1, last)
	})
	if err == nil {
		for _, r := range rows {
			s.metrics.RemoteTakenIn(connectorID, r.Seq, takenIn)
		}
	}
	return err
}

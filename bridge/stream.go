package bridge

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// streamStore is the connector server's durable side: an accepted event goes
// into the inbox and acked_seq moves, in one transaction, so that an ack
// always means the event survives a crash.
type streamStore struct{ db *database.Database }

func (s *streamStore) AckedSeq(ctx context.Context, connectorID string) (int64, error) {
	return s.db.Stream.AckedSeq(ctx, connectorID)
}

func (s *streamStore) Accept(ctx context.Context, connectorID string, seq int64, ev *connector.Event) error {
	var row *database.InboxRow
	if ev != nil {
		data, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event %d: %w", seq, err)
		}
		row = &database.InboxRow{ConnectorID: connectorID, Seq: seq, LoginID: ev.Login, Kind: ev.Kind, Data: data}
		if ev.Chat != nil {
			row.ChatID = ev.Chat.ID
		}
	}
	return s.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if row != nil {
			if err := s.db.Inbox.Insert(ctx, row); err != nil {
				return fmt.Errorf("store event %d: %w", seq, err)
			}
		}
		return s.db.Stream.Advance(ctx, connectorID, seq)
	})
}

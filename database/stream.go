package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"go.mau.fi/util/dbutil"
)

// StreamQuery reads and writes the connector_stream table.
type StreamQuery struct{ db *dbutil.Database }

// AckedSeq returns the highest seq accepted from a connector, 0 if none.
func (q *StreamQuery) AckedSeq(ctx context.Context, connectorID string) (int64, error) {
	var seq int64
	err := q.db.QueryRow(ctx, "SELECT acked_seq FROM connector_stream WHERE connector_id=$1", connectorID).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

// Advance moves acked_seq to seq. It refuses to move backwards or to skip,
// which would mean two writers for one stream.
func (q *StreamQuery) Advance(ctx context.Context, connectorID string, seq int64) error {
	res, err := q.db.Exec(ctx, `
		INSERT INTO connector_stream (connector_id, acked_seq) VALUES ($1, $2)
		ON CONFLICT (connector_id) DO UPDATE SET acked_seq=excluded.acked_seq
		WHERE connector_stream.acked_seq = excluded.acked_seq - 1`, connectorID, seq)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return fmt.Errorf("advance stream %s to %d: not the next seq", connectorID, seq)
	}
	return nil
}

// AdvanceFrom moves acked_seq from exactly from to to, for a batch of
// to-from events stored in the same transaction. Like Advance it refuses to
// go back or skip: if acked_seq is not from (0 meaning no row yet), someone
// else wrote to this stream and the transaction must not commit.
func (q *StreamQuery) AdvanceFrom(ctx context.Context, connectorID string, from, to int64) error {
	if to <= from || from < 0 {
		return fmt.Errorf("advance stream %s from %d to %d: not forward", connectorID, from, to)
	}
	var res sql.Result
	var err error
	if from == 0 {
		// A connector without a row is at 0; one with a row must be at 0.
		res, err = q.db.Exec(ctx, `
			INSERT INTO connector_stream (connector_id, acked_seq) VALUES ($1, $2)
			ON CONFLICT (connector_id) DO UPDATE SET acked_seq=excluded.acked_seq
			WHERE connector_stream.acked_seq = 0`, connectorID, to)
	} else {
		res, err = q.db.Exec(ctx, `
			UPDATE connector_stream SET acked_seq=$3 WHERE connector_id=$1 AND acked_seq=$2`,
			connectorID, from, to)
	}
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return fmt.Errorf("advance stream %s from %d to %d: acked_seq is not %d", connectorID, from, to, from)
	}
	return nil
}

// InboxQuery reads and writes the inbox table.
type InboxQuery struct{ db *dbutil.Database }

// InboxRow is an accepted connector event waiting to be applied.
type InboxRow struct {
	ConnectorID string
	Seq         int64
	LoginID     string
	ChatID      string
	Kind        string
	Data        []byte
	Attempts    int
}

// Insert stores an accepted event.
func (q *InboxQuery) Insert(ctx context.Context, r *InboxRow) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO inbox (connector_id, seq, login_id, chat_id, kind, data) VALUES ($1, $2, $3, $4, $5, $6)`,
		r.ConnectorID, r.Seq, r.LoginID, r.ChatID, r.Kind, string(r.Data))
	return err
}

// insertChunk bounds the rows of one multi-row INSERT: 6 parameters each
// stays well below SQLite's smallest variable limit (999).
const insertChunk = 100

// InsertMany stores accepted events with as few statements as possible: in
// a transaction on PostgreSQL each statement is a round trip, and for a
// batch of events those, not the commit, would dominate.
func (q *InboxQuery) InsertMany(ctx context.Context, rows []*InboxRow) error {
	for len(rows) > 0 {
		chunk := rows[:min(len(rows), insertChunk)]
		rows = rows[len(chunk):]
		var sb strings.Builder
		sb.WriteString("INSERT INTO inbox (connector_id, seq, login_id, chat_id, kind, data) VALUES ")
		args := make([]any, 0, 6*len(chunk))
		for i, r := range chunk {
			if i > 0 {
				sb.WriteByte(',')
			}
			n := len(args)
			fmt.Fprintf(&sb, "($%d, $%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5, n+6)
			args = append(args, r.ConnectorID, r.Seq, r.LoginID, r.ChatID, r.Kind, string(r.Data))
		}
		if _, err := q.db.Exec(ctx, sb.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

func scanInbox(row dbutil.Scannable) (*InboxRow, error) {
	var r InboxRow
	var data string
	err := row.Scan(&r.ConnectorID, &r.Seq, &r.LoginID, &r.ChatID, &r.Kind, &data, &r.Attempts)
	r.Data = []byte(data)
	return &r, err
}

// Pending lists rows not yet applied with seq > after, in seq order, at most limit.
func (q *InboxQuery) Pending(ctx context.Context, connectorID string, after int64, limit int) ([]*InboxRow, error) {
	return queryMany(ctx, q.db, scanInbox, `
		SELECT connector_id, seq, login_id, chat_id, kind, data, attempts FROM inbox
		WHERE done=false AND connector_id=$1 AND seq>$2 ORDER BY seq LIMIT $3`, connectorID, after, limit)
}

// Connectors lists the connector ids that have rows not yet applied.
func (q *InboxQuery) Connectors(ctx context.Context) ([]string, error) {
	rows, err := q.db.Query(ctx, "SELECT DISTINCT connector_id FROM inbox WHERE done=false")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err = rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// MarkDone marks a row applied; errMsg is set when it was parked instead.
func (q *InboxQuery) MarkDone(ctx context.Context, connectorID string, seq int64, errMsg string) error {
	_, err := q.db.Exec(ctx, "UPDATE inbox SET done=true, error=$3 WHERE connector_id=$1 AND seq=$2", connectorID, seq, errMsg)
	return err
}

// AddAttempt counts a failed attempt to apply a row.
func (q *InboxQuery) AddAttempt(ctx context.Context, connectorID string, seq int64, errMsg string) error {
	_, err := q.db.Exec(ctx, "UPDATE inbox SET attempts=attempts+1, error=$3 WHERE connector_id=$1 AND seq=$2", connectorID, seq, errMsg)
	return err
}

// Prune deletes applied rows, keeping the table small.
func (q *InboxQuery) Prune(ctx context.Context) error {
	_, err := q.db.Exec(ctx, "DELETE FROM inbox WHERE done=true AND error=''")
	return err
}

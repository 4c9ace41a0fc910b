package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/lib/pq"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
)

// StreamQuery reads and writes the connector_stream table. It has no row
// type, only one number per connector, so it holds the database itself.
type StreamQuery struct {
	db *dbutil.Database
	st *stmtCache
	// flushByUpdate is set once PostgreSQL refused the flush's message
	// (a server that does not let this role emit one): Flush falls back
	// to the write on the stream's row.
	flushByUpdate atomic.Bool
	log           zerolog.Logger // set by Open; New leaves it silent
}

const (
	getAckedSeqQuery = `SELECT acked_seq FROM connector_stream WHERE connector_id=$1`
	// The WHERE refuses to move backwards or to skip.
	advanceStreamQuery = `
		INSERT INTO connector_stream (connector_id, acked_seq) VALUES ($1, $2)
		ON CONFLICT (connector_id) DO UPDATE SET acked_seq=excluded.acked_seq
		WHERE connector_stream.acked_seq = excluded.acked_seq - 1`
	// A connector without a row is at 0; one with a row must be at 0.
	advanceStreamFromZeroQuery = `
		INSERT INTO connector_stream (connector_id, acked_seq) VALUES ($1, $2)
		ON CONFLICT (connector_id) DO UPDATE SET acked_seq=excluded.acked_seq
		WHERE connector_stream.acked_seq = 0`
	advanceStreamFromQuery = `UPDATE connector_stream SET acked_seq=$3 WHERE connector_id=$1 AND acked_seq=$2`
	// The flush is a transactional message in the log, which gives its
	// commit a record to wait for and locks no row; the fallback is a
	// write of the stream's row that changes nothing.
	flushMessageQuery = `SELECT pg_logical_emit_message(true, 'dmbridge', '')`
	flushStreamQuery  = `UPDATE connector_stream SET acked_seq=acked_seq WHERE connector_id=$1`
)

// AckedSeq returns the highest seq accepted from a connector, 0 if none.
func (q *StreamQuery) AckedSeq(ctx context.Context, connectorID string) (int64, error) {
	var seq int64
	err := q.db.QueryRow(ctx, getAckedSeqQuery, connectorID).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

// Advance moves acked_seq to seq. It refuses to move backwards or to skip,
// which would mean two writers for one stream.
func (q *StreamQuery) Advance(ctx context.Context, connectorID string, seq int64) error {
	res, err := q.db.Exec(ctx, advanceStreamQuery, connectorID, seq)
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
		res, err = q.db.Exec(ctx, advanceStreamFromZeroQuery, connectorID, to)
	} else {
		res, err = q.st.exec(ctx, advanceStreamFromQuery, connectorID, from, to)
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

// Flush makes what was committed without waiting for the WAL flush
// (InboxQuery.StoreAdvancing) durable, on PostgreSQL: a transaction that
// writes to the log and commits synchronously waits for the log up to its
// own commit record, and the log is written in order, so everything
// committed before it is on disk when it returns. What it writes is a
// logical-decoding message (no table is touched): a write of the stream's
// row would hold that row's lock while it waits for the disk, and the
// connector's next batch, which moves acked_seq, would wait behind it
// (the connector server stores that batch while this one is flushed,
// server.SyncStore). Where PostgreSQL refuses the message it falls back
// to that write. On SQLite nothing commits without its flush and Flush
// does nothing.
func (q *StreamQuery) Flush(ctx context.Context, connectorID string) error {
	if q.db.Dialect != dbutil.Postgres {
		return nil
	}
	if !q.flushByUpdate.Load() {
		_, err := q.st.exec(ctx, flushMessageQuery)
		if !refusesMessage(err) {
			return err
		}
		q.log.Warn().Err(err).Msg("PostgreSQL refused a logical message; flushing the inbox by a write of the connector's row instead")
		q.flushByUpdate.Store(true)
	}
	_, err := q.st.exec(ctx, flushStreamQuery, connectorID)
	return err
}

// refusesMessage reports whether err is the server refusing
// pg_logical_emit_message itself (not granted to this role, or not there),
// which no retry changes. Any other error, a server shutting down or a
// statement cancelled, leaves the message the way to flush.
func refusesMessage(err error) bool {
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) {
		return false
	}
	return pqErr.Code == "42501" || pqErr.Code == "42883" // insufficient_privilege, undefined_function
}

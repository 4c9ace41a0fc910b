package database

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.mau.fi/util/dbutil"
)

// InboxQuery reads and writes the inbox table.
type InboxQuery struct {
	*dbutil.QueryHelper[*InboxRow]
	st *stmtCache
}

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

const (
	getPendingInboxQuery = `
		SELECT connector_id, seq, login_id, chat_id, kind, data, attempts FROM inbox
		WHERE done=false AND connector_id=$1 AND seq>$2 ORDER BY seq LIMIT $3`
	getInboxConnectorsQuery = `SELECT DISTINCT connector_id FROM inbox WHERE done=false`
	insertInboxQuery        = `
		INSERT INTO inbox (connector_id, seq, login_id, chat_id, kind, data) VALUES ($1, $2, $3, $4, $5, $6)`
	markInboxDoneQuery   = `UPDATE inbox SET done=true, error=$3 WHERE connector_id=$1 AND seq=$2`
	addInboxAttemptQuery = `UPDATE inbox SET attempts=attempts+1, error=$3 WHERE connector_id=$1 AND seq=$2`
	pruneInboxQuery      = `DELETE FROM inbox WHERE done=true AND error=''`
)

// massInsertInbox builds the multi-row form of insertInboxQuery; every
// column differs per row.
var massInsertInbox = dbutil.NewMassInsertBuilder[*InboxRow, [0]any](insertInboxQuery, "($%d, $%d, $%d, $%d, $%d, $%d)")

// insertChunk bounds the rows of one multi-row INSERT: 6 parameters each
// stays well below SQLite's smallest variable limit (999).
const insertChunk = 100

// Scan reads an inbox row.
func (r *InboxRow) Scan(row dbutil.Scannable) (*InboxRow, error) {
	var data string
	if err := row.Scan(&r.ConnectorID, &r.Seq, &r.LoginID, &r.ChatID, &r.Kind, &data, &r.Attempts); err != nil {
		return nil, err
	}
	r.Data = []byte(data)
	return r, nil
}

// GetMassInsertValues is the row's values for massInsertInbox. Data goes in
// as text: the column is TEXT, and PostgreSQL refuses bytes for it.
func (r *InboxRow) GetMassInsertValues() [6]any {
	return [6]any{r.ConnectorID, r.Seq, r.LoginID, r.ChatID, r.Kind, string(r.Data)}
}

// Insert stores an accepted event.
func (q *InboxQuery) Insert(ctx context.Context, r *InboxRow) error {
	v := r.GetMassInsertValues()
	return q.Exec(ctx, insertInboxQuery, v[:]...)
}

// InsertMany stores accepted events with as few statements as possible: in
// a transaction on PostgreSQL each statement is a round trip, and for a
// batch of events those, not the commit, would dominate.
func (q *InboxQuery) InsertMany(ctx context.Context, rows []*InboxRow) error {
	if q.GetDB().Dialect == dbutil.SQLite {
		return q.insertKept(ctx, rows)
	}
	for chunk := range slices.Chunk(rows, insertChunk) {
		query, args := massInsertInbox.Build([0]any{}, chunk)
		if err := q.execSized(ctx, len(chunk), query, args...); err != nil {
			return err
		}
	}
	return nil
}

// insertKept is InsertMany on SQLite: statements of a power of two rows,
// at most keptChunk, so that there are few enough texts for each to be kept
// prepared (stmtCache). A statement of any other size was parsed anew for
// every batch, and SQLite took more instructions to parse a hundred rows'
// six placeholders each than to insert them (2% of a message's in make
// bench's 8-chat run). In-process statements cost little, so a batch of 99
// rows going as seven of them (64, 32, 2 and 1) is cheap.
func (q *InboxQuery) insertKept(ctx context.Context, rows []*InboxRow) error {
	args := make([]any, 0, 6*min(len(rows), keptChunk))
	for len(rows) > 0 {
		n := keptChunk
		for n > len(rows) {
			n /= 2
		}
		args = args[:0]
		for _, r := range rows[:n] {
			v := r.GetMassInsertValues()
			args = append(args, v[:]...)
		}
		if _, err := q.st.exec(ctx, keptInsertText(n), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// keptChunk is the most rows of one statement of insertKept (a power of
// two; 384 parameters).
const keptChunk = 64

// keptInsertTexts are the multi-row inserts of 1, 2, 4 … keptChunk rows,
// as massInsertInbox writes them; made once, never changed.
var keptInsertTexts = func() map[int]string {
	texts := make(map[int]string)
	rows := make([]*InboxRow, keptChunk)
	for i := range rows {
		rows[i] = &InboxRow{}
	}
	for n := 1; n <= keptChunk; n *= 2 {
		query, _ := massInsertInbox.Build([0]any{}, rows[:n])
		texts[n] = query
	}
	return texts
}()

func keptInsertText(n int) string { return keptInsertTexts[n] }

// preparedBatch is the largest batch whose multi-row statement is kept
// prepared: each size is a statement of its own, and the few small ones
// are what a message that comes alone uses.
const preparedBatch = 4

func (q *InboxQuery) execSized(ctx context.Context, n int, query string, args ...any) error {
	var err error
	if n <= preparedBatch {
		_, err = q.st.exec(ctx, query, args...)
	} else {
		_, err = q.GetDB().Exec(ctx, query, args...)
	}
	return err
}

// storeAdvancingQuery is the insert of the rows and the move of acked_seq
// from $2 to $3 as one statement (PostgreSQL's data-modifying WITH): the
// rows go in only if acked_seq moved, and the statement is atomic without
// a transaction around it. It commits without waiting for its WAL flush,
// as a lone in-doubt marker does (asyncCommitPG): the caller flushes
// (StreamQuery.Flush) before the connector is told.
const storeAdvancingQuery = `
	WITH adv AS (UPDATE connector_stream SET acked_seq=$3 WHERE connector_id=$1 AND acked_seq=$2 RETURNING 1)
	INSERT INTO inbox (connector_id, seq, login_id, chat_id, kind, data)
	SELECT v.* FROM (VALUES %s) AS v (connector_id, seq, login_id, chat_id, kind, data)
	WHERE EXISTS (SELECT 1 FROM adv) AND ` + asyncCommitPG

// StoreAdvancing is InsertMany followed by Stream.AdvanceFrom as a single
// prepared statement, on PostgreSQL for a small batch (the one of a message
// that comes alone) and a stream past its first event: one round trip (and
// one commit) instead of BEGIN, two statements and COMMIT. A larger batch
// shares those among its events, and its statement would be sent
// unprepared (two round trips and, outside a transaction, two
// transactions). ok is false when it does not apply; the caller then uses
// the two in a transaction.
//
// The rows are visible at once but durable only once the log is flushed:
// the caller must not ack them before StreamQuery.Flush returns. That keeps
// the flush's wait (a millisecond on a quiet server) off a message's way to
// the homeserver, which the reader starts on while the flush runs.
func (q *InboxQuery) StoreAdvancing(ctx context.Context, connectorID string, rows []*InboxRow, from, to int64) (ok bool, err error) {
	if q.GetDB().Dialect != dbutil.Postgres || from <= 0 || to <= from || len(rows) == 0 || len(rows) > preparedBatch {
		return false, nil
	}
	if _, inTxn := q.GetDB().Execable(ctx).(dbutil.Transaction); inTxn {
		return false, nil
	}
	values := make([]string, len(rows))
	args := make([]any, 0, 3+6*len(rows))
	args = append(args, connectorID, from, to)
	for i, r := range rows {
		n := 4 + 6*i
		values[i] = fmt.Sprintf("($%d, CAST($%d AS BIGINT), $%d, $%d, $%d, $%d)", n, n+1, n+2, n+3, n+4, n+5)
		v := r.GetMassInsertValues()
		args = append(args, v[:]...)
	}
	query := fmt.Sprintf(storeAdvancingQuery, strings.Join(values, ", "))
	res, err := q.st.exec(ctx, query, args...)
	if err != nil {
		return true, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return true, err
	} else if n != int64(len(rows)) {
		return true, fmt.Errorf("advance stream %s from %d to %d: acked_seq is not %d", connectorID, from, to, from)
	}
	return true, nil
}

// Pending lists rows not yet applied with seq > after, in seq order, at most limit.
func (q *InboxQuery) Pending(ctx context.Context, connectorID string, after int64, limit int) ([]*InboxRow, error) {
	rows, err := q.st.query(ctx, getPendingInboxQuery, connectorID, after, limit)
	return dbutil.NewRowIterWithError(rows, func(row dbutil.Scannable) (*InboxRow, error) {
		return (&InboxRow{}).Scan(row)
	}, err).AsList()
}

// Connectors lists the connector ids that have rows not yet applied.
func (q *InboxQuery) Connectors(ctx context.Context) ([]string, error) {
	rows, err := q.GetDB().Query(ctx, getInboxConnectorsQuery)
	return dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[string], err).AsList()
}

// MarkDone marks a row applied; errMsg is set when it was parked instead.
func (q *InboxQuery) MarkDone(ctx context.Context, connectorID string, seq int64, errMsg string) error {
	_, err := q.st.exec(ctx, markInboxDoneQuery, connectorID, seq, errMsg)
	return err
}

// AddAttempt counts a failed attempt to apply a row.
func (q *InboxQuery) AddAttempt(ctx context.Context, connectorID string, seq int64, errMsg string) error {
	return q.Exec(ctx, addInboxAttemptQuery, connectorID, seq, errMsg)
}

// Prune deletes applied rows, keeping the table small.
func (q *InboxQuery) Prune(ctx context.Context) error {
	return q.Exec(ctx, pruneInboxQuery)
}

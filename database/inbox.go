package database

import (
	"context"
	"slices"

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
	for chunk := range slices.Chunk(rows, insertChunk) {
		query, args := massInsertInbox.Build([0]any{}, chunk)
		if _, err := q.st.exec(ctx, query, args...); err != nil {
			return err
		}
	}
	return nil
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

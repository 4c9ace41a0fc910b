package database

import (
	"context"
	"database/sql"
	"errors"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// DoublePuppetSyncQuery reads and writes the double_puppet_sync table: where
// each double puppet's /sync stands (dpsync). It holds one string per user,
// so it holds the database itself rather than a row helper.
type DoublePuppetSyncQuery struct{ db *dbutil.Database }

const (
	getDoublePuppetSyncQuery = `SELECT next_batch FROM double_puppet_sync WHERE mxid=$1`
	putDoublePuppetSyncQuery = `
		INSERT INTO double_puppet_sync (mxid, next_batch) VALUES ($1, $2)
		ON CONFLICT (mxid) DO UPDATE SET next_batch=excluded.next_batch`
	deleteDoublePuppetSyncQuery = `DELETE FROM double_puppet_sync WHERE mxid=$1`
)

// Get returns the user's stored position, or "" when there is none.
func (q *DoublePuppetSyncQuery) Get(ctx context.Context, userID id.UserID) (string, error) {
	var next string
	err := q.db.QueryRow(ctx, getDoublePuppetSyncQuery, userID).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return next, err
}

// Put stores the user's position; inside a transaction it commits with the
// events the response brought.
func (q *DoublePuppetSyncQuery) Put(ctx context.Context, userID id.UserID, nextBatch string) error {
	_, err := q.db.Exec(ctx, putDoublePuppetSyncQuery, userID, nextBatch)
	return err
}

// Delete forgets the user's position: their next sync starts from now.
func (q *DoublePuppetSyncQuery) Delete(ctx context.Context, userID id.UserID) error {
	_, err := q.db.Exec(ctx, deleteDoublePuppetSyncQuery, userID)
	return err
}

package database

import (
	"context"

	"go.mau.fi/util/dbutil"
)

// LoginSyncQuery reads and writes the login_sync_pending table: logins seen
// for the first time whose recent chats are still to be made portals. Its
// rows are only a login id, so it holds the database itself.
type LoginSyncQuery struct{ db *dbutil.Database }

const (
	insertLoginSyncQuery = `INSERT INTO login_sync_pending (login_id) VALUES ($1) ON CONFLICT (login_id) DO NOTHING`
	getLoginSyncsQuery   = `
		SELECT s.login_id FROM login_sync_pending s JOIN login l ON l.id = s.login_id
		WHERE l.connector_id=$1 ORDER BY s.login_id`
	deleteLoginSyncQuery = `DELETE FROM login_sync_pending WHERE login_id=$1`
)

// Add records that a new login's recent chats are to be synced.
func (q *LoginSyncQuery) Add(ctx context.Context, loginID string) error {
	_, err := q.db.Exec(ctx, insertLoginSyncQuery, loginID)
	return err
}

// ByConnector lists the logins of a connector whose recent chats are still
// to be synced.
func (q *LoginSyncQuery) ByConnector(ctx context.Context, connectorID string) ([]string, error) {
	rows, err := q.db.Query(ctx, getLoginSyncsQuery, connectorID)
	return dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[string], err).AsList()
}

// Done records that a login's recent chats are portals.
func (q *LoginSyncQuery) Done(ctx context.Context, loginID string) error {
	_, err := q.db.Exec(ctx, deleteLoginSyncQuery, loginID)
	return err
}

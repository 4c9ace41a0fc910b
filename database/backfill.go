package database

import (
	"context"

	"go.mau.fi/util/dbutil"
)

// BackfillQuery reads and writes the backfill_pending table: the new portals
// whose earlier history has not been posted yet.
type BackfillQuery struct {
	db *dbutil.Database
	// c.backfilled caches the portals with nothing to backfill: a row is
	// only ever added with a new portal (PortalQuery.GetOrCreate forgets it).
	c *caches
}

func (q *BackfillQuery) wrote(ctx context.Context, key PortalKey) {
	q.c.wrote(ctx, q.db, func() { q.c.backfilled.forget(key) })
}

func (q *BackfillQuery) add(ctx context.Context, key PortalKey) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	_, err := q.db.Exec(ctx, `
		INSERT INTO backfill_pending (login_id, chat_id) VALUES ($1, $2)
		ON CONFLICT (login_id, chat_id) DO NOTHING`, key.LoginID, key.ChatID)
	return err
}

// Pending reports whether the portal's history is still to be backfilled.
func (q *BackfillQuery) Pending(ctx context.Context, key PortalKey) (bool, error) {
	if _, ok := q.c.backfilled.get(key); ok {
		return false, nil
	}
	gen := q.c.backfilled.generation()
	var n int
	err := q.db.QueryRow(ctx, "SELECT COUNT(*) FROM backfill_pending WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID).Scan(&n)
	if err == nil && n == 0 {
		q.c.backfilled.put(ctx, q.db, gen, key, true)
	}
	return n > 0, err
}

// Done records that the portal's history is in its room (or will not come).
func (q *BackfillQuery) Done(ctx context.Context, key PortalKey) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	_, err := q.db.Exec(ctx, "DELETE FROM backfill_pending WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID)
	return err
}

// AddLoginSync records that a new login's recent chats are to be synced.
func (q *BackfillQuery) AddLoginSync(ctx context.Context, loginID string) error {
	_, err := q.db.Exec(ctx, "INSERT INTO login_sync_pending (login_id) VALUES ($1) ON CONFLICT (login_id) DO NOTHING", loginID)
	return err
}

// LoginSyncs lists the logins of a connector whose recent chats are still
// to be synced.
func (q *BackfillQuery) LoginSyncs(ctx context.Context, connectorID string) ([]string, error) {
	rows, err := q.db.Query(ctx, `
		SELECT s.login_id FROM login_sync_pending s JOIN login l ON l.id = s.login_id
		WHERE l.connector_id=$1 ORDER BY s.login_id`, connectorID)
	return dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[string], err).AsList()
}

// LoginSyncDone records that a login's recent chats are portals.
func (q *BackfillQuery) LoginSyncDone(ctx context.Context, loginID string) error {
	_, err := q.db.Exec(ctx, "DELETE FROM login_sync_pending WHERE login_id=$1", loginID)
	return err
}

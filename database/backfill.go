package database

import (
	"context"

	"go.mau.fi/util/dbutil"
)

// BackfillQuery reads and writes the backfill_pending table: the new portals
// whose earlier history has not been posted yet. Its rows are only a key, so
// it holds the database itself.
type BackfillQuery struct {
	db *dbutil.Database
	// c.backfilled caches the portals with nothing to backfill: a row is
	// only ever added with a new portal (PortalQuery.GetOrCreate forgets it).
	c *caches
}

const (
	countBackfillQuery  = `SELECT COUNT(*) FROM backfill_pending WHERE login_id=$1 AND chat_id=$2`
	insertBackfillQuery = `
		INSERT INTO backfill_pending (login_id, chat_id) VALUES ($1, $2)
		ON CONFLICT (login_id, chat_id) DO NOTHING`
	deleteBackfillQuery = `DELETE FROM backfill_pending WHERE login_id=$1 AND chat_id=$2`
)

func (q *BackfillQuery) wrote(ctx context.Context, key PortalKey) {
	q.c.wrote(ctx, q.db, func() { q.c.backfilled.forget(key) })
}

// add is called by PortalQuery.GetOrCreate, in the transaction that inserts
// the portal.
func (q *BackfillQuery) add(ctx context.Context, key PortalKey) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	_, err := q.db.Exec(ctx, insertBackfillQuery, key.LoginID, key.ChatID)
	return err
}

// Pending reports whether the portal's history is still to be backfilled.
func (q *BackfillQuery) Pending(ctx context.Context, key PortalKey) (bool, error) {
	if _, ok := q.c.backfilled.get(key); ok {
		return false, nil
	}
	gen := q.c.backfilled.generation()
	var n int
	err := q.db.QueryRow(ctx, countBackfillQuery, key.LoginID, key.ChatID).Scan(&n)
	if err == nil && n == 0 {
		q.c.backfilled.put(ctx, q.db, gen, key, true)
	}
	return n > 0, err
}

// Done records that the portal's history is in its room (or will not come).
func (q *BackfillQuery) Done(ctx context.Context, key PortalKey) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	_, err := q.db.Exec(ctx, deleteBackfillQuery, key.LoginID, key.ChatID)
	return err
}

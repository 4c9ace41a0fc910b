package database

import (
	"context"

	"go.mau.fi/util/dbutil"
)

// BackfillQuery reads and writes the backfill_pending table: the new portals
// whose earlier history has not been posted yet.
type BackfillQuery struct{ db *dbutil.Database }

func (q *BackfillQuery) add(ctx context.Context, key PortalKey) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO backfill_pending (login_id, chat_id) VALUES ($1, $2)
		ON CONFLICT (login_id, chat_id) DO NOTHING`, key.LoginID, key.ChatID)
	return err
}

// Pending reports whether the portal's history is still to be backfilled.
func (q *BackfillQuery) Pending(ctx context.Context, key PortalKey) (bool, error) {
	var n int
	err := q.db.QueryRow(ctx, "SELECT COUNT(*) FROM backfill_pending WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID).Scan(&n)
	return n > 0, err
}

// Done records that the portal's history is in its room (or will not come).
func (q *BackfillQuery) Done(ctx context.Context, key PortalKey) error {
	_, err := q.db.Exec(ctx, "DELETE FROM backfill_pending WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID)
	return err
}

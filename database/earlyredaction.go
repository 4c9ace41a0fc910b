package database

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// EarlyRedactionQuery reads and writes the early_redaction table: events the
// user deleted on Matrix before the bridge handled them (portal,
// early_redaction.go). Its rows are only asked about, never read back whole,
// so it holds the database itself.
type EarlyRedactionQuery struct{ db *dbutil.Database }

const (
	addEarlyRedactionQuery = `
		INSERT INTO early_redaction (event_id, room_id, redaction_id, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (event_id) DO NOTHING`
	hasEarlyRedactionQuery   = `SELECT 1 FROM early_redaction WHERE event_id=$1`
	countEarlyRedactionQuery = `SELECT COUNT(*) FROM early_redaction`
	pruneEarlyRedactionQuery = `DELETE FROM early_redaction WHERE created_at < $1`
)

// Add notes that redactionID removed eventID (in roomID) before the bridge
// handled eventID; a second note of the same event changes nothing.
func (q *EarlyRedactionQuery) Add(ctx context.Context, eventID id.EventID, roomID id.RoomID, redactionID id.EventID) error {
	_, err := q.db.Exec(ctx, addEarlyRedactionQuery, eventID, roomID, redactionID, time.Now().UnixMilli())
	return err
}

// Has reports whether eventID was deleted before the bridge handled it.
func (q *EarlyRedactionQuery) Has(ctx context.Context, eventID id.EventID) (bool, error) {
	var one int
	err := q.db.QueryRow(ctx, hasEarlyRedactionQuery, eventID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Count is the number of notes kept.
func (q *EarlyRedactionQuery) Count(ctx context.Context) (int64, error) {
	var n int64
	err := q.db.QueryRow(ctx, countEarlyRedactionQuery).Scan(&n)
	return n, err
}

// Prune forgets notes older than the cutoff.
func (q *EarlyRedactionQuery) Prune(ctx context.Context, before time.Time) error {
	_, err := q.db.Exec(ctx, pruneEarlyRedactionQuery, before.UnixMilli())
	return err
}

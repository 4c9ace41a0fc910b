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
		ON CONFLICT (event_id, room_id) DO NOTHING`
	getEarlyRedactionQuery   = `SELECT redaction_id FROM early_redaction WHERE event_id=$1 AND room_id=$2`
	countEarlyRedactionQuery = `SELECT COUNT(*) FROM early_redaction`
	// A note whose event still has a queued command stays: the command may
	// wait for its connector longer than a day.
	pruneEarlyRedactionQuery = `
		DELETE FROM early_redaction WHERE created_at < $1
		AND NOT EXISTS (SELECT 1 FROM pending_command WHERE pending_command.txn = early_redaction.event_id)`
)

// Add notes that redactionID removed eventID (in roomID) before the bridge
// handled eventID; a second note of the same event changes nothing.
func (q *EarlyRedactionQuery) Add(ctx context.Context, eventID id.EventID, roomID id.RoomID, redactionID id.EventID) error {
	_, err := q.db.Exec(ctx, addEarlyRedactionQuery, eventID, roomID, redactionID, time.Now().UnixMilli())
	return err
}

// Get returns the redaction that removed eventID in roomID before the
// bridge handled it, or "" when there is none. A redaction in another room
// names nothing here.
func (q *EarlyRedactionQuery) Get(ctx context.Context, eventID id.EventID, roomID id.RoomID) (id.EventID, error) {
	var redaction id.EventID
	err := q.db.QueryRow(ctx, getEarlyRedactionQuery, eventID, roomID).Scan(&redaction)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return redaction, err
}

// Count is the number of notes kept.
func (q *EarlyRedactionQuery) Count(ctx context.Context) (int64, error) {
	var n int64
	err := q.db.QueryRow(ctx, countEarlyRedactionQuery).Scan(&n)
	return n, err
}

// Prune forgets notes older than the cutoff, except those whose event still
// has a queued command.
func (q *EarlyRedactionQuery) Prune(ctx context.Context, before time.Time) error {
	_, err := q.db.Exec(ctx, pruneEarlyRedactionQuery, before.UnixMilli())
	return err
}

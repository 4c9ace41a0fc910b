package database

import (
	"context"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// InDoubtQuery reads and writes the in_doubt_send table.
type InDoubtQuery struct{ db *dbutil.Database }

// InDoubtSend is a Matrix send for a remote event that was started and whose
// result is not stored yet.
type InDoubtSend struct {
	TxnID     string
	RoomID    id.RoomID
	PortalKey PortalKey
	RemoteID  string
	Part      int
	EventType string
	StartedAt time.Time
	// EventID is the homeserver's answer, when one came.
	EventID id.EventID
}

const inDoubtColumns = "txn_id, room_id, login_id, chat_id, remote_id, part, event_type, started_at, event_id"

func scanInDoubt(row dbutil.Scannable) (*InDoubtSend, error) {
	var s InDoubtSend
	var started int64
	err := row.Scan(&s.TxnID, &s.RoomID, &s.PortalKey.LoginID, &s.PortalKey.ChatID, &s.RemoteID, &s.Part,
		&s.EventType, &started, &s.EventID)
	s.StartedAt = time.UnixMilli(started)
	return &s, err
}

// Get returns the marker of a transaction id, or nil.
func (q *InDoubtQuery) Get(ctx context.Context, txnID string) (*InDoubtSend, error) {
	return queryOne(ctx, q.db, scanInDoubt, "SELECT "+inDoubtColumns+" FROM in_doubt_send WHERE txn_id=$1", txnID)
}

// Begin writes the marker right before a send; a marker from an earlier
// attempt, already resolved as not landed, gets the new start time.
func (q *InDoubtQuery) Begin(ctx context.Context, s *InDoubtSend) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO `+"in_doubt_send ("+inDoubtColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '')
		ON CONFLICT (txn_id) DO UPDATE SET started_at=excluded.started_at, event_id=''`,
		s.TxnID, s.RoomID, s.PortalKey.LoginID, s.PortalKey.ChatID, s.RemoteID, s.Part, s.EventType, s.StartedAt.UnixMilli())
	return err
}

// BeginFresh marks a send in doubt unless a marker for the transaction id
// exists already, in one statement, and reports whether it did: the first
// try of a send (by far the most common) costs one round trip instead of a
// look-up and an insert. A false answer leaves the existing marker as it is
// for the caller to resolve.
func (q *InDoubtQuery) BeginFresh(ctx context.Context, s *InDoubtSend) (bool, error) {
	res, err := q.db.Exec(ctx, `
		INSERT INTO `+"in_doubt_send ("+inDoubtColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '')
		ON CONFLICT (txn_id) DO NOTHING`,
		s.TxnID, s.RoomID, s.PortalKey.LoginID, s.PortalKey.ChatID, s.RemoteID, s.Part, s.EventType, s.StartedAt.UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// SetEventID records the homeserver's answer for a send whose result is
// stored later, with other parts.
func (q *InDoubtQuery) SetEventID(ctx context.Context, txnID string, eventID id.EventID) error {
	_, err := q.db.Exec(ctx, "UPDATE in_doubt_send SET event_id=$2 WHERE txn_id=$1", txnID, eventID)
	return err
}

// Delete removes markers: their result is stored, or the send is known not
// to have reached the homeserver.
func (q *InDoubtQuery) Delete(ctx context.Context, txnIDs ...string) error {
	for _, txn := range txnIDs {
		if _, err := q.db.Exec(ctx, "DELETE FROM in_doubt_send WHERE txn_id=$1", txn); err != nil {
			return err
		}
	}
	return nil
}

// Prune removes markers older than before, left by events that were parked
// or skipped; a retry of those no longer comes.
func (q *InDoubtQuery) Prune(ctx context.Context, before time.Time) error {
	_, err := q.db.Exec(ctx, "DELETE FROM in_doubt_send WHERE started_at < $1", before.UnixMilli())
	return err
}

package database

import (
	"context"
	"time"

	"github.com/lib/pq"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// InDoubtQuery reads and writes the in_doubt_send table.
type InDoubtQuery struct {
	*dbutil.QueryHelper[*InDoubtSend]
	st *stmtCache
}

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

const (
	getInDoubtQuery = `
		SELECT txn_id, room_id, login_id, chat_id, remote_id, part, event_type, started_at, event_id
		FROM in_doubt_send WHERE txn_id=$1`
	// A marker from an earlier attempt, already resolved as not landed,
	// gets the new start time.
	beginInDoubtQuery = `
		INSERT INTO in_doubt_send (txn_id, room_id, login_id, chat_id, remote_id, part, event_type, started_at, event_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '')
		ON CONFLICT (txn_id) DO UPDATE SET started_at=excluded.started_at, event_id=''`
	beginFreshInDoubtQuery = `
		INSERT INTO in_doubt_send (txn_id, room_id, login_id, chat_id, remote_id, part, event_type, started_at, event_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '')
		ON CONFLICT (txn_id) DO NOTHING`
	// beginFreshUnlessBridgedQuery is beginFreshInDoubtQuery that also
	// refuses when part 0 of the message is already mapped.
	beginFreshUnlessBridgedInDoubtQuery = insertInDoubtSelect + ` WHERE ` + inDoubtNotBridged + inDoubtIfAbsent
	// The same two, for PostgreSQL outside a transaction: the statement's
	// own transaction commits without waiting for its WAL flush (see
	// insertedOne). set_config in the WHERE clause runs in the statement,
	// so no round trip is added.
	beginFreshInDoubtAsyncPGQuery              = insertInDoubtSelect + ` WHERE ` + asyncCommitPG + inDoubtIfAbsent
	beginFreshUnlessBridgedInDoubtAsyncPGQuery = insertInDoubtSelect + ` WHERE ` + asyncCommitPG + ` AND ` + inDoubtNotBridged + inDoubtIfAbsent

	insertInDoubtSelect = `
		INSERT INTO in_doubt_send (txn_id, room_id, login_id, chat_id, remote_id, part, event_type, started_at, event_id)
		SELECT $1, $2, $3, $4, $5, CAST($6 AS INTEGER), $7, CAST($8 AS BIGINT), ''`
	inDoubtNotBridged      = `NOT EXISTS (SELECT 1 FROM message WHERE login_id=$3 AND chat_id=$4 AND remote_id=$5 AND part=0)`
	asyncCommitPG          = `set_config('synchronous_commit', 'off', true) IS NOT NULL`
	inDoubtIfAbsent        = ` ON CONFLICT (txn_id) DO NOTHING`
	setInDoubtEventIDQuery = `UPDATE in_doubt_send SET event_id=$2 WHERE txn_id=$1`
	deleteInDoubtQuery     = `DELETE FROM in_doubt_send WHERE txn_id=$1`
	deleteInDoubtManyQuery = `DELETE FROM in_doubt_send WHERE txn_id = ANY($1::text[])`
	pruneInDoubtQuery      = `DELETE FROM in_doubt_send WHERE started_at < $1`
)

// Scan reads an in_doubt_send row.
func (s *InDoubtSend) Scan(row dbutil.Scannable) (*InDoubtSend, error) {
	var started int64
	err := row.Scan(&s.TxnID, &s.RoomID, &s.PortalKey.LoginID, &s.PortalKey.ChatID, &s.RemoteID, &s.Part,
		&s.EventType, &started, &s.EventID)
	if err != nil {
		return nil, err
	}
	s.StartedAt = time.UnixMilli(started)
	return s, nil
}

// sqlVariables are the values of the begin queries.
func (s *InDoubtSend) sqlVariables() []any {
	return []any{s.TxnID, s.RoomID, s.PortalKey.LoginID, s.PortalKey.ChatID, s.RemoteID, s.Part, s.EventType, s.StartedAt.UnixMilli()}
}

// Get returns the marker of a transaction id, or nil.
func (q *InDoubtQuery) Get(ctx context.Context, txnID string) (*InDoubtSend, error) {
	return q.QueryOne(ctx, getInDoubtQuery, txnID)
}

// Begin writes the marker right before a send; a marker from an earlier
// attempt, already resolved as not landed, gets the new start time.
func (q *InDoubtQuery) Begin(ctx context.Context, s *InDoubtSend) error {
	return q.Exec(ctx, beginInDoubtQuery, s.sqlVariables()...)
}

// BeginFresh marks a send in doubt unless a marker for the transaction id
// exists already, in one statement, and reports whether it did: the first
// try of a send (by far the most common) costs one round trip instead of a
// look-up and an insert. A false answer leaves the existing marker as it is
// for the caller to resolve.
func (q *InDoubtQuery) BeginFresh(ctx context.Context, s *InDoubtSend) (bool, error) {
	return q.insertedOne(ctx, beginFreshInDoubtQuery, beginFreshInDoubtAsyncPGQuery, s)
}

// BeginFreshUnlessBridged is BeginFresh for the first part of a remote
// message, with the check that the message is not bridged yet folded into
// the same statement: the marker goes in only if neither a marker for the
// transaction id nor a stored mapping of the message's part 0 exists. A
// false answer means one of the two does; the caller looks which.
func (q *InDoubtQuery) BeginFreshUnlessBridged(ctx context.Context, s *InDoubtSend) (bool, error) {
	return q.insertedOne(ctx, beginFreshUnlessBridgedInDoubtQuery, beginFreshUnlessBridgedInDoubtAsyncPGQuery, s)
}

// insertedOne runs a conditional insert of s's marker (prepared) and
// reports whether it inserted the row.
//
// On PostgreSQL a marker written on its own (no transaction around it: a
// lone message's, the usual case when the chat is quiet) commits without
// waiting for the WAL flush (asyncPG): synchronous_commit off for that
// transaction alone. That flush was half of the lone message's wait (a
// single-row insert paced at 50/s: 1.22-1.34 ms synchronous, 0.83-0.86 ms
// so, pgbench on this machine). The marker is there for a bridge that dies
// mid-send, and a committed marker survives that whatever the setting:
// the server has it, visible at once, and writes it out within three
// wal_writer_delay (600 ms by default); any later synchronous commit, such
// as the result's that deletes it, flushes it too. Only the PostgreSQL
// server crashing in that window loses it, and then the event is applied
// again (its inbox row was durable before the connector was acked, or the
// connector sends it again: inbox.AcceptBatch) and sent again under
// the same transaction id, which the homeserver answers with the first
// event once the first request has finished, as it has unless this process
// died too. In a transaction the setting would hold for all of it, so the
// statement is the synchronous one there, unless the transaction writes
// markers and nothing else (MarkersOnly), for which the same holds.
func (q *InDoubtQuery) insertedOne(ctx context.Context, query, asyncPG string, s *InDoubtSend) (bool, error) {
	if q.GetDB().Dialect == dbutil.Postgres {
		if _, inTxn := q.GetDB().Execable(ctx).(dbutil.Transaction); !inTxn || markersOnly(ctx) {
			query = asyncPG
		}
	}
	res, err := q.st.exec(ctx, query, s.sqlVariables()...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

type markersOnlyKey struct{}

// MarkersOnly returns ctx for a transaction that writes in-doubt markers
// (BeginFresh, BeginFreshUnlessBridged) and nothing else: on PostgreSQL
// the first of them makes the transaction commit without waiting for the
// WAL flush, as a marker written alone does (see insertedOne). Another
// write in that transaction would lose its flush wait too, so it must
// not be given any.
func MarkersOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, markersOnlyKey{}, true)
}

func markersOnly(ctx context.Context) bool {
	only, _ := ctx.Value(markersOnlyKey{}).(bool)
	return only
}

// SetEventID records the homeserver's answer for a send whose result is
// stored later, with other parts.
func (q *InDoubtQuery) SetEventID(ctx context.Context, txnID string, eventID id.EventID) error {
	_, err := q.st.exec(ctx, setInDoubtEventIDQuery, txnID, eventID)
	return err
}

// Delete removes markers: their result is stored, or the send is known not
// to have reached the homeserver. On PostgreSQL several go in one
// statement (a round trip, and outside a transaction a commit, each).
func (q *InDoubtQuery) Delete(ctx context.Context, txnIDs ...string) error {
	if len(txnIDs) > 1 && q.GetDB().Dialect == dbutil.Postgres {
		_, err := q.st.exec(ctx, deleteInDoubtManyQuery, pq.Array(txnIDs))
		return err
	}
	for _, txn := range txnIDs {
		if _, err := q.st.exec(ctx, deleteInDoubtQuery, txn); err != nil {
			return err
		}
	}
	return nil
}

// Prune removes markers older than before, left by events that were parked
// or skipped; a retry of those no longer comes.
func (q *InDoubtQuery) Prune(ctx context.Context, before time.Time) error {
	return q.Exec(ctx, pruneInDoubtQuery, before.UnixMilli())
}

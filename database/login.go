package database

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// LoginQuery reads and writes the login table. Get is served from cache
// (see rowCache). The query helper is not embedded: its Exec would let a
// write skip wrote and leave a stale login in the cache.
type LoginQuery struct {
	qh *dbutil.QueryHelper[*Login]
	c  *caches
}

// Login is a network account held by a connector and owned by a Matrix user.
type Login struct {
	ID          string
	ConnectorID string
	MatrixUser  id.UserID
	Name        string
	State       string
	// StateSince is when the login entered State; zero when unknown.
	StateSince time.Time
	// LastEvent is when a connector event of the login was last applied
	// (as last stored); zero when never.
	LastEvent time.Time
	// Alerted is the trouble its user was last told about ("" for none).
	Alerted string
	// EndedSeq is the seq of its connector's stream at which the login was
	// last logged out (bad_credentials); 0 when never. Its events up to
	// there come from before the logout that ended its portals.
	EndedSeq int64
}

const (
	getLoginBaseQuery = `SELECT id, connector_id, matrix_user, name, state, state_since, last_event_at, alerted, ended_seq FROM login`
	getLoginQuery     = getLoginBaseQuery + ` WHERE id=$1`
	getLoginsByUser   = getLoginBaseQuery + ` WHERE matrix_user=$1 ORDER BY id`
	getAllLogins      = getLoginBaseQuery + ` ORDER BY id`
	// The check that a login keeps its owner and connector is part of the
	// one statement, so two hellos racing cannot slip past it. A hello
	// that says no state or no name ('') keeps the stored one (and the
	// state's start).
	upsertLoginQuery = `
		INSERT INTO login (id, connector_id, matrix_user, name, state, updated_at, state_since, ended_seq) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
		ON CONFLICT (id) DO UPDATE SET
			name=CASE WHEN excluded.name='' THEN login.name ELSE excluded.name END, updated_at=excluded.updated_at,
			state=CASE WHEN excluded.state='' THEN login.state ELSE excluded.state END,
			state_since=CASE WHEN excluded.state='' OR login.state=excluded.state THEN login.state_since ELSE excluded.state_since END,
			ended_seq=CASE WHEN excluded.ended_seq>login.ended_seq THEN excluded.ended_seq ELSE login.ended_seq END
		WHERE login.matrix_user=excluded.matrix_user AND login.connector_id=excluded.connector_id`
	setLoginStateQuery = `UPDATE login SET state=$2, updated_at=$3,
		state_since=CASE WHEN state=$2 THEN state_since ELSE $3 END WHERE id=$1`
	setLoginStateSinceQuery = `UPDATE login SET state=$2, state_since=$3, updated_at=$4 WHERE id=$1`
	setLoginLastEventQuery  = `UPDATE login SET last_event_at=$2 WHERE id=$1 AND last_event_at<$2`
	setLoginAlertedQuery    = `UPDATE login SET alerted=$2 WHERE id=$1`
	setLoginEndedQuery      = `UPDATE login SET ended_seq=$2 WHERE id=$1 AND ended_seq<$2`
	deleteLoginQuery        = `DELETE FROM login WHERE id=$1`
	// Users with cleaned rooms count too: their login may be gone while
	// stale m.direct entries remain.
	getDirectUsersQuery = `SELECT matrix_user FROM login UNION SELECT matrix_user FROM cleaned_room`
	getLoginOwnersQuery = `SELECT DISTINCT matrix_user FROM login`
	hasLoginOwnerQuery  = `SELECT 1 FROM login WHERE matrix_user=$1 LIMIT 1`
)

// Scan reads a login row.
func (l *Login) Scan(row dbutil.Scannable) (*Login, error) {
	var since, last int64
	err := row.Scan(&l.ID, &l.ConnectorID, &l.MatrixUser, &l.Name, &l.State, &since, &last, &l.Alerted, &l.EndedSeq)
	if err != nil {
		return nil, err
	}
	l.StateSince, l.LastEvent = unixMilli(since), unixMilli(last)
	return l, nil
}

func unixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// wrote forgets the cached login around a write to it; deleting a login
// deletes its portals too.
func (q *LoginQuery) wrote(ctx context.Context, loginID string, cascade bool) {
	q.c.wrote(ctx, q.qh.GetDB(), func() {
		q.c.logins.forget(loginID)
		if cascade {
			q.c.portals.forgetAll()
			q.c.backfilled.forgetAll()
		}
	})
}

// Upsert stores a login as the connector announced it. A login keeps its
// Matrix owner and its connector for good: announcing an existing login for
// another user, or from another connector, changes nothing and returns
// false. Moving it would pour the new owner's traffic into the old owner's
// rooms, or let any holder of the shared token lock the rightful connector
// out of its own login. An empty State or Name keeps the stored one: a
// hello need not say them (the protocol makes both optional), and saying
// nothing is not news that the login is in no state or has no name. state_since moves only when the state
// differs from the stored one; EndedSeq only forward.
func (q *LoginQuery) Upsert(ctx context.Context, l *Login) (stored bool, err error) {
	q.wrote(ctx, l.ID, false)
	defer q.wrote(ctx, l.ID, false)
	res, err := q.qh.GetDB().Exec(ctx, upsertLoginQuery,
		l.ID, l.ConnectorID, l.MatrixUser, l.Name, l.State, time.Now().UnixMilli(), l.EndedSeq)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// SetState records a login state change; state_since moves only when the
// state differs from the stored one.
func (q *LoginQuery) SetState(ctx context.Context, loginID, state string) error {
	q.wrote(ctx, loginID, false)
	defer q.wrote(ctx, loginID, false)
	return q.qh.Exec(ctx, setLoginStateQuery, loginID, state, time.Now().UnixMilli())
}

// SetStateSince records a state the bridge concluded itself (not one the
// connector reported) together with when it began, so that it outlives the
// process that saw it begin.
func (q *LoginQuery) SetStateSince(ctx context.Context, loginID, state string, since time.Time) error {
	q.wrote(ctx, loginID, false)
	defer q.wrote(ctx, loginID, false)
	return q.qh.Exec(ctx, setLoginStateSinceQuery, loginID, state, since.UnixMilli(), time.Now().UnixMilli())
}

// SetLastEvent records when an event of the login was last applied.
func (q *LoginQuery) SetLastEvent(ctx context.Context, loginID string, at time.Time) error {
	q.wrote(ctx, loginID, false)
	defer q.wrote(ctx, loginID, false)
	return q.qh.Exec(ctx, setLoginLastEventQuery, loginID, at.UnixMilli())
}

// SetAlerted records the trouble the login's user was last told about.
func (q *LoginQuery) SetAlerted(ctx context.Context, loginID, alerted string) error {
	q.wrote(ctx, loginID, false)
	defer q.wrote(ctx, loginID, false)
	return q.qh.Exec(ctx, setLoginAlertedQuery, loginID, alerted)
}

// SetEnded records that the login was logged out at seq of its
// connector's stream; it never moves back.
func (q *LoginQuery) SetEnded(ctx context.Context, loginID string, seq int64) error {
	q.wrote(ctx, loginID, false)
	defer q.wrote(ctx, loginID, false)
	return q.qh.Exec(ctx, setLoginEndedQuery, loginID, seq)
}

// Get returns a login, or nil.
func (q *LoginQuery) Get(ctx context.Context, loginID string) (*Login, error) {
	if l, ok := q.c.logins.get(loginID); ok {
		return &l, nil
	}
	gen := q.c.logins.generation()
	l, err := q.qh.QueryOne(ctx, getLoginQuery, loginID)
	if err == nil && l != nil {
		q.c.logins.put(ctx, q.qh.GetDB(), gen, loginID, *l)
	}
	return l, err
}

// ByUser lists the logins a Matrix user owns.
func (q *LoginQuery) ByUser(ctx context.Context, userID id.UserID) ([]*Login, error) {
	return q.qh.QueryMany(ctx, getLoginsByUser, userID)
}

// All lists every login.
func (q *LoginQuery) All(ctx context.Context) ([]*Login, error) {
	return q.qh.QueryMany(ctx, getAllLogins)
}

// Delete removes a login, its messages and, by cascade, its portals. The
// messages go by a statement of their own: on PostgreSQL their mapping has
// no foreign key to the portal (upgrades/15-message-no-fkey.sql).
func (q *LoginQuery) Delete(ctx context.Context, loginID string) error {
	q.wrote(ctx, loginID, true)
	defer q.wrote(ctx, loginID, true)
	return deleteWithMessages(ctx, q.qh.GetDB(), deleteLoginMessagesQuery, deleteLoginQuery, loginID)
}

// Owners lists the Matrix users who own a login.
func (q *LoginQuery) Owners(ctx context.Context) ([]id.UserID, error) {
	rows, err := q.qh.GetDB().Query(ctx, getLoginOwnersQuery)
	return dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[id.UserID], err).AsList()
}

// HasOwner reports whether the user owns a login.
func (q *LoginQuery) HasOwner(ctx context.Context, userID id.UserID) (bool, error) {
	var one int
	err := q.qh.GetDB().QueryRow(ctx, hasLoginOwnerQuery, userID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// DirectUsers lists the Matrix users whose m.direct the bridge has a stake
// in: owners of logins, and users with rooms the bridge cleaned up.
func (q *LoginQuery) DirectUsers(ctx context.Context) ([]id.UserID, error) {
	rows, err := q.qh.GetDB().Query(ctx, getDirectUsersQuery)
	return dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[id.UserID], err).AsList()
}

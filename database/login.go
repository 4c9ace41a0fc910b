package database

import (
	"context"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// LoginQuery reads and writes the login table.
type LoginQuery struct{ db *dbutil.Database }

// Login is a network account held by a connector and owned by a Matrix user.
type Login struct {
	ID          string
	ConnectorID string
	MatrixUser  id.UserID
	Name        string
	State       string
}

const loginColumns = "id, connector_id, matrix_user, name, state"

func scanLogin(row dbutil.Scannable) (*Login, error) {
	var l Login
	err := row.Scan(&l.ID, &l.ConnectorID, &l.MatrixUser, &l.Name, &l.State)
	return &l, err
}

// Upsert stores a login as the connector announced it. A login keeps its
// Matrix owner and its connector for good: announcing an existing login for
// another user, or from another connector, changes nothing and returns
// false. Moving it would pour the new owner's traffic into the old owner's
// rooms, or let any holder of the shared token lock the rightful connector
// out of its own login. The check is part of the one statement, so two
// hellos racing cannot slip past it.
func (q *LoginQuery) Upsert(ctx context.Context, l *Login) (stored bool, err error) {
	res, err := q.db.Exec(ctx, `
		INSERT INTO login (id, connector_id, matrix_user, name, state, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET
			name=excluded.name, state=excluded.state, updated_at=excluded.updated_at
		WHERE login.matrix_user=excluded.matrix_user AND login.connector_id=excluded.connector_id`,
		l.ID, l.ConnectorID, l.MatrixUser, l.Name, l.State, time.Now().UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// SetState records a login state change.
func (q *LoginQuery) SetState(ctx context.Context, loginID, state string) error {
	_, err := q.db.Exec(ctx, "UPDATE login SET state=$2, updated_at=$3 WHERE id=$1", loginID, state, time.Now().UnixMilli())
	return err
}

// Get returns a login, or nil.
func (q *LoginQuery) Get(ctx context.Context, loginID string) (*Login, error) {
	return queryOne(ctx, q.db, scanLogin, "SELECT "+loginColumns+" FROM login WHERE id=$1", loginID)
}

// ByUser lists the logins a Matrix user owns.
func (q *LoginQuery) ByUser(ctx context.Context, userID id.UserID) ([]*Login, error) {
	return queryMany(ctx, q.db, scanLogin, "SELECT "+loginColumns+" FROM login WHERE matrix_user=$1 ORDER BY id", userID)
}

// All lists every login.
func (q *LoginQuery) All(ctx context.Context) ([]*Login, error) {
	return queryMany(ctx, q.db, scanLogin, "SELECT "+loginColumns+" FROM login ORDER BY id")
}

// Delete removes a login and, by cascade, its portals and their messages.
func (q *LoginQuery) Delete(ctx context.Context, loginID string) error {
	_, err := q.db.Exec(ctx, "DELETE FROM login WHERE id=$1", loginID)
	return err
}

package database

import (
	"context"
	"database/sql"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// UserQuery reads and writes the matrix_user table.
type UserQuery struct{ db *dbutil.Database }

// User is a Matrix user the bridge serves.
type User struct {
	MXID           id.UserID
	ManagementRoom id.RoomID
	DoublePuppet   bool
}

func scanUser(row dbutil.Scannable) (*User, error) {
	var u User
	var room sql.NullString
	err := row.Scan(&u.MXID, &room, &u.DoublePuppet)
	u.ManagementRoom = id.RoomID(room.String)
	return &u, err
}

// Get returns a user, or nil.
func (q *UserQuery) Get(ctx context.Context, userID id.UserID) (*User, error) {
	return queryOne(ctx, q.db, scanUser, "SELECT mxid, management_room, double_puppet FROM matrix_user WHERE mxid=$1", userID)
}

// SetManagementRoom records the user's room with the bot.
func (q *UserQuery) SetManagementRoom(ctx context.Context, userID id.UserID, roomID id.RoomID) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO matrix_user (mxid, management_room) VALUES ($1, $2)
		ON CONFLICT (mxid) DO UPDATE SET management_room=excluded.management_room`, userID, dbutil.StrPtr(roomID))
	return err
}

// SetDoublePuppet records whether double puppeting works for the user.
func (q *UserQuery) SetDoublePuppet(ctx context.Context, userID id.UserID, ok bool) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO matrix_user (mxid, double_puppet) VALUES ($1, $2)
		ON CONFLICT (mxid) DO UPDATE SET double_puppet=excluded.double_puppet`, userID, ok)
	return err
}

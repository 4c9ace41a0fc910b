package database

import (
	"context"
	"database/sql"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// UserQuery reads and writes the matrix_user table.
type UserQuery struct {
	*dbutil.QueryHelper[*User]
}

// User is a Matrix user the bridge serves.
type User struct {
	MXID           id.UserID
	ManagementRoom id.RoomID
	DoublePuppet   bool
}

const (
	getUserQuery               = `SELECT mxid, management_room, double_puppet FROM matrix_user WHERE mxid=$1`
	setUserManagementRoomQuery = `
		INSERT INTO matrix_user (mxid, management_room) VALUES ($1, $2)
		ON CONFLICT (mxid) DO UPDATE SET management_room=excluded.management_room`
	clearManagementRoomQuery = `UPDATE matrix_user SET management_room=NULL WHERE management_room=$1`
	setUserDoublePuppetQuery = `
		INSERT INTO matrix_user (mxid, double_puppet) VALUES ($1, $2)
		ON CONFLICT (mxid) DO UPDATE SET double_puppet=excluded.double_puppet`
)

// Scan reads a matrix_user row.
func (u *User) Scan(row dbutil.Scannable) (*User, error) {
	var room sql.NullString
	if err := row.Scan(&u.MXID, &room, &u.DoublePuppet); err != nil {
		return nil, err
	}
	u.ManagementRoom = id.RoomID(room.String)
	return u, nil
}

// Get returns a user, or nil.
func (q *UserQuery) Get(ctx context.Context, userID id.UserID) (*User, error) {
	return q.QueryOne(ctx, getUserQuery, userID)
}

// SetManagementRoom records the user's room with the bot.
func (q *UserQuery) SetManagementRoom(ctx context.Context, userID id.UserID, roomID id.RoomID) error {
	return q.Exec(ctx, setUserManagementRoomQuery, userID, dbutil.StrPtr(roomID))
}

// ClearManagementRoom forgets roomID as the management room of every user
// who has it. The bot left the room (or was kicked or banned, by anyone):
// the login alerts of whoever had it there would fail there for good.
func (q *UserQuery) ClearManagementRoom(ctx context.Context, roomID id.RoomID) error {
	return q.Exec(ctx, clearManagementRoomQuery, roomID)
}

// SetDoublePuppet records whether double puppeting works for the user.
func (q *UserQuery) SetDoublePuppet(ctx context.Context, userID id.UserID, ok bool) error {
	return q.Exec(ctx, setUserDoublePuppetQuery, userID, ok)
}

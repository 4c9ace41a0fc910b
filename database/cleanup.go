package database

import (
	"context"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// CleanedRoom is a room the bridge stopped bridging for a user. It is kept so
// that the m.direct repair can tell the bridge's stale entries from the
// user's own, and so that a cleanup interrupted by a crash can be finished.
type CleanedRoom struct {
	MatrixUser id.UserID
	RoomID     id.RoomID
	GhostMXID  id.UserID
	CleanedAt  time.Time
}

func scanCleanedRoom(row dbutil.Scannable) (*CleanedRoom, error) {
	var c CleanedRoom
	var cleaned int64
	err := row.Scan(&c.MatrixUser, &c.RoomID, &c.GhostMXID, &cleaned)
	c.CleanedAt = time.UnixMilli(cleaned)
	return &c, err
}

// Get returns the cleanup record of a user's room, or nil.
func (q *CleanedRoomQuery) Get(ctx context.Context, userID id.UserID, roomID id.RoomID) (*CleanedRoom, error) {
	return queryOne(ctx, q.db, scanCleanedRoom,
		"SELECT matrix_user, room_id, ghost_mxid, cleaned_at FROM cleaned_room WHERE matrix_user=$1 AND room_id=$2", userID, roomID)
}

// Delete forgets a cleanup record: the room became a portal again, and the
// repair must not remove it from m.direct.
func (q *CleanedRoomQuery) Delete(ctx context.Context, userID id.UserID, roomID id.RoomID) error {
	_, err := q.db.Exec(ctx, "DELETE FROM cleaned_room WHERE matrix_user=$1 AND room_id=$2", userID, roomID)
	return err
}

// DirectUsers lists the Matrix users whose m.direct the bridge has a stake
// in: owners of logins, and users with rooms the bridge cleaned up (their
// login may be gone while stale entries remain).
func (q *LoginQuery) DirectUsers(ctx context.Context) ([]id.UserID, error) {
	rows, err := q.db.Query(ctx, "SELECT matrix_user FROM login UNION SELECT matrix_user FROM cleaned_room")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []id.UserID
	for rows.Next() {
		var user id.UserID
		if err = rows.Scan(&user); err != nil {
			return nil, err
		}
		out = append(out, user)
	}
	return out, rows.Err()
}

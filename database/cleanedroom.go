package database

import (
	"context"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// CleanedRoomQuery reads and writes the cleaned_room table.
type CleanedRoomQuery struct {
	*dbutil.QueryHelper[*CleanedRoom]
}

// CleanedRoom is a room the bridge stopped bridging for a user. It is kept so
// that the m.direct repair can tell the bridge's stale entries from the
// user's own, and so that a cleanup interrupted by a crash can be finished.
type CleanedRoom struct {
	MatrixUser id.UserID
	RoomID     id.RoomID
	GhostMXID  id.UserID
	CleanedAt  time.Time
}

const (
	getCleanedRoomQuery    = `SELECT matrix_user, room_id, ghost_mxid, cleaned_at FROM cleaned_room WHERE matrix_user=$1 AND room_id=$2`
	getCleanedRoomIDsQuery = `SELECT room_id FROM cleaned_room WHERE matrix_user=$1`
	insertCleanedRoomQuery = `
		INSERT INTO cleaned_room (matrix_user, room_id, ghost_mxid, cleaned_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (matrix_user, room_id) DO NOTHING`
	deleteCleanedRoomQuery = `DELETE FROM cleaned_room WHERE matrix_user=$1 AND room_id=$2`
)

// Scan reads a cleaned_room row.
func (c *CleanedRoom) Scan(row dbutil.Scannable) (*CleanedRoom, error) {
	var cleaned int64
	if err := row.Scan(&c.MatrixUser, &c.RoomID, &c.GhostMXID, &cleaned); err != nil {
		return nil, err
	}
	c.CleanedAt = time.UnixMilli(cleaned)
	return c, nil
}

// Add records that the bridge cleaned up a room of the user's.
func (q *CleanedRoomQuery) Add(ctx context.Context, userID id.UserID, roomID id.RoomID, ghost id.UserID) error {
	return q.Exec(ctx, insertCleanedRoomQuery, userID, roomID, ghost, time.Now().UnixMilli())
}

// Get returns the cleanup record of a user's room, or nil.
func (q *CleanedRoomQuery) Get(ctx context.Context, userID id.UserID, roomID id.RoomID) (*CleanedRoom, error) {
	return q.QueryOne(ctx, getCleanedRoomQuery, userID, roomID)
}

// ByUser returns the rooms the bridge cleaned up for the user.
func (q *CleanedRoomQuery) ByUser(ctx context.Context, userID id.UserID) (map[id.RoomID]bool, error) {
	rows, err := q.GetDB().Query(ctx, getCleanedRoomIDsQuery, userID)
	out := make(map[id.RoomID]bool)
	err = dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[id.RoomID], err).Iter(func(room id.RoomID) (bool, error) {
		out[room] = true
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete forgets a cleanup record: the room became a portal again, and the
// repair must not remove it from m.direct.
func (q *CleanedRoomQuery) Delete(ctx context.Context, userID id.UserID, roomID id.RoomID) error {
	return q.Exec(ctx, deleteCleanedRoomQuery, userID, roomID)
}

package database

import (
	"context"
	"database/sql"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// PortalQuery reads and writes the portal table. Get is served from cache
// (see rowCache); every write here forgets the portal it touches.
type PortalQuery struct {
	db *dbutil.Database
	c  *caches
}

// wrote forgets the cached portal (and whether it has history to backfill:
// a new portal starts with some) around a write to it.
func (q *PortalQuery) wrote(ctx context.Context, key PortalKey) {
	q.c.wrote(ctx, q.db, func() {
		q.c.portals.forget(key)
		q.c.backfilled.forget(key)
	})
}

// PortalKey names one chat of one login.
type PortalKey struct {
	LoginID string
	ChatID  string
}

// Portal is the Matrix room of one chat. Each creation step has its own flag
// so that creation resumes where it stopped.
type Portal struct {
	PortalKey
	ContactID     string
	RoomID        id.RoomID
	CreateStarted bool
	UserJoined    bool
	InDirect      bool
	CreatedAt     time.Time
}

const portalColumns = "login_id, chat_id, contact_id, room_id, create_started, user_joined, in_direct, created_at"

func scanPortal(row dbutil.Scannable) (*Portal, error) {
	var p Portal
	var room sql.NullString
	var created int64
	err := row.Scan(&p.LoginID, &p.ChatID, &p.ContactID, &room, &p.CreateStarted, &p.UserJoined, &p.InDirect, &created)
	p.RoomID = id.RoomID(room.String)
	p.CreatedAt = time.UnixMilli(created)
	return &p, err
}

// GetOrCreate returns the portal row for key, inserting it (without a room)
// if it does not exist. The unique key makes concurrent callers agree.
func (q *PortalQuery) GetOrCreate(ctx context.Context, key PortalKey, contactID string) (*Portal, error) {
	// Every message of a chat comes here; the insert is only for its first.
	if p, err := q.Get(ctx, key); err != nil || p != nil {
		return p, err
	}
	// A new portal starts with its history to backfill, in the same
	// transaction, so that no crash leaves a portal that never gets it.
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	err := q.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		res, err := q.db.Exec(ctx, `
			INSERT INTO portal (login_id, chat_id, contact_id, created_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (login_id, chat_id) DO NOTHING`, key.LoginID, key.ChatID, contactID, time.Now().UnixMilli())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		return (&BackfillQuery{db: q.db, c: q.c}).add(ctx, key)
	})
	if err != nil {
		return nil, err
	}
	return q.Get(ctx, key)
}

// Get returns a portal by key, or nil.
func (q *PortalQuery) Get(ctx context.Context, key PortalKey) (*Portal, error) {
	if p, ok := q.c.portals.get(key); ok {
		return &p, nil // a copy: callers fill in fields as they go
	}
	gen := q.c.portals.generation()
	p, err := queryOne(ctx, q.db, scanPortal, "SELECT "+portalColumns+" FROM portal WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID)
	if err == nil && p != nil {
		q.c.portals.put(ctx, q.db, gen, key, *p)
	}
	return p, err
}

// GetByRoom returns the portal that owns a room, or nil.
func (q *PortalQuery) GetByRoom(ctx context.Context, roomID id.RoomID) (*Portal, error) {
	return queryOne(ctx, q.db, scanPortal, "SELECT "+portalColumns+" FROM portal WHERE room_id=$1", roomID)
}

// ByLogin lists the portals of a login.
func (q *PortalQuery) ByLogin(ctx context.Context, loginID string) ([]*Portal, error) {
	return queryMany(ctx, q.db, scanPortal, "SELECT "+portalColumns+" FROM portal WHERE login_id=$1 ORDER BY created_at", loginID)
}

// ByContact lists the portals whose other side is the given contact.
func (q *PortalQuery) ByContact(ctx context.Context, contactID string) ([]*Portal, error) {
	return queryMany(ctx, q.db, scanPortal, "SELECT "+portalColumns+" FROM portal WHERE contact_id=$1 AND room_id IS NOT NULL", contactID)
}

// ByUser lists the portals of every login the Matrix user owns.
func (q *PortalQuery) ByUser(ctx context.Context, userID id.UserID) ([]*Portal, error) {
	return queryMany(ctx, q.db, scanPortal, `
		SELECT `+portalColumns+` FROM portal WHERE login_id IN (SELECT id FROM login WHERE matrix_user=$1)
		ORDER BY created_at`, userID)
}

// MarkCreateStarted records that createRoom is about to be called.
func (q *PortalQuery) MarkCreateStarted(ctx context.Context, key PortalKey) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	_, err := q.db.Exec(ctx, "UPDATE portal SET create_started=true WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID)
	return err
}

// SetRoom stores the portal's room id.
func (q *PortalQuery) SetRoom(ctx context.Context, key PortalKey, roomID id.RoomID) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	_, err := q.db.Exec(ctx, "UPDATE portal SET room_id=$3 WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID, roomID)
	return err
}

// SetUserJoined records that the double puppet joined the room.
func (q *PortalQuery) SetUserJoined(ctx context.Context, key PortalKey, joined bool) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	_, err := q.db.Exec(ctx, "UPDATE portal SET user_joined=$3 WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID, joined)
	return err
}

// SetInDirect records that the room is in the user's m.direct.
func (q *PortalQuery) SetInDirect(ctx context.Context, key PortalKey, in bool) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	_, err := q.db.Exec(ctx, "UPDATE portal SET in_direct=$3 WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID, in)
	return err
}

// Delete forgets a portal and, by cascade, its messages and reactions.
func (q *PortalQuery) Delete(ctx context.Context, key PortalKey) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	_, err := q.db.Exec(ctx, "DELETE FROM portal WHERE login_id=$1 AND chat_id=$2", key.LoginID, key.ChatID)
	return err
}

// CleanedRoomQuery reads and writes the cleaned_room table.
type CleanedRoomQuery struct{ db *dbutil.Database }

// Add records that the bridge cleaned up a room of the user's.
func (q *CleanedRoomQuery) Add(ctx context.Context, userID id.UserID, roomID id.RoomID, ghost id.UserID) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO cleaned_room (matrix_user, room_id, ghost_mxid, cleaned_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (matrix_user, room_id) DO NOTHING`, userID, roomID, ghost, time.Now().UnixMilli())
	return err
}

// ByUser returns the rooms the bridge cleaned up for the user.
func (q *CleanedRoomQuery) ByUser(ctx context.Context, userID id.UserID) (map[id.RoomID]bool, error) {
	rows, err := q.db.Query(ctx, "SELECT room_id FROM cleaned_room WHERE matrix_user=$1", userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[id.RoomID]bool)
	for rows.Next() {
		var room id.RoomID
		if err = rows.Scan(&room); err != nil {
			return nil, err
		}
		out[room] = true
	}
	return out, rows.Err()
}

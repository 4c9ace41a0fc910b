package database

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// PortalQuery reads and writes the portal table. Get is served from cache
// (see rowCache); every write here forgets the portal it touches. The query
// helper is not embedded: its Exec would let a write skip wrote.
type PortalQuery struct {
	qh *dbutil.QueryHelper[*Portal]
	c  *caches
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

const (
	getPortalBaseQuery = `
		SELECT login_id, chat_id, contact_id, room_id, create_started, user_joined, in_direct, created_at FROM portal`
	getPortalQuery           = getPortalBaseQuery + ` WHERE login_id=$1 AND chat_id=$2`
	getPortalByRoomQuery     = getPortalBaseQuery + ` WHERE room_id=$1`
	getPortalsByLoginQuery   = getPortalBaseQuery + ` WHERE login_id=$1 ORDER BY created_at`
	getPortalsByContactQuery = getPortalBaseQuery + ` WHERE contact_id=$1 AND room_id IS NOT NULL`
	getPortalsByUserQuery    = getPortalBaseQuery + `
		WHERE login_id IN (SELECT id FROM login WHERE matrix_user=$1) ORDER BY created_at`
	insertPortalQuery = `
		INSERT INTO portal (login_id, chat_id, contact_id, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (login_id, chat_id) DO NOTHING`
	setPortalCreateStartedQuery = `UPDATE portal SET create_started=true WHERE login_id=$1 AND chat_id=$2`
	setPortalRoomQuery          = `UPDATE portal SET room_id=$3 WHERE login_id=$1 AND chat_id=$2`
	setPortalUserJoinedQuery    = `UPDATE portal SET user_joined=$3 WHERE login_id=$1 AND chat_id=$2`
	setPortalInDirectQuery      = `UPDATE portal SET in_direct=$3 WHERE login_id=$1 AND chat_id=$2`
	deletePortalQuery           = `DELETE FROM portal WHERE login_id=$1 AND chat_id=$2`
)

// Scan reads a portal row.
func (p *Portal) Scan(row dbutil.Scannable) (*Portal, error) {
	var room sql.NullString
	var created int64
	err := row.Scan(&p.LoginID, &p.ChatID, &p.ContactID, &room, &p.CreateStarted, &p.UserJoined, &p.InDirect, &created)
	if err != nil {
		return nil, err
	}
	p.RoomID = id.RoomID(room.String)
	p.CreatedAt = time.UnixMilli(created)
	return p, nil
}

// wrote forgets the cached portal (and whether it has history to backfill:
// a new portal starts with some) around a write to it.
func (q *PortalQuery) wrote(ctx context.Context, key PortalKey) {
	q.c.wrote(ctx, q.qh.GetDB(), func() {
		q.c.portals.forget(key)
		q.c.backfilled.forget(key)
	})
}

// update runs one of the UPDATE/DELETE statements keyed by the portal,
// forgetting the cached row around it.
func (q *PortalQuery) update(ctx context.Context, query string, key PortalKey, args ...any) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	return q.qh.Exec(ctx, query, append([]any{key.LoginID, key.ChatID}, args...)...)
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
	db := q.qh.GetDB()
	err := db.DoTxn(ctx, nil, func(ctx context.Context) error {
		res, err := db.Exec(ctx, insertPortalQuery, key.LoginID, key.ChatID, contactID, time.Now().UnixMilli())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		// A message's result that committed after the chat's previous
		// portal was deleted left its mapping behind (on PostgreSQL no
		// foreign key refused it): the new portal starts without it, so
		// that no message counts as bridged into a room that is gone.
		if _, err = db.Exec(ctx, deleteChatMessagesQuery, key.LoginID, key.ChatID); err != nil {
			return fmt.Errorf("delete stale messages of %s: %w", key.ChatID, err)
		}
		return (&BackfillQuery{db: db, c: q.c}).add(ctx, key)
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
	p, err := q.qh.QueryOne(ctx, getPortalQuery, key.LoginID, key.ChatID)
	if err == nil && p != nil {
		q.c.portals.put(ctx, q.qh.GetDB(), gen, key, *p)
	}
	return p, err
}

// GetByRoom returns the portal that owns a room, or nil. Every Matrix event
// and every command result asks it, so the room's portal key is kept (see
// caches.rooms) and the row itself comes from Get's cache.
func (q *PortalQuery) GetByRoom(ctx context.Context, roomID id.RoomID) (*Portal, error) {
	if key, ok := q.c.rooms.get(roomID); ok {
		if p, err := q.Get(ctx, key); err != nil {
			return nil, err
		} else if p != nil && p.RoomID == roomID {
			return p, nil
		}
		// The portal lost or changed its room since: ask the table.
	}
	gen := q.c.rooms.generation()
	p, err := q.qh.QueryOne(ctx, getPortalByRoomQuery, roomID)
	if err == nil && p != nil {
		q.c.rooms.put(ctx, q.qh.GetDB(), gen, roomID, p.PortalKey)
	}
	return p, err
}

// ByLogin lists the portals of a login.
func (q *PortalQuery) ByLogin(ctx context.Context, loginID string) ([]*Portal, error) {
	return q.qh.QueryMany(ctx, getPortalsByLoginQuery, loginID)
}

// ByContact lists the portals whose other side is the given contact.
func (q *PortalQuery) ByContact(ctx context.Context, contactID string) ([]*Portal, error) {
	return q.qh.QueryMany(ctx, getPortalsByContactQuery, contactID)
}

// ByUser lists the portals of every login the Matrix user owns.
func (q *PortalQuery) ByUser(ctx context.Context, userID id.UserID) ([]*Portal, error) {
	return q.qh.QueryMany(ctx, getPortalsByUserQuery, userID)
}

// MarkCreateStarted records that createRoom is about to be called.
func (q *PortalQuery) MarkCreateStarted(ctx context.Context, key PortalKey) error {
	return q.update(ctx, setPortalCreateStartedQuery, key)
}

// SetRoom stores the portal's room id.
func (q *PortalQuery) SetRoom(ctx context.Context, key PortalKey, roomID id.RoomID) error {
	return q.update(ctx, setPortalRoomQuery, key, roomID)
}

// SetUserJoined records that the double puppet joined the room.
func (q *PortalQuery) SetUserJoined(ctx context.Context, key PortalKey, joined bool) error {
	return q.update(ctx, setPortalUserJoinedQuery, key, joined)
}

// SetInDirect records that the room is in the user's m.direct.
func (q *PortalQuery) SetInDirect(ctx context.Context, key PortalKey, in bool) error {
	return q.update(ctx, setPortalInDirectQuery, key, in)
}

// Delete forgets a portal, its messages and, by cascade, its reactions.
// The messages go by a statement of their own: on PostgreSQL their mapping
// has no foreign key to the portal (upgrades/15-message-no-fkey.sql).
func (q *PortalQuery) Delete(ctx context.Context, key PortalKey) error {
	q.wrote(ctx, key)
	defer q.wrote(ctx, key)
	return deleteWithMessages(ctx, q.qh.GetDB(), deleteChatMessagesQuery, deletePortalQuery, key.LoginID, key.ChatID)
}

package database

import (
	"context"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// MessageQuery reads and writes the message table.
type MessageQuery struct{ db *dbutil.Database }

// Message maps one part of a remote message to a Matrix event.
type Message struct {
	PortalKey
	RemoteID string
	Part     int
	MXID     id.EventID
	RoomID   id.RoomID
	SenderID string
	IsMe     bool
	TS       int64
}

const messageColumns = "login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts"

func scanMessage(row dbutil.Scannable) (*Message, error) {
	var m Message
	err := row.Scan(&m.LoginID, &m.ChatID, &m.RemoteID, &m.Part, &m.MXID, &m.RoomID, &m.SenderID, &m.IsMe, &m.TS)
	return &m, err
}

// Insert stores a mapping. A mapping that already exists (a replay, or an echo
// racing the command result) is left as it is.
func (q *MessageQuery) Insert(ctx context.Context, m *Message) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO message (`+messageColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT DO NOTHING`,
		m.LoginID, m.ChatID, m.RemoteID, m.Part, m.MXID, m.RoomID, m.SenderID, m.IsMe, m.TS)
	return err
}

// GetPart returns one part of a remote message, or nil.
func (q *MessageQuery) GetPart(ctx context.Context, key PortalKey, remoteID string, part int) (*Message, error) {
	return queryOne(ctx, q.db, scanMessage, "SELECT "+messageColumns+" FROM message WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3 AND part=$4",
		key.LoginID, key.ChatID, remoteID, part)
}

// GetParts returns every part of a remote message, in order.
func (q *MessageQuery) GetParts(ctx context.Context, key PortalKey, remoteID string) ([]*Message, error) {
	return queryMany(ctx, q.db, scanMessage, "SELECT "+messageColumns+" FROM message WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3 ORDER BY part",
		key.LoginID, key.ChatID, remoteID)
}

// GetByMXID returns the mapping of a Matrix event, or nil.
func (q *MessageQuery) GetByMXID(ctx context.Context, eventID id.EventID) (*Message, error) {
	return queryOne(ctx, q.db, scanMessage, "SELECT "+messageColumns+" FROM message WHERE mxid=$1", eventID)
}

// LatestRemote returns the newest message in the room that came from the
// contact (not from the user), or nil.
func (q *MessageQuery) LatestRemote(ctx context.Context, roomID id.RoomID) (*Message, error) {
	return queryOne(ctx, q.db, scanMessage, "SELECT "+messageColumns+" FROM message WHERE room_id=$1 AND is_me=false ORDER BY ts DESC, part DESC LIMIT 1", roomID)
}

// DeleteRemote removes every part of a remote message.
func (q *MessageQuery) DeleteRemote(ctx context.Context, key PortalKey, remoteID string) error {
	_, err := q.db.Exec(ctx, "DELETE FROM message WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3", key.LoginID, key.ChatID, remoteID)
	return err
}

// ReactionQuery reads and writes the reaction table.
type ReactionQuery struct{ db *dbutil.Database }

// Reaction maps a remote reaction to a Matrix m.reaction event.
type Reaction struct {
	PortalKey
	TargetID string
	SenderID string
	Key      string
	RemoteID string
	MXID     id.EventID
}

const reactionColumns = "login_id, chat_id, target_id, sender_id, key, remote_id, mxid"

func scanReaction(row dbutil.Scannable) (*Reaction, error) {
	var r Reaction
	err := row.Scan(&r.LoginID, &r.ChatID, &r.TargetID, &r.SenderID, &r.Key, &r.RemoteID, &r.MXID)
	return &r, err
}

// Insert stores a reaction; an existing one is left as it is.
func (q *ReactionQuery) Insert(ctx context.Context, r *Reaction) error {
	_, err := q.db.Exec(ctx, `INSERT INTO reaction (`+reactionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
		r.LoginID, r.ChatID, r.TargetID, r.SenderID, r.Key, r.RemoteID, r.MXID)
	return err
}

// Get returns one sender's reaction with a key on a message, or nil.
func (q *ReactionQuery) Get(ctx context.Context, key PortalKey, targetID, senderID, emoji string) (*Reaction, error) {
	return queryOne(ctx, q.db, scanReaction, "SELECT "+reactionColumns+" FROM reaction WHERE login_id=$1 AND chat_id=$2 AND target_id=$3 AND sender_id=$4 AND key=$5",
		key.LoginID, key.ChatID, targetID, senderID, emoji)
}

// GetByMXID returns the reaction behind a Matrix event, or nil.
func (q *ReactionQuery) GetByMXID(ctx context.Context, eventID id.EventID) (*Reaction, error) {
	return queryOne(ctx, q.db, scanReaction, "SELECT "+reactionColumns+" FROM reaction WHERE mxid=$1", eventID)
}

// Delete removes a reaction by its Matrix event id.
func (q *ReactionQuery) Delete(ctx context.Context, eventID id.EventID) error {
	_, err := q.db.Exec(ctx, "DELETE FROM reaction WHERE mxid=$1", eventID)
	return err
}

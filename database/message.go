package database

import (
	"context"
	"fmt"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// MessageQuery reads and writes the message table.
type MessageQuery struct {
	*dbutil.QueryHelper[*Message]
	st *stmtCache
}

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
	// TextTail marks a part after the first that carries the rest of a
	// long text (a split part, or message.txt after a preview), not an
	// attachment: an edit from the network redacts it.
	TextTail bool
}

const (
	getMessageBaseQuery      = `SELECT login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts, text_tail FROM message`
	getMessagePartQuery      = getMessageBaseQuery + ` WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3 AND part=$4`
	getMessagePartsQuery     = getMessageBaseQuery + ` WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3 ORDER BY part`
	getMessageByMXIDQuery    = getMessageBaseQuery + ` WHERE mxid=$1`
	getLatestRemoteQuery     = getMessageBaseQuery + ` WHERE room_id=$1 AND is_me=false AND part=0 ORDER BY ts DESC LIMIT 1`
	getLatestRemoteUpToQuery = getMessageBaseQuery + ` WHERE room_id=$1 AND is_me=false AND part=0 AND ts<=$2 ORDER BY ts DESC LIMIT 1`
	insertMessageQuery       = `
		INSERT INTO message (login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts, text_tail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT DO NOTHING`
	deleteRemoteMessageQuery = `DELETE FROM message WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3`
	deleteTextTailsQuery     = `DELETE FROM message WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3 AND text_tail=true`
	deleteChatMessagesQuery  = `DELETE FROM message WHERE login_id=$1 AND chat_id=$2`
	deleteLoginMessagesQuery = `DELETE FROM message WHERE login_id=$1`
)

// Scan reads a message row.
func (m *Message) Scan(row dbutil.Scannable) (*Message, error) {
	return dbutil.ValueOrErr(m, row.Scan(&m.LoginID, &m.ChatID, &m.RemoteID, &m.Part, &m.MXID, &m.RoomID, &m.SenderID, &m.IsMe, &m.TS, &m.TextTail))
}

// sqlVariables are the columns that StoreSent writes too ($1–$9); text_tail
// is left out there, as a message of one part has no tail.
func (m *Message) sqlVariables() []any {
	return []any{m.LoginID, m.ChatID, m.RemoteID, m.Part, m.MXID, m.RoomID, m.SenderID, m.IsMe, m.TS}
}

// Insert stores a mapping. A mapping that already exists (a replay, or an echo
// racing the command result) is left as it is.
func (q *MessageQuery) Insert(ctx context.Context, m *Message) error {
	_, err := q.st.exec(ctx, insertMessageQuery, append(m.sqlVariables(), m.TextTail)...)
	return err
}

// deleteWithMessages runs messages, which deletes the mappings of a portal
// or a login, then owner, which deletes that portal or login, with args
// each, in one transaction: on PostgreSQL a mapping has no foreign key to
// its portal (upgrades/15-message-no-fkey.sql) whose cascade would.
func deleteWithMessages(ctx context.Context, db *dbutil.Database, messages, owner string, args ...any) error {
	return db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := db.Exec(ctx, messages, args...); err != nil {
			return fmt.Errorf("delete the messages of %v: %w", args, err)
		}
		_, err := db.Exec(ctx, owner, args...)
		return err
	})
}

// insertMessageMarkingDoneQuery is insertMessageQuery that also marks the
// Matrix event handled ($11), on PostgreSQL: one round trip for a command
// sent straight from its event instead of two.
const insertMessageMarkingDoneQuery = `
	WITH done AS (UPDATE mx_event SET done=true, error='' WHERE seq=$11)
	INSERT INTO message (login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts, text_tail)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
	ON CONFLICT DO NOTHING`

// InsertMarkingDone is Insert and MXEventQuery.MarkDone(doneSeq, "")
// together: the mapping of a message the user sent and the Matrix event
// it came from marked handled, atomically. On SQLite, where a statement
// is no round trip, it is the two statements in a transaction (the
// caller's, where there is one).
func (q *MessageQuery) InsertMarkingDone(ctx context.Context, m *Message, doneSeq int64) error {
	args := append(m.sqlVariables(), m.TextTail)
	if db := q.GetDB(); db.Dialect != dbutil.Postgres {
		return db.DoTxn(ctx, nil, func(ctx context.Context) error {
			if _, err := q.st.exec(ctx, insertMessageQuery, args...); err != nil {
				return err
			}
			_, err := q.st.exec(ctx, markMXEventDoneQuery, doneSeq, "")
			return err
		})
	}
	_, err := q.st.exec(ctx, insertMessageMarkingDoneQuery, append(args, doneSeq)...)
	return err
}

// GetPart returns one part of a remote message, or nil.
func (q *MessageQuery) GetPart(ctx context.Context, key PortalKey, remoteID string, part int) (*Message, error) {
	return q.QueryOne(ctx, getMessagePartQuery, key.LoginID, key.ChatID, remoteID, part)
}

// GetParts returns every part of a remote message, in order.
func (q *MessageQuery) GetParts(ctx context.Context, key PortalKey, remoteID string) ([]*Message, error) {
	return q.QueryMany(ctx, getMessagePartsQuery, key.LoginID, key.ChatID, remoteID)
}

// GetByMXID returns the mapping of a Matrix event, or nil.
func (q *MessageQuery) GetByMXID(ctx context.Context, eventID id.EventID) (*Message, error) {
	return q.QueryOne(ctx, getMessageByMXIDQuery, eventID)
}

// LatestRemote returns the newest message in the room that came from the
// contact (not from the user), or nil. Only first parts count: a message's
// stand-in in a room upgraded from its own (portal/relations_elsewhere.go)
// is a later part, stamped with the time of the edit it showed, and would
// pass for a message newer than those sent before that edit.
func (q *MessageQuery) LatestRemote(ctx context.Context, roomID id.RoomID) (*Message, error) {
	return q.QueryOne(ctx, getLatestRemoteQuery, roomID)
}

// LatestRemoteUpTo returns the newest message from the contact in the room
// that is not newer than ts, or nil. A read marker on any event (even the
// user's own message) means everything the contact sent before it was read.
// Only first parts count, as in LatestRemote.
func (q *MessageQuery) LatestRemoteUpTo(ctx context.Context, roomID id.RoomID, ts int64) (*Message, error) {
	return q.QueryOne(ctx, getLatestRemoteUpToQuery, roomID, ts)
}

// DeleteRemote removes every part of a remote message.
func (q *MessageQuery) DeleteRemote(ctx context.Context, key PortalKey, remoteID string) error {
	return q.Exec(ctx, deleteRemoteMessageQuery, key.LoginID, key.ChatID, remoteID)
}

// DeleteTextTails removes the parts of a remote message that carried the
// rest of its text, once an edit has redacted them.
func (q *MessageQuery) DeleteTextTails(ctx context.Context, key PortalKey, remoteID string) error {
	return q.Exec(ctx, deleteTextTailsQuery, key.LoginID, key.ChatID, remoteID)
}

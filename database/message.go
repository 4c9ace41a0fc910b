package database

import (
	"context"

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
}

const (
	getMessageBaseQuery      = `SELECT login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts FROM message`
	getMessagePartQuery      = getMessageBaseQuery + ` WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3 AND part=$4`
	getMessagePartsQuery     = getMessageBaseQuery + ` WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3 ORDER BY part`
	getMessageLastPartQuery  = getMessageBaseQuery + ` WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3 ORDER BY part DESC LIMIT 1`
	getMessageByMXIDQuery    = getMessageBaseQuery + ` WHERE mxid=$1`
	getLatestRemoteQuery     = getMessageBaseQuery + ` WHERE room_id=$1 AND is_me=false ORDER BY ts DESC, part DESC LIMIT 1`
	getLatestRemoteUpToQuery = getMessageBaseQuery + ` WHERE room_id=$1 AND is_me=false AND ts<=$2 ORDER BY ts DESC, part DESC LIMIT 1`
	insertMessageQuery       = `
		INSERT INTO message (login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT DO NOTHING`
	deleteRemoteMessageQuery = `DELETE FROM message WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3`
)

// Scan reads a message row.
func (m *Message) Scan(row dbutil.Scannable) (*Message, error) {
	return dbutil.ValueOrErr(m, row.Scan(&m.LoginID, &m.ChatID, &m.RemoteID, &m.Part, &m.MXID, &m.RoomID, &m.SenderID, &m.IsMe, &m.TS))
}

func (m *Message) sqlVariables() []any {
	return []any{m.LoginID, m.ChatID, m.RemoteID, m.Part, m.MXID, m.RoomID, m.SenderID, m.IsMe, m.TS}
}

// Insert stores a mapping. A mapping that already exists (a replay, or an echo
// racing the command result) is left as it is.
func (q *MessageQuery) Insert(ctx context.Context, m *Message) error {
	_, err := q.st.exec(ctx, insertMessageQuery, m.sqlVariables()...)
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

// LastPart returns the last part of a remote message, or nil: a receipt on a
// message with attachments belongs on its last event.
func (q *MessageQuery) LastPart(ctx context.Context, key PortalKey, remoteID string) (*Message, error) {
	return q.QueryOne(ctx, getMessageLastPartQuery, key.LoginID, key.ChatID, remoteID)
}

// GetByMXID returns the mapping of a Matrix event, or nil.
func (q *MessageQuery) GetByMXID(ctx context.Context, eventID id.EventID) (*Message, error) {
	return q.QueryOne(ctx, getMessageByMXIDQuery, eventID)
}

// LatestRemote returns the newest message in the room that came from the
// contact (not from the user), or nil.
func (q *MessageQuery) LatestRemote(ctx context.Context, roomID id.RoomID) (*Message, error) {
	return q.QueryOne(ctx, getLatestRemoteQuery, roomID)
}

// LatestRemoteUpTo returns the newest message from the contact in the room
// that is not newer than ts, or nil. A read marker on any event (even the
// user's own message) means everything the contact sent before it was read.
func (q *MessageQuery) LatestRemoteUpTo(ctx context.Context, roomID id.RoomID, ts int64) (*Message, error) {
	return q.QueryOne(ctx, getLatestRemoteUpToQuery, roomID, ts)
}

// DeleteRemote removes every part of a remote message.
func (q *MessageQuery) DeleteRemote(ctx context.Context, key PortalKey, remoteID string) error {
	return q.Exec(ctx, deleteRemoteMessageQuery, key.LoginID, key.ChatID, remoteID)
}

// storeSentQuery is the result of a remote message's one send on
// PostgreSQL as one statement (data-modifying WITH): the send's in-doubt
// marker goes, the inbox row is marked applied and the mapping goes in.
// It is atomic without a transaction around it, and one round trip instead
// of three inside one (five with its own BEGIN and COMMIT).
const storeSentQuery = `
	WITH cleared AS (DELETE FROM in_doubt_send WHERE txn_id=$10),
	applied AS (UPDATE inbox SET done=true, error='' WHERE connector_id=$11 AND seq=$12)
	INSERT INTO message (login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
	ON CONFLICT DO NOTHING`

// storeSentNextQuery is storeSentQuery that also writes the marker of the
// chat's next message, as beginFreshUnlessBridgedInDoubtQuery does: the
// statement's own rows are that marker's. All parts of the statement read
// one snapshot, so the next message must be another than this one (whose
// mapping the check for part 0 would not see yet); the caller ensures it.
const storeSentNextQuery = `
	WITH cleared AS (DELETE FROM in_doubt_send WHERE txn_id=$10),
	applied AS (UPDATE inbox SET done=true, error='' WHERE connector_id=$11 AND seq=$12),
	mapped AS (
		INSERT INTO message (login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT DO NOTHING)
	INSERT INTO in_doubt_send (txn_id, room_id, login_id, chat_id, remote_id, part, event_type, started_at, event_id)
	SELECT $13, $14, $15, $16, $17, CAST($18 AS INTEGER), $19, CAST($20 AS BIGINT), ''
	WHERE NOT EXISTS (SELECT 1 FROM message WHERE login_id=$15 AND chat_id=$16 AND remote_id=$17 AND part=0)
	ON CONFLICT (txn_id) DO NOTHING`

// StoreSent stores the result of a remote message sent in one part, on
// PostgreSQL only, as one statement: it deletes the send's marker (txnID),
// marks the inbox row (connectorID, seq) applied, inserts the mapping and,
// with next, writes the next message's marker unless that one is bridged or
// marked already, which premarked reports.
func (q *MessageQuery) StoreSent(ctx context.Context, m *Message, txnID, connectorID string, seq int64, next *InDoubtSend) (premarked bool, err error) {
	args := append(m.sqlVariables(), txnID, connectorID, seq)
	if next == nil {
		_, err = q.st.exec(ctx, storeSentQuery, args...)
		return false, err
	}
	res, err := q.st.exec(ctx, storeSentNextQuery, append(args, next.sqlVariables()...)...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

package database

import (
	"context"

	"maunium.net/go/mautrix/id"
)

// LatestRemoteUpTo returns the newest message from the contact in the room
// that is not newer than ts, or nil. A read marker on any event (even the
// user's own message) means everything the contact sent before it was read.
func (q *MessageQuery) LatestRemoteUpTo(ctx context.Context, roomID id.RoomID, ts int64) (*Message, error) {
	return queryOne(ctx, q.db, scanMessage, "SELECT "+messageColumns+" FROM message WHERE room_id=$1 AND is_me=false AND ts<=$2 ORDER BY ts DESC, part DESC LIMIT 1", roomID, ts)
}

// LastPart returns the last part of a remote message, or nil: a receipt on a
// message with attachments belongs on its last event.
func (q *MessageQuery) LastPart(ctx context.Context, key PortalKey, remoteID string) (*Message, error) {
	return queryOne(ctx, q.db, scanMessage, "SELECT "+messageColumns+" FROM message WHERE login_id=$1 AND chat_id=$2 AND remote_id=$3 ORDER BY part DESC LIMIT 1",
		key.LoginID, key.ChatID, remoteID)
}

// DeleteKey removes one sender's reaction with a key on a message.
func (q *ReactionQuery) DeleteKey(ctx context.Context, key PortalKey, targetID, senderID, emoji string) error {
	_, err := q.db.Exec(ctx, "DELETE FROM reaction WHERE login_id=$1 AND chat_id=$2 AND target_id=$3 AND sender_id=$4 AND key=$5",
		key.LoginID, key.ChatID, targetID, senderID, emoji)
	return err
}

// DeleteTarget removes every reaction on a message, once the message is gone.
func (q *ReactionQuery) DeleteTarget(ctx context.Context, key PortalKey, targetID string) error {
	_, err := q.db.Exec(ctx, "DELETE FROM reaction WHERE login_id=$1 AND chat_id=$2 AND target_id=$3",
		key.LoginID, key.ChatID, targetID)
	return err
}

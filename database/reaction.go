package database

import (
	"context"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// ReactionQuery reads and writes the reaction table.
type ReactionQuery struct {
	*dbutil.QueryHelper[*Reaction]
}

// Reaction maps a remote reaction to a Matrix m.reaction event.
type Reaction struct {
	PortalKey
	TargetID string
	SenderID string
	Key      string
	RemoteID string
	MXID     id.EventID
}

const (
	getReactionBaseQuery   = `SELECT login_id, chat_id, target_id, sender_id, key, remote_id, mxid FROM reaction`
	getReactionQuery       = getReactionBaseQuery + ` WHERE login_id=$1 AND chat_id=$2 AND target_id=$3 AND sender_id=$4 AND key=$5`
	getReactionByMXIDQuery = getReactionBaseQuery + ` WHERE mxid=$1`
	insertReactionQuery    = `
		INSERT INTO reaction (login_id, chat_id, target_id, sender_id, key, remote_id, mxid) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT DO NOTHING`
	deleteReactionByMXIDQuery = `DELETE FROM reaction WHERE mxid=$1`
	deleteReactionKeyQuery    = `DELETE FROM reaction WHERE login_id=$1 AND chat_id=$2 AND target_id=$3 AND sender_id=$4 AND key=$5`
	deleteReactionsOnQuery    = `DELETE FROM reaction WHERE login_id=$1 AND chat_id=$2 AND target_id=$3`
)

// Scan reads a reaction row.
func (r *Reaction) Scan(row dbutil.Scannable) (*Reaction, error) {
	return dbutil.ValueOrErr(r, row.Scan(&r.LoginID, &r.ChatID, &r.TargetID, &r.SenderID, &r.Key, &r.RemoteID, &r.MXID))
}

func (r *Reaction) sqlVariables() []any {
	return []any{r.LoginID, r.ChatID, r.TargetID, r.SenderID, r.Key, r.RemoteID, r.MXID}
}

// Insert stores a reaction; an existing one is left as it is.
func (q *ReactionQuery) Insert(ctx context.Context, r *Reaction) error {
	return q.Exec(ctx, insertReactionQuery, r.sqlVariables()...)
}

// Get returns one sender's reaction with a key on a message, or nil.
func (q *ReactionQuery) Get(ctx context.Context, key PortalKey, targetID, senderID, emoji string) (*Reaction, error) {
	return q.QueryOne(ctx, getReactionQuery, key.LoginID, key.ChatID, targetID, senderID, emoji)
}

// GetByMXID returns the reaction behind a Matrix event, or nil.
func (q *ReactionQuery) GetByMXID(ctx context.Context, eventID id.EventID) (*Reaction, error) {
	return q.QueryOne(ctx, getReactionByMXIDQuery, eventID)
}

// Delete removes a reaction by its Matrix event id.
func (q *ReactionQuery) Delete(ctx context.Context, eventID id.EventID) error {
	return q.Exec(ctx, deleteReactionByMXIDQuery, eventID)
}

// DeleteKey removes one sender's reaction with a key on a message.
func (q *ReactionQuery) DeleteKey(ctx context.Context, key PortalKey, targetID, senderID, emoji string) error {
	return q.Exec(ctx, deleteReactionKeyQuery, key.LoginID, key.ChatID, targetID, senderID, emoji)
}

// DeleteTarget removes every reaction on a message, once the message is gone.
func (q *ReactionQuery) DeleteTarget(ctx context.Context, key PortalKey, targetID string) error {
	return q.Exec(ctx, deleteReactionsOnQuery, key.LoginID, key.ChatID, targetID)
}

package database

import (
	"context"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// PendingCommandQuery reads and writes the pending_command table.
type PendingCommandQuery struct {
	*dbutil.QueryHelper[*PendingCommand]
	st *stmtCache
}

// PendingCommand is a command to the connector whose result is not stored yet.
type PendingCommand struct {
	Txn         string
	ConnectorID string
	PortalKey
	RoomID   id.RoomID
	Op       string
	Data     []byte
	Attempts int
	// MXSeq is the seq of the mx_event row that caused the command.
	MXSeq int64
	// Handed: the command was written to the connector at least once, so
	// it may have reached the network even though no answer came.
	Handed bool
	// TargetMX, for an edit or a reaction of a message that was itself
	// queued, or a reply to one, is that message's Matrix event: the
	// command's target (or reply_to) is its network id, looked up when the
	// command goes.
	TargetMX id.EventID
}

const (
	getPendingCommandBaseQuery = `
		SELECT txn, connector_id, login_id, chat_id, room_id, op, data, attempts, mx_seq, handed, target_mx FROM pending_command`
	// pendingCommandOrder is the order commands go out in.
	pendingCommandOrder                = ` ORDER BY mx_seq, created_at, txn`
	getPendingCommandQuery             = getPendingCommandBaseQuery + ` WHERE txn=$1`
	getPendingCommandsByConnectorQuery = getPendingCommandBaseQuery + ` WHERE connector_id=$1` + pendingCommandOrder
	getPendingCommandsByRoomQuery      = getPendingCommandBaseQuery + ` WHERE room_id=$1` + pendingCommandOrder
	getAllPendingCommandsQuery         = getPendingCommandBaseQuery + pendingCommandOrder
	insertPendingCommandQuery          = `
		INSERT INTO pending_command (txn, connector_id, login_id, chat_id, room_id, op, data, created_at, mx_seq, handed, target_mx)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (txn) DO NOTHING`
	addPendingCommandAttemptQuery = `UPDATE pending_command SET attempts=attempts+1 WHERE txn=$1`
	deletePendingCommandQuery     = `DELETE FROM pending_command WHERE txn=$1`
	markPendingCommandHandedQuery = `UPDATE pending_command SET handed=true WHERE txn=$1`
	deletePendingCommandsForQuery = `DELETE FROM pending_command WHERE target_mx=$1 AND login_id=$2 AND chat_id=$3 AND op<>'send_message'`
)

// Scan reads a pending_command row.
func (c *PendingCommand) Scan(row dbutil.Scannable) (*PendingCommand, error) {
	var data string
	if err := row.Scan(&c.Txn, &c.ConnectorID, &c.LoginID, &c.ChatID, &c.RoomID, &c.Op, &data, &c.Attempts, &c.MXSeq, &c.Handed, &c.TargetMX); err != nil {
		return nil, err
	}
	c.Data = []byte(data)
	return c, nil
}

// Insert stores a command; one with the same txn already there is kept.
func (q *PendingCommandQuery) Insert(ctx context.Context, c *PendingCommand) error {
	_, err := q.st.exec(ctx, insertPendingCommandQuery,
		c.Txn, c.ConnectorID, c.LoginID, c.ChatID, c.RoomID, c.Op, string(c.Data), time.Now().UnixMilli(), c.MXSeq, c.Handed, c.TargetMX)
	return err
}

// Get returns a pending command by txn, or nil.
func (q *PendingCommandQuery) Get(ctx context.Context, txn string) (*PendingCommand, error) {
	return q.QueryOne(ctx, getPendingCommandQuery, txn)
}

// ByConnector lists a connector's pending commands, oldest first.
func (q *PendingCommandQuery) ByConnector(ctx context.Context, connectorID string) ([]*PendingCommand, error) {
	return q.QueryMany(ctx, getPendingCommandsByConnectorQuery, connectorID)
}

// ByRoom lists a room's pending commands, oldest first; they go out in order.
func (q *PendingCommandQuery) ByRoom(ctx context.Context, roomID id.RoomID) ([]*PendingCommand, error) {
	return q.QueryMany(ctx, getPendingCommandsByRoomQuery, roomID)
}

// All lists every pending command, oldest first.
func (q *PendingCommandQuery) All(ctx context.Context) ([]*PendingCommand, error) {
	return q.QueryMany(ctx, getAllPendingCommandsQuery)
}

// AddAttempt counts a failed try.
func (q *PendingCommandQuery) AddAttempt(ctx context.Context, txn string) error {
	return q.Exec(ctx, addPendingCommandAttemptQuery, txn)
}

// MarkHanded records that the command is about to be written to the
// connector, before it is: from then on it may reach the network. found is
// false when the command is no longer stored (dropped meanwhile).
func (q *PendingCommandQuery) MarkHanded(ctx context.Context, txn string) (found bool, err error) {
	res, err := q.st.exec(ctx, markPendingCommandHandedQuery, txn)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// DeleteFor removes the commands of the chat key waiting for the queued
// message targetMX (its edits and reactions, not replies to it), when that
// message will not go. They may be queued in another room than the
// message: the user upgraded the DM while it waited, and related to it
// from the new room.
func (q *PendingCommandQuery) DeleteFor(ctx context.Context, targetMX id.EventID, key PortalKey) error {
	_, err := q.st.exec(ctx, deletePendingCommandsForQuery, targetMX, key.LoginID, key.ChatID)
	return err
}

// Delete removes a command once its result is stored.
func (q *PendingCommandQuery) Delete(ctx context.Context, txn string) error {
	_, err := q.st.exec(ctx, deletePendingCommandQuery, txn)
	return err
}

package database

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// ASTxnQuery reads and writes the as_txn table.
type ASTxnQuery struct{ db *dbutil.Database }

// Seen reports whether an appservice transaction was already taken in.
func (q *ASTxnQuery) Seen(ctx context.Context, txnID string) (bool, error) {
	var one int
	err := q.db.QueryRow(ctx, "SELECT 1 FROM as_txn WHERE txn_id=$1", txnID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Insert records a transaction id; false if it was there already.
func (q *ASTxnQuery) Insert(ctx context.Context, txnID string) (bool, error) {
	res, err := q.db.Exec(ctx, "INSERT INTO as_txn (txn_id, received_at) VALUES ($1, $2) ON CONFLICT (txn_id) DO NOTHING",
		txnID, time.Now().UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// MXEventQuery reads and writes the mx_event table.
type MXEventQuery struct{ db *dbutil.Database }

// MXEvent is a Matrix event taken in from a transaction.
type MXEvent struct {
	Seq      int64
	EventID  id.EventID
	RoomID   id.RoomID
	Data     []byte
	Attempts int
	// ReceivedAt is when the appservice transaction carrying it was taken
	// in (millisecond precision); zero for an event not read from the table.
	ReceivedAt time.Time
}

// Insert stores an event and reports whether it is new; an event id seen
// before, in whatever transaction, is skipped.
func (q *MXEventQuery) Insert(ctx context.Context, eventID id.EventID, roomID id.RoomID, data []byte) (bool, error) {
	res, err := q.db.Exec(ctx, `
		INSERT INTO mx_event (event_id, room_id, data, received_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (event_id) DO NOTHING`,
		eventID, roomID, string(data), time.Now().UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// InsertParked stores an event that cannot be handled as handled with an
// error, for an operator to inspect; a row with the same id is kept.
func (q *MXEventQuery) InsertParked(ctx context.Context, eventID id.EventID, data []byte, errMsg string) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO mx_event (event_id, room_id, data, received_at, done, error) VALUES ($1, '', $2, $3, true, $4)
		ON CONFLICT (event_id) DO NOTHING`,
		eventID, string(data), time.Now().UnixMilli(), errMsg)
	return err
}

func scanMXEvent(row dbutil.Scannable) (*MXEvent, error) {
	var e MXEvent
	var data string
	var received int64
	err := row.Scan(&e.Seq, &e.EventID, &e.RoomID, &data, &e.Attempts, &received)
	e.Data = []byte(data)
	if received > 0 {
		e.ReceivedAt = time.UnixMilli(received)
	}
	return &e, err
}

// Pending lists events not yet handled with seq > after, in order, at most limit.
func (q *MXEventQuery) Pending(ctx context.Context, after int64, limit int) ([]*MXEvent, error) {
	return queryMany(ctx, q.db, scanMXEvent, `
		SELECT seq, event_id, room_id, data, attempts, received_at FROM mx_event WHERE done=false AND seq>$1 ORDER BY seq LIMIT $2`, after, limit)
}

// MarkDone marks an event handled; errMsg is set when it was parked instead.
func (q *MXEventQuery) MarkDone(ctx context.Context, seq int64, errMsg string) error {
	_, err := q.db.Exec(ctx, "UPDATE mx_event SET done=true, error=$2 WHERE seq=$1", seq, errMsg)
	return err
}

// AddAttempt counts a failed attempt to handle an event.
func (q *MXEventQuery) AddAttempt(ctx context.Context, seq int64, errMsg string) error {
	_, err := q.db.Exec(ctx, "UPDATE mx_event SET attempts=attempts+1, error=$2 WHERE seq=$1", seq, errMsg)
	return err
}

// PendingCommandQuery reads and writes the pending_command table.
type PendingCommandQuery struct{ db *dbutil.Database }

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
}

// Insert stores a command; one with the same txn already there is kept.
func (q *PendingCommandQuery) Insert(ctx context.Context, c *PendingCommand) error {
	_, err := q.db.Exec(ctx, `
		INSERT INTO pending_command (txn, connector_id, login_id, chat_id, room_id, op, data, created_at, mx_seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (txn) DO NOTHING`,
		c.Txn, c.ConnectorID, c.LoginID, c.ChatID, c.RoomID, c.Op, string(c.Data), time.Now().UnixMilli(), c.MXSeq)
	return err
}

func scanPendingCommand(row dbutil.Scannable) (*PendingCommand, error) {
	var c PendingCommand
	var data string
	err := row.Scan(&c.Txn, &c.ConnectorID, &c.LoginID, &c.ChatID, &c.RoomID, &c.Op, &data, &c.Attempts, &c.MXSeq)
	c.Data = []byte(data)
	return &c, err
}

const pendingCommandColumns = "txn, connector_id, login_id, chat_id, room_id, op, data, attempts, mx_seq"

// pendingCommandOrder is the order commands go out in.
const pendingCommandOrder = " ORDER BY mx_seq, created_at, txn"

// Get returns a pending command by txn, or nil.
func (q *PendingCommandQuery) Get(ctx context.Context, txn string) (*PendingCommand, error) {
	return queryOne(ctx, q.db, scanPendingCommand, "SELECT "+pendingCommandColumns+" FROM pending_command WHERE txn=$1", txn)
}

// ByConnector lists a connector's pending commands, oldest first.
func (q *PendingCommandQuery) ByConnector(ctx context.Context, connectorID string) ([]*PendingCommand, error) {
	return queryMany(ctx, q.db, scanPendingCommand, "SELECT "+pendingCommandColumns+" FROM pending_command WHERE connector_id=$1"+pendingCommandOrder, connectorID)
}

// All lists every pending command, oldest first.
func (q *PendingCommandQuery) All(ctx context.Context) ([]*PendingCommand, error) {
	return queryMany(ctx, q.db, scanPendingCommand, "SELECT "+pendingCommandColumns+" FROM pending_command"+pendingCommandOrder)
}

// AddAttempt counts a failed try.
func (q *PendingCommandQuery) AddAttempt(ctx context.Context, txn string) error {
	_, err := q.db.Exec(ctx, "UPDATE pending_command SET attempts=attempts+1 WHERE txn=$1", txn)
	return err
}

// Delete removes a command once its result is stored.
func (q *PendingCommandQuery) Delete(ctx context.Context, txn string) error {
	_, err := q.db.Exec(ctx, "DELETE FROM pending_command WHERE txn=$1", txn)
	return err
}

// ByRoom lists a room's pending commands, oldest first; they go out in order.
func (q *PendingCommandQuery) ByRoom(ctx context.Context, roomID id.RoomID) ([]*PendingCommand, error) {
	return queryMany(ctx, q.db, scanPendingCommand, "SELECT "+pendingCommandColumns+" FROM pending_command WHERE room_id=$1"+pendingCommandOrder, roomID)
}

// Prune forgets transaction ids older than the cutoff. A homeserver retries
// a transaction only until it is answered, so old ids cannot come back.
func (q *ASTxnQuery) Prune(ctx context.Context, before time.Time) error {
	_, err := q.db.Exec(ctx, "DELETE FROM as_txn WHERE received_at < $1", before.UnixMilli())
	return err
}

// Prune deletes events handled without error that arrived before the
// cutoff; parked ones stay for inspection.
func (q *MXEventQuery) Prune(ctx context.Context, before time.Time) error {
	_, err := q.db.Exec(ctx, "DELETE FROM mx_event WHERE done=true AND error='' AND received_at < $1", before.UnixMilli())
	return err
}

package database

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// MXEventQuery reads and writes the mx_event table.
type MXEventQuery struct {
	*dbutil.QueryHelper[*MXEvent]
	st *stmtCache
}

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
	// Written is not a column: the portal sets it once it has written the
	// event's command to the connector, so that handling the same row again
	// in this process knows the network may have it.
	Written bool
}

const (
	getPendingMXEventsQuery = `
		SELECT seq, event_id, room_id, data, attempts, received_at FROM mx_event
		WHERE done=false AND seq>$1 ORDER BY seq LIMIT $2`
	insertMXEventQuery = `
		INSERT INTO mx_event (received_at, event_id, room_id, data) VALUES ($1, $2, $3, $4)
		ON CONFLICT (event_id) DO NOTHING`
	insertParkedMXEventQuery = `
		INSERT INTO mx_event (event_id, room_id, data, received_at, done, error) VALUES ($1, '', $2, $3, true, $4)
		ON CONFLICT (event_id) DO NOTHING`
	getMXEventRoomQuery    = `SELECT room_id FROM mx_event WHERE event_id=$1`
	getMXEventMaxSeqQuery  = `SELECT COALESCE(MAX(seq), 0) FROM mx_event`
	markMXEventDoneQuery   = `UPDATE mx_event SET done=true, error=$2 WHERE seq=$1`
	addMXEventAttemptQuery = `UPDATE mx_event SET attempts=attempts+1, error=$2 WHERE seq=$1`
	// Parked events (error set) stay for inspection.
	pruneMXEventsQuery = `DELETE FROM mx_event WHERE done=true AND error='' AND received_at < $1`
)

// Scan reads an mx_event row.
func (e *MXEvent) Scan(row dbutil.Scannable) (*MXEvent, error) {
	var data string
	var received int64
	if err := row.Scan(&e.Seq, &e.EventID, &e.RoomID, &data, &e.Attempts, &received); err != nil {
		return nil, err
	}
	e.Data = []byte(data)
	if received > 0 {
		e.ReceivedAt = time.UnixMilli(received)
	}
	return e, nil
}

// NewMXEvent is an event of an appservice transaction, for InsertMany.
type NewMXEvent struct {
	EventID id.EventID
	RoomID  id.RoomID
	Data    []byte
}

// massInsertMXEvent builds the multi-row form of insertMXEventQuery; the
// received time is the same for the whole transaction.
var massInsertMXEvent = dbutil.NewMassInsertBuilder[*NewMXEvent, [1]any](insertMXEventQuery, "($1, $%d, $%d, $%d)")

// GetMassInsertValues is the event's values for massInsertMXEvent. Data goes
// in as text: the column is TEXT, and PostgreSQL refuses bytes for it.
func (e *NewMXEvent) GetMassInsertValues() [3]any {
	return [3]any{e.EventID, e.RoomID, string(e.Data)}
}

// InsertMany stores a transaction's events in their order with as few
// statements as possible (on PostgreSQL each is a round trip, and a busy
// user's transaction carries dozens) and reports how many were new. Seq
// follows the order of the rows, as with one Insert after another: both
// engines number a multi-row VALUES list in its order. An event id seen
// before, also earlier in the same list, is skipped.
func (q *MXEventQuery) InsertMany(ctx context.Context, events []*NewMXEvent) (added int, err error) {
	now := time.Now().UnixMilli()
	for chunk := range slices.Chunk(events, insertChunk) {
		query, args := massInsertMXEvent.Build([1]any{now}, chunk)
		res, err := q.GetDB().Exec(ctx, query, args...)
		if err != nil {
			return added, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return added, err
		}
		added += int(n)
	}
	return added, nil
}

// RoomOf returns the room of a stored event, or "" when the event is not
// (or no longer) stored.
func (q *MXEventQuery) RoomOf(ctx context.Context, eventID id.EventID) (id.RoomID, error) {
	var room string
	err := q.GetDB().QueryRow(ctx, getMXEventRoomQuery, eventID).Scan(&room)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id.RoomID(room), err
}

// MaxSeq returns the highest seq stored, 0 for none.
func (q *MXEventQuery) MaxSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := q.GetDB().QueryRow(ctx, getMXEventMaxSeqQuery).Scan(&seq)
	return seq, err
}

// InsertParked stores an event that cannot be handled as handled with an
// error, for an operator to inspect; a row with the same id is kept.
func (q *MXEventQuery) InsertParked(ctx context.Context, eventID id.EventID, data []byte, errMsg string) error {
	return q.Exec(ctx, insertParkedMXEventQuery, eventID, string(data), time.Now().UnixMilli(), errMsg)
}

// Pending lists events not yet handled with seq > after, in order, at most limit.
func (q *MXEventQuery) Pending(ctx context.Context, after int64, limit int) ([]*MXEvent, error) {
	return q.QueryMany(ctx, getPendingMXEventsQuery, after, limit)
}

// MarkDone marks an event handled; errMsg is set when it was parked instead.
func (q *MXEventQuery) MarkDone(ctx context.Context, seq int64, errMsg string) error {
	_, err := q.st.exec(ctx, markMXEventDoneQuery, seq, errMsg)
	return err
}

// AddAttempt counts a failed attempt to handle an event.
func (q *MXEventQuery) AddAttempt(ctx context.Context, seq int64, errMsg string) error {
	return q.Exec(ctx, addMXEventAttemptQuery, seq, errMsg)
}

// Prune deletes events handled without error that arrived before the
// cutoff; parked ones stay for inspection.
func (q *MXEventQuery) Prune(ctx context.Context, before time.Time) error {
	return q.Exec(ctx, pruneMXEventsQuery, before.UnixMilli())
}

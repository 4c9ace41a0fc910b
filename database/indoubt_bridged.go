package database

import "context"

// BeginFreshUnlessBridged is BeginFresh for the first part of a remote
// message, with the check that the message is not bridged yet folded into
// the same statement: the marker goes in only if neither a marker for the
// transaction id nor a stored mapping of the message's part 0 exists. A
// false answer means one of the two does; the caller looks which.
func (q *InDoubtQuery) BeginFreshUnlessBridged(ctx context.Context, s *InDoubtSend) (bool, error) {
	res, err := q.db.Exec(ctx, `
		INSERT INTO `+"in_doubt_send ("+inDoubtColumns+`)
		SELECT $1, $2, $3, $4, $5, CAST($6 AS INTEGER), $7, CAST($8 AS BIGINT), ''
		WHERE NOT EXISTS (SELECT 1 FROM message WHERE login_id=$3 AND chat_id=$4 AND remote_id=$5 AND part=0)
		ON CONFLICT (txn_id) DO NOTHING`,
		s.TxnID, s.RoomID, s.PortalKey.LoginID, s.PortalKey.ChatID, s.RemoteID, s.Part, s.EventType, s.StartedAt.UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

package database

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/lib/pq"
	"go.mau.fi/util/dbutil"
)

// The result of a remote message sent in one part, on PostgreSQL: the
// send's in-doubt marker goes, the inbox row is marked applied, the
// mapping goes in and, ahead of the chat's next messages, their markers
// are written (portal/premark.go). StoreSent does it for one message and at
// most one next marker in one statement; StoreSentMany for a group commit's
// messages, of any chats (of one connector), or for a message with several
// next markers, in one statement too.

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

// storeSentManyQuery is storeSentNextQuery for many results at once, each
// column an array (one prepared form for any count): $1–$12 and $21–$22
// are the results, $13–$20 the next messages' markers, and the markers it
// wrote come back. As in storeSentNextQuery every part reads one snapshot: no
// marker may be for a message whose result is among the rows (a message's
// marker is committed before its send, its result after it, so a group
// never holds both). The check for a bridged message is a scalar subquery,
// not NOT EXISTS: PostgreSQL turns NOT EXISTS into an anti-join, which it
// may run by hashing the whole message table; a scalar subquery stays a
// look-up by primary key per marker. The inbox rows are those of one
// connector ($11), read as the range of the primary key from the lowest
// of their seqs to the highest ($21, $22): a join of the inbox with the
// rows' (connector, seq) pairs got a generic plan that hashed the pairs
// and scanned the whole inbox, planned once per pooled connection while
// the table was small and kept as it grew (auto_explain over
// BenchmarkGoals' 8-chat run: 98 blocks a group for 12 rows), and
// "connector_id = $11 AND seq = ANY($12)" alone, on a table without
// statistics (PostgreSQL's autovacuum off), a bitmap scan of all the
// connector's rows. With the range, every plan (generic or not, statistics
// or not) is an index scan of the rows between the group's seqs.
const storeSentManyQuery = `
	WITH r AS (
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::text[], $6::text[],
			$7::text[], $8::boolean[], $9::bigint[])
		AS r(login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts)),
	cleared AS (DELETE FROM in_doubt_send WHERE txn_id = ANY($10::text[])),
	applied AS (UPDATE inbox SET done=true, error=''
		WHERE connector_id = $11 AND seq >= $21 AND seq <= $22 AND seq = ANY($12::bigint[])),
	mapped AS (
		INSERT INTO message (login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts)
		SELECT login_id, chat_id, remote_id, part, mxid, room_id, sender_id, is_me, ts FROM r
		ON CONFLICT DO NOTHING)
	INSERT INTO in_doubt_send (txn_id, room_id, login_id, chat_id, remote_id, part, event_type, started_at, event_id)
	SELECT n.txn_id, n.room_id, n.login_id, n.chat_id, n.remote_id, n.part, n.event_type, n.started_at, ''
	FROM unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::integer[], $19::text[], $20::bigint[])
		AS n(txn_id, room_id, login_id, chat_id, remote_id, part, event_type, started_at)
	WHERE (SELECT true FROM message m
		WHERE m.login_id=n.login_id AND m.chat_id=n.chat_id AND m.remote_id=n.remote_id AND m.part=0) IS NULL
	ON CONFLICT (txn_id) DO NOTHING
	RETURNING txn_id`

// SentResult is one message's result for StoreSentMany: its mapping, its
// send's transaction id, its inbox row and the markers of the chat's next
// messages (premarks; none, one or more).
type SentResult struct {
	Message     *Message
	TxnID       string
	ConnectorID string
	Seq         int64
	Next        []*InDoubtSend
}

// StoreSentMany is StoreSent for several results in one statement, on
// PostgreSQL only: a group commit's results in one round trip instead of
// one each, or one result with several next markers. The results' inbox
// rows must be of one connector. premarked holds the transaction ids of the
// Next markers it wrote. The statement is atomic: when it fails, none of it
// is stored (but see Rejected for whether that is known).
func (q *MessageQuery) StoreSentMany(ctx context.Context, results []SentResult) (premarked map[string]bool, err error) {
	if q.GetDB().Dialect != dbutil.Postgres {
		return nil, errors.New("StoreSentMany: PostgreSQL only")
	}
	if len(results) == 0 {
		return nil, nil
	}
	var c sentColumns
	for _, r := range results {
		if r.ConnectorID != results[0].ConnectorID {
			return nil, fmt.Errorf("StoreSentMany: inbox rows of connectors %q and %q", results[0].ConnectorID, r.ConnectorID)
		}
		c.add(r)
	}
	c.connector = results[0].ConnectorID
	rows, err := q.st.query(ctx, storeSentManyQuery, c.args()...)
	txnIDs, err := dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[string], err).AsList()
	if err != nil {
		return nil, fmt.Errorf("store %d sent messages' results: %w", len(results), err)
	}
	premarked = make(map[string]bool, len(txnIDs))
	for _, txnID := range txnIDs {
		premarked[txnID] = true
	}
	return premarked, nil
}

// sentColumns are StoreSentMany's rows as columns.
type sentColumns struct {
	login, chat, remote, mxid, room, sender, txn []string
	part, ts, seq                                []int64
	isMe                                         []bool
	connector                                    string
	// The next messages' markers.
	nTxn, nRoom, nLogin, nChat, nRemote, nType []string
	nPart, nStarted                            []int64
}

func (c *sentColumns) add(r SentResult) {
	m := r.Message
	c.login, c.chat, c.remote = append(c.login, m.LoginID), append(c.chat, m.ChatID), append(c.remote, m.RemoteID)
	c.part, c.mxid, c.room = append(c.part, int64(m.Part)), append(c.mxid, string(m.MXID)), append(c.room, string(m.RoomID))
	c.sender, c.isMe, c.ts = append(c.sender, m.SenderID), append(c.isMe, m.IsMe), append(c.ts, m.TS)
	c.txn, c.seq = append(c.txn, r.TxnID), append(c.seq, r.Seq)
	for _, n := range r.Next {
		c.nTxn, c.nRoom = append(c.nTxn, n.TxnID), append(c.nRoom, string(n.RoomID))
		c.nLogin, c.nChat = append(c.nLogin, n.PortalKey.LoginID), append(c.nChat, n.PortalKey.ChatID)
		c.nRemote, c.nPart = append(c.nRemote, n.RemoteID), append(c.nPart, int64(n.Part))
		c.nType, c.nStarted = append(c.nType, n.EventType), append(c.nStarted, n.StartedAt.UnixMilli())
	}
}

func (c *sentColumns) args() []any {
	return []any{
		pq.Array(c.login), pq.Array(c.chat), pq.Array(c.remote), pq.Array(c.part), pq.Array(c.mxid), pq.Array(c.room),
		pq.Array(c.sender), pq.Array(c.isMe), pq.Array(c.ts), pq.Array(c.txn), c.connector, pq.Array(c.seq),
		pq.Array(c.nTxn), pq.Array(c.nRoom), pq.Array(c.nLogin), pq.Array(c.nChat), pq.Array(c.nRemote),
		pq.Array(c.nPart), pq.Array(c.nType), pq.Array(c.nStarted), slices.Min(c.seq), slices.Max(c.seq),
	}
}

// Rejected reports whether err is PostgreSQL's answer that it refused a
// statement, so that none of an atomic statement took effect; any other
// error (a lost connection) leaves its outcome unknown.
func Rejected(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr)
}

package portal

import (
	"context"
	"time"

	"github.com/dmbridge/dmbridge/database"
)

// A group's message results in one statement: in a busy bridge on
// PostgreSQL most of a group commit's writes are the results of plain
// messages, one statement each (database.StoreSent), and the committer
// waited for each one's round trip in turn, while the chats' next sends
// waited for the commit that wrote their markers (premark.go). Two or more
// such results go as one statement (database.StoreSentMany); with nothing
// else in the group, without a transaction around it, unless the database
// is fenced for high availability (its lease check runs at BEGIN). A group
// of one result keeps the one-message statement, which PostgreSQL runs
// faster.

// sentWrite is a write's result as a row of StoreSentMany: when the write
// began, and how to tell the write which of its next messages' markers
// were written.
type sentWrite struct {
	result    database.SentResult
	writtenAt *time.Time
	premarked func(written func(txnID string) bool)
}

// sentResult is the write of a plain message's result on PostgreSQL: one
// statement alone (database.StoreSent, or StoreSentMany of this one result
// when it carries more than one next marker), a row of a group's statement
// with other results. premarked is told which of r.Next were written;
// writtenAt is when the write began.
func (m *Manager) sentResult(r database.SentResult, writtenAt *time.Time, premarked func(written func(txnID string) bool)) *groupWrite {
	w := newGroupWrite(func(ctx context.Context) error {
		*writtenAt = time.Now()
		if len(r.Next) > 1 {
			written, err := m.db.Message.StoreSentMany(ctx, []database.SentResult{r})
			premarked(func(txnID string) bool { return written[txnID] })
			return err
		}
		var next *database.InDoubtSend
		if len(r.Next) == 1 {
			next = r.Next[0]
		}
		ok, err := m.db.Message.StoreSent(ctx, r.Message, r.TxnID, r.ConnectorID, r.Seq, next)
		premarked(func(string) bool { return ok })
		return err
	}, true)
	w.sent = &sentWrite{result: r, writtenAt: writtenAt, premarked: premarked}
	return w
}

// minSentRows is how many results make StoreSentMany worth it: one result
// alone is one StoreSent (0.21 ms against 0.39–0.42 ms as StoreSentMany in
// database's BenchmarkStoreSent), two in a transaction took 0.83 ms against
// 0.44 ms as one statement, eight 2.5 ms against 0.6 ms.
const minSentRows = 2

// maxSentSpan bounds how far apart in their connector's stream the results
// of one statement are: StoreSentMany reads the inbox rows between the
// lowest and the highest seq, so a result of a chat that was held up (a
// send retried for minutes) would otherwise make the statement read every
// row that arrived meanwhile, until the housekeeping prunes them.
const maxSentSpan = 4096

// splitSent separates the group's results that go as one statement from
// the writes that run one by one; sent is nil when they are too few. The
// statement's results are those of the first result's connector (their
// inbox rows are found by seq within it) within maxSentSpan of its seq;
// the others run alone.
func splitSent(group []*groupWrite) (sent, rest []*groupWrite) {
	var connectorID string
	var first int64
	together := func(w *groupWrite) bool {
		return w.sent != nil && w.sent.result.ConnectorID == connectorID &&
			w.sent.result.Seq > first-maxSentSpan && w.sent.result.Seq < first+maxSentSpan
	}
	n := 0
	for _, w := range group {
		if w.sent != nil && n == 0 {
			connectorID, first = w.sent.result.ConnectorID, w.sent.result.Seq
		}
		if together(w) {
			n++
		}
	}
	if n < minSentRows {
		return nil, group
	}
	sent, rest = make([]*groupWrite, 0, n), make([]*groupWrite, 0, len(group)-n)
	for _, w := range group {
		if together(w) {
			sent = append(sent, w)
		} else {
			rest = append(rest, w)
		}
	}
	return sent, rest
}

// storeTogether stores sent's results in one statement, in ctx's
// transaction if it has one, and tells each write whether its next marker
// was written. (Manager.storeSent is the write of one result on its own.)
func storeTogether(ctx context.Context, db *database.Database, sent []*groupWrite) error {
	if len(sent) == 0 {
		return nil
	}
	began := time.Now()
	results := make([]database.SentResult, len(sent))
	for i, w := range sent {
		results[i] = w.sent.result
		*w.sent.writtenAt = began
	}
	premarked, err := db.Message.StoreSentMany(ctx, results)
	if err != nil {
		return err
	}
	written := func(txnID string) bool { return premarked[txnID] }
	for _, w := range sent {
		w.sent.premarked(written)
	}
	return nil
}

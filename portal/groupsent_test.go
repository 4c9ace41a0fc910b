package portal

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestGroupCommitStoresResultsTogether: on PostgreSQL the results of
// several chats' messages that share a group, some with the next message's
// marker, are stored as one statement, alone or beside a marker a send
// waits for; each write learns whether its next marker was written (not
// for a message bridged already). A result that PostgreSQL refuses fails
// alone: the group's other results are stored all the same.
func TestGroupCommitStoresResultsTogether(t *testing.T) {
	for _, tc := range []struct {
		name       string
		withMarker bool
		bad        int // a chat whose result PostgreSQL refuses (a NUL byte in its id), or -1
	}{
		{"results alone", false, -1},
		{"beside a marker", true, -1},
		{"one refused", true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testGroupSent(t, tc.withMarker, tc.bad)
		})
	}
}

func testGroupSent(t *testing.T, withMarker bool, bad int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := testdb.Open(t, testdb.Postgres(t))
	m := &Manager{db: db, commits: newGroupCommit(db)}
	if _, err := db.Login.Upsert(ctx, &database.Login{ID: "l", ConnectorID: "c", MatrixUser: "@a:x"}); err != nil {
		t.Fatal(err)
	}
	const chats = 6
	key := func(i int) database.PortalKey {
		return database.PortalKey{LoginID: "l", ChatID: fmt.Sprintf("chat%d", i)}
	}
	mark := func(i, n int) *database.InDoubtSend {
		return &database.InDoubtSend{TxnID: fmt.Sprintf("t%d-%d", i, n), RoomID: "!r:x", PortalKey: key(i),
			RemoteID: fmt.Sprintf("m%d", n), EventType: "m.room.message", StartedAt: time.Now()}
	}
	for i := 0; i < chats; i++ {
		if _, err := db.Portal.GetOrCreate(ctx, key(i), key(i).ChatID); err != nil {
			t.Fatal(err)
		}
		if err := db.Inbox.Insert(ctx, &database.InboxRow{ConnectorID: "c", Seq: int64(i + 1), LoginID: "l",
			ChatID: key(i).ChatID, Kind: "message", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
		if err := db.InDoubt.Begin(ctx, mark(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	// Chat 0's next message is bridged already: its marker is not written.
	if err := db.Message.Insert(ctx, &database.Message{PortalKey: key(0), RemoteID: "m2", MXID: "$done", RoomID: "!r:x"}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs, premarked, writtenAt := make([]error, chats+1), make([]bool, chats), make([]time.Time, chats)
	for i := 0; i < chats; i++ {
		var next []*database.InDoubtSend
		if i%2 == 0 {
			next = append(next, mark(i, 2))
		}
		if i == 4 {
			// Two of chat 4's next messages are queued.
			next = append(next, mark(i, 3))
		}
		remoteID := map[bool]string{false: "m1", true: "m\x001"}[i == bad]
		r := database.SentResult{Message: &database.Message{PortalKey: key(i), RemoteID: remoteID, MXID: id.EventID(fmt.Sprintf("$e%d", i)),
			RoomID: "!r:x"}, TxnID: mark(i, 1).TxnID, ConnectorID: "c", Seq: int64(i + 1), Next: next}
		w := m.sentResult(r, &writtenAt[i], func(written func(string) bool) {
			premarked[i] = len(next) > 0
			for _, n := range next {
				premarked[i] = premarked[i] && written(n.TxnID)
			}
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.group(ctx, w)
		}()
	}
	queued := chats
	if withMarker {
		queued++
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[chats] = m.groupMarker(ctx, func(ctx context.Context) error {
				_, err := db.InDoubt.BeginFresh(ctx, mark(9, 1))
				return err
			})
		}()
	}
	// Everything queues before a committer runs, so that it is one group.
	for len(m.commits.writes)+len(m.commits.markers) < queued {
		time.Sleep(time.Millisecond)
	}
	go m.commits.runOneEach(ctx)
	wg.Wait()

	if want := map[bool]int64{true: 0, false: chats}[bad >= 0]; m.commits.together.Load() != want {
		t.Errorf("%d results stored as one statement, want %d", m.commits.together.Load(), want)
	}
	for i := 0; i < chats; i++ {
		got, err := db.Message.GetPart(ctx, key(i), "m1", 0)
		if err != nil {
			t.Fatal(err)
		}
		if i == bad {
			var stored int
			if err := db.QueryRow(ctx, "SELECT count(*) FROM message WHERE login_id='l' AND chat_id=$1", key(i).ChatID).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if errs[i] == nil || stored != 0 {
				t.Errorf("the refused result: %v, %d mappings stored", errs[i], stored)
			}
			continue
		}
		if errs[i] != nil || got == nil {
			t.Errorf("chat %d: %v, mapping %+v", i, errs[i], got)
		}
		if want := i%2 == 0 && i != 0; premarked[i] != want {
			t.Errorf("chat %d: next marker written %v, want %v", i, premarked[i], want)
		}
		if writtenAt[i].IsZero() {
			t.Errorf("chat %d: no write time", i)
		}
		if mk, err := db.InDoubt.Get(ctx, mark(i, 1).TxnID); err != nil || mk != nil {
			t.Errorf("chat %d: its send's marker is left: %+v, %v", i, mk, err)
		}
		if i == 4 {
			if mk, err := db.InDoubt.Get(ctx, mark(i, 3).TxnID); err != nil || mk == nil {
				t.Errorf("chat 4: the marker of its second next message is not stored: %v", err)
			}
		}
	}
	if withMarker {
		if mk, err := db.InDoubt.Get(ctx, mark(9, 1).TxnID); errs[chats] != nil || err != nil || mk == nil {
			t.Errorf("the marker beside the results: %v, stored %+v, %v", errs[chats], mk, err)
		}
	}
	pending, err := db.Inbox.Pending(ctx, "c", 0, 10)
	if err != nil || (bad < 0) != (len(pending) == 0) || (bad >= 0 && (len(pending) != 1 || pending[0].Seq != int64(bad+1))) {
		t.Errorf("pending inbox rows %+v, %v; want only the refused chat's", pending, err)
	}
}

// TestSplitSent: fewer than minSentRows results go as they always did;
// from minSentRows on, they go apart from the group's other writes.
func TestSplitSent(t *testing.T) {
	plain := &groupWrite{}
	group := []*groupWrite{plain}
	for range minSentRows - 1 {
		group = append(group, &groupWrite{sent: &sentWrite{}})
	}
	if sent, rest := splitSent(group); sent != nil || len(rest) != minSentRows {
		t.Errorf("%d results: sent %d, rest %d", minSentRows-1, len(sent), len(rest))
	}
	group = append(group, &groupWrite{sent: &sentWrite{}})
	if sent, rest := splitSent(group); len(sent) != minSentRows || len(rest) != 1 || rest[0] != plain {
		t.Errorf("%d results: sent %d, rest %d", minSentRows, len(sent), len(rest))
	}
	// Another connector's result runs on its own: the statement finds
	// its inbox rows by seq within one connector.
	other := &groupWrite{sent: &sentWrite{result: database.SentResult{ConnectorID: "other"}}}
	group = append(group, other)
	if sent, rest := splitSent(group); len(sent) != minSentRows || len(rest) != 2 || rest[0] != plain || rest[1] != other {
		t.Errorf("%d results and one of another connector: sent %d, rest %d", minSentRows, len(sent), len(rest))
	}
	// A result far behind in the stream (a chat held up) runs on its own
	// too: the statement reads the inbox between the lowest and highest
	// seq.
	late := &groupWrite{sent: &sentWrite{result: database.SentResult{Seq: maxSentSpan}}}
	group = append(group, late)
	if sent, rest := splitSent(group); len(sent) != minSentRows || len(rest) != 3 || rest[2] != late {
		t.Errorf("%d results, one of another connector and one %d seqs on: sent %d, rest %d", minSentRows, maxSentSpan, len(sent), len(rest))
	}
	near := &groupWrite{sent: &sentWrite{result: database.SentResult{Seq: maxSentSpan - 1}}}
	if sent, _ := splitSent(append(group, near)); len(sent) != minSentRows+1 || sent[minSentRows] != near {
		t.Errorf("a result %d seqs on is not in the statement: sent %d", maxSentSpan-1, len(sent))
	}
}

// TestSentResultWithSeveralMarkers: on PostgreSQL a message's result that
// carries the markers of several next messages is one statement too; the
// write learns which were written (not a bridged message's).
func TestSentResultWithSeveralMarkers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := testdb.Open(t, testdb.Postgres(t))
	m := &Manager{db: db, commits: newGroupCommit(db)}
	go m.commits.runOneEach(ctx)
	if _, err := db.Login.Upsert(ctx, &database.Login{ID: "l", ConnectorID: "c", MatrixUser: "@a:x"}); err != nil {
		t.Fatal(err)
	}
	key := database.PortalKey{LoginID: "l", ChatID: "bob"}
	if _, err := db.Portal.GetOrCreate(ctx, key, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := db.Inbox.Insert(ctx, &database.InboxRow{ConnectorID: "c", Seq: 1, LoginID: "l", ChatID: "bob", Kind: "message", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	mark := func(n int) *database.InDoubtSend {
		return &database.InDoubtSend{TxnID: fmt.Sprintf("t%d", n), RoomID: "!r:x", PortalKey: key,
			RemoteID: fmt.Sprintf("m%d", n), EventType: "m.room.message", StartedAt: time.Now()}
	}
	if err := db.InDoubt.Begin(ctx, mark(1)); err != nil {
		t.Fatal(err)
	}
	// m3 is bridged already.
	if err := db.Message.Insert(ctx, &database.Message{PortalKey: key, RemoteID: "m3", MXID: "$m3", RoomID: "!r:x"}); err != nil {
		t.Fatal(err)
	}
	r := database.SentResult{Message: &database.Message{PortalKey: key, RemoteID: "m1", MXID: "$m1", RoomID: "!r:x"},
		TxnID: "t1", ConnectorID: "c", Seq: 1, Next: []*database.InDoubtSend{mark(2), mark(3), mark(4)}}
	var writtenAt time.Time
	written := map[string]bool{}
	w := m.sentResult(r, &writtenAt, func(was func(string) bool) {
		for _, n := range r.Next {
			written[n.TxnID] = was(n.TxnID)
		}
	})
	if err := m.group(ctx, w); err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"t2": true, "t3": false, "t4": true}; !maps.Equal(written, want) {
		t.Errorf("markers written %v, want %v", written, want)
	}
	for txn, want := range map[string]bool{"t1": false, "t2": true, "t3": false, "t4": true} {
		if mk, err := db.InDoubt.Get(ctx, txn); err != nil || (mk != nil) != want {
			t.Errorf("marker %s stored %v (%v), want %v", txn, mk != nil, err, want)
		}
	}
	if got, err := db.Message.GetPart(ctx, key, "m1", 0); err != nil || got == nil {
		t.Errorf("m1 not mapped: %v", err)
	}
	if pending, err := db.Inbox.Pending(ctx, "c", 0, 10); err != nil || len(pending) != 0 {
		t.Errorf("pending inbox rows %+v, %v; want none", pending, err)
	}
}

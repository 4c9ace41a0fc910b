package portal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestGroupCommitIsolatesFailures: writes of different chats that share a
// group transaction each get their own outcome: one that fails rolls back
// nothing of the others, and its own writes are not stored; the others'
// are, single statements and multi-statement writes alike.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		db := testdb.Open(t, target)
		m := &Manager{db: db, commits: newGroupCommit(db)}
		mark := func(txn string) *database.InDoubtSend {
			return &database.InDoubtSend{TxnID: txn, RoomID: "!r:x", PortalKey: database.PortalKey{LoginID: "l", ChatID: txn},
				RemoteID: txn, EventType: "m.room.message", StartedAt: time.Now()}
		}
		bad := errors.New("this chat's write fails")
		const n = 20
		results := make([]error, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				txn := fmt.Sprintf("t%d", i)
				write := func(ctx context.Context) error {
					if _, err := db.InDoubt.BeginFresh(ctx, mark(txn)); err != nil {
						return err
					}
					if i == 7 {
						return bad
					}
					return db.InDoubt.SetEventID(ctx, txn, "$e")
				}
				if i%2 == 0 && i != 7 {
					results[i] = m.groupStatement(ctx, func(ctx context.Context) error {
						_, err := db.InDoubt.BeginFresh(ctx, mark(txn))
						return err
					})
					return
				}
				results[i] = m.groupTxn(ctx, write)
			}()
		}
		// The writes queue up before any committer runs, so that they
		// share transactions.
		for len(m.commits.writes) < n {
			time.Sleep(time.Millisecond)
		}
		for i := 0; i < committers; i++ {
			go m.commits.runOneEach(ctx)
		}
		wg.Wait()
		for i, err := range results {
			got, gerr := db.InDoubt.Get(ctx, fmt.Sprintf("t%d", i))
			if gerr != nil {
				t.Fatal(gerr)
			}
			if i == 7 {
				if !errors.Is(err, bad) || got != nil {
					t.Fatalf("the failing write: %v, stored %v", err, got)
				}
				continue
			}
			if err != nil || got == nil {
				t.Fatalf("write %d: %v, stored %v", i, err, got)
			}
			if i%2 == 1 && got.EventID != "$e" {
				t.Fatalf("write %d lost its second statement: %+v", i, got)
			}
		}
	})
}

// TestLoneWriteFencedInTransaction: a statement that runs alone needs no
// transaction, except on a fenced database, where only BEGIN checks the
// high-availability lease; a write of several statements always has one.
func TestLoneWriteFencedInTransaction(t *testing.T) {
	db := testdb.Open(t, testdb.SQLite(t))
	ctx := context.Background()
	for _, c := range []struct {
		fenced, oneStatement, wantTxn bool
	}{{false, true, false}, {false, false, true}, {true, true, true}, {true, false, true}} {
		db.Fenced = c.fenced
		var inTxn bool
		w := newGroupWrite(func(ctx context.Context) error {
			_, inTxn = db.Execable(ctx).(dbutil.Transaction)
			return nil
		}, c.oneStatement)
		if err := runWrite(ctx, db, w); err != nil {
			t.Fatal(err)
		}
		if inTxn != c.wantTxn {
			t.Errorf("fenced %v, one statement %v: in a transaction %v, want %v", c.fenced, c.oneStatement, inTxn, c.wantTxn)
		}
	}
}

// TestMarkersCommitApart: on PostgreSQL the in-doubt markers commit in
// their own queue, in transactions that do not wait for the WAL flush, and
// never behind other writes (a result; a command's queueing, which its send
// waits for too), which commit with their flush: here two such writes hold
// both committers, and the markers commit meanwhile. On SQLite they all
// share the one committer, in their order.
func TestMarkersCommitApart(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		db := testdb.Open(t, target)
		pg := db.Dialect == dbutil.Postgres
		g := newGroupCommit(db)
		var mu sync.Mutex
		var order []string
		txnOf := map[string]dbutil.Execable{}
		setting := map[string]string{}
		record := func(ctx context.Context, name string) error {
			var v string
			if pg {
				if err := db.QueryRow(ctx, "SHOW synchronous_commit").Scan(&v); err != nil {
					return err
				}
			}
			mu.Lock()
			defer mu.Unlock()
			order = append(order, name)
			txnOf[name] = db.Execable(ctx)
			setting[name] = v
			return nil
		}
		marker := func(name string) *groupWrite {
			w := newGroupWrite(func(ctx context.Context) error {
				if _, err := db.InDoubt.BeginFresh(ctx, &database.InDoubtSend{TxnID: name, RoomID: "!r:x",
					PortalKey: database.PortalKey{LoginID: "l", ChatID: name}, RemoteID: name,
					EventType: "m.room.message", StartedAt: time.Now()}); err != nil {
					return err
				}
				return record(ctx, name)
			}, true)
			w.beforeSend, w.marker = true, true
			return w
		}
		// On PostgreSQL, the writes with a flush hold their committers
		// until released.
		release, started := make(chan struct{}), make(chan struct{}, 2)
		held := func(name string) func(context.Context) error {
			return func(ctx context.Context) error {
				if pg {
					started <- struct{}{}
					select {
					case <-release:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return record(ctx, name)
			}
		}
		result := newGroupWrite(held("result"), true)
		queue := newGroupWrite(held("queue"), false)
		queue.beforeSend = true
		m1, m2 := marker("m1"), marker("m2")
		group := []*groupWrite{result, queue, m1, m2}
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		if !pg {
			// Queued before the one committer runs: one group.
			for _, w := range group {
				g.queueOf(w) <- w
			}
			wg.Go(func() { g.run(ctx, g.writes) })
		} else {
			for range committers {
				wg.Go(func() { g.run(ctx, g.writes) })
			}
			wg.Go(func() { g.run(ctx, g.markers) })
			// One committer each, then the markers.
			for _, w := range []*groupWrite{result, queue} {
				g.queueOf(w) <- w
				<-started
			}
			g.queueOf(m1) <- m1
			g.queueOf(m2) <- m2
		}
		for _, w := range []*groupWrite{m1, m2} {
			select {
			case <-w.finished:
			case <-time.After(10 * time.Second):
				t.Fatal("a marker waited for the writes with a flush")
			}
		}
		close(release)
		for _, w := range group {
			if !w.wait(ctx) || w.err != nil {
				t.Fatalf("write failed: %v", w.err)
			}
		}
		if !pg {
			if fmt.Sprint(order) != "[result queue m1 m2]" || txnOf["m1"] != txnOf["result"] {
				t.Fatalf("SQLite: order %v, want the writes in one transaction", order)
			}
			return
		}
		if txnOf["m1"] != txnOf["m2"] || txnOf["m1"] == txnOf["result"] || txnOf["m1"] == txnOf["queue"] {
			t.Fatal("want the markers in one transaction, apart from the other writes")
		}
		if setting["m1"] != "off" || setting["m2"] != "off" || setting["result"] != "on" || setting["queue"] != "on" {
			t.Fatalf("synchronous_commit %v; want off for the markers' transaction only", setting)
		}
	})
}

// runOneEach runs one committer of the writes and, on PostgreSQL, one of
// the markers, until ctx ends.
func (g *groupCommit) runOneEach(ctx context.Context) {
	if g.markers != nil {
		go g.run(ctx, g.markers)
	}
	g.run(ctx, g.writes)
}

package portal

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/internal/fakematrix"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestGroupCommitLingersForSendsOut: while another lane has a send out, a
// committer holding a result write waits (at most maxLinger) for that
// lane's result, and both commit in one transaction; a marker that a send
// waits for does not wait, nor does anything when no send is out.
func TestGroupCommitLingersForSendsOut(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := testdb.Open(t, testdb.SQLite(t))
	m := &Manager{db: db, commits: newGroupCommit(db)}
	// Long enough that B's write surely comes within it, even under -race
	// on a loaded machine; the last part checks the bound itself.
	m.commits.lingerFor = 10 * time.Second
	go m.commits.runOneEach(ctx)
	// A lane's context, as lanes.runOne gives its job.
	laneCtx := func(key string) (context.Context, *laneHere) {
		here := &laneHere{key: key}
		return context.WithValue(ctx, laneKey{}, here), here
	}
	// write records the transaction a write ran in.
	write := func(into *any) func(context.Context) error {
		return func(ctx context.Context) error {
			*into = db.Execable(ctx)
			return nil
		}
	}

	// Lane B has a send out when lane A's result arrives.
	aCtx, _ := laneCtx("a")
	bCtx, bHere := laneCtx("b")
	m.commits.expectWrite(bCtx)
	var aTxn, bTxn any
	aDone := make(chan error, 1)
	go func() { aDone <- m.groupTxn(aCtx, write(&aTxn)) }()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-aDone:
		t.Fatalf("A's result committed (%v) while B's send was out, without waiting for it", err)
	default:
	}
	if err := m.groupTxn(bCtx, write(&bTxn)); err != nil {
		t.Fatal(err)
	}
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	if aTxn == nil || aTxn != bTxn {
		t.Fatalf("A and B committed in different transactions (%p, %p)", aTxn, bTxn)
	}
	if bHere.expecting != nil || m.commits.expected.Load() != 0 {
		t.Fatalf("B's expectation outlived its write (%d expected)", m.commits.expected.Load())
	}

	// A marker does not wait for anyone's result.
	cCtx, cHere := laneCtx("c")
	m.commits.expectWrite(cCtx)
	var markTxn any
	start := time.Now()
	if err := m.groupMarker(aCtx, write(&markTxn)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= m.commits.lingerFor {
		t.Fatalf("a marker waited %v for another lane's result", took)
	}
	// A job that ends without writing ends its expectation too.
	cHere.wroteOrGaveUp()
	if m.commits.expected.Load() != 0 {
		t.Fatalf("%d writes still expected after the job ended", m.commits.expected.Load())
	}

	// Nobody out: a result alone does not wait, and an expectation whose
	// write never comes holds a group for maxLinger at most.
	start = time.Now()
	if err := m.groupTxn(aCtx, write(&aTxn)); err != nil {
		t.Fatal(err)
	}
	alone := time.Since(start)
	m.commits.lingerFor = maxLinger
	m.commits.expectWrite(cCtx)
	start = time.Now()
	if err := m.groupTxn(aCtx, write(&aTxn)); err != nil {
		t.Fatal(err)
	}
	if held := time.Since(start); held > 50*maxLinger {
		t.Fatalf("a group was held %v for a write that never came (alone: %v)", held, alone)
	}
	cHere.wroteOrGaveUp()
}

// TestFailedSendEndsItsExpectation: a send that fails hands no result to
// the committers soon (its retry may wait seconds), so from its failure on
// they do not hold their groups for it.
func TestFailedSendEndsItsExpectation(t *testing.T) {
	u := newUnit(t, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u.remote(t, bobEvent("m1"))
	u.m.commits = newGroupCommit(u.db)
	go u.m.commits.runOneEach(ctx)
	u.hs.Fail = func(c fakematrix.Call) error {
		if c.Method == "SendMessageEvent" {
			return errors.New("homeserver unreachable")
		}
		return nil
	}
	var expected int64 = -1
	r := newLaneRun(u)
	m2 := bobEvent("m2")
	r.add(m2, func(ctx context.Context) {
		if err := u.m.applyRemote(ctx, unitConnID, m2, func(context.Context) error { return nil }); err == nil {
			t.Error("the send did not fail")
		}
		// Still inside the job: only the failure can have ended it.
		expected = u.m.commits.expected.Load()
	})
	r.wait(t)
	if expected != 0 {
		t.Fatalf("%d results still expected after the send failed", expected)
	}
}

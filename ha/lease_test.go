package ha

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/internal/testdb"
)

func newElector(t *testing.T, uri string, opts Options) (*Elector, *sql.DB) {
	t.Helper()
	e, err := New(context.Background(), uri, opts, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", uri)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return e, db
}

// newActive is newElector for a process that then waits to be active, as
// the first one started is at once.
func newActive(ctx context.Context, t *testing.T, uri string, opts Options) (*Elector, *sql.DB) {
	t.Helper()
	e, db := newElector(t, uri, opts)
	if err := e.WaitActive(ctx); err != nil {
		t.Fatal(err)
	}
	return e, db
}

// leaseTest gives a lease test a fresh PostgreSQL database and a context
// that ends after a minute, far beyond any lease the tests use.
func leaseTest(t *testing.T) (context.Context, string) {
	t.Helper()
	uri := testdb.Postgres(t).URI
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx, uri
}

func fencedDB(t *testing.T, uri string, e *Elector) *sql.DB {
	t.Helper()
	db, err := e.OpenDB(uri, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func insert(ctx context.Context, db *sql.DB, v int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err = tx.ExecContext(ctx, `INSERT INTO t (v) VALUES ($1)`, v); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// TestTakeoverFencesThePausedHolder plays a paused active: it stops renewing
// but keeps its sessions. The standby waits for the lease to expire, ends
// those sessions, takes a new epoch, and the old holder can neither commit
// nor pass its clock check any more.
func TestTakeoverFencesThePausedHolder(t *testing.T) {
	ctx, uri := leaseTest(t)
	opts := Options{Lease: 1200 * time.Millisecond, Renew: 300 * time.Millisecond, Margin: 300 * time.Millisecond}
	a, _ := newActive(ctx, t, uri, opts)
	b, _ := newElector(t, uri, opts)
	if role, epoch := a.Role(); role != Active || epoch != 1 {
		t.Fatalf("a: %s epoch %d, want active epoch 1", role, epoch)
	}
	adb := fencedDB(t, uri, a)
	if _, err := adb.ExecContext(ctx, `CREATE TABLE t (v INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if err := insert(ctx, adb, 1); err != nil {
		t.Fatalf("active's transaction: %v", err)
	}

	// b stays standby while a renews.
	bctx, bcancel := context.WithTimeout(ctx, 2*opts.Lease)
	if err := b.WaitActive(bctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("standby became active while the lease was renewed: %v", err)
	}
	bcancel()

	// "Pause" a: its renewals stop, its sessions stay.
	a.stopOnce.Do(func() { close(a.stopRenew) })
	<-a.renewDone
	start := time.Now()
	if err := b.WaitActive(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if role, epoch := b.Role(); role != Active || epoch != 2 {
		t.Fatalf("b: %s epoch %d, want active epoch 2", role, epoch)
	}
	if took > 3*opts.Lease {
		t.Errorf("takeover took %s for a %s lease", took, opts.Lease)
	}
	t.Logf("takeover %s after the renewals stopped (lease %s)", took, opts.Lease)
	// The former's requests had arrived by the lease's expiry: after its
	// last renewal plus the lease, before b took over.
	if fd := b.FormerDone(); fd.Before(start.Add(opts.Lease-opts.Renew-100*time.Millisecond)) || fd.After(start.Add(took)) {
		t.Errorf("former done %s after the renewals stopped, want between %s and %s",
			fd.Sub(start), opts.Lease-opts.Renew, took)
	}
	if err := a.Check(); err == nil {
		t.Error("the paused holder still passes its clock check after the takeover")
	}
	// Even a holder whose clock check is bypassed cannot commit: its
	// transaction sees the new epoch.
	a.mu.Lock()
	a.role, a.validUntil = Active, time.Now().Add(time.Hour)
	a.mu.Unlock()
	// The first attempt may fail only because the takeover ended the
	// session it ran on; the next ones meet the fence.
	for i := 0; i < 3; i++ {
		if err := insert(ctx, adb, 2); err == nil {
			t.Fatal("the former active committed after the takeover")
		} else {
			t.Logf("former active's transaction %d: %v", i, err)
		}
	}
	if role, _ := a.Role(); role != Lost {
		t.Errorf("the fenced former active is %s, want lost", role)
	}
	bdb := fencedDB(t, uri, b)
	if err := insert(ctx, bdb, 3); err != nil {
		t.Fatalf("new active's transaction: %v", err)
	}
	var got []int
	rows, err := bdb.QueryContext(ctx, `SELECT v FROM t ORDER BY v`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int
		_ = rows.Scan(&v)
		got = append(got, v)
	}
	rows.Close()
	if len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Errorf("rows %v, want [1 3]", got)
	}
}

// TestReleaseHandsOverAtOnce: a clean shutdown gives the lease up, so the
// standby does not wait for it to expire.
func TestReleaseHandsOverAtOnce(t *testing.T) {
	ctx, uri := leaseTest(t)
	opts := Options{Lease: 10 * time.Second}
	a, _ := newActive(ctx, t, uri, opts)
	b, _ := newElector(t, uri, opts)
	done := make(chan error, 1)
	go func() { done <- b.WaitActive(ctx) }()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	a.Release(ctx)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("takeover after a release took %s", took)
	}
	// Released at start: the former had stopped then, not a lease earlier.
	if fd := b.FormerDone(); fd.Before(start) || fd.After(time.Now()) {
		t.Errorf("former done %s after the release, want between it and now", fd.Sub(start))
	}
	if role, epoch := b.Role(); role != Active || epoch != 2 {
		t.Errorf("b: %s epoch %d", role, epoch)
	}
	b.Release(ctx)
}

// TestLostLockConnectionStopsAtOnce: when the database ends the active's
// lock session, the next renewal fails and the process is lost before its
// lease could expire.
func TestLostLockConnectionStopsAtOnce(t *testing.T) {
	ctx, uri := leaseTest(t)
	opts := Options{Lease: 8 * time.Second, Renew: 200 * time.Millisecond, Margin: 2 * time.Second}
	a, db := newActive(ctx, t, uri, opts)
	if _, err := db.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND pid <> pg_backend_pid()`, a.Instance()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Lost():
	case <-time.After(opts.Lease - opts.Margin):
		t.Fatal("the active did not stop after losing its lock session")
	}
	if a.Check() == nil {
		t.Error("lost process passes its check")
	}
}

// TestLongTransactionKeepsTheLease: a transaction of the active that runs
// longer than the lease does not hold up the renewals.
func TestLongTransactionKeepsTheLease(t *testing.T) {
	ctx, uri := leaseTest(t)
	opts := Options{Lease: 1200 * time.Millisecond, Renew: 300 * time.Millisecond, Margin: 300 * time.Millisecond}
	a, _ := newActive(ctx, t, uri, opts)
	db := fencedDB(t, uri, a)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * opts.Lease)
	if err := a.Check(); err != nil {
		t.Fatalf("the active lost its lease during a long transaction: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	a.Release(ctx)
}

// TestPastDeadlineStepsDownByClock: an active whose lease has run out by its
// own clock (as after a pause) fails its checks and is lost by the clock at
// its next renewal tick, without trying the renewal; with EpochFenceOnly
// (the fault tests' knob) the clock is ignored.
func TestPastDeadlineStepsDownByClock(t *testing.T) {
	ctx, uri := leaseTest(t)
	for _, epochOnly := range []bool{false, true} {
		var logs bytes.Buffer
		opts := Options{Lease: 1200 * time.Millisecond, Renew: 300 * time.Millisecond, Margin: 300 * time.Millisecond, EpochFenceOnly: epochOnly}
		e, err := New(ctx, uri, opts, zerolog.New(&syncWriter{w: &logs}))
		if err != nil {
			t.Fatal(err)
		}
		if err = e.WaitActive(ctx); err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		e.validUntil = time.Now().Add(-time.Second)
		e.mu.Unlock()
		if got := e.Check() == nil; got != epochOnly {
			t.Errorf("epoch only %v: check passes %v past the deadline", epochOnly, got)
		}
		select {
		case <-e.Lost():
			if epochOnly {
				t.Error("lost by the clock with EpochFenceOnly")
			}
		case <-time.After(3 * opts.Renew):
			if !epochOnly {
				t.Error("not lost at the next renewal tick past the deadline")
			}
		}
		if !epochOnly && !strings.Contains(logs.String(), "ran out by this process's clock") {
			t.Errorf("loss not put down to the clock:\n%s", logs.String())
		}
		e.Release(ctx)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

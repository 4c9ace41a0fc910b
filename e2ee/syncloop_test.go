package e2ee

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/memhs"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// flakyFilter answers the ghost devices' filter uploads and /sync itself
// (memhs has neither); the first filter upload fails with a 502, as while
// the homeserver restarts.
type flakyFilter struct {
	base http.RoundTripper
	mu   sync.Mutex
	// filters and syncs count the requests seen.
	filters, syncs int
}

func (f *flakyFilter) RoundTrip(r *http.Request) (*http.Response, error) {
	reply := func(code int, body string) (*http.Response, error) {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(bytes.NewBufferString(body)), Request: r}, nil
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/filter"):
		f.mu.Lock()
		f.filters++
		first := f.filters == 1
		f.mu.Unlock()
		if first {
			return reply(http.StatusBadGateway, `{"errcode":"M_UNKNOWN","error":"bad gateway"}`)
		}
		return reply(http.StatusOK, `{"filter_id":"1"}`)
	case strings.HasSuffix(r.URL.Path, "/sync"):
		f.mu.Lock()
		f.syncs++
		f.mu.Unlock()
		select {
		case <-r.Context().Done():
			return nil, r.Context().Err()
		case <-time.After(50 * time.Millisecond):
		}
		return reply(http.StatusOK, `{"next_batch":"s1"}`)
	}
	return f.base.RoundTrip(r)
}

// TestGhostSyncSurvivesFailedFilterUpload: a ghost device's /sync
// loop whose filter upload fails once (a 502 while the homeserver
// restarts) must go on, as it does for a failed /sync. mautrix's
// SyncWithContext returns on that error (and on a failed SaveNextBatch),
// startSync only logs it, and d.syncing stays true, so nothing starts the
// loop again: the ghost never gets another room key until a restart.
func TestGhostSyncSurvivesFailedFilterUpload(t *testing.T) {
	t.Parallel()
	hs, db := syncLoopSetup(t)
	ff := &flakyFilter{}
	m := testManager(t, db, hs.URL, "localhost", false, zerolog.Nop(), func(base http.RoundTripper) http.RoundTripper {
		if base == nil {
			base = http.DefaultTransport
		}
		ff.base = base
		return ff
	})
	// The loop is started again after the production backoff of 2 s; a
	// short one shows the same restart (set before Active starts a loop).
	m.syncRetry = func(int) time.Duration { return 20 * time.Millisecond }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := m.Active(ctx, "@dm_bob:localhost"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ff.mu.Lock()
		syncs := ff.syncs
		ff.mu.Unlock()
		if syncs > 0 {
			return
		}
		if time.Now().After(deadline) {
			ff.mu.Lock()
			defer ff.mu.Unlock()
			t.Fatalf("after one failed filter upload: %d filter uploads, %d syncs, %d loops running; want the loop to retry and sync",
				ff.filters, ff.syncs, m.SyncLoops())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGhostSyncLoopEndsWithItsRooms: the design says only ghosts in
// an encrypted room run the to-device /sync loop, but nothing ever clears
// ghost_device.syncing or stops a loop: a ghost whose encrypted DM is gone
// (here: no login and no portal at all is left in the database) gets its
// loop back at every start, for good. Over months every contact that ever
// had an encrypted DM keeps 3 goroutines, ~31 KiB and 2 requests a minute.
func TestGhostSyncLoopEndsWithItsRooms(t *testing.T) {
	hs, db := syncLoopSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first := ghostLoopRunning(ctx, t, hs, db)
	first.Stop()
	// The DM is gone: no login, no portal. A restart:
	if logins, err := db.Login.Owners(ctx); err != nil || len(logins) != 0 {
		t.Fatalf("owners %v, %v", logins, err)
	}
	second := testManager(t, db, hs.URL, "localhost", false, zerolog.Nop(), steadyFilter)
	if err := second.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := second.SyncLoops(); n != 0 {
		t.Fatalf("%d ghost /sync loops run after a start with no encrypted DM left; want 0", n)
	}
}

// TestReleaseStopsTheLoop: when the ghost's last portal ends, Release stops
// its loop and clears the stored flag; a new encrypted DM starts it again.
func TestReleaseStopsTheLoop(t *testing.T) {
	hs, db := syncLoopSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := ghostLoopRunning(ctx, t, hs, db)
	waitLoops := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for m.SyncLoops() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d loops, want %d", m.SyncLoops(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLoops(1)
	// Within releaseGrace of the Active, a portal may be on its way.
	if err := m.Release(ctx, ownGhost); err != nil {
		t.Fatal(err)
	}
	if n := m.SyncLoops(); n != 1 {
		t.Fatalf("%d loops right after an Active, want 1", n)
	}
	m.mu.Lock()
	m.devices[ownGhost].activeAt = time.Now().Add(-releaseGrace)
	m.mu.Unlock()
	if err := m.Release(ctx, ownGhost); err != nil {
		t.Fatal(err)
	}
	waitLoops(0)
	if rows, err := db.GhostDev.Syncing(ctx); err != nil || len(rows) != 0 {
		t.Fatalf("syncing rows after Release: %d, %v", len(rows), err)
	}
	if _, err := m.Active(ctx, ownGhost); err != nil {
		t.Fatal(err)
	}
	waitLoops(1)
}

// syncLoopSetup is the in-memory homeserver and database the loop tests
// share.
func syncLoopSetup(t *testing.T) (*memhs.Server, *database.Database) {
	t.Helper()
	hs := memhs.Start("localhost")
	t.Cleanup(hs.Close)
	hs.AddToken("as", "@dmbridgebot:localhost")
	return hs, testdb.Open(t, testdb.SQLite(t))
}

// ghostLoopRunning is a manager on hs and db whose filter uploads and
// /sync succeed, with ownGhost made active as an encrypted portal does:
// its /sync loop is started.
func ghostLoopRunning(ctx context.Context, t *testing.T, hs *memhs.Server, db *database.Database) *Manager {
	t.Helper()
	m := testManager(t, db, hs.URL, "localhost", false, zerolog.Nop(), steadyFilter)
	if _, err := m.Active(ctx, ownGhost); err != nil {
		t.Fatal(err)
	}
	return m
}

// steadyFilter answers the filter uploads and /sync without a failure.
func steadyFilter(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &flakyFilter{base: base, filters: 1}
}

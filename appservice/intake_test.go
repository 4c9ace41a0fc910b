package appservice_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/httpcall"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

type countingSink struct{ wakes, ephemeral atomic.Int32 }

func (s *countingSink) Wake() { s.wakes.Add(1) }
func (s *countingSink) MatrixEphemeral(context.Context, *appservice.EphemeralEvent) {
	s.ephemeral.Add(1)
}

func testConfig() *config.Config {
	cfg := config.Default()
	cfg.Homeserver.Address = "http://127.0.0.1:1"
	cfg.Homeserver.Domain = "localhost"
	cfg.Appservice.ID = "dmbridge"
	cfg.Appservice.Bot.Username = "dmbridgebot"
	cfg.Appservice.ASToken = "as-secret"
	cfg.Appservice.HSToken = "hs-secret"
	return cfg
}

// newLink opens the database and builds a link on it, not yet serving.
func newLink(t *testing.T, target testdb.Target) (*appservice.Link, *database.Database) {
	t.Helper()
	db, err := database.Open(context.Background(), target.Type, target.URI, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	link, err := appservice.New(context.Background(), testConfig(), db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return link, db
}

// startLink opens the database and serves the link's routes, as one bridge
// process would; calling it again on the same target is a restart.
func startLink(t *testing.T, target testdb.Target) (*httptest.Server, *database.Database, *countingSink) {
	t.Helper()
	link, db := newLink(t, target)
	sink := &countingSink{}
	link.SetSink(sink)
	srv := httptest.NewServer(link.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = db.Close()
	})
	return srv, db, sink
}

const txnBody = `{"events":[{"event_id":"$e1","room_id":"!r:localhost","sender":"@alice:localhost",
	"type":"m.room.message","origin_server_ts":1,"content":{"msgtype":"m.text","body":"hi"}}],
	"ephemeral":[{"type":"m.typing","room_id":"!r:localhost","content":{"user_ids":["@alice:localhost"]}}]}`

func put(t *testing.T, srv *httptest.Server, txnID, token, body string) (int, string) {
	t.Helper()
	return httpcall.Do(t, http.MethodPut, srv.URL+"/_matrix/app/v1/transactions/"+txnID, token, body)
}

func countRows(t *testing.T, db *database.Database, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// storedEvent is an mx_event row as the intake tests look at it.
type storedEvent struct {
	id, errMsg string
	done       bool
}

// storedEvents is what the intake stored in mx_event, in intake order.
func storedEvents(t *testing.T, db *database.Database) []storedEvent {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT event_id, done, error FROM mx_event ORDER BY seq")
	got, err := dbutil.NewRowIterWithError(rows, func(row dbutil.Scannable) (ev storedEvent, err error) {
		return ev, row.Scan(&ev.id, &ev.done, &ev.errMsg)
	}, err).AsList()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestTransactionAuth(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		srv, db, sink := startLink(t, target)
		if code, body := put(t, srv, "t1", "wrong", txnBody); code != http.StatusForbidden || !strings.Contains(body, "M_FORBIDDEN") {
			t.Errorf("wrong token: %d %s, want 403 M_FORBIDDEN", code, body)
		}
		if code, _ := put(t, srv, "t1", "", txnBody); code != http.StatusUnauthorized {
			t.Errorf("missing token: %d, want 401", code)
		}
		if code, body := put(t, srv, "t2", "hs-secret", `{"events":[{`); code != http.StatusBadRequest {
			t.Errorf("malformed body: %d %s, want 400", code, body)
		}
		if n := countRows(t, db, "as_txn") + countRows(t, db, "mx_event"); n != 0 {
			t.Errorf("refused transactions left %d rows", n)
		}
		if sink.wakes.Load() != 0 || sink.ephemeral.Load() != 0 {
			t.Errorf("refused transactions reached the sink")
		}
	})
}

func TestTransactionOnceAcrossRestart(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		srv, db, sink := startLink(t, target)
		for i := 0; i < 2; i++ {
			if code, body := put(t, srv, "txn-a", "hs-secret", txnBody); code != http.StatusOK {
				t.Fatalf("put %d: %d %s", i, code, body)
			}
		}
		if n := countRows(t, db, "mx_event"); n != 1 {
			t.Errorf("%d stored events after a repeated txn, want 1", n)
		}
		if sink.wakes.Load() != 1 || sink.ephemeral.Load() != 1 {
			t.Errorf("sink saw %d wakes and %d ephemeral events, want 1 and 1", sink.wakes.Load(), sink.ephemeral.Load())
		}
		srv.Close()
		_ = db.Close()

		srv2, db2, sink2 := startLink(t, target)
		if code, _ := put(t, srv2, "txn-a", "hs-secret", txnBody); code != http.StatusOK {
			t.Fatalf("put after restart: %d", code)
		}
		if n := countRows(t, db2, "mx_event"); n != 1 {
			t.Errorf("%d stored events after restart and repeat, want 1", n)
		}
		if sink2.wakes.Load() != 0 {
			t.Errorf("a transaction seen before the restart was processed again")
		}
	})
}

// TestRetriedTransactionWithMoreEvents: Dendrite names a transaction after
// the first event of its batch, so a retry after a failed push can reuse the
// id with events added meanwhile. Those must not be lost, and the ones
// already stored must not be stored twice.
func TestRetriedTransactionWithMoreEvents(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		srv, db, sink := startLink(t, target)
		if code, _ := put(t, srv, "txn-b", "hs-secret", txnBody); code != http.StatusOK {
			t.Fatalf("first put: %d", code)
		}
		bigger := `{"events":[{"event_id":"$e1","room_id":"!r:localhost","sender":"@alice:localhost",
			"type":"m.room.message","origin_server_ts":1,"content":{"msgtype":"m.text","body":"hi"}},
			{"event_id":"$e2","room_id":"!r:localhost","sender":"@alice:localhost",
			"type":"m.room.message","origin_server_ts":2,"content":{"msgtype":"m.text","body":"later"}}]}`
		if code, _ := put(t, srv, "txn-b", "hs-secret", bigger); code != http.StatusOK {
			t.Fatalf("retried put: %d", code)
		}
		var ids []string
		for _, ev := range storedEvents(t, db) {
			ids = append(ids, ev.id)
		}
		if strings.Join(ids, ",") != "$e1,$e2" {
			t.Errorf("stored events %v, want $e1 then $e2 once each", ids)
		}
		if sink.wakes.Load() != 2 {
			t.Errorf("sink woken %d times, want 2 (once per put that added events)", sink.wakes.Load())
		}
		if sink.ephemeral.Load() != 1 {
			t.Errorf("ephemeral events handed over %d times, want 1", sink.ephemeral.Load())
		}
	})
}

// TestMalformedEventIsStoredAndSkipped: one event without an event_id, one
// that is not an object, among good ones. The homeserver must get its 200
// (a 400 makes it resend the transaction forever, the good events with it);
// the good events are taken in, the bad ones kept as parked rows.
func TestMalformedEventIsStoredAndSkipped(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		srv, db, sink := startLink(t, target)
		body := `{"events":[
			{"event_id":"$good1","room_id":"!r:localhost","sender":"@alice:localhost","type":"m.room.message","content":{"body":"a"}},
			{"room_id":"!r:localhost","sender":"@alice:localhost","type":"m.room.message","content":{"body":"no id"}},
			"not an event",
			{"event_id":"$good2","room_id":"!r:localhost","sender":"@alice:localhost","type":"m.room.message","content":{"body":"b"}}]}`
		for i := 0; i < 2; i++ {
			if code, resp := put(t, srv, "txn-bad", "hs-secret", body); code != http.StatusOK {
				t.Fatalf("put %d: %d %s, want 200", i, code, resp)
			}
		}
		var pending, parked []string
		for _, r := range storedEvents(t, db) {
			switch {
			case !r.done && r.errMsg == "":
				pending = append(pending, r.id)
			case r.done && strings.HasPrefix(r.id, "malformed:") && strings.Contains(r.errMsg, "malformed"):
				parked = append(parked, r.id)
			default:
				t.Errorf("unexpected row %+v", r)
			}
		}
		if strings.Join(pending, ",") != "$good1,$good2" || len(parked) != 2 {
			t.Fatalf("pending %v and parked %v, want $good1,$good2 and two parked rows", pending, parked)
		}
		if sink.wakes.Load() != 1 {
			t.Errorf("sink woken %d times, want 1", sink.wakes.Load())
		}
	})
}

// gatedServer serves link behind a lease gate that fails once lost is set.
func gatedServer(t *testing.T, link *appservice.Link, db *database.Database) (*atomic.Bool, *httptest.Server) {
	lost := new(atomic.Bool)
	link.SetGate(func() error {
		if lost.Load() {
			return errors.New("not active")
		}
		return nil
	})
	srv := httptest.NewServer(link.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = db.Close()
	})
	return lost, srv
}

// TestTransactionNotAckedWhenGated: a high-availability instance that lost
// its lease between storing a transaction and answering says nothing (the
// connection drops, the homeserver retries at the active), and the sink is
// not woken.
func TestTransactionNotAckedWhenGated(t *testing.T) {
	target := testdb.Targets(t)[0]
	link, db := newLink(t, target)
	sink := &countingSink{}
	link.SetSink(sink)
	lost, srv := gatedServer(t, link, db)
	if code, body := put(t, srv, "txn-a", "hs-secret", txnBody); code != http.StatusOK {
		t.Fatalf("while active: %d %s", code, body)
	}
	lost.Store(true)
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/_matrix/app/v1/transactions/txn-b", strings.NewReader(txnBody))
	req.Header.Set("Authorization", "Bearer hs-secret")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("after losing the lease the transaction got an answer: %d", resp.StatusCode)
	}
	if sink.wakes.Load() != 1 {
		t.Errorf("sink woken %d times, want once (by the acknowledged transaction)", sink.wakes.Load())
	}
}

// pausingSink stands for a process stopped (SIGSTOP) in the intake's work
// after its answer: Wake tells woken and waits for resume.
type pausingSink struct {
	countingSink
	woken, resume chan struct{}
}

func (s *pausingSink) Wake() {
	s.countingSink.Wake()
	close(s.woken)
	<-s.resume
}

// TestTransactionNotAckedWhenLeaseRunsOutAfterTheAnswer is the flake of
// TestFaultHAPausedActive: the intake stores the transaction and writes its
// 200 while the lease is valid, is paused in the work after the answer (the
// sink's wake-up), and resumes after losing the lease. The answer must not
// go out then: net/http sends it only once the handler returns.
func TestTransactionNotAckedWhenLeaseRunsOutAfterTheAnswer(t *testing.T) {
	target := testdb.Targets(t)[0]
	link, db := newLink(t, target)
	sink := &pausingSink{woken: make(chan struct{}), resume: make(chan struct{})}
	link.SetSink(sink)
	lost, srv := gatedServer(t, link, db)
	type answer struct {
		status int
		err    error
	}
	got := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/_matrix/app/v1/transactions/txn-p", strings.NewReader(txnBody))
		req.Header.Set("Authorization", "Bearer hs-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- answer{err: err}
			return
		}
		_ = resp.Body.Close()
		got <- answer{status: resp.StatusCode}
	}()
	<-sink.woken
	lost.Store(true)
	close(sink.resume)
	if a := <-got; a.err == nil {
		t.Fatalf("the lease ran out before the handler returned, yet the transaction got an answer: %d", a.status)
	}
	// Stored before the answer: the active finds it in the database.
	if n := countRows(t, db, "mx_event"); n != 1 {
		t.Errorf("%d events stored, want 1", n)
	}
}

// TestOwnEchoesNotStored: what the bridge sent itself comes back from the
// homeserver. A ghost's or the bot's message is not stored, and a
// transaction of nothing else is answered without a database transaction
// (its id is not even remembered); their state events (the state store
// must see them), users' events and events of users outside the bridge's
// namespace wait for the dispatcher.
func TestOwnEchoesNotStored(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		srv, db, _ := startLink(t, target)
		ctx := context.Background()
		ev := func(id, sender, extra string) string {
			return `{"event_id":"` + id + `","room_id":"!r:localhost","sender":"` + sender + `","origin_server_ts":1,` + extra + `}`
		}
		msg := `"type":"m.room.message","content":{"msgtype":"m.text","body":"hi"}`
		join := `"type":"m.room.member","state_key":"@dm_bob:localhost","content":{"membership":"join"}`
		echoes := `{"events":[` + ev("$echo1", "@dm_bob:localhost", msg) + "," + ev("$echo2", "@dmbridgebot:localhost", msg) + `]}`
		if code, out := put(t, srv, "t0", "hs-secret", echoes); code != http.StatusOK {
			t.Fatalf("echoes only: status %d: %s", code, out)
		}
		var txns, rows int
		if err := db.QueryRow(ctx, "SELECT (SELECT COUNT(*) FROM as_txn), (SELECT COUNT(*) FROM mx_event)").Scan(&txns, &rows); err != nil {
			t.Fatal(err)
		} else if txns != 0 || rows != 0 {
			t.Errorf("a transaction of echoes left %d transaction ids and %d events, want none", txns, rows)
		}
		body := `{"events":[` + strings.Join([]string{
			ev("$ghost", "@dm_bob:localhost", msg),
			ev("$bot", "@dmbridgebot:localhost", msg),
			ev("$ghostjoin", "@dm_bob:localhost", join),
			ev("$user", "@alice:localhost", msg),
			ev("$other", "@dm_bob:elsewhere", msg),
		}, ",") + `]}`
		if code, out := put(t, srv, "t1", "hs-secret", body); code != http.StatusOK {
			t.Fatalf("status %d: %s", code, out)
		}
		stored, err := db.Query(ctx, "SELECT event_id FROM mx_event WHERE done=false ORDER BY seq")
		if err != nil {
			t.Fatal(err)
		}
		got, err := dbutil.NewRowIterWithError(stored, dbutil.ScanSingleColumn[string], nil).AsList()
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"$ghostjoin", "$user", "$other"}; !slices.Equal(got, want) {
			t.Errorf("events waiting for the dispatcher %v, want %v", got, want)
		}
		var all int
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM mx_event").Scan(&all); err != nil || all != 3 {
			t.Errorf("%d events stored (%v), want the 3 that are not echoes", all, err)
		}
	})
}

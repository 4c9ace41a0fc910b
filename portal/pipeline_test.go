package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/inbox"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// pipelineUnit is a unit with running group committers and an inbox, so
// that events run as the dispatcher runs them (applyInbox) and results
// commit apart from their jobs.
func pipelineUnit(t *testing.T, target testdb.Target) (*unit, *inbox.Inbox) {
	t.Helper()
	u := newUnitOn(t, target, false)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	u.m.commits = newGroupCommit(u.db)
	go u.m.commits.runOneEach(ctx)
	in := inbox.New(u.db, nil, zerolog.Nop())
	u.m.SetInbox(in)
	// The chat's portal exists: the pipeline is a busy chat's.
	u.remote(t, bobEvent("m1"))
	return u, in
}

// queueEntries stores evs in the inbox and queues them on one lane behind
// a gate, as the dispatcher does; the returned run waits for them.
func queueEntries(t *testing.T, u *unit, in *inbox.Inbox, evs ...*connector.Event) *laneRun {
	t.Helper()
	ctx := context.Background()
	items := make([]server.Accepted, len(evs))
	for i, ev := range evs {
		raw, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		items[i] = server.Accepted{Seq: int64(i + 1), Event: ev, Raw: raw}
	}
	if err := in.AcceptBatch(ctx, unitConnID, items); err != nil {
		t.Fatal(err)
	}
	entries, _, _ := in.Reader().Next(ctx, 100)
	if len(entries) != len(evs) {
		t.Fatalf("read %d entries, want %d", len(entries), len(evs))
	}
	r := newLaneRun(u)
	for _, e := range entries {
		r.n++
		u.m.lanes.submitPeek("contact/test", e.Kind, e, func(ctx context.Context) {
			defer func() { r.done <- struct{}{} }()
			u.m.applyInbox(ctx, e)
		})
	}
	// The lane settles what its jobs left behind before this one: when it
	// has run, every result is stored or applied again.
	r.n++
	u.m.lanes.submit("contact/test", "settled", func(context.Context) { r.done <- struct{}{} })
	return r
}

// checkBridgedOnce checks that each of ids was sent once, in this order,
// after m1, is mapped, has no marker left, and that its inbox row is done.
func checkBridgedOnce(t *testing.T, u *unit, ids ...string) {
	t.Helper()
	ctx := context.Background()
	var bodies []string
	for _, c := range u.sends() {
		body, _ := c.Content["body"].(string)
		bodies = append(bodies, body)
	}
	want := append([]string{"m1"}, ids...)
	if len(bodies) != len(want) {
		t.Fatalf("sends %q, want %q once each", bodies, want)
	}
	for i := range want {
		if bodies[i] != want[i] {
			t.Fatalf("sends %q, want %q once each, in order", bodies, want)
		}
	}
	key := database.PortalKey{LoginID: unitLoginID, ChatID: "bob"}
	for _, remoteID := range ids {
		if msg, err := u.db.Message.GetPart(ctx, key, remoteID, 0); err != nil || msg == nil {
			t.Errorf("%s not mapped: %v", remoteID, err)
		}
		ev := bobEvent(remoteID)
		if mark, err := u.db.InDoubt.Get(ctx, remoteTxnID(ev, 0)); err != nil || mark != nil {
			t.Errorf("%s's marker left: %v, %v", remoteID, mark, err)
		}
	}
	var pending int
	if err := u.db.QueryRow(ctx, "SELECT COUNT(*) FROM inbox WHERE NOT done").Scan(&pending); err != nil {
		t.Fatal(err)
	} else if pending != 0 {
		t.Errorf("%d inbox rows not done", pending)
	}
}

// A busy chat's sends do not wait for the commits of the results before
// them, but what reads those results does: with the committer held up
// after m3's send, m4 and m5 still go out (their markers were committed
// with m2's result) while m3's result is not stored yet, and the reply m6,
// whose content needs m5's mapping, waits until the results are stored.
func TestPipelinedSendsOverlapCommits(t *testing.T) {
	testdb.Each(t, testPipelinedSendsOverlapCommits)
}

func testPipelinedSendsOverlapCommits(t *testing.T, target testdb.Target) {
	u, in := pipelineUnit(t, target)
	ctx := context.Background()
	reply := bobEvent("m6")
	reply.ReplyTo = "m5"
	evs := []*connector.Event{bobEvent("m2"), bobEvent("m3"), bobEvent("m4"), bobEvent("m5"), reply, bobEvent("m7")}
	unblock := make(chan struct{})
	var blocked atomic.Bool
	u.hs.Fail = func(c fakematrix.Call) error {
		if c.Content["body"] == "m3" && blocked.CompareAndSwap(false, true) {
			// The committer takes this before m3's result.
			hold := newGroupWrite(func(context.Context) error { <-unblock; return nil }, true)
			u.m.commits.writes <- hold
		}
		return nil
	}
	r := queueEntries(t, u, in, evs...)
	close(r.gate)
	sent := func(body string) bool {
		for _, c := range u.sends() {
			if c.Content["body"] == body {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for !sent("m5") {
		if time.Now().After(deadline) {
			close(unblock)
			t.Fatal("m4 and m5 waited for m3's result to commit")
		}
		time.Sleep(time.Millisecond)
	}
	key := database.PortalKey{LoginID: unitLoginID, ChatID: "bob"}
	if msg, err := u.db.Message.GetPart(ctx, key, "m3", 0); err != nil || msg != nil {
		t.Errorf("m3's result stored while the committer was held up: %v, %v", msg, err)
	}
	time.Sleep(100 * time.Millisecond)
	if sent("m6") {
		t.Error("the reply m6 went out before the results it reads were stored")
	}
	close(unblock)
	r.waitDone(t)
	checkBridgedOnce(t, u, "m2", "m3", "m4", "m5", "m6", "m7")
	checkReply(t, u, "m6", "m5")
}

// A result whose commit fails after the lane went on is applied again when
// the lane settles, before anything that may read it (the reply m6 to m4):
// its marker is still stored, so the send is found in the room and mapped,
// never sent a second time.
func TestPipelinedResultFailureAppliedAgain(t *testing.T) {
	u, in := pipelineUnit(t, testdb.SQLite(t))
	ctx := context.Background()
	// m4's mapping cannot be stored until the room is read (the in-doubt
	// resolution of the apply again).
	for _, q := range []string{
		"CREATE TABLE fail_switch (x INTEGER)",
		"INSERT INTO fail_switch VALUES (1)",
		"CREATE TRIGGER fail_m4 BEFORE INSERT ON message WHEN NEW.remote_id = 'm4' AND EXISTS (SELECT 1 FROM fail_switch) " +
			"BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
	} {
		if _, err := u.db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var lookedUp atomic.Bool
	u.hs.Fail = func(c fakematrix.Call) error {
		if c.Method == "Messages" && lookedUp.CompareAndSwap(false, true) {
			if _, err := u.db.Exec(context.Background(), "DELETE FROM fail_switch"); err != nil {
				return errors.Join(errors.New("switch off the failure"), err)
			}
		}
		return nil
	}
	reply := bobEvent("m6")
	reply.ReplyTo = "m4"
	r := queueEntries(t, u, in, bobEvent("m2"), bobEvent("m3"), bobEvent("m4"), bobEvent("m5"), reply, bobEvent("m7"))
	r.wait(t)
	if !lookedUp.Load() {
		t.Error("m4's failed result was not resolved against the room")
	}
	checkBridgedOnce(t, u, "m2", "m3", "m4", "m5", "m6", "m7")
	checkReply(t, u, "m6", "m4")
}

// checkReply checks that the send of body replies to remoteID's event.
func checkReply(t *testing.T, u *unit, body, remoteID string) {
	t.Helper()
	target, err := u.db.Message.GetPart(context.Background(), database.PortalKey{LoginID: unitLoginID, ChatID: "bob"}, remoteID, 0)
	if err != nil || target == nil {
		t.Fatalf("%s not mapped: %v", remoteID, err)
	}
	for _, c := range u.sends() {
		if c.Content["body"] != body {
			continue
		}
		rel, _ := c.Content["m.relates_to"].(map[string]any)
		inReply, _ := rel["m.in_reply_to"].(map[string]any)
		if inReply == nil || id.EventID(inReply["event_id"].(string)) != target.MXID {
			t.Errorf("%s replies to %v, want %s's event %s", body, rel, remoteID, target.MXID)
		}
	}
}

// A busy chat's pipeline settles after maxBehind results to let the chat's
// lock go, and the premarks of the messages queued next stay for them: each
// message's marker is written once, none dropped at the settle and written
// again alone before its send (a commit in series per message there).
func TestPremarksKeptAcrossSettle(t *testing.T) {
	testdb.Each(t, testPremarksKeptAcrossSettle)
}

func testPremarksKeptAcrossSettle(t *testing.T, target testdb.Target) {
	u, in := pipelineUnit(t, target)
	ctx := context.Background()
	trigger := []string{
		"CREATE TABLE marker_log (txn_id TEXT NOT NULL)",
		"CREATE TRIGGER log_marker AFTER INSERT ON in_doubt_send BEGIN INSERT INTO marker_log VALUES (NEW.txn_id); END",
	}
	if target.Type == testdb.TypePostgres {
		trigger = []string{
			"CREATE TABLE marker_log (txn_id TEXT NOT NULL)",
			"CREATE FUNCTION log_marker() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO marker_log VALUES (NEW.txn_id); RETURN NULL; END $$",
			"CREATE TRIGGER log_marker AFTER INSERT ON in_doubt_send FOR EACH ROW EXECUTE FUNCTION log_marker()",
		}
	}
	for _, q := range trigger {
		if _, err := u.db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var evs []*connector.Event
	var ids []string
	for i := 2; i < 2+maxBehind+2*premarkDepth; i++ {
		id := fmt.Sprintf("m%d", i)
		evs = append(evs, bobEvent(id))
		ids = append(ids, id)
	}
	queueEntries(t, u, in, evs...).wait(t)
	checkBridgedOnce(t, u, ids...)
	var written, distinct int
	if err := u.db.QueryRow(ctx, "SELECT COUNT(*), COUNT(DISTINCT txn_id) FROM marker_log").Scan(&written, &distinct); err != nil {
		t.Fatal(err)
	}
	if written != len(evs) || distinct != len(evs) {
		t.Errorf("%d markers written for %d distinct sends, want one each for %d messages", written, distinct, len(evs))
	}
}

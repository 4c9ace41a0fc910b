package portal

import (
	"context"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/inbox"
)

// laneRun queues jobs on one lane behind a gate, so that each job sees the
// next one queued, and waits for them all.
type laneRun struct {
	u    *unit
	gate chan struct{}
	done chan struct{}
	n    int
}

func newLaneRun(u *unit) *laneRun {
	r := &laneRun{u: u, gate: make(chan struct{}), done: make(chan struct{}, 16)}
	u.m.lanes.submit("contact/test", "gate", func(context.Context) { <-r.gate })
	return r
}

// add queues a job whose peek is ev's entry.
func (r *laneRun) add(ev *connector.Event, run func(ctx context.Context)) {
	r.n++
	r.u.m.lanes.submitPeek("contact/test", "job", &inbox.Entry{Event: ev}, func(ctx context.Context) {
		defer func() { r.done <- struct{}{} }()
		run(ctx)
	})
}

// apply is a job that applies ev the way the dispatcher does, with a
// done callback that has nothing to mark.
func (r *laneRun) apply(t *testing.T, ev *connector.Event) func(ctx context.Context) {
	return func(ctx context.Context) {
		if err := r.u.m.applyRemote(ctx, unitConnID, ev, func(context.Context) error { return nil }); err != nil {
			t.Errorf("apply %s: %v", ev.ID, err)
		}
	}
}

func (r *laneRun) wait(t *testing.T) {
	t.Helper()
	close(r.gate)
	r.waitDone(t)
}

// waitDone waits for the jobs of a run whose gate is open.
func (r *laneRun) waitDone(t *testing.T) {
	t.Helper()
	for i := 0; i < r.n; i++ {
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Fatal("lane jobs did not finish")
		}
	}
}

func bobEvent(id string) *connector.Event {
	ev := fromBob(id, id)
	ev.Login = unitLoginID
	ev.Chat = &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "bob"}
	return ev
}

// markerBeforeM3 bridges m1, then runs m2 and m3 on one lane, m2 applied
// as the dispatcher does; m3's job reads m3's in-doubt marker as it finds
// it (what m2's result committed) and, with applyM3, then applies m3. It
// returns m3 and that read.
func markerBeforeM3(t *testing.T, u *unit, applyM3 bool) (m3 *connector.Event, marked *database.InDoubtSend, err error) {
	t.Helper()
	u.remote(t, bobEvent("m1"))
	m2 := bobEvent("m2")
	m3 = bobEvent("m3")
	r := newLaneRun(u)
	r.add(m2, r.apply(t, m2))
	r.add(m3, func(ctx context.Context) {
		marked, err = u.db.InDoubt.Get(ctx, remoteTxnID(m3, 0))
		if applyM3 {
			r.apply(t, m3)(ctx)
		}
	})
	r.wait(t)
	return m3, marked, err
}

// The marker of a chat's next message is committed with the previous
// message's result, before the next message runs, and the next message's
// send uses it: each message is sent once, in order, and no marker is left.
func TestNextMessageMarkedWithPreviousResult(t *testing.T) {
	u := newUnit(t, false)
	ctx := context.Background()
	m3, markedBefore, err := markerBeforeM3(t, u, true)
	if err != nil {
		t.Error(err)
	}
	if markedBefore == nil {
		t.Error("m3's marker was not written with m2's result")
	}
	if mark, err := u.db.InDoubt.Get(ctx, remoteTxnID(m3, 0)); err != nil || mark != nil {
		t.Errorf("m3's marker left after its result: %v, %v", mark, err)
	}
	var bodies []string
	for _, c := range u.sends() {
		body, _ := c.Content["body"].(string)
		bodies = append(bodies, body)
	}
	if len(bodies) != 3 || bodies[1] != "m2" || bodies[2] != "m3" {
		t.Errorf("sends %q, want m1 m2 m3 once each", bodies)
	}
}

// A premark whose message never sends (the next job went another way) is
// deleted once that job has run: a marker left behind would make the
// message's replay wait out bridge.in_doubt_grace.
func TestUnusedPremarkDeleted(t *testing.T) {
	u := newUnit(t, false)
	ctx := context.Background()
	m3, markedBefore, _ := markerBeforeM3(t, u, false)
	if markedBefore == nil {
		t.Fatal("m3's marker was not written with m2's result")
	}
	// The drop runs on the lane right after the job.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mark, err := u.db.InDoubt.Get(ctx, remoteTxnID(m3, 0))
		if err != nil {
			t.Fatal(err)
		} else if mark == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal("the unused marker of m3 was not deleted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

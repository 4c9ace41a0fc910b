package bridge_test

import (
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestFaultHAKillDuringSend kills the active while a message's send is out:
// the homeserver has stored the event but the bridge never got the answer,
// so the send is in doubt, and the next message of the chat waits behind
// it. The new active finds the event in the room at once instead of waiting
// for bridge.in_doubt_grace (before, it waited that long from its own
// start: about 19 s with the defaults): the message shows once, and the
// next one follows within the time of a takeover.
func TestFaultHAKillDuringSend(t *testing.T) {
	p := newHAPair(t, testdb.Postgres(t))
	ctx, f, roomID := p.runPortal(5 * time.Minute)
	old := p.active()
	if old == nil {
		t.Fatal("no active instance")
	}
	next := p.other(old)
	held := old.holdSend()
	f.send(textFrom("bob@network", "m2", "message 2"))
	select {
	case <-held:
	case <-time.After(time.Minute):
		t.Fatal("the send of message 2 never reached the homeserver")
	}
	// Stored and acknowledged, but behind message 2 in the chat.
	f.send(textFrom("bob@network", "m3", "message 3"))
	killed := time.Now()
	old.kill()
	shown := func(body string) bool {
		counts, _, err := roomBodies(ctx, p.alice, roomID)
		return err == nil && counts[body] > 0
	}
	if !eventually(time.Minute, 20*time.Millisecond, func() bool { return shown("message 3") }) {
		t.Fatal("message 3 never showed")
	}
	took := time.Since(killed)
	time.Sleep(3 * time.Second) // a late second copy would show within this
	counts, order, err := roomBodies(ctx, p.alice, roomID)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"message 1", "message 2", "message 3"} {
		if counts[body] != 1 {
			t.Errorf("%q shows %d times, want once", body, counts[body])
		}
	}
	if !slices.Equal(order, []int{1, 2, 3}) {
		t.Errorf("order %v, want [1 2 3]", order)
	}
	if next.countLogs("Send in doubt had landed") != 1 {
		t.Errorf("%s did not resolve the send in doubt from the room", next.name)
	}
	t.Logf("FAULT HA: kill during a send: the next message after %s (lease %s, in_doubt_grace %s)",
		took.Round(10*time.Millisecond), p.cfg.HA.Lease.D(), p.cfg.Bridge.InDoubtGrace.D())
	if limit := p.cfg.HA.Lease.D() + p.cfg.Bridge.InDoubtGrace.D()/2; took > limit {
		t.Errorf("the next message came %s after the kill, want under %s: the send in doubt was waited for", took, limit)
	}
}

// TestFaultHATakeoverRepairsDirect: while the active is down, another client
// of the user rewrites m.direct without the portal; the instance that takes
// over runs the m.direct repair and puts the portal back, leaving the
// user's own entries alone.
func TestFaultHATakeoverRepairsDirect(t *testing.T) {
	p := newHAPair(t, testdb.Postgres(t))
	ctx, _, roomID := p.runPortal(5 * time.Minute)
	ghost := p.ghost("bob@network")
	p.waitDirect(ghost, roomID, true)
	old := p.active()
	if old == nil {
		t.Fatal("no active instance")
	}
	next := p.other(old)
	old.kill()
	own := map[id.UserID][]id.RoomID{"@zed:example.org": {"!unrelated:example.org"}}
	if err := p.alice.SetAccountData(ctx, event.AccountDataDirectChats.Type, own); err != nil {
		t.Fatal(err)
	}
	if next.ready(&p.probe) {
		t.Fatalf("%s took over before m.direct was rewritten; the test proves nothing", next.name)
	}
	if slices.Contains(tesths.DirectContent(t, p.alice)[ghost], roomID) {
		t.Fatal("m.direct still lists the portal after the rewrite")
	}
	p.waitActive(next, time.Minute)
	tesths.WaitFor(t, 30*time.Second, "m.direct repaired by the new active", func() (bool, error) {
		direct := tesths.DirectContent(t, p.alice)
		return slices.Contains(direct[ghost], roomID) &&
			slices.Equal(direct["@zed:example.org"], []id.RoomID{"!unrelated:example.org"}), nil
	})
	if n := next.countLogs("Lost the active lease"); n != 0 {
		t.Errorf("%s lost its lease %d times", next.name, n)
	}
}

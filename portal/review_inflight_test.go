package portal

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
)

// stillHas polls for d and reports whether the network still has remoteID.
func stillHas(n *recordingNetwork, remoteID string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if n.gone(remoteID)() {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return !n.gone(remoteID)()
}

// wantDeleted fails the test unless the network has lost the user's
// message $m (r$m there) within 3 s: the check every test here ends on.
func wantDeleted(t *testing.T, u *unit, n *recordingNetwork) {
	t.Helper()
	if stillHas(n, "r$m", 3*time.Second) {
		t.Errorf("the user deleted the message, but the network still has it (commands sent: %v)", u.conn.ops)
	}
}

// TestNetworkErrorAfterStanzaThenDeleted: the XMPP connector writes the
// stanza, then its stream fails and it answers M_NETWORK, retryable ("Sent
// or not is unknowable", xmppconnector/commands.go). An error answer does
// not prove the network lacks the message, so the user's deletion sends it
// again (answered from the first) and deletes it there.
func TestNetworkErrorAfterStanzaThenDeleted(t *testing.T) {
	t.Parallel() // waits out backoffs
	u, p, n := newRecordingUnit(t)
	u.shortRetries()
	ctx := context.Background()
	var mu sync.Mutex
	first := true
	u.conn.answer = func(op string, c *connector.Command) (*connector.Result, error) {
		res, err := n.answer(op, c) // the stanza went out
		mu.Lock()
		defer mu.Unlock()
		if op == connector.OpSendMessage && first {
			first = false
			return nil, &connector.Error{Code: connector.ErrNetwork, Message: "sending stanza: write tcp: broken pipe", Retryable: true}
		}
		return res, err
	}
	handleThenDelete(t, u, p, n, u.userMessage(t, p.RoomID, "$m", "oops"), func() { u.m.flushCommands(ctx, p.RoomID) })
}

// TestRepeatRefusedAfterTimeoutThenDeleted: a queued send times out (the
// network has it); its retry is refused M_RATE_LIMITED by the SDK's busy
// check, which comes before its txn lookup. The refusal of the repeat does
// not make the command unsent: the deletion still reaches the network.
func TestRepeatRefusedAfterTimeoutThenDeleted(t *testing.T) {
	t.Parallel() // waits out backoffs
	u, p, n := newRecordingUnit(t)
	u.shortRetries()
	ctx := context.Background()
	var mu sync.Mutex
	calls, busy := 0, true
	u.conn.answer = func(op string, c *connector.Command) (*connector.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		if op == connector.OpSendMessage {
			calls++
			if calls == 1 {
				n.answer(op, c) // carried out; the answer came too late
				return nil, &connector.Error{Code: connector.ErrTimeout, Message: "no answer", Retryable: true}
			}
			if busy {
				return nil, &connector.Error{Code: connector.ErrRateLimited, Message: "too many commands in progress", Retryable: true}
			}
		}
		return n.answer(op, c)
	}
	if err := u.db.PendingCm.Insert(ctx, &database.PendingCommand{Txn: "$m", ConnectorID: unitConnID,
		PortalKey: p.PortalKey, RoomID: p.RoomID, Op: connector.OpSendMessage, Data: []byte(`{"txn":"$m","text":"oops"}`), MXSeq: 1}); err != nil {
		t.Fatal(err)
	}
	u.m.flushCommands(ctx, p.RoomID) // timeout
	u.m.flushCommands(ctx, p.RoomID) // M_RATE_LIMITED
	u.handle(t, p.RoomID, "$red", redactionOf("$m"))
	mu.Lock()
	busy = false
	mu.Unlock()
	wantDeleted(t, u, n)
}

// refuseSends makes the network refuse sends M_RATE_LIMITED (as the SDK's
// busy check does, before it looks up a txn) while the returned flag is set.
func refuseSends(u *unit, n *recordingNetwork) *atomic.Bool {
	var busy atomic.Bool
	u.conn.answer = func(op string, c *connector.Command) (*connector.Result, error) {
		if op == connector.OpSendMessage && busy.Load() {
			return nil, &connector.Error{Code: connector.ErrRateLimited, Message: "too many commands in progress", Retryable: true}
		}
		return n.answer(op, c)
	}
	return &busy
}

// handleThenDelete handles row (the message $m), has the user delete it,
// runs then (the network taking commands again, or a flush) and checks
// that the message is deleted there.
func handleThenDelete(t *testing.T, u *unit, p *database.Portal, n *recordingNetwork, row *database.MXEvent, then func()) {
	t.Helper()
	if err := u.m.handleMatrix(context.Background(), row); err != nil {
		t.Fatal(err)
	}
	u.handle(t, p.RoomID, "$red", redactionOf("$m"))
	then()
	wantDeleted(t, u, n)
}

// TestRestartedSendRefusedThenDeleted: an event stored before this process
// started (an earlier one may have sent it and been killed) is sent
// directly and refused M_RATE_LIMITED; it stays possibly delivered, and the
// deletion reaches the network.
func TestRestartedSendRefusedThenDeleted(t *testing.T) {
	t.Parallel() // waits out backoffs
	u, p, n := newRecordingUnit(t)
	u.shortRetries()
	ctx := context.Background()
	n.has["r$m"] = true // the earlier process's send arrived
	busy := refuseSends(u, n)
	busy.Store(true)
	row := u.userMessage(t, p.RoomID, "$m", "oops")
	u.m.setBootSeq(ctx) // as at start: the event was stored before
	handleThenDelete(t, u, p, n, row, func() { busy.Store(false) })
}

// TestDirectSendRetriedRefusedThenDeleted: the same in one process: the
// first direct send arrived but its result could not be stored; the retry
// of the event is refused, and the message still counts as written.
func TestDirectSendRetriedRefusedThenDeleted(t *testing.T) {
	t.Parallel() // waits out backoffs
	u, p, n := newRecordingUnit(t)
	u.shortRetries()
	ctx := context.Background()
	busy := refuseSends(u, n)
	restore := failMessageWrites(t, u)
	row := u.userMessage(t, p.RoomID, "$m", "oops")
	if err := u.m.handleMatrix(ctx, row); err == nil {
		t.Fatal("the result's write did not fail")
	}
	restore()
	busy.Store(true)
	handleThenDelete(t, u, p, n, row, func() { busy.Store(false) })
}

// TestCleanupNoticeBeforeDeleteRace: the portal ends while a flush holds
// the queue, and the homeserver is slow to take the "not delivered"
// notice of the second message: the flush, which goes on meanwhile, does
// not send it.
func TestCleanupNoticeBeforeDeleteRace(t *testing.T) {
	t.Parallel() // waits out backoffs
	u, room, got := queuedRelationsUnit(t)
	c := prepareCleanupWhileSending(t, u, room)
	u.hs.Fail = func(call fakematrix.Call) error {
		if body, _ := call.Content["body"].(string); strings.HasPrefix(body, "⚠️ Your message was not delivered") {
			// The homeserver takes a moment; the flush goes on meanwhile.
			c.release()
			deadline := time.Now().Add(500 * time.Millisecond)
			for time.Now().Before(deadline) && len(got()) < 2 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		return nil
	}
	c.deleteChat(t, u, room)
	c.finish(t)
	for _, g := range got() {
		if strings.Contains(g, "second") {
			t.Errorf("the network got %q after the user was told it was not delivered (notices %q)", g, u.notices(t))
		}
	}
}

// TestDeferredEditKeepsBackoff: an edit ordered before its still-queued
// message (catch-up rows share mx_seq 0) waits for it without flushing the
// queue again by itself: the message, refused again and again, is retried
// at its backoff (0.5, 1, 2, 4 s), not faster.
func TestDeferredEditKeepsBackoff(t *testing.T) {
	t.Parallel() // waits out backoffs
	u, room, _ := queuedRelationsUnit(t)
	// A fifth of the production first wait, and the span checked with it.
	const first = firstRetry / 5
	u.m.retryFirst = first
	ctx := context.Background()
	p := u.portal(t)
	var mu sync.Mutex
	sends := 0
	u.conn.answer = func(op string, c *connector.Command) (*connector.Result, error) {
		if op == connector.OpSendMessage {
			mu.Lock()
			sends++
			mu.Unlock()
			return nil, &connector.Error{Code: connector.ErrRateLimited, Message: "slow down", Retryable: true}
		}
		return &connector.Result{}, nil
	}
	for _, pc := range []*database.PendingCommand{
		{Txn: "$a", Op: connector.OpEditMessage, Data: []byte(`{"txn":"$a","text":"fixed"}`), TargetMX: "$m"},
		{Txn: "$m", Op: connector.OpSendMessage, Data: []byte(`{"txn":"$m","text":"typo"}`)},
	} {
		pc.ConnectorID, pc.PortalKey, pc.RoomID = unitConnID, p.PortalKey, room
		if err := u.db.PendingCm.Insert(ctx, pc); err != nil {
			t.Fatal(err)
		}
	}
	u.conn.down.Store(false)
	u.m.flushCommands(ctx, room)
	time.Sleep(5 * first)
	mu.Lock()
	n := sends
	mu.Unlock()
	// Backoff alone: tries at 0, first, 3*first (the 4th at 7*first).
	if n > 3 {
		t.Errorf("the message was sent %d times in %v; its backoff allows 3 (notices %q)", n, 5*first, u.notices(t))
	}
}

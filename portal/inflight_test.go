package portal

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// A command the connector may have passed on although no result was stored
// (portal/early_redaction.go, mayHaveWritten): the user's deletion of it
// must reach the network, not drop it as a message that never went out.

// failMessageWrites makes storing a message mapping fail until the
// returned function is called (SQLite, as the unit portal uses).
func failMessageWrites(t *testing.T, u *unit) (restore func()) {
	t.Helper()
	ctx := context.Background()
	if _, err := u.db.Exec(ctx, `CREATE TRIGGER fail_mapping BEFORE INSERT ON message BEGIN SELECT RAISE(ABORT, 'database is locked'); END`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := u.db.Exec(ctx, `DROP TRIGGER fail_mapping`); err != nil {
			t.Fatal(err)
		}
	}
}

// recordingNetwork keeps what the network has: sends under "r"+txn, deletes
// remove them.
type recordingNetwork struct {
	mu  sync.Mutex
	has map[string]bool
}

func (n *recordingNetwork) answer(op string, c *connector.Command) (*connector.Result, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch op {
	case connector.OpSendMessage:
		n.has["r"+c.Txn] = true
		return &connector.Result{ID: "r" + c.Txn}, nil
	case connector.OpDeleteMessage:
		delete(n.has, c.Target)
	}
	return &connector.Result{}, nil
}

func (n *recordingNetwork) gone(remoteID string) func() bool {
	return func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return !n.has[remoteID]
	}
}

func newRecordingUnit(t *testing.T) (*unit, *database.Portal, *recordingNetwork) {
	t.Helper()
	u, p := newUnitPortal(t)
	u.conn.caps.Delete = true
	n := &recordingNetwork{has: map[string]bool{}}
	u.conn.answer = n.answer
	return u, p, n
}

// deleteThenReconnect has the user delete $m while the connector is away,
// then brings the connector back and flushes the room's queue.
func deleteThenReconnect(t *testing.T, u *unit, p *database.Portal) {
	t.Helper()
	u.handle(t, p.RoomID, "$red", redactionOf("$m"))
	u.conn.down.Store(false)
	u.m.flushCommands(context.Background(), p.RoomID)
}

// handleThenDeleteWhileAway handles row (the message $m) with the
// connector away, has the user delete it, brings the connector back and
// waits for the message to be deleted on the network.
func handleThenDeleteWhileAway(t *testing.T, u *unit, p *database.Portal, n *recordingNetwork, row *database.MXEvent) {
	t.Helper()
	if err := u.m.handleMatrix(context.Background(), row); err != nil {
		t.Fatal(err)
	}
	deleteThenReconnect(t, u, p)
	waitFor(t, "the message deleted on the network", n.gone("r$m"))
}

// TestDirectSendRetriedThenDeleted: a direct send reaches the network and
// storing its result fails, so the event is handled again; the connector
// has gone away meanwhile, so the command is queued, and the user deletes
// the message before the connector is back. The message is deleted on the
// network.
func TestDirectSendRetriedThenDeleted(t *testing.T) {
	u, p, n := newRecordingUnit(t)
	ctx := context.Background()
	restore := failMessageWrites(t, u)
	row := u.userMessage(t, p.RoomID, "$m", "oops")
	if err := u.m.handleMatrix(ctx, row); err == nil {
		t.Fatal("the result's write did not fail")
	}
	restore()
	u.conn.down.Store(true)
	handleThenDeleteWhileAway(t, u, p, n, row)
}

// TestRestartedSendThenDeleted: an event stored before this process's
// portals started (an earlier process may have sent it directly and been
// killed before storing the result) is handled while the connector is away
// and queued; the user deletes it. The message is deleted on the network.
func TestRestartedSendThenDeleted(t *testing.T) {
	u, p, n := newRecordingUnit(t)
	ctx := context.Background()
	n.has["r$m"] = true // the earlier process's send arrived
	u.conn.down.Store(true)
	row := u.userMessage(t, p.RoomID, "$m", "oops")
	u.m.setBootSeq(ctx) // as at start: the event was stored before
	handleThenDeleteWhileAway(t, u, p, n, row)
}

// TestNewEventDeletedWhileAwayIsDropped: the other side of the rule above:
// an event stored after the start, queued because the connector is away,
// never went out, so its deletion drops it and the network hears nothing.
func TestNewEventDeletedWhileAwayIsDropped(t *testing.T) {
	u, p, _ := newRecordingUnit(t)
	ctx := context.Background()
	u.m.setBootSeq(ctx)
	u.conn.down.Store(true)
	if err := u.m.handleMatrix(ctx, u.userMessage(t, p.RoomID, "$m", "oops")); err != nil {
		t.Fatal(err)
	}
	u.conn.mu.Lock()
	u.conn.ops = nil
	u.conn.mu.Unlock()
	deleteThenReconnect(t, u, p)
	u.conn.mu.Lock()
	defer u.conn.mu.Unlock()
	if len(u.conn.ops) != 0 {
		t.Errorf("the network got %v for a message deleted before it went out, want nothing", u.conn.ops)
	}
}

// TestQueueRetriedAfterResultWriteFails: a queued send is answered but its
// result cannot be stored (a passing database error); the room's queue is
// tried again by itself, and the second try stores the mapping from the
// connector's answer to the repeated txn.
func TestQueueRetriedAfterResultWriteFails(t *testing.T) {
	t.Parallel() // waits out flushLater
	u, p, _ := newRecordingUnit(t)
	u.shortRetries()
	ctx := context.Background()
	if err := u.db.PendingCm.Insert(ctx, &database.PendingCommand{Txn: "$m", ConnectorID: unitConnID,
		PortalKey: p.PortalKey, RoomID: p.RoomID, Op: connector.OpSendMessage, Data: []byte(`{"txn":"$m","text":"hi"}`), MXSeq: 1}); err != nil {
		t.Fatal(err)
	}
	restore := failMessageWrites(t, u)
	u.m.flushCommands(ctx, p.RoomID)
	restore()
	waitFor(t, "the queue tried again and the mapping stored", func() bool {
		pc, err := u.db.PendingCm.Get(ctx, "$m")
		msg, err2 := u.db.Message.GetByMXID(ctx, "$m")
		return err == nil && err2 == nil && pc == nil && msg != nil
	})
}

// TestTimedOutCommandMayHaveArrived: a command given up after the
// connector never answered may be on the network; the notice says so
// rather than that it was not delivered, so that the user does not send it
// again blindly. A refusal still says it was not delivered.
func TestTimedOutCommandMayHaveArrived(t *testing.T) {
	u, p, _ := newRecordingUnit(t)
	ctx := context.Background()
	for txn, cause := range map[string]error{
		"$slow":    &connector.Error{Code: connector.ErrTimeout, Message: "no answer within 30s", Retryable: true},
		"$refused": &connector.Error{Code: connector.ErrForbidden, Message: "blocked"},
	} {
		u.m.commandFailed(ctx, &database.PendingCommand{Txn: txn, ConnectorID: unitConnID, PortalKey: p.PortalKey,
			RoomID: p.RoomID, Op: connector.OpSendMessage, Data: []byte(`{"text":"hi"}`)}, cause)
	}
	var slow, refused string
	for _, n := range u.notices(t) {
		if strings.Contains(n, "no answer") {
			slow = n
		} else if strings.Contains(n, "blocked") {
			refused = n
		}
	}
	if slow != "⚠️ Your message may not have been delivered: no answer within 30s" || refused != "⚠️ Your message was not delivered: blocked" {
		t.Errorf("notices: timeout %q, refusal %q", slow, refused)
	}
}

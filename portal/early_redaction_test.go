package portal

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
)

func redactionOf(target id.EventID) map[string]any {
	return map[string]any{"type": "m.room.redaction", "redacts": target, "content": map[string]any{"redacts": target}}
}

// TestDeletedWhileQueuedIsDropped: a message waiting for the network that
// never went out is dropped when the user deletes it, with no note needed:
// a note would be pruned after a day, and a command can wait longer.
func TestDeletedWhileQueuedIsDropped(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	u.conn.answer = func(string, *connector.Command) (*connector.Result, error) {
		return nil, &connector.Error{Code: connector.ErrNetwork, Message: "away", Retryable: true}
	}
	// Queued as a retry would leave it, but never sent: no attempt.
	if err := u.db.PendingCm.Insert(ctx, &database.PendingCommand{Txn: "$secret", ConnectorID: unitConnID,
		PortalKey: p.PortalKey, RoomID: p.RoomID, Op: connector.OpSendMessage, Data: []byte(`{"txn":"$secret","text":"secret"}`), MXSeq: 1}); err != nil {
		t.Fatal(err)
	}
	u.handle(t, p.RoomID, "$red", redactionOf("$secret"))
	if pc, err := u.db.PendingCm.Get(ctx, "$secret"); err != nil || pc != nil {
		t.Fatalf("queued command after the deletion = %+v, %v; want it dropped", pc, err)
	}
	if n := u.m.earlyRedactions.Load(); n != 0 {
		t.Errorf("%d early redactions noted, want none: the command was dropped at once", n)
	}
	u.m.flushCommands(ctx, p.RoomID)
	u.conn.mu.Lock()
	defer u.conn.mu.Unlock()
	if len(u.conn.ops) != 0 {
		t.Errorf("the network got %v, want nothing", u.conn.ops)
	}
}

// TestDeletedWhileSendInDoubt: the first send reached the network but its
// answer was lost (a timeout); the user deletes the message before the
// retry. The retry goes (the connector answers a repeated txn with its
// first result) and the message is then deleted on the network.
func TestDeletedWhileSendInDoubt(t *testing.T) {
	u, p := newUnitPortal(t)
	u.conn.caps.Delete = true
	ctx := context.Background()
	var mu sync.Mutex
	network := map[string]bool{}
	var deletes []connector.Command
	first := true
	u.conn.answer = func(op string, c *connector.Command) (*connector.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		switch op {
		case connector.OpSendMessage:
			network["r"+c.Txn] = true
			if first {
				first = false
				return nil, &connector.Error{Code: connector.ErrTimeout, Message: "timed out", Retryable: true}
			}
			return &connector.Result{ID: "r" + c.Txn}, nil
		case connector.OpDeleteMessage:
			deletes = append(deletes, *c)
			delete(network, c.Target)
		}
		return &connector.Result{}, nil
	}
	if err := u.m.handleMatrix(ctx, u.userMessage(t, p.RoomID, "$m", "oops")); err != nil {
		t.Fatal(err)
	}
	u.handle(t, p.RoomID, "$red", redactionOf("$m"))
	u.m.flushCommands(ctx, p.RoomID)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := len(deletes) > 0
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if network["r$m"] || len(deletes) != 1 || deletes[0].Txn != "$red" || deletes[0].Target != "r$m" {
		t.Errorf("network still has the message: %v; deletes %+v; want one delete of r$m under $red", network["r$m"], deletes)
	}
}

// TestEarlyRedactionStaysInItsRoom: a redaction in one portal names no
// event of another: that one is sent as usual.
func TestEarlyRedactionStaysInItsRoom(t *testing.T) {
	u, pa := newUnitPortal(t)
	ctx := context.Background()
	carol := fromBob("c1", "hi from carol")
	carol.Sender = &connector.Sender{ID: "carol"}
	carol.Chat = &connector.Chat{ID: "carol", Type: connector.ChatTypeDM, With: "carol"}
	u.remote(t, carol)
	pb, err := u.db.Portal.Get(ctx, database.PortalKey{LoginID: unitLoginID, ChatID: "carol"})
	if err != nil || pb == nil || pb.RoomID == "" || pb.RoomID == pa.RoomID {
		t.Fatalf("carol's portal = %+v, %v", pb, err)
	}
	u.handle(t, pa.RoomID, "$red", redactionOf("$inB"))
	if n := u.m.earlyRedactions.Load(); n != 1 {
		t.Fatalf("%d early redactions counted, want the one noted", n)
	}
	u.conn.mu.Lock()
	u.conn.ops = nil
	u.conn.mu.Unlock()
	if err := u.m.handleMatrix(ctx, u.userMessage(t, pb.RoomID, "$inB", "for carol")); err != nil {
		t.Fatal(err)
	}
	u.conn.mu.Lock()
	defer u.conn.mu.Unlock()
	if len(u.conn.ops) != 1 || u.conn.ops[0] != connector.OpSendMessage {
		t.Errorf("carol's network got %v, want her message sent", u.conn.ops)
	}
}

// TestRedactedWhenReadIsNotSent: an event that comes already redacted (the
// catch-up reads history, where a deleted message has lost its content) is
// not sent as an empty message.
func TestRedactedWhenReadIsNotSent(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	row := u.userEvent(t, p.RoomID, "$gone", map[string]any{"type": "m.room.message", "content": map[string]any{},
		"unsigned": map[string]any{"redacted_because": map[string]any{"type": "m.room.redaction", "event_id": "$red", "sender": unitUser}}})
	if err := u.m.handleMatrix(ctx, row); err != nil {
		t.Fatal(err)
	}
	u.conn.mu.Lock()
	defer u.conn.mu.Unlock()
	if len(u.conn.ops) != 0 {
		t.Errorf("the network got %v for a redacted event, want nothing", u.conn.ops)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// droppingNetwork is a recordingNetwork whose connection drops while it
// holds the first send: the network has the message, the bridge gets no
// answer. A repeated txn is answered with its first result, as the
// protocol asks. It also keeps the delete commands, under mu.
type droppingNetwork struct {
	*recordingNetwork
	u       *unit
	deletes []connector.Command
	dropped bool
}

func (d *droppingNetwork) answer(op string, c *connector.Command) (*connector.Result, error) {
	d.mu.Lock()
	switch {
	case op == connector.OpSendMessage && !d.dropped:
		d.has["r"+c.Txn] = true
		d.dropped = true
		d.u.conn.down.Store(true)
		d.mu.Unlock()
		return nil, fmt.Errorf("connector %q disconnected before answering: %w", unitConnID, server.ErrNotConnected)
	case op == connector.OpDeleteMessage:
		d.deletes = append(d.deletes, *c)
	}
	d.mu.Unlock()
	return d.recordingNetwork.answer(op, c)
}

// newDroppingUnit is a unit portal whose network can delete and whose
// connector drops the connection during the first send.
func newDroppingUnit(t *testing.T) (*unit, *database.Portal, *droppingNetwork) {
	t.Helper()
	u, p, n := newRecordingUnit(t)
	d := &droppingNetwork{recordingNetwork: n, u: u}
	u.conn.answer = d.answer
	return u, p, d
}

// deletedOnce reports whether the network lost r$m through one delete
// under the redaction's txn.
func (d *droppingNetwork) deletedOnce() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.has["r$m"] && len(d.deletes) == 1 && d.deletes[0].Txn == "$red" && d.deletes[0].Target == "r$m"
}

// TestDeletedAfterConnectionDropMidSend: the connector's connection drops
// while it holds the user's message, which it had already passed on; the
// user deletes the message before the connector is back. The command was
// written, so it is not dropped as one that never went out: it goes again
// when the connector returns (answered with its first result) and the
// message is then deleted on the network.
func TestDeletedAfterConnectionDropMidSend(t *testing.T) {
	u, p, d := newDroppingUnit(t)
	ctx := context.Background()
	if err := u.m.handleMatrix(ctx, u.userMessage(t, p.RoomID, "$m", "oops")); err != nil {
		t.Fatal(err)
	}
	u.handle(t, p.RoomID, "$red", redactionOf("$m"))
	u.conn.down.Store(false)
	u.m.flushCommands(ctx, p.RoomID)
	waitFor(t, "the message deleted on the network", d.deletedOnce)
}

// TestQueuedCommandMarkedBeforeWrite: a queued command is recorded as
// written before the connector gets it, so that a bridge killed while
// waiting for the answer finds it so after the restart; a deletion then
// makes it go again and be deleted, rather than be dropped.
func TestQueuedCommandMarkedBeforeWrite(t *testing.T) {
	u, p, d := newDroppingUnit(t)
	ctx := context.Background()
	if err := u.db.PendingCm.Insert(ctx, &database.PendingCommand{Txn: "$m", ConnectorID: unitConnID,
		PortalKey: p.PortalKey, RoomID: p.RoomID, Op: connector.OpSendMessage, Data: []byte(`{"txn":"$m","text":"oops"}`), MXSeq: 1}); err != nil {
		t.Fatal(err)
	}
	u.m.flushCommands(ctx, p.RoomID)
	if pc, err := u.db.PendingCm.Get(ctx, "$m"); err != nil || pc == nil || !pc.Handed || pc.Attempts != 0 {
		t.Fatalf("command after its write = %+v, %v; want it stored as written, no attempt counted", pc, err)
	}
	u.handle(t, p.RoomID, "$red", redactionOf("$m"))
	u.conn.down.Store(false)
	u.m.flushCommands(ctx, p.RoomID)
	waitFor(t, "the message deleted on the network", d.deletedOnce)
}

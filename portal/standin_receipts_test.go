package portal

import (
	"context"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// standInUnit is movedUnit where bob then sent m2 in the new room (ts
// 2000) and corrected m1 (ts 3000): the correction is m1's stand-in in the
// new room, posted after m2. It returns the unit, the portal and the
// stand-in's event.
func standInUnit(t *testing.T) (*unit, *database.Portal, id.EventID) {
	t.Helper()
	u, _, _ := movedUnit(t)
	m2 := fromBob("m2", "are you there?")
	m2.TS = 2000
	u.remote(t, m2)
	edit := bobOn(connector.KindEdit, "e1")
	edit.Text, edit.TS = "see you tomorrow", 3000
	u.remote(t, edit)
	p := u.portal(t)
	standIn, err := u.db.Message.GetPart(context.Background(), p.PortalKey, "m1", 1)
	if err != nil || standIn == nil || standIn.RoomID != p.RoomID {
		t.Fatalf("m1's stand-in in the new room = %+v, %v", standIn, err)
	}
	u.hs.Reset()
	return u, p, standIn.MXID
}

// markReadUpTo has the user read on Matrix with a receipt on eventID at
// ts, and returns the up_to of the mark_read the network got ("" for none).
func (u *unit) markReadUpTo(t *testing.T, p *database.Portal, eventID id.EventID, ts int64) string {
	t.Helper()
	u.conn.caps.ReadReceipts = true
	var mu sync.Mutex
	upTo := ""
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if op == connector.OpMarkRead {
			mu.Lock()
			upTo = cmd.UpTo
			mu.Unlock()
		}
		return &connector.Result{}, nil
	}
	receipt := event.ReceiptEventContent{eventID: {event.ReceiptTypeRead: {unitUser: {Timestamp: time.UnixMilli(ts)}}}}
	u.m.markRead(context.Background(), p, u.login, &receipt)
	mu.Lock()
	defer mu.Unlock()
	return upTo
}

// TestUserReadsStandIn: the user reads the new room up to its newest
// event, m1's stand-in. Everything bob sent before it is read, m2 among
// them: mark_read goes up to m2, not up to m1, which is older than m2 on
// the network, and would leave m2 unread there.
func TestUserReadsStandIn(t *testing.T) {
	u, p, standIn := standInUnit(t)
	if got := u.markReadUpTo(t, p, standIn, 3500); got != "m2" {
		t.Errorf("receipt on m1's stand-in: mark_read up to %q, want m2", got)
	}
}

// TestUserReadsPastStandIn: the user's receipt is on an event the bridge
// did not map (their own notice, say), after m1's stand-in: it covers what
// bob sent before it, up to m2 on the network.
func TestUserReadsPastStandIn(t *testing.T) {
	u, p, _ := standInUnit(t)
	if got := u.markReadUpTo(t, p, "$unmapped", 4000); got != "m2" {
		t.Errorf("receipt after m1's stand-in: mark_read up to %q, want m2", got)
	}
}

// TestContactReadsStandInTarget: bob reads up to m1, whose stand-in in
// the new room came after m2. As with any message from before the
// upgrade, the receipt is skipped: one on the stand-in would say bob read
// everything up to it in the new room.
func TestContactReadsStandInTarget(t *testing.T) {
	u, _, _ := standInUnit(t)
	u.remote(t, bobOn(connector.KindReadReceipt, "rr1"))
	if calls := u.hs.Calls("SendReceipt"); len(calls) != 0 {
		t.Errorf("receipts sent for a read up to m1: %+v", calls)
	}
}

// TestUserReadsOnlyStandIn: bob sent nothing in the new room before he
// corrected m1; the user reads the stand-in, and mark_read goes up to
// m1, the message it shows.
func TestUserReadsOnlyStandIn(t *testing.T) {
	u, _, _ := movedUnit(t)
	edit := bobOn(connector.KindEdit, "e1")
	edit.Text, edit.TS = "see you tomorrow", 3000
	u.remote(t, edit)
	p := u.portal(t)
	standIn, err := u.db.Message.GetPart(context.Background(), p.PortalKey, "m1", 1)
	if err != nil || standIn == nil {
		t.Fatalf("no stand-in: %v", err)
	}
	if got := u.markReadUpTo(t, p, standIn.MXID, 3500); got != "m1" {
		t.Errorf("receipt on m1's stand-in: mark_read up to %q, want m1", got)
	}
}

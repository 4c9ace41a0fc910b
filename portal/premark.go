package portal

import (
	"context"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/inbox"
)

// Premarking: in a busy chat, a message's result (its mapping, the removal
// of its in-doubt marker, the inbox row's done flag) is committed and then,
// right after, the next message of the chat commits the marker of its first
// send. Both are commits the chat waits for in series, and a commit is the
// costliest part of a message on PostgreSQL (a WAL flush). When the next
// event of the lane is already queued and is a plain message of the same
// chat, its marker goes into the transaction of the current message's
// result instead, and the next message's send finds it there: one commit
// per message instead of two.
//
// The marker is written earlier than it would be, never later: it is still
// committed before its send starts, so a crash leaves what a crash between
// the marker and the send always left (a marker that resolve settles). A
// premark that no send used (the message took another path, was parked, or
// the lanes stopped) is deleted: no send of its transaction id can have
// started, since a fresh premark means no marker and no mapping existed.

// premarkNext returns the marker the lane's next event would write before
// its first send, if that event is a live plain message of the same chat
// whose marker can be written now: nil otherwise.
func premarkNext(ctx context.Context, p *database.Portal, ev *connector.Event) *database.InDoubtSend {
	here := laneOf(ctx)
	if here == nil {
		return nil
	}
	e, ok := here.next().(*inbox.Entry)
	if !ok || e.Event == nil {
		return nil
	}
	next := e.Event
	// The same conditions as remoteMessage's checkAtSend, for the same
	// chat and login, so that the next message's first send is the one
	// that checks it is not bridged yet, into the same room.
	if next.Kind != connector.KindMessage || next.Chat == nil || next.Chat.ID != ev.Chat.ID ||
		next.Login != ev.Login || len(next.Attachments) > 0 || next.Txn != "" || next.ID == "" {
		return nil
	}
	// The same message again (a connector's resend) shares the current
	// one's transaction ids: its replay check must see the mapping stored
	// now, which a premark would skip.
	if next.ID == ev.ID {
		return nil
	}
	return &database.InDoubtSend{
		TxnID: remoteTxnID(next, 0), RoomID: p.RoomID, PortalKey: p.PortalKey, RemoteID: next.ID, Part: 0,
		EventType: event.EventMessage.Type, StartedAt: time.Now(),
	}
}

// writePremark writes mark in the caller's transaction, unless the message
// is bridged or a marker of its transaction id exists already; it reports
// whether it did.
func (m *Manager) writePremark(ctx context.Context, mark *database.InDoubtSend) (bool, error) {
	if mark == nil {
		return false, nil
	}
	return m.db.InDoubt.BeginFreshUnlessBridged(ctx, mark)
}

// keepPremark leaves a written premark for the lane's next job.
func (m *Manager) keepPremark(ctx context.Context, mark *database.InDoubtSend) {
	here := laneOf(ctx)
	if here == nil {
		m.dropPremark(mark)
		return
	}
	if old := here.carry; old != nil {
		here.carry = nil
		m.dropPremark(old)
	}
	here.carry = mark
}

// takePremark returns the premark the lane's previous job wrote for the
// send of txnID and forgets it; nil when there is none.
func takePremark(ctx context.Context, txnID string) *database.InDoubtSend {
	here := laneOf(ctx)
	if here == nil {
		return nil
	}
	mark, ok := here.carry.(*database.InDoubtSend)
	if !ok || mark.TxnID != txnID {
		return nil
	}
	here.carry = nil
	return mark
}

// sameSend reports whether a premark is the marker mark would write: the
// portal's room may have changed between the two messages.
func sameSend(premark, mark *database.InDoubtSend) bool {
	return premark.RoomID == mark.RoomID && premark.PortalKey == mark.PortalKey &&
		premark.RemoteID == mark.RemoteID && premark.Part == mark.Part && premark.EventType == mark.EventType
}

// dropPremark deletes a premark that no send used: the lanes' onDrop.
func (m *Manager) dropPremark(carry any) {
	mark, ok := carry.(*database.InDoubtSend)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), 5*time.Second)
	defer cancel()
	if err := m.db.InDoubt.Delete(ctx, mark.TxnID); err != nil {
		m.log.Warn().Err(err).Str("txn_id", mark.TxnID).Msg("Failed to delete an unused in-doubt marker")
	}
}

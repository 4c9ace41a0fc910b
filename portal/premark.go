package portal

import (
	"context"
	"slices"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/inbox"
)

// Premarking: a send's in-doubt marker must be committed before the send,
// and a message's result (its mapping, the removal of its marker, the
// inbox row's done flag) after it. Done one message at a time, a busy chat
// waits for two commits per message, the costliest part of a message on
// PostgreSQL (a WAL flush). Instead, the markers of the chat's next plain
// messages, when they are already queued on the lane, are written with the
// current message's result (premarkDepth of them ahead at most), and the
// lane does not wait for that result's commit before the next message
// (pipeline.go): the next send waits only for the commit that wrote its own
// marker, usually long done, so the chat's commits overlap its sends.
//
// A marker is written earlier than it would be, never later: it is still
// committed before its send starts, so a crash leaves what a crash between
// the marker and the send always left (a marker that resolve settles). A
// premark that no send used (the message took another path, was parked, or
// the lanes stopped) is deleted: no send of its transaction id can have
// started, since a fresh premark means no marker and no mapping existed.

// premarkDepth is how many of a chat's queued messages may have their
// markers written ahead of their sends.
const premarkDepth = 4

// premark is the marker of a queued message, written by the commit of an
// earlier message's result.
type premark struct {
	mark  *database.InDoubtSend
	entry *inbox.Entry
	// write is the commit that writes it; written says whether it did
	// (not when the message is bridged or marked already), set by the
	// write before it finishes.
	write   *groupWrite
	written bool
}

// premarksAhead returns the markers the lane's next queued events would
// write before their first sends, for those that are live plain messages
// of ev's chat, in the lane's order, after the ones pl has already.
func premarksAhead(ctx context.Context, pl *pipeline, p *database.Portal, ev *connector.Event) []*premark {
	here := laneOf(ctx)
	if here == nil || pl.finishing {
		return nil
	}
	peeks := here.ahead(premarkDepth)
	if len(peeks) <= len(pl.marks) {
		return nil
	}
	for i, mk := range pl.marks {
		if peeks[i] != any(mk.entry) {
			return nil
		}
	}
	var marks []*premark
	// An id that a pending result or a marker already covers would share
	// their transaction ids: its replay check must see their outcome. The
	// lists are short (premarkDepth, maxBehind), so they are searched.
	taken := func(remoteID string) bool {
		if remoteID == ev.ID {
			return true
		}
		marked := func(mk *premark) bool { return mk.mark.RemoteID == remoteID }
		return slices.ContainsFunc(pl.marks, marked) || slices.ContainsFunc(marks, marked) ||
			slices.ContainsFunc(pl.results, func(r *pendingResult) bool { return r.entry.Event.ID == remoteID })
	}
	for _, peek := range peeks[len(pl.marks):] {
		e, ok := peek.(*inbox.Entry)
		if !ok || !premarkable(e, ev) || taken(e.Event.ID) {
			break
		}
		next := e.Event
		marks = append(marks, &premark{entry: e, mark: &database.InDoubtSend{
			TxnID: remoteTxnID(next, 0), RoomID: p.RoomID, PortalKey: p.PortalKey, RemoteID: next.ID, Part: 0,
			EventType: event.EventMessage.Type, StartedAt: time.Now(),
		}})
	}
	return marks
}

// premarkable reports whether e is a live plain message of ev's chat and
// login: the same conditions as remoteMessage's checkAtSend, so that its
// first send is the one that checks it is not bridged yet, into the same
// room; and no reply, whose content needs the mapping of an earlier message
// that may not be committed yet.
func premarkable(e *inbox.Entry, ev *connector.Event) bool {
	next := e.Event
	return next != nil && next.Kind == connector.KindMessage && next.Chat != nil && next.Chat.ID == ev.Chat.ID &&
		next.Login == ev.Login && len(next.Attachments) == 0 && next.Txn == "" && next.ID != "" && next.ReplyTo == ""
}

// writePremarks writes marks in the caller's transaction, each unless its
// message is bridged or a marker of its transaction id exists already.
func (m *Manager) writePremarks(ctx context.Context, marks []*premark) error {
	for _, mk := range marks {
		written, err := m.db.InDoubt.BeginFreshUnlessBridged(ctx, mk.mark)
		if err != nil {
			return err
		}
		mk.written = written
	}
	return nil
}

// takePremark returns the marker an earlier message wrote for the send of
// txnID, once its commit is done, and forgets it; nil when there is none or
// its write did not store it.
func takePremark(ctx context.Context, txnID string) *database.InDoubtSend {
	pl := pipelineOf(ctx)
	if pl == nil || pl.finishing || len(pl.marks) == 0 || pl.marks[0].mark.TxnID != txnID {
		return nil
	}
	mk := pl.marks[0]
	pl.marks = pl.marks[1:]
	if !mk.stored(ctx) {
		return nil
	}
	return mk.mark
}

// stored waits for the premark's write and reports whether it stored the
// marker.
func (mk *premark) stored(ctx context.Context) bool {
	return mk.write.wait(ctx) && mk.write.err == nil && mk.written
}

// sameSend reports whether a premark is the marker mark would write: the
// portal's room may have changed between the two messages.
func sameSend(premark, mark *database.InDoubtSend) bool {
	return premark.RoomID == mark.RoomID && premark.PortalKey == mark.PortalKey &&
		premark.RemoteID == mark.RemoteID && premark.Part == mark.Part && premark.EventType == mark.EventType
}

// dropPremarks deletes the markers of marks that no send used.
func (m *Manager) dropPremarks(ctx context.Context, marks []*premark) {
	if len(marks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var txnIDs []string
	for _, mk := range marks {
		if mk.stored(ctx) {
			txnIDs = append(txnIDs, mk.mark.TxnID)
		}
	}
	if len(txnIDs) == 0 {
		return
	}
	if err := m.db.InDoubt.Delete(ctx, txnIDs...); err != nil {
		m.log.Warn().Err(err).Strs("txn_ids", txnIDs).Msg("Failed to delete unused in-doubt markers")
	}
}

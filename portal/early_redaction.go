package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// A redaction can reach the bridge before the event it removes, or before
// the command for that event has gone out: with double_puppet.sync
// (package dpsync) it comes from the user's /sync while the homeserver's
// push of the event waits out a retry, and a message sent and deleted while
// the connector is away has a queued command but no mapping yet. Skipping
// such a redaction would let the deleted message reach the network later.
// So it is noted (early_redaction); the event, when it comes, is not
// handled. A queued command for it that never went out is dropped where the
// redaction is handled (matrixRedaction) or before it goes
// (deletedBeforeSend); one that went out before and may have arrived goes
// again and is deleted after (deleteAfterSend). All of this runs on the
// room's lane, like the redaction, so no send is under way meanwhile, and a
// note is only about its own room.
//
// earlyRedactions counts the notes this process knows of (set at start and
// after each prune, raised by each note): while it is 0, which is nearly
// always, the check costs no database read.

// noteEarlyRedaction records that redaction removed eventID before the
// bridge handled it.
func (m *Manager) noteEarlyRedaction(ctx context.Context, eventID id.EventID, roomID id.RoomID, redaction id.EventID) error {
	if err := m.db.EarlyRed.Add(ctx, eventID, roomID, redaction); err != nil {
		return fmt.Errorf("note early redaction: %w", err)
	}
	m.earlyRedactions.Add(1)
	return nil
}

// redactedEarly returns the redaction that removed eventID in roomID before
// the bridge handled it, or "".
func (m *Manager) redactedEarly(ctx context.Context, eventID id.EventID, roomID id.RoomID) (id.EventID, error) {
	if m.earlyRedactions.Load() == 0 {
		return "", nil
	}
	return m.db.EarlyRed.Get(ctx, eventID, roomID)
}

// setBootSeq sets bootSeq; if it cannot be read, every event counts as
// possibly written before.
func (m *Manager) setBootSeq(ctx context.Context) {
	seq, err := m.db.MXEvent.MaxSeq(ctx)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Could not read the newest Matrix event; deletions of queued messages will be sent as deletions")
		seq = math.MaxInt64
	}
	m.bootSeq = seq
}

// mayHaveWritten reports whether the command of a Matrix event may have been
// written to the connector already, although no result was stored: by this
// process in an earlier try of the row (a direct send whose answer or whose
// result's write failed), or by an earlier process, which may have been
// killed in the middle of a direct send (the row is then handled again after
// the restart). Such a command is queued as Handed. An event from the
// catch-up (Seq 0) never goes out directly.
func (m *Manager) mayHaveWritten(row *database.MXEvent) bool {
	return row.Written || row.Attempts > 0 || (row.Seq > 0 && row.Seq <= m.bootSeq)
}

// mayHaveArrived reports whether a command given up with cause may be on
// the network all the same, for the words of the notice: it was written
// and the connector never answered (a timeout), or its last answer was an
// error worth retrying, or its portal ended, after it was written. Once
// written, a command stays Handed whatever comes back: the XMPP connector
// answers M_NETWORK when its stream broke after the stanza went out, and a
// repeat can be refused (busy, shutting down) before the connector looks
// up its txn. Only a refusal meant for good says it was not delivered.
func mayHaveArrived(pc *database.PendingCommand, cause error) bool {
	var cerr *connector.Error
	answered := errors.As(cause, &cerr)
	if answered && cerr.Code == connector.ErrTimeout {
		return true
	}
	// A command refused after it was written (loginRefused) may have
	// arrived like one whose portal ended.
	var refused loginRefused
	return pc.Handed && (errors.Is(cause, errPortalEnded) || errors.As(cause, &refused) || (answered && cerr.Retryable))
}

// deletedBeforeSend decides a queued command whose event the user deleted
// meanwhile. One never written to the connector is dropped (drop). One
// written before (Handed), which may have reached the network without an
// answer coming back (a timeout, a dropped connection, the bridge killed),
// goes again: the connector answers a repeated txn with its first result
// without acting twice, and commandDone then deletes it there
// (deleteAfterSend).
func (m *Manager) deletedBeforeSend(ctx context.Context, pc *database.PendingCommand) (drop bool, err error) {
	redaction, err := m.redactedEarly(ctx, id.EventID(pc.Txn), pc.RoomID)
	if err != nil {
		return false, fmt.Errorf("check for an early redaction: %w", err)
	} else if redaction == "" || pc.Handed {
		return false, nil
	}
	zerolog.Ctx(ctx).Info().Str("txn", pc.Txn).Str("op", pc.Op).Msg("The user deleted this before it went out; dropping the command")
	if pc.Op == connector.OpSendMessage {
		err = m.dropQueuedSend(ctx, pc)
	} else {
		err = m.db.PendingCm.Delete(ctx, pc.Txn)
	}
	if err != nil {
		return false, fmt.Errorf("drop a command whose event was deleted: %w", err)
	}
	return true, nil
}

// deleteAfterSend queues the deletion of a message the user deleted while
// its send was in doubt, now that the network has named it; it runs in
// commandDone's transaction. queued says a command was stored, which the
// caller flushes once that transaction has committed.
func (m *Manager) deleteAfterSend(ctx context.Context, pc *database.PendingCommand, remoteID string) (queued bool, err error) {
	redaction, err := m.redactedEarly(ctx, id.EventID(pc.Txn), pc.RoomID)
	if err != nil || redaction == "" {
		return false, err
	}
	var sent connector.Command
	if err := json.Unmarshal(pc.Data, &sent); err != nil {
		return false, fmt.Errorf("read the sent command: %w", err)
	}
	del := connector.Command{Login: sent.Login, Chat: sent.Chat, Txn: string(redaction), Target: remoteID}
	data, err := json.Marshal(&del)
	if err != nil {
		return false, err
	}
	zerolog.Ctx(ctx).Info().Str("txn", pc.Txn).Msg("The user deleted this while its send was in doubt; deleting it on the network")
	return true, m.db.PendingCm.Insert(ctx, &database.PendingCommand{
		Txn: string(redaction), ConnectorID: pc.ConnectorID, PortalKey: pc.PortalKey, RoomID: pc.RoomID,
		Op: connector.OpDeleteMessage, Data: data, MXSeq: pc.MXSeq,
	})
}

// countEarlyRedactions sets earlyRedactions from the table. A note added
// while it counts has raised the counter, and the swap then keeps that; a
// failed count leaves it at least 1, so that the checks read the table
// rather than miss a note.
func (m *Manager) countEarlyRedactions(ctx context.Context) {
	before := m.earlyRedactions.Load()
	n, err := m.db.EarlyRed.Count(ctx)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Could not count early redactions; checking every event for one")
		n = max(1, before)
	}
	m.earlyRedactions.CompareAndSwap(before, n)
}

// pruneEarlyRedactions forgets notes as old as the intake's rows (an event
// that has not come in a day will not come), except those whose event
// still has a queued command.
func (m *Manager) pruneEarlyRedactions(ctx context.Context) error {
	if err := m.db.EarlyRed.Prune(ctx, time.Now().Add(-intakeRetention)); err != nil {
		return err
	}
	m.countEarlyRedactions(ctx)
	return nil
}

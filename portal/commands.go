package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
)

// maxCommandAttempts is how often a retryable failure is retried before the
// user is told the message was not delivered.
const maxCommandAttempts = 5

// resumeCommands queues a flush for every room with pending commands of the
// connector ("" for all), after a restart or a reconnect.
func (m *Manager) resumeCommands(connectorID string) {
	var cmds []*database.PendingCommand
	var err error
	if connectorID == "" {
		cmds, err = m.db.PendingCm.All(m.ctx)
	} else {
		cmds, err = m.db.PendingCm.ByConnector(m.ctx, connectorID)
	}
	if err != nil {
		m.log.Err(err).Msg("Failed to load pending commands")
		return
	}
	seen := make(map[id.RoomID]bool)
	for _, c := range cmds {
		if !seen[c.RoomID] {
			seen[c.RoomID] = true
			m.submitFlush(c.RoomID)
		}
	}
}

func (m *Manager) submitFlush(roomID id.RoomID) {
	m.lanes.submit("room/"+string(roomID), "flush", func(ctx context.Context) {
		ctx = m.log.With().Stringer("room_id", roomID).Logger().WithContext(ctx)
		m.flushCommands(ctx, roomID)
	})
}

// flushRetryAfter is how long flushLater waits (Manager.flushRetry).
const flushRetryAfter = time.Second

// flushLater flushes the room's queue again in a second, after a failure
// of the database: nothing else may come to wake it (a quiet room, a
// connector that stays up).
func (m *Manager) flushLater(roomID id.RoomID) {
	time.AfterFunc(m.flushRetry, func() {
		if m.ctx.Err() == nil {
			m.submitFlush(roomID)
		}
	})
}

// flushCommands sends a room's pending commands in order. It stops at the
// first one that cannot go now; a reconnect or a retry timer resumes it. A
// relation that waited for a message behind it in the queue (resolveTarget)
// goes in another pass once that message went.
func (m *Manager) flushCommands(ctx context.Context, roomID id.RoomID) {
	for m.flushPass(ctx, roomID) {
	}
}

// flushPass is one pass over the room's queue; again reports that a
// relation waited for its message and the queue changed meanwhile. A pass
// that reaches the end has settled every command that did not wait (sent,
// failed with a notice, or dropped), so each further pass has fewer.
func (m *Manager) flushPass(ctx context.Context, roomID id.RoomID) (again bool) {
	log := zerolog.Ctx(ctx)
	cmds, err := m.db.PendingCm.ByRoom(ctx, roomID)
	if err != nil {
		log.Err(err).Msg("Failed to load pending commands; trying the room's queue again later")
		m.flushLater(roomID)
		return false
	}
	// dropped: sends the user deleted before they went out, whose edits
	// and reactions further down the list went with them (dropQueuedSend).
	dropped := map[string]bool{}
	refusals := map[string]string{}
	waited := 0
	for _, pc := range cmds {
		if pc.TargetMX != "" && pc.Op != connector.OpSendMessage && dropped[string(pc.TargetMX)] {
			continue
		}
		// What was queued before the bridge stopped using the login for
		// its user (loginRefusal: blocked, connector revoked, login now
		// named as another user's) does not go either, connected or not:
		// the user is told, as for a new event (handleMatrix).
		if reason, err := m.queuedRefusal(ctx, pc, refusals); err != nil {
			log.Err(err).Str("txn", pc.Txn).Msg("Could not check the command's login; trying the room's queue again later")
			m.flushLater(roomID)
			return false
		} else if reason != "" {
			log.Warn().Str("txn", pc.Txn).Str("reason", reason).Msg("Dropping a queued command of a login the bridge may no longer use")
			m.commandFailed(ctx, pc, loginRefused(reason))
			continue
		}
		if !m.conn.Connected(pc.ConnectorID) {
			log.Debug().Str("connector_id", pc.ConnectorID).Msg("Connector offline, commands wait for it")
			return false
		}
		var cmd connector.Command
		if err := json.Unmarshal(pc.Data, &cmd); err != nil {
			// Only damage to the database gets here; the user is told, like
			// for any command that cannot go, rather than left to wonder.
			log.Err(err).Str("txn", pc.Txn).Msg("Dropping a stored command that does not parse")
			m.commandFailed(ctx, pc, errors.New("the bridge's stored copy of it is damaged"))
			continue
		}
		if drop, err := m.deletedBeforeSend(ctx, pc); err != nil {
			// Not sent blind: the user may have deleted it. Tried again.
			log.Err(err).Str("txn", pc.Txn).Msg("Could not check the command; trying the room's queue again later")
			m.flushLater(roomID)
			return false
		} else if drop {
			dropped[pc.Txn] = true
			continue
		}
		if ok, wait, err := m.resolveTarget(ctx, pc, &cmd); err != nil {
			log.Err(err).Str("txn", pc.Txn).Msg("Could not resolve the command's target; trying the room's queue again later")
			m.flushLater(roomID)
			return false
		} else if !ok {
			if wait {
				waited++
			}
			continue
		}
		if !m.prepareCommand(ctx, pc, &cmd) {
			continue
		}
		if !pc.Handed {
			// Recorded before the write: a command that reached the
			// connector is never taken for one that did not (see
			// deletedBeforeSend), even if no answer comes and the bridge
			// is killed.
			if found, err := m.db.PendingCm.MarkHanded(ctx, pc.Txn); err != nil {
				log.Err(err).Str("txn", pc.Txn).Msg("Could not record the command as sent; trying the room's queue again later")
				m.flushLater(roomID)
				return false
			} else if !found {
				// Dropped since the queue was read (the portal ended, say).
				continue
			}
			pc.Handed = true
		}
		if m.portalEnding(roomID) {
			// Looked at after the mark: a cleanup that read the queue
			// before it said "not delivered", and this does not send.
			return false
		}
		res, err := m.conn.Command(ctx, pc.ConnectorID, pc.Op, &cmd)
		if err == nil {
			if err = m.commandDone(ctx, pc, &cmd, res, 0); errors.Is(err, errPermanent) {
				// A result the bridge cannot use would block the room's queue
				// for good if retried; the user is told instead.
				log.Warn().Err(err).Str("txn", pc.Txn).Msg("Unusable command result")
				m.commandFailed(ctx, pc, err)
			} else if err != nil {
				// Sent again then; the connector answers the repeat.
				log.Err(err).Str("txn", pc.Txn).Msg("Failed to store command result; trying the room's queue again later")
				m.flushLater(roomID)
				return false
			} else {
				m.metrics.CommandDone(pc.Txn, pc.Op, true)
			}
			continue
		}
		if m.commandError(ctx, pc, err) {
			return false
		}
	}
	// The message a relation waited for went, failed or was dropped: the
	// relation goes (or fails) now, and never stays queued unflushed.
	return waited > 0 && waited < len(cmds)
}

// commandError handles a stored command's failed send: a retry after a
// backoff, or the user told once the attempts are used up. It reports
// whether the room's queue must stop here (the retry, or a reconnect, sends
// it and what is behind it).
func (m *Manager) commandError(ctx context.Context, pc *database.PendingCommand, err error) (stop bool) {
	if ctx.Err() != nil || errors.Is(err, server.ErrNotConnected) {
		return true
	}
	log := zerolog.Ctx(ctx)
	var cerr *connector.Error
	retryable := !errors.As(err, &cerr) || cerr.Retryable
	if retryable && pc.Attempts+1 < maxCommandAttempts {
		_ = m.db.PendingCm.AddAttempt(ctx, pc.Txn)
		delay := backoff(m.retryFirst, pc.Attempts+1, m.cfg.Bridge.RetryMaxDelay.D())
		log.Warn().Err(err).Str("txn", pc.Txn).Dur("retry_in", delay).Msg("Command failed, will retry")
		roomID := pc.RoomID
		time.AfterFunc(delay, func() { m.submitFlush(roomID) })
		return true
	}
	log.Warn().Err(err).Str("txn", pc.Txn).Msg("Command failed for good")
	m.commandFailed(ctx, pc, err)
	return false
}

// sendDirect sends a command of a room that has none waiting without
// storing it first: the Matrix event that caused it stays unhandled until
// the result is stored, in the same transaction that marks it handled. A
// crash in between handles the event again after the restart, and the
// command goes out again with the same txn, which the connector answers
// with the first result without acting twice (section 6 of the protocol),
// as it does for a stored command sent again. That is one commit per
// command instead of two (the queueing and the result).
//
// It reports sent when the event is dealt with (its result stored, or the
// user told); otherwise the caller stores the command, and failure is what
// its send already met, if it went out.
func (m *Manager) sendDirect(ctx context.Context, row *database.MXEvent, pc *database.PendingCommand, cmd *connector.Command) (sent bool, failure, err error) {
	// An event not from the intake (row.Seq 0: catchup.go) has no row to
	// recognise the command's echo by, and does not run on the room's lane.
	if row.Seq == 0 || !m.conn.Connected(pc.ConnectorID) {
		return false, nil, nil
	}
	// The lane runs the room's jobs one at a time, so nothing is stored
	// for the room between this check and the send.
	if !m.quiet.has(pc.RoomID) {
		if waiting, err := m.db.PendingCm.ByRoom(ctx, pc.RoomID); err != nil {
			return false, nil, fmt.Errorf("look up waiting commands: %w", err)
		} else if len(waiting) > 0 {
			return false, nil, nil
		}
		m.quiet.add(pc.RoomID)
	}
	if !m.prepareCommand(ctx, pc, cmd) {
		// The user was told why it cannot go.
		return true, nil, m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	}
	// The result write follows the send (see groupCommit.linger).
	m.commits.expectWrite(ctx)
	row.Written = true
	res, err := m.conn.Command(ctx, pc.ConnectorID, pc.Op, cmd)
	if err != nil {
		if here := laneOf(ctx); here != nil {
			here.wroteOrGaveUp()
		}
		if ctx.Err() != nil {
			return false, nil, ctx.Err()
		}
		return false, err, nil
	}
	if err := m.commandDone(ctx, pc, cmd, res, row.Seq); errors.Is(err, errPermanent) {
		zerolog.Ctx(ctx).Warn().Err(err).Str("txn", pc.Txn).Msg("Unusable command result")
		m.commandFailed(ctx, pc, err)
		return true, nil, m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	} else if err != nil {
		// The event is handled again; the connector answers the repeat.
		return true, nil, fmt.Errorf("store command result: %w", err)
	}
	m.metrics.CommandDone(pc.Txn, pc.Op, true)
	return true, nil, nil
}

// commandDone stores what a command's result means and drops the command,
// in one transaction; with doneSeq (a command sent directly) it also marks
// that Matrix event handled.
func (m *Manager) commandDone(ctx context.Context, pc *database.PendingCommand, cmd *connector.Command, res *connector.Result, doneSeq int64) error {
	followUp := false
	// movedTo: the room the portal moved to from the command's room.
	var movedTo id.RoomID
	err := m.groupTxn(ctx, func(ctx context.Context) error {
		followUp = false
		// A portal that moved to an upgraded room while the command
		// waited still maps the user's event (in the old room) to what
		// the network made of it (commandPortal).
		movedTo = ""
		p, moved, err := m.commandPortal(ctx, pc)
		if err != nil {
			return err
		}
		// A message's mapping marks its event handled in the same statement
		// (one round trip less on PostgreSQL); otherwise it is marked here.
		byMapping := p != nil && doneSeq != 0 && pc.Op == connector.OpSendMessage && res.ID != ""
		if doneSeq != 0 && !byMapping {
			if err := m.db.MXEvent.MarkDone(ctx, doneSeq, ""); err != nil {
				return err
			}
		}
		if p == nil {
			// The portal was cleaned up while the command was out (see
			// cleanup.go): the network has it, and there is no room to map it to.
			return m.db.PendingCm.Delete(ctx, pc.Txn)
		} else if moved {
			movedTo = p.RoomID
		}
		switch pc.Op {
		case connector.OpSendMessage:
			if res.ID == "" {
				return fmt.Errorf("%w: the network gave no message id for it", errPermanent)
			}
			ts := res.TS
			if ts == 0 {
				ts = time.Now().UnixMilli()
			}
			msg := &database.Message{
				PortalKey: pc.PortalKey, RemoteID: res.ID, MXID: id.EventID(pc.Txn), RoomID: pc.RoomID,
				SenderID: pc.LoginID, IsMe: true, TS: ts,
			}
			if byMapping {
				if err := m.db.Message.InsertMarkingDone(ctx, msg, doneSeq); err != nil {
					return err
				}
			} else if err := m.db.Message.Insert(ctx, msg); err != nil {
				return err
			}
			if followUp, err = m.deleteAfterSend(ctx, pc, res.ID); err != nil {
				return err
			}
		case connector.OpEditMessage, connector.OpDeleteMessage, connector.OpReact, connector.OpUnreact:
			if err := m.relationDone(ctx, pc, cmd, res); err != nil {
				return err
			}
		}
		if doneSeq != 0 {
			return nil // it was never stored
		}
		return m.db.PendingCm.Delete(ctx, pc.Txn)
	})
	if err == nil && followUp {
		m.quiet.remove(pc.RoomID)
		m.submitFlush(pc.RoomID)
	}
	if err == nil && movedTo != "" && pc.Op == connector.OpSendMessage {
		// Relations the user queued behind it in the new room (or one
		// upgraded again since) waited for it there (flushMovedRoom).
		m.flushMovedRooms(ctx, pc, movedTo)
	}
	if err == nil && pc.Op == connector.OpSendMessage {
		m.stats.toNetwork.Add(1)
		zerolog.Ctx(ctx).Debug().Str("txn", pc.Txn).Str("remote_id", res.ID).Msg("Bridged message to the network")
	}
	return err
}

// commandFailed tells the user, in the room, that their action did not reach
// the network, so that nobody believes an undelivered message arrived.
func (m *Manager) commandFailed(ctx context.Context, pc *database.PendingCommand, cause error) {
	m.metrics.CommandDone(pc.Txn, pc.Op, false)
	m.stats.networkErrors.Add(1)
	// Told before the command is dropped, under a transaction id of the
	// command: a crash in between sends the command and the notice again,
	// and the room shows the notice once (the other order lost it).
	// A reply to the user's event (the command's txn is its id), so that
	// their client shows which one did not arrive (noticeCommand).
	outcome := "was not delivered"
	if mayHaveArrived(pc, cause) {
		// The network may well have it, and the user should not send it
		// again blindly.
		outcome = "may not have been delivered"
	}
	m.dropCommand(ctx, pc, fmt.Sprintf("⚠️ %s %s: %s", actionOf(pc), outcome, describeError(cause)), "dmb_failed_"+pc.Txn)
}

// dropCommand tells the user about pc in noticeTxn's notice, then drops it.
// In this order a crash in between sends the notice again under the same
// transaction id, which shows it once, where the other order would leave
// the user without a word. Relations the user queued behind pc in a room
// its chat moved to are flushed then: nothing else would, and they would
// wait there without a word.
func (m *Manager) dropCommand(ctx context.Context, pc *database.PendingCommand, text, noticeTxn string) {
	m.noticeCommand(ctx, pc, text, noticeTxn)
	if err := m.db.PendingCm.Delete(ctx, pc.Txn); err != nil {
		zerolog.Ctx(ctx).Err(err).Str("txn", pc.Txn).Msg("Failed to drop a command the user was told about")
	}
	m.flushMovedRoom(ctx, pc)
}

// describeError is a failure's reason as the user reads it: the network's
// own message where there is one (its protocol code goes to the log, not to
// the user), a kind of failure for one from below the bridge (see
// outsideCause), and otherwise the bridge's own words without its internal
// classification.
func describeError(err error) string {
	var cerr *connector.Error
	if errors.As(err, &cerr) {
		if cerr.Message == "" {
			// The code alone is for machines, and a connector's code is
			// as unbounded as anything else it sends.
			return "the network refused it"
		}
		// The connector's words (e.g. "\"foo\" is not an XMPP address"),
		// bounded: it is input like any other.
		return config.TruncateRunes(cerr.Message, maxReasonRunes)
	}
	if why := outsideCause(err); why != "" {
		return why
	}
	return strings.TrimPrefix(err.Error(), errPermanent.Error()+": ")
}

// maxReasonRunes bounds a reason from the connector in a notice, and
// maxNetworkNameRunes the network's name from its hello.
const (
	maxReasonRunes      = 300
	maxNetworkNameRunes = 64
)

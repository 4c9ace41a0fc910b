package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
)

// handleMatrix handles one stored Matrix event. Events the bridge caused
// (ghosts, the bot, its own double-puppet sends) never go to the network.
func (m *Manager) handleMatrix(ctx context.Context, row *database.MXEvent) (err error) {
	defer func() {
		if err != nil {
			m.stats.networkErrors.Add(1)
		}
	}()
	evt, err := appservice.ParseEvent(row.Data)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Matrix event does not parse, skipping it")
		// Parked like any other event that cannot be handled: its sender,
		// if it is a user, is told (first, as in applyMatrix).
		if evt != nil && evt.Sender != "" && !m.isBridgeUser(evt) && m.bridgesFor(ctx, evt) {
			// The parser's words (Go field names) go to the log only.
			m.noticeMatrixFailure(ctx, row, errors.New("the bridge could not read it (its content is malformed)"))
		}
		return m.db.MXEvent.MarkDone(ctx, row.Seq, err.Error())
	}
	mautrix.UpdateStateStore(ctx, m.link.StateStore, evt)
	if m.isBridgeUser(evt) || evt.Content.Raw[mas.DoublePuppetKey] == appservice.DoublePuppetValue {
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	}
	if handled, err := m.matrixMembership(ctx, row, evt); handled {
		return err
	}
	p, err := m.db.Portal.GetByRoom(ctx, evt.RoomID)
	if err != nil {
		return fmt.Errorf("look up portal of %s: %w", evt.RoomID, err)
	}
	if p == nil {
		// A room the portal left when the user upgraded the DM still
		// has the user's deletions of what went from it (oldRoomPortal).
		if p, err = m.oldRoomPortal(ctx, evt); err != nil {
			return err
		} else if p == nil {
			return m.notPortal(ctx, row, evt)
		}
	}
	login, err := m.db.Login.Get(ctx, p.LoginID)
	if err != nil {
		return err
	}
	if login == nil || evt.Sender != login.MatrixUser {
		// Other members (bots welcome in a DM) are not bridged.
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	}
	if reason := m.loginRefusal(login); reason != "" {
		// A user blocked after the portal was made no longer reaches the
		// network, and is told so rather than left with silence; so is one
		// whose login's connector may no longer serve them, or whose
		// connector named another owner for the login (loginRefusal): the
		// connector's events for the login are refused then too, and a
		// revocation must not work one way only.
		notice := ""
		if evt.StateKey == nil && evt.Type != event.EventRedaction {
			notice = fmt.Sprintf("⚠️ Your %s was not delivered: %s.", mxEventNoun(row.Data), reason)
		}
		return m.refuseMatrix(ctx, row, p, notice)
	}
	ctx = zerolog.Ctx(ctx).With().Str("login_id", p.LoginID).Str("chat_id", p.ChatID).Logger().WithContext(ctx)
	return m.dispatchMatrix(ctx, row, evt, login, p)
}

// dispatchMatrix handles the user's event in a portal by type. A decrypted
// event comes back through here, so it is handled exactly like a plain one.
func (m *Manager) dispatchMatrix(ctx context.Context, row *database.MXEvent, evt *event.Event, login *database.Login, p *database.Portal) error {
	if m.refuseUnencrypted(ctx, row, evt, p) {
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "unencrypted events are refused")
	}
	if evt.Type == event.EventMessage || evt.Type == event.EventSticker || evt.Type == event.EventReaction || evt.Type == event.EventEncrypted {
		// Read back already redacted (catch-up reads history, where a
		// deleted message has lost its content): nothing to send.
		if evt.Unsigned.RedactedBecause != nil {
			zerolog.Ctx(ctx).Info().Msg("The user deleted this event before the bridge read it; not sending it")
			return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
		}
		if redaction, err := m.redactedEarly(ctx, evt.ID, evt.RoomID); err != nil {
			return fmt.Errorf("check for an early redaction: %w", err)
		} else if redaction != "" {
			zerolog.Ctx(ctx).Info().Msg("The user deleted this event before the bridge handled it; not sending it")
			return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
		}
	}
	switch evt.Type {
	case event.EventMessage, event.EventSticker:
		return m.matrixMessage(ctx, row, evt, login, p)
	case event.EventReaction:
		return m.matrixReaction(ctx, row, evt, login, p)
	case event.EventRedaction:
		return m.matrixRedaction(ctx, row, evt, login, p)
	case event.EventEncrypted:
		return m.matrixEncrypted(ctx, row, evt, login, p)
	case event.StateEncryption:
		m.encryptionEnabled(ctx, p)
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	default:
		if evt.StateKey != nil {
			return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
		}
		return m.matrixOther(ctx, row, evt, login, p)
	}
}

// bridgesFor reports whether the bridge carries evt's sender's events from
// its room: in a portal only its owner's, elsewhere (the management room)
// those of a user allowed to use the bridge. Only they are told about an
// event of theirs that failed; anyone else's events were never going to
// the network, and an answer from the contact's ghost would read as if
// they had been.
func (m *Manager) bridgesFor(ctx context.Context, evt *event.Event) bool {
	if m.cfg.PermissionLevel(evt.Sender) < config.LevelUser {
		return false
	}
	p, err := m.db.Portal.GetByRoom(ctx, evt.RoomID)
	if err != nil || p == nil {
		return err == nil
	}
	login, err := m.db.Login.Get(ctx, p.LoginID)
	return err == nil && login != nil && login.MatrixUser == evt.Sender
}

func (m *Manager) isBridgeUser(evt *event.Event) bool {
	if evt.Sender == m.link.BotMXID() {
		return true
	}
	_, isGhost := m.cfg.ParseGhostUserID(evt.Sender)
	return isGhost
}

// matrixMessage turns the user's message into a send_message command. The
// command is stored in the same transaction that marks the event handled,
// so it is sent at least once, and its txn makes the connector act once.
func (m *Manager) matrixMessage(ctx context.Context, row *database.MXEvent, evt *event.Event, login *database.Login, p *database.Portal) error {
	content := evt.Content.AsMessage()
	if evt.Type == event.EventSticker {
		content = stickerAsImage(evt)
	}
	if content == nil || content.MsgType == event.MsgVerificationRequest {
		// A key verification request is for the other user's client,
		// which the network does not have; its text is not for them.
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	}
	if content.RelatesTo.GetReplaceID() != "" {
		return m.matrixEdit(ctx, row, evt, login, p, content)
	}
	cmd, notice, err := m.messageCommand(ctx, evt, login, p, content)
	if err != nil {
		return err
	} else if cmd == nil {
		return m.refuseMatrix(ctx, row, p, notice)
	}
	if replyTo := content.RelatesTo.GetReplyTo(); replyTo != "" && cmd.ReplyTo == "" {
		// A reply to the user's message still queued (relations_queued.go).
		if target, queued, err := m.sentOrQueued(ctx, p, replyTo); err != nil {
			return err
		} else if queued != nil {
			return m.enqueue(ctx, row, login, p, connector.OpSendMessage, cmd, replyTo)
		} else if target != nil {
			// Sent since messageCommand looked (see sentOrQueued).
			cmd.ReplyTo = target.RemoteID
		}
	}
	return m.queueCommand(ctx, row, login, p, connector.OpSendMessage, cmd)
}

// queueCommand sends the user's action to the network. In a room with no
// command waiting (the usual case) it goes out at once and its result is
// stored in the transaction that marks the Matrix event handled (see
// sendDirect); otherwise, or when that send fails, it is stored behind the
// room's waiting commands, in the transaction that marks the event handled,
// and the room's queue is sent in order.
func (m *Manager) queueCommand(ctx context.Context, row *database.MXEvent, login *database.Login, p *database.Portal, op string, cmd *connector.Command) error {
	return m.enqueue(ctx, row, login, p, op, cmd, "")
}

// enqueue is queueCommand; a command with targetMX (relations_queued.go)
// is always stored, behind the queued message it waits for.
func (m *Manager) enqueue(ctx context.Context, row *database.MXEvent, login *database.Login, p *database.Portal, op string, cmd *connector.Command, targetMX id.EventID) error {
	data, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	pc := &database.PendingCommand{
		Txn: cmd.Txn, ConnectorID: login.ConnectorID, PortalKey: p.PortalKey, RoomID: p.RoomID, Op: op, Data: data,
		MXSeq: row.Seq, TargetMX: targetMX,
	}
	m.metrics.CommandQueued(cmd.Txn, row.ReceivedAt)
	var failure error
	if targetMX == "" {
		var sent bool
		if sent, failure, err = m.sendDirect(ctx, row, pc, cmd); sent || err != nil {
			return err
		}
	}
	m.quiet.remove(p.RoomID)
	// A failed direct send was written to the connector: even an error
	// answer does not prove the network does not have it (the XMPP
	// connector answers M_NETWORK when its stream broke after the stanza
	// went out, and a repeat can be refused before the connector looks up
	// its txn). So may one of an earlier try of this event (mayHaveWritten).
	pc.Handed = failure != nil || m.mayHaveWritten(row)
	// The command goes out once this commits: its group must not linger.
	queue := newGroupWrite(func(ctx context.Context) error {
		if err := m.db.PendingCm.Insert(ctx, pc); err != nil {
			return err
		}
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	}, false)
	queue.beforeSend = true
	err = m.group(ctx, queue)
	if err != nil {
		return fmt.Errorf("queue %s: %w", op, err)
	}
	if failure != nil && !errors.Is(failure, server.ErrNotConnected) {
		// It was tried once already: the retry waits as any other would.
		if m.commandError(ctx, pc, failure) {
			return nil
		}
	}
	m.flushCommands(ctx, p.RoomID)
	return nil
}

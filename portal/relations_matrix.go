package portal

import (
	"context"
	"encoding/json"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// The user's edits, reactions and deletions on Matrix become commands on the
// message they point at. Each goes through the pending-command path with the
// Matrix event id as txn, like a message; commandDone (relationDone) stores
// what the result means. Whatever points at an event the bridge does not
// know is logged and skipped; a deletion of one is kept in case the event
// comes later (early_redaction.go).

// matrixEdit turns an m.replace into edit_message.
func (m *Manager) matrixEdit(ctx context.Context, row *database.MXEvent, evt *event.Event, login *database.Login, p *database.Portal, content *event.MessageEventContent) error {
	targetMX := content.RelatesTo.GetReplaceID()
	target, queued, err := m.sentOrQueued(ctx, p, targetMX)
	if err != nil {
		return err
	}
	text, html := editText(content)
	if text == "" && html == "" {
		// A caption edited away: an edit_message needs text (a connector
		// refuses one without), so the user is told instead of the contact
		// getting an empty or made-up text.
		return m.refuseMatrix(ctx, row, p, "⚠️ Your edit was not delivered: it removes all of the message's text "+
			"(a caption, say), which the network cannot show.")
	}
	cmd := &connector.Command{Login: login.ID, Chat: chatOf(p), Txn: string(evt.ID), Text: text, HTML: html}
	if target == nil {
		if queued != nil {
			return m.enqueue(ctx, row, login, p, connector.OpEditMessage, cmd, targetMX)
		}
		// Only its sender can edit an event, so this is a message of the
		// user's that never reached the network (refused, or failed): the
		// user was told about it, and is told about the edit too.
		return m.refuseMatrix(ctx, row, p, "⚠️ Your edit was not delivered: "+errTargetNotDelivered.Error()+".")
	}
	if !target.IsMe {
		zerolog.Ctx(ctx).Warn().Stringer("target", targetMX).Msg("Edit of an event that is not a bridged message of the user, skipping it")
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	}
	cmd.Target = target.RemoteID
	return m.queueCommand(ctx, row, login, p, connector.OpEditMessage, cmd)
}

// matrixReaction turns an m.annotation into react.
func (m *Manager) matrixReaction(ctx context.Context, row *database.MXEvent, evt *event.Event, login *database.Login, p *database.Portal) error {
	content := evt.Content.AsReaction()
	targetMX, key := content.RelatesTo.EventID, content.RelatesTo.Key
	if content.RelatesTo.Type != event.RelAnnotation || targetMX == "" || key == "" {
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	}
	target, queued, err := m.sentOrQueued(ctx, p, targetMX)
	if err != nil {
		return err
	}
	cmd := &connector.Command{Login: login.ID, Chat: chatOf(p), Txn: string(evt.ID), Key: key}
	if target == nil {
		if queued != nil {
			return m.enqueue(ctx, row, login, p, connector.OpReact, cmd, targetMX)
		}
		zerolog.Ctx(ctx).Warn().Stringer("target", targetMX).Msg("Reaction to an event the bridge does not know, skipping it")
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	}
	cmd.Target = target.RemoteID
	return m.queueCommand(ctx, row, login, p, connector.OpReact, cmd)
}

// matrixRedaction removes a reaction (unreact) or deletes a message
// (delete_message), depending on what was redacted.
func (m *Manager) matrixRedaction(ctx context.Context, row *database.MXEvent, evt *event.Event, login *database.Login, p *database.Portal) error {
	redacts := redactedEvent(evt)
	log := zerolog.Ctx(ctx).With().Stringer("redacts", redacts).Logger()
	base := connector.Command{Login: login.ID, Chat: chatOf(p), Txn: string(evt.ID)}
	// A redaction in the room the portal left when the user upgraded the
	// DM (oldRoomPortal) is queued there, behind what still waits there,
	// and on that room's lane, where this runs; notices go to the portal's
	// room, where the user is.
	here := p
	if evt.RoomID != p.RoomID {
		old := *p
		old.RoomID = evt.RoomID
		here = &old
	}
	if reaction, targetMX, err := m.reactionByMXID(ctx, p, redacts); err != nil {
		return err
	} else if reaction != nil {
		if reaction.SenderID != login.ID {
			log.Warn().Msg("Redaction of the contact's reaction, nothing to send")
			return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
		}
		base.Target, base.Key = reaction.TargetID, reaction.Key
		return m.enqueue(ctx, row, login, here, connector.OpUnreact, &base, targetMX)
	}
	msg, err := m.portalMessage(ctx, p, redacts)
	if err != nil {
		return err
	}
	if msg == nil {
		// A message waiting for the network that was never written to the
		// connector: dropped here. This runs on the room's lane, as every send of the room does.
		// Only in its own room: a homeserver refuses a redaction of an
		// event of another room.
		if pc, err := m.db.PendingCm.Get(ctx, string(redacts)); err != nil {
			return err
		} else if pc != nil && pc.RoomID == evt.RoomID && pc.Op == connector.OpSendMessage && !pc.Handed {
			log.Info().Msg("The user deleted a message that was waiting to be sent; it will not be")
			if err := m.dropQueuedSend(ctx, pc); err != nil {
				return err
			}
			return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
		}
		// Not bridged (yet), or sent and perhaps delivered: if the event
		// or its command comes later, early_redaction.go deals with it.
		log.Info().Msg("Redaction of an event the bridge has not bridged; it will not be sent if it comes")
		if err := m.noteEarlyRedaction(ctx, redacts, evt.RoomID, evt.ID); err != nil {
			return err
		}
		return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
	}
	if !msg.IsMe {
		return m.refuseMatrix(ctx, row, p, "The message was removed on Matrix only: the bridge deletes only your own messages on "+m.networkName(login.ConnectorID)+".")
	}
	base.Target = msg.RemoteID
	return m.queueCommand(ctx, row, login, here, connector.OpDeleteMessage, &base)
}

// redactedEvent is the event a redaction removes: named in its content from
// room version 11 on, at the top before.
func redactedEvent(evt *event.Event) id.EventID {
	if evt.Redacts != "" {
		return evt.Redacts
	}
	return evt.Content.AsRedaction().Redacts
}

// portalMessage finds the bridged message that a relation of the user's in
// p points at, in p only. An event id is the client's word: one of another
// room (another chat's message) would make the command name that chat's
// message in this chat; it counts as unknown.
func (m *Manager) portalMessage(ctx context.Context, p *database.Portal, eventID id.EventID) (*database.Message, error) {
	msg, err := m.db.Message.GetByMXID(ctx, eventID)
	if err != nil || msg == nil || msg.PortalKey == p.PortalKey {
		return msg, err
	}
	zerolog.Ctx(ctx).Warn().Stringer("target", eventID).Msg("Relation to a message of another room, treating it as unknown")
	return nil, nil
}

// sentOrQueued finds the user's message targetMX in p, sent (target) or
// still queued for the network (queued), or neither. A queued send's answer
// stores the message and ends the queued send in one transaction, which
// may commit between the two lookups: on another room's lane when the chat
// moved to an upgraded room while the message waited. Found in neither, it
// is looked for among the sent once more; the relation was refused as "not
// delivered" while its message had arrived.
func (m *Manager) sentOrQueued(ctx context.Context, p *database.Portal, targetMX id.EventID) (target *database.Message, queued *database.PendingCommand, err error) {
	for look := 0; ; look++ {
		if target, err = m.portalMessage(ctx, p, targetMX); err != nil || target != nil || look == 1 {
			return target, nil, err
		}
		if queued, err = m.queuedSend(ctx, targetMX, p.PortalKey, p.RoomID); err != nil || queued != nil {
			return nil, queued, err
		}
	}
}

// reactionByMXID finds a reaction in p by its Matrix event, including one
// whose react command has not been answered yet: the unreact is queued
// behind it, and waits for the same queued message as the react if that
// does (targetMX; relations_queued.go).
func (m *Manager) reactionByMXID(ctx context.Context, p *database.Portal, eventID id.EventID) (r *database.Reaction, targetMX id.EventID, err error) {
	if r, err = m.sentReaction(ctx, p, eventID); err != nil || r != nil {
		return r, "", err
	}
	pc, err := m.db.PendingCm.Get(ctx, string(eventID))
	if err != nil || pc == nil || pc.Op != connector.OpReact || pc.PortalKey != p.PortalKey {
		if err == nil && pc == nil {
			// Answered between the two lookups (see sentOrQueued).
			r, err = m.sentReaction(ctx, p, eventID)
		}
		return r, "", err
	}
	var cmd connector.Command
	if err := json.Unmarshal(pc.Data, &cmd); err != nil {
		return nil, "", nil
	}
	return &database.Reaction{PortalKey: pc.PortalKey, TargetID: cmd.Target, SenderID: pc.LoginID, Key: cmd.Key, MXID: eventID}, pc.TargetMX, nil
}

// sentReaction is the reaction eventID in p that reached the network, or nil.
func (m *Manager) sentReaction(ctx context.Context, p *database.Portal, eventID id.EventID) (*database.Reaction, error) {
	r, err := m.db.Reaction.GetByMXID(ctx, eventID)
	if err != nil || r == nil || r.PortalKey != p.PortalKey {
		return nil, err
	}
	return r, nil
}

// refuseMatrix tells the user why a Matrix event of theirs did not reach
// the network, then marks it handled without a command. In that order: an
// event handled again after a crash between the two says it again under
// the same transaction id, which the room shows once. The notice replies to
// the event, so that the user's client shows which one did not go.
func (m *Manager) refuseMatrix(ctx context.Context, row *database.MXEvent, p *database.Portal, notice string) error {
	if notice != "" && p != nil && p.RoomID != "" {
		m.noticeAbout(ctx, p, row.EventID, mxEventNoun(row.Data) == "deletion", notice, mxNoticeTxn("refused", row))
	}
	return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
}

// relationDone stores what the answer to an edit, delete or reaction
// command means; it runs inside commandDone's transaction.
func (m *Manager) relationDone(ctx context.Context, pc *database.PendingCommand, cmd *connector.Command, res *connector.Result) error {
	switch pc.Op {
	case connector.OpDeleteMessage:
		if err := m.db.Reaction.DeleteTarget(ctx, pc.PortalKey, cmd.Target); err != nil {
			return err
		}
		return m.db.Message.DeleteRemote(ctx, pc.PortalKey, cmd.Target)
	case connector.OpReact:
		remoteID := ""
		if res != nil {
			remoteID = res.ID
		}
		return m.db.Reaction.Insert(ctx, &database.Reaction{
			PortalKey: pc.PortalKey, TargetID: cmd.Target, SenderID: pc.LoginID, Key: cmd.Key,
			RemoteID: remoteID, MXID: id.EventID(pc.Txn),
		})
	case connector.OpUnreact:
		return m.db.Reaction.DeleteKey(ctx, pc.PortalKey, cmd.Target, pc.LoginID, cmd.Key)
	}
	return nil
}

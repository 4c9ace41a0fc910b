package portal

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
)

// remoteRelation applies an event that points at an earlier message: an
// edit, a deletion, a reaction or its removal, a read receipt. Whatever
// points at a message the bridge never mapped is logged and skipped: the
// portal must keep going. One at a message of the room the user upgraded
// the DM from is shown in the portal's room (relations_elsewhere.go).
func (m *Manager) remoteRelation(ctx context.Context, login *database.Login, ev *connector.Event, done func(context.Context) error) error {
	log := zerolog.Ctx(ctx)
	if ev.Txn != "" && ev.Kind != connector.KindReadReceipt {
		// The echo of the bridge's own command: Matrix shows it already.
		log.Debug().Str("txn", ev.Txn).Msg("Echo of the bridge's own command, skipping it")
		return done(ctx)
	}
	key := database.PortalKey{LoginID: login.ID, ChatID: ev.Chat.ID}
	p, err := m.db.Portal.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("load portal %s: %w", ev.Chat.ID, err)
	}
	if p == nil || p.RoomID == "" {
		log.Warn().Msg("Event points into a chat without a portal, skipping it")
		return done(ctx)
	}
	if notFrom(ev.Sender, p.ContactID) {
		// Anyone else (the login's own id without is_me, say) would act on
		// keys that are not theirs, such as the user's reactions, or read
		// as the contact.
		return skipStranger(ctx, ev, p.ContactID, done)
	}
	if ev.Kind == connector.KindReadReceipt {
		return m.remoteReadReceipt(ctx, login, p, ev, done)
	}
	intent, isMe, err := m.senderIntent(ctx, login, p, ev.Sender)
	if err != nil {
		return err
	}
	switch ev.Kind {
	case connector.KindEdit:
		return m.remoteEdit(ctx, p, intent, isMe, ev, done)
	case connector.KindDelete:
		return m.remoteDelete(ctx, p, intent, ev, done)
	case connector.KindReaction:
		return m.remoteReaction(ctx, login, p, intent, ev, done)
	default:
		return m.remoteReactionRemove(ctx, login, p, intent, ev, done)
	}
}

func skipUnknownTarget(ctx context.Context, ev *connector.Event, done func(context.Context) error) error {
	zerolog.Ctx(ctx).Warn().Str("target", ev.Target).Str("up_to", ev.UpTo).
		Msg("Event points at a message the bridge does not know, skipping it")
	return done(ctx)
}

// sentBySameSide reports whether the sender of an edit or a deletion is the
// side that sent its target: the contact may change only the contact's
// messages, the user on another device only the user's. The ghost's power
// level would let it redact anything in the room, so this check is all that
// keeps a contact away from the user's messages.
func sentBySameSide(target *database.Message, sender *connector.Sender) bool {
	if sender == nil || target.IsMe != sender.IsMe {
		return false
	}
	return sender.IsMe || target.SenderID == sender.ID
}

func skipOthersMessage(ctx context.Context, target *database.Message, ev *connector.Event, done func(context.Context) error) error {
	zerolog.Ctx(ctx).Warn().Str("target", ev.Target).Bool("target_is_me", target.IsMe).
		Str("target_sender", target.SenderID).Str("kind", ev.Kind).
		Msg("Refusing an edit or deletion of a message the other side sent, skipping it")
	return done(ctx)
}

// remoteEdit replaces the text of a message: its first part is edited, and
// the parts that carried the rest of a long text (split parts, or the
// message.txt after a preview) are redacted, as the new text is all in the
// edit; attachments stay. Every send has a transaction id of its own
// (part 0 the edit, the tail's parts their redactions), so a retry repeats
// none of them.
func (m *Manager) remoteEdit(ctx context.Context, p *database.Portal, intent matrix.API, isMe bool, ev *connector.Event, done func(context.Context) error) error {
	parts, err := m.db.Message.GetParts(ctx, p.PortalKey, ev.Target)
	if err != nil {
		return err
	} else if len(parts) == 0 || parts[0].Part != 0 {
		return skipUnknownTarget(ctx, ev, done)
	}
	if !sentBySameSide(parts[0], ev.Sender) {
		return skipOthersMessage(ctx, parts[0], ev, done)
	}
	var tails []*database.Message
	for _, part := range parts[1:] {
		// Those of another room stay: no redaction reaches it.
		if part.TextTail && !elsewhere(p, part) {
			tails = append(tails, part)
		}
	}
	content := fitEdit(textContent(ev.Text, ev.HTML))
	// No mentions, as for messages (remoteToMatrix); setEdit copies this
	// into m.new_content.
	content.Mentions = &event.Mentions{}
	if isMe && !intent.IsDoublePuppet() {
		markAsUsers([]*event.MessageEventContent{content})
	}
	target := shownPart(p, parts)
	if elsewhere(p, parts[0]) {
		// A message from before the upgrade (relations_elsewhere.go).
		content = m.correction(ctx, p, parts[0], content)
		if target == nil {
			return m.remoteEditElsewhere(ctx, p, intent, content, parts, ev, done)
		}
	}
	setEdit(content, target.MXID)
	send := messageSend(intent, p, ev, 0, content)
	send.keepEventID = len(tails) > 0
	if _, err = m.sendRemote(ctx, send); err != nil {
		return fmt.Errorf("send edit of %s: %w", ev.Target, err)
	}
	txns := []string{send.txnID}
	for i, tail := range tails {
		redact := remoteRedaction(intent, p, ev, tail.Part, tail.MXID)
		redact.keepEventID = i < len(tails)-1
		if _, err = m.sendRemote(ctx, redact); err != nil {
			return fmt.Errorf("redact old part %d of edited %s: %w", tail.Part, ev.Target, err)
		}
		txns = append(txns, redact.txnID)
	}
	if len(tails) == 0 {
		return m.doneWithSends(ctx, done, txns...)
	}
	return m.doneWithSends(ctx, func(ctx context.Context) error {
		// The redacted parts are gone from the room: a later edit or
		// deletion has nothing more to do with them.
		if err := m.db.Message.DeleteTextTails(ctx, p.PortalKey, ev.Target); err != nil {
			return err
		}
		return done(ctx)
	}, txns...)
}

// remoteRedaction is the send of a redaction for a remote event.
func remoteRedaction(intent matrix.API, p *database.Portal, ev *connector.Event, part int, target id.EventID) *remoteSend {
	send := newRemoteSend(intent, p, ev, part, event.EventRedaction)
	send.send = func(ctx context.Context, txnID string) (*mautrix.RespSendEvent, error) {
		return intent.RedactEvent(ctx, p.RoomID, target, mautrix.ReqRedact{
			TxnID: txnID, Extra: map[string]any{contentTxnKey: txnID},
		})
	}
	return send
}

// remoteDelete redacts every part of the message, then forgets it.
func (m *Manager) remoteDelete(ctx context.Context, p *database.Portal, intent matrix.API, ev *connector.Event, done func(context.Context) error) error {
	parts, err := m.db.Message.GetParts(ctx, p.PortalKey, ev.Target)
	if err != nil {
		return err
	} else if len(parts) == 0 {
		return skipUnknownTarget(ctx, ev, done)
	} else if !sentBySameSide(parts[0], ev.Sender) {
		return skipOthersMessage(ctx, parts[0], ev, done)
	}
	txns := make([]string, 0, len(parts))
	var gone *database.Message
	for i, part := range parts {
		if elsewhere(p, part) {
			// From before the upgrade: it stays in the old room, and
			// the user is told below (relations_elsewhere.go).
			gone = part
			continue
		}
		send := remoteRedaction(intent, p, ev, i, part.MXID)
		send.keepEventID = i < len(parts)-1 || gone != nil
		if _, err := m.sendRemote(ctx, send); err != nil {
			return fmt.Errorf("redact part %d of %s: %w", part.Part, ev.Target, err)
		}
		txns = append(txns, send.txnID)
	}
	if gone != nil {
		txn, err := m.noticeElsewhere(ctx, p, ev, len(parts), parts[0], "deleted")
		if err != nil {
			return err
		}
		txns = append(txns, txn)
	}
	return m.doneWithSends(ctx, func(ctx context.Context) error {
		if err := m.db.Reaction.DeleteTarget(ctx, p.PortalKey, ev.Target); err != nil {
			return err
		}
		if err := m.db.Message.DeleteRemote(ctx, p.PortalKey, ev.Target); err != nil {
			return err
		}
		return done(ctx)
	}, txns...)
}

// reactionSender keys reactions by who made them; the user's own reactions
// use the login id whichever device made them, so that the echo of a
// reaction sent from Matrix is recognised as the same reaction.
func reactionSender(login *database.Login, ev *connector.Event) string {
	if ev.Sender.IsMe {
		return login.ID
	}
	return ev.Sender.ID
}

func (m *Manager) remoteReaction(ctx context.Context, login *database.Login, p *database.Portal, intent matrix.API, ev *connector.Event, done func(context.Context) error) error {
	sender := reactionSender(login, ev)
	if existing, err := m.db.Reaction.Get(ctx, p.PortalKey, ev.Target, sender, ev.Key); err != nil {
		return err
	} else if existing != nil {
		zerolog.Ctx(ctx).Debug().Msg("Reaction already bridged")
		return done(ctx)
	}
	target, err := m.db.Message.GetPart(ctx, p.PortalKey, ev.Target, 0)
	if err != nil {
		return err
	} else if target == nil {
		return skipUnknownTarget(ctx, ev, done)
	} else if elsewhere(p, target) {
		// Told in a notice (relations_elsewhere.go), and stored, so
		// that a repeat of it is dropped as above.
		return m.toldElsewhere(ctx, p, ev, target, "reacted %s to", func(ctx context.Context, txnID string) error {
			err := m.db.Reaction.Insert(ctx, &database.Reaction{
				PortalKey: p.PortalKey, TargetID: ev.Target, SenderID: sender, Key: ev.Key, RemoteID: ev.ID,
				MXID: toldReaction(txnID),
			})
			if err != nil {
				return fmt.Errorf("store the reaction told of: %w", err)
			}
			return done(ctx)
		})
	}
	content := &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: target.MXID, Key: ev.Key}}
	send := newRemoteSend(intent, p, ev, 0, event.EventReaction)
	send.send = func(ctx context.Context, txnID string) (*mautrix.RespSendEvent, error) {
		return intent.SendMessageEvent(ctx, p.RoomID, event.EventReaction, sendContent(intent, content, txnID), mautrix.ReqSendEvent{
			Timestamp: ev.TS, TransactionID: txnID,
		})
	}
	eventID, err := m.sendRemote(ctx, send)
	if err != nil {
		return fmt.Errorf("send reaction to %s: %w", ev.Target, err)
	}
	return m.doneWithSends(ctx, func(ctx context.Context) error {
		err := m.db.Reaction.Insert(ctx, &database.Reaction{
			PortalKey: p.PortalKey, TargetID: ev.Target, SenderID: sender, Key: ev.Key, RemoteID: ev.ID, MXID: eventID,
		})
		if err != nil {
			return fmt.Errorf("store reaction mapping: %w", err)
		}
		return done(ctx)
	}, send.txnID)
}

func (m *Manager) remoteReactionRemove(ctx context.Context, login *database.Login, p *database.Portal, intent matrix.API, ev *connector.Event, done func(context.Context) error) error {
	r, err := m.db.Reaction.Get(ctx, p.PortalKey, ev.Target, reactionSender(login, ev), ev.Key)
	if err != nil {
		return err
	}
	if r == nil {
		// Never bridged, or taken back already (a repeat).
		return skipUnknownTarget(ctx, ev, done)
	}
	target, err := m.db.Message.GetPart(ctx, p.PortalKey, ev.Target, 0)
	if err != nil {
		return err
	} else if target != nil && elsewhere(p, target) {
		// The reaction is in that room (bridged before the upgrade), or
		// was a notice here (remoteReaction): either way it is told,
		// unless it is the user's on the message's stand-in here.
		if here, err := m.reactionHere(ctx, login, p, r); err != nil {
			return err
		} else if !here {
			return m.toldElsewhere(ctx, p, ev, target, "took back the %s reaction to", func(ctx context.Context, _ string) error {
				if err := m.db.Reaction.Delete(ctx, r.MXID); err != nil {
					return err
				}
				return done(ctx)
			})
		}
	}
	if _, err = m.sendRemote(ctx, remoteRedaction(intent, p, ev, 0, r.MXID)); err != nil {
		return fmt.Errorf("redact reaction %s: %w", r.MXID, err)
	}
	return m.doneWithSends(ctx, func(ctx context.Context) error {
		if err := m.db.Reaction.Delete(ctx, r.MXID); err != nil {
			return err
		}
		return done(ctx)
	}, remoteTxnID(ev, 0))
}

// remoteReadReceipt moves the reader's m.read receipt: the ghost's when the
// contact read, the user's own (through the double puppet) when the user read
// on another device. The user's receipt is marked as the bridge's so that it
// does not come back from the homeserver as a mark_read.
func (m *Manager) remoteReadReceipt(ctx context.Context, login *database.Login, p *database.Portal, ev *connector.Event, done func(context.Context) error) error {
	parts, err := m.db.Message.GetParts(ctx, p.PortalKey, ev.UpTo)
	if err != nil {
		return err
	} else if len(parts) == 0 {
		return skipUnknownTarget(ctx, ev, done)
	} else if elsewhere(p, parts[0]) {
		// Read up to a message from before the upgrade: the receipt has
		// nothing to mark in this room, and the ghost left that one. Not
		// even the message's stand-in here, which came when it was
		// edited, after what was sent in this room up to then.
		zerolog.Ctx(ctx).Debug().Str("up_to", ev.UpTo).Msg("Read receipt on a message of another room, skipping it")
		return done(ctx)
	}
	// On a message with attachments it belongs on its last event.
	msg := parts[len(parts)-1]
	if !ev.Sender.IsMe {
		if err = m.ghosts.Intent(p.ContactID).SendReceipt(ctx, p.RoomID, msg.MXID, event.ReceiptTypeRead, nil); err != nil {
			return fmt.Errorf("set ghost read receipt: %w", err)
		}
		return done(ctx)
	}
	dp, err := m.dps.Intent(ctx, login.MatrixUser)
	if err != nil {
		return err
	}
	if dp == nil {
		zerolog.Ctx(ctx).Debug().Msg("No double puppet, the user's own read receipt cannot be shown")
		return done(ctx)
	}
	marker := map[string]any{mas.DoublePuppetKey: appservice.DoublePuppetValue}
	if err = dp.SendReceipt(ctx, p.RoomID, msg.MXID, event.ReceiptTypeRead, marker); err != nil {
		return fmt.Errorf("set user read receipt: %w", err)
	}
	if err = dp.SetReadMarkers(ctx, p.RoomID, &mautrix.ReqSetReadMarkers{FullyRead: msg.MXID}); err != nil {
		return fmt.Errorf("set user read marker: %w", err)
	}
	return done(ctx)
}

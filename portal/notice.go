package portal

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/inbox"
	"github.com/dmbridge/dmbridge/matrix"
)

// noticeTries bounds how often a notice is sent when the homeserver fails
// for a passing reason; a notice has no row of its own to wait in.
const noticeTries = 5

// notice posts an m.notice into a portal as the contact's ghost, the one
// bridge-side member of the room.
func (m *Manager) notice(ctx context.Context, p *database.Portal, text, txn string) {
	if p == nil || p.RoomID == "" {
		return
	}
	m.sendNotice(ctx, m.ghosts.Intent(p.ContactID), p.RoomID, text, txn)
}

// noticeAbout posts a notice about one of the user's events: a reply to it,
// so that their client shows which one, except for a deletion (a redaction
// or the removal of a reaction), which clients cannot show as a quote.
func (m *Manager) noticeAbout(ctx context.Context, p *database.Portal, eventID id.EventID, deletion bool, text, txn string) {
	if deletion {
		m.notice(ctx, p, text, txn)
		return
	}
	m.replyNotice(ctx, p, eventID, text, txn)
}

// isDeletionOp reports whether a command's event is a redaction.
func isDeletionOp(op string) bool {
	return op == connector.OpDeleteMessage || op == connector.OpUnreact
}

// sendNotice posts an m.notice, trying again a few times while the
// homeserver fails for a passing reason. txn, named after what the notice
// is about, keeps a repeated notice (after a crash) from showing twice.
func (m *Manager) sendNotice(ctx context.Context, intent matrix.API, roomID id.RoomID, text, txn string) bool {
	return m.postNotice(ctx, intent, roomID, &event.MessageEventContent{MsgType: event.MsgNotice, Body: text}, txn)
}

// postNotice is sendNotice with the notice's content built by the caller
// (a reply, say).
func (m *Manager) postNotice(ctx context.Context, intent matrix.API, roomID id.RoomID, content *event.MessageEventContent, txn string) bool {
	for try := 1; ; try++ {
		_, err := intent.SendMessageEvent(ctx, roomID, event.EventMessage, content, mautrix.ReqSendEvent{TransactionID: txn})
		if err == nil {
			return true
		}
		if isPermanent(err) || try >= noticeTries || !pause(ctx, backoff(m.retryFirst, try, m.cfg.Bridge.RetryMaxDelay.D())) {
			zerolog.Ctx(ctx).Err(err).Stringer("room_id", roomID).Msg("Failed to send notice")
			return false
		}
	}
}

// noticeFailure tells the user that something from the network could not be
// shown, so that a parked event is not silently missing. The notice goes to
// the chat's portal. A message whose chat has no room yet (a new contact's
// first message) gets its portal created for the notice, so the user sees
// where it belongs; when that fails too, or the event belongs to no chat,
// the bot tells the user in their management room.
func (m *Manager) noticeFailure(ctx context.Context, row *inbox.Entry, cause error) {
	ev := row.Event
	if ev == nil {
		ev = &connector.Event{}
	}
	what := kindNoun(ev.Kind)
	text := fmt.Sprintf("⚠️ %s from %s could not be bridged: %v", what, m.networkName(row.ConnectorID), cause)
	txn := fmt.Sprintf("dmb_park_%s_%d", row.ConnectorID, row.Seq)
	login, err := m.db.Login.Get(ctx, row.LoginID)
	if err != nil || login == nil {
		zerolog.Ctx(ctx).Error().Err(err).Msg("Cannot tell the user about a parked event: login not found")
		return
	}
	if ev.Chat != nil {
		key := database.PortalKey{LoginID: login.ID, ChatID: ev.Chat.ID}
		p, err := m.db.Portal.Get(ctx, key)
		if err == nil && (p == nil || p.RoomID == "") && ev.Kind == connector.KindMessage {
			unlock := m.chats.Lock(key)
			// Not for a message from before its login's logout: the
			// management room hears of it instead (loginend.go).
			var ended bool
			if ended, err = m.claimPortal(ctx, key, contactOfChat(ev.Chat), row.Seq); err == nil && !ended {
				p, err = m.ensurePortal(ctx, login, row.ConnectorID, ev.Chat)
			}
			unlock()
		}
		if err == nil && p != nil && p.RoomID != "" {
			if m.sendNotice(ctx, m.ghosts.Intent(p.ContactID), p.RoomID, text, txn) {
				return
			}
		}
		text = fmt.Sprintf("⚠️ %s from %s could not be bridged: %v", what, ev.Chat.ID, cause)
	}
	m.noticeManagement(ctx, login.MatrixUser, text, txn)
}

// noticeManagement posts a notice as the bot in the user's management room.
func (m *Manager) noticeManagement(ctx context.Context, user id.UserID, text, txn string) {
	u, err := m.db.User.Get(ctx, user)
	if err != nil || u == nil || u.ManagementRoom == "" {
		zerolog.Ctx(ctx).Error().Err(err).Stringer("user", user).Str("notice", text).
			Msg("No room to tell the user in")
		return
	}
	m.sendNotice(ctx, m.mx.Bot(), u.ManagementRoom, text, txn)
}

// mxNoticeTxn is the transaction id of a notice about the user's event:
// named by the event's intake row, or, for an early message the catch-up
// read from the room (catchup.go, no row), by its event id, so that a
// retried event is answered once and two early events are not one notice.
func mxNoticeTxn(what string, row *database.MXEvent) string {
	if row.Seq == 0 {
		return "dmb_" + what + "_" + string(row.EventID)
	}
	return fmt.Sprintf("dmb_%s_%d", what, row.Seq)
}

// noticeMatrixFailure tells the user that a Matrix event of theirs was not
// delivered: in the portal as the ghost; in another room as the bot, or,
// where the bot is not a member, in the sender's management room.
func (m *Manager) noticeMatrixFailure(ctx context.Context, row *database.MXEvent, cause error) {
	// A reply to the event, so that the user's client shows which one; its
	// id alone would mean nothing to them.
	noun := mxEventNoun(row.Data)
	text := fmt.Sprintf("⚠️ Your %s was not delivered: %s", noun, describeError(cause))
	txn := mxNoticeTxn("park_mx", row)
	p, err := m.db.Portal.GetByRoom(ctx, row.RoomID)
	if err == nil && p != nil {
		m.replyNotice(ctx, p, row.EventID, text, txn)
		return
	}
	if m.sendNotice(ctx, m.mx.Bot(), row.RoomID, text, txn) {
		return
	}
	var head struct {
		Sender id.UserID `json:"sender"`
	}
	if json.Unmarshal(row.Data, &head) == nil && head.Sender != "" && !m.isBridgeUser(&event.Event{Sender: head.Sender}) {
		m.noticeManagement(ctx, head.Sender, fmt.Sprintf("⚠️ Your %s in %s was not delivered (%s): %s",
			noun, row.RoomID, row.EventID, describeError(cause)), txn)
	}
}

// kindNoun names a network event's kind for the user.
func kindNoun(kind string) string {
	switch kind {
	case connector.KindMessage:
		return "A message"
	case connector.KindEdit:
		return "An edit of a message"
	case connector.KindDelete:
		return "The deletion of a message"
	case connector.KindReaction:
		return "A reaction"
	case connector.KindReactionRemove:
		return "The removal of a reaction"
	case connector.KindReadReceipt:
		return "A read receipt"
	case connector.KindContact:
		return "A change of a contact's profile"
	case connector.KindChatDeleted:
		return "The deletion of this chat"
	case connector.KindLogin:
		return "A change of your account's state"
	}
	return "Something"
}

// mxEventNoun names the user's Matrix event for a notice about it: what they
// did, in their words, from the stored event.
func mxEventNoun(data []byte) string {
	var evt struct {
		Type    string `json:"type"`
		Content struct {
			MsgType   string `json:"msgtype"`
			RelatesTo struct {
				RelType string `json:"rel_type"`
			} `json:"m.relates_to"`
		} `json:"content"`
	}
	if json.Unmarshal(data, &evt) != nil {
		return "message"
	}
	switch evt.Type {
	case event.EventReaction.Type:
		return "reaction"
	case event.EventRedaction.Type:
		return "deletion"
	case event.EventSticker.Type:
		return "sticker"
	case event.EventMessage.Type, event.EventEncrypted.Type:
	default:
		return "event"
	}
	switch evt.Content.RelatesTo.RelType {
	case string(event.RelReplace):
		return "edit"
	case string(event.RelAnnotation):
		// Only an encrypted event gets here with it: a reaction's
		// relation stays in clear (servers aggregate by it).
		return "reaction"
	}
	switch event.MessageType(evt.Content.MsgType) {
	case event.MsgFile, event.MsgImage, event.MsgVideo, event.MsgAudio:
		return "file"
	}
	return "message"
}

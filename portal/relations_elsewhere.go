package portal

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
)

// Messages bridged before the user upgraded the DM stay in the old room,
// and their rows name it (database.Message.RoomID). What the network does
// to one later cannot be a relation to it: the ghost left the old room
// (followUpgrade), a homeserver refuses a redaction naming an event of
// another room, and clients show nothing of an edit or a reaction in the
// new room that names an event of the old, and a reply to one as "unable
// to load". Each is shown in the portal's room in a form clients show:
//
//   - an edit is a new message that quotes the original, the new text after
//     the "* " of any edit's fallback. It is stored as one more part of the
//     message, its stand-in in the portal's room, so that the next edit
//     replaces it, a deletion removes it, a reply answers it, and the
//     user's own reply to it reaches the network as one to the message;
//   - a reply answers the stand-in, or else quotes the message;
//   - a deletion, a reaction and its removal are told in a short notice
//     with a link to the message, rather than skipped with a log line:
//     skipped, the user would keep reading in the old room a message the
//     contact took back, or never learn of a reaction meant for them, with
//     nothing to say so. They only concern messages from before an
//     upgrade, so the notices stay rare. A deletion also removes the
//     message's stand-in here. A reaction is not put on the stand-in: the
//     reaction table keeps no room, a reaction being in the room of its
//     message's first part (database.BridgedIn), and its removal must find
//     it there. It is stored all the same, with no event (toldReaction),
//     so that the network handing it over again is not told twice;
//   - a read receipt on such a message is skipped: this room has nothing
//     to mark, and nothing is lost.

// elsewhere reports whether msg is an event of a room other than the
// portal's: one of a room the user upgraded the DM from.
func elsewhere(p *database.Portal, msg *database.Message) bool {
	return msg.RoomID != "" && msg.RoomID != p.RoomID
}

// shownPart is the part of a message (parts, in order) that relations in
// the portal's room name: its first part, or, for a message of another
// room, the latest stand-in an edit posted in this one; nil for a message
// with neither here.
func shownPart(p *database.Portal, parts []*database.Message) *database.Message {
	if len(parts) == 0 || !elsewhere(p, parts[0]) {
		if len(parts) > 0 && parts[0].Part == 0 {
			return parts[0]
		}
		return nil
	}
	for i := len(parts) - 1; i > 0; i-- {
		if !elsewhere(p, parts[i]) {
			return parts[i]
		}
	}
	return nil
}

// messageSend is the send of content, an m.room.message, for a remote
// event.
func messageSend(intent matrix.API, p *database.Portal, ev *connector.Event, part int, content *event.MessageEventContent) *remoteSend {
	send := newRemoteSend(intent, p, ev, part, event.EventMessage)
	send.send = func(ctx context.Context, txnID string) (*mautrix.RespSendEvent, error) {
		return intent.SendMessageEvent(ctx, p.RoomID, event.EventMessage, sendContent(intent, content, txnID), mautrix.ReqSendEvent{
			Timestamp: ev.TS, TransactionID: txnID,
		})
	}
	return send
}

// remoteEditElsewhere shows the edit of a message of another room that has
// no stand-in here yet: a new message quoting the original, stored as the
// message's next part (its stand-in). Its text tails stay where they are:
// no redaction reaches that room.
func (m *Manager) remoteEditElsewhere(ctx context.Context, p *database.Portal, intent matrix.API, content *event.MessageEventContent, parts []*database.Message, ev *connector.Event, done func(context.Context) error) error {
	first, last := parts[0], parts[len(parts)-1]
	zerolog.Ctx(ctx).Debug().Stringer("old_room_id", first.RoomID).
		Msg("Edit of a message from before the upgrade: posting the new text as a message of its own")
	send := messageSend(intent, p, ev, 0, content)
	eventID, err := m.sendRemote(ctx, send)
	if err != nil {
		return fmt.Errorf("send edit of %s from another room: %w", ev.Target, err)
	}
	return m.doneWithSends(ctx, func(ctx context.Context) error {
		err := m.db.Message.Insert(ctx, &database.Message{
			PortalKey: p.PortalKey, RemoteID: ev.Target, Part: last.Part + 1, MXID: eventID, RoomID: p.RoomID,
			SenderID: first.SenderID, IsMe: first.IsMe, TS: ev.TS,
		})
		if err != nil {
			return fmt.Errorf("store the stand-in of %s: %w", ev.Target, err)
		}
		return done(ctx)
	}, send.txnID)
}

// correction is the content that shows an edit of target, a message of
// another room: the new text after the "* " of an edit's fallback, below a
// quote of the original.
func (m *Manager) correction(ctx context.Context, p *database.Portal, target *database.Message, content *event.MessageEventContent) *event.MessageEventContent {
	content.Body = "* " + content.Body
	if content.FormattedBody != "" {
		content.FormattedBody = "* " + content.FormattedBody
	}
	m.quoteElsewhere(ctx, p, target, content, "Edit of")
	return content
}

// quoteElsewhere puts a quote of target, a message of another room, before
// content, in the form of a reply's fallback, which every client shows:
// the original's text where the ghost can still read it, and a link to
// it. No relation names it: clients would show none.
func (m *Manager) quoteElsewhere(ctx context.Context, p *database.Portal, target *database.Message, content *event.MessageEventContent, label string) {
	link := target.RoomID.EventURI(target.MXID).MatrixToURL()
	original := m.originalText(ctx, p, target)
	quote, quoteHTML := "> "+label+" a message from before this room was upgraded", ""
	if original != "" {
		quote = "> " + strings.ReplaceAll(original, "\n", "\n> ")
		quoteHTML = "<br>" + strings.ReplaceAll(html.EscapeString(original), "\n", "<br>")
	} else {
		quoteHTML = " a message from before this room was upgraded"
	}
	quoteHTML = fmt.Sprintf(`<blockquote><a href="%s">%s</a>%s</blockquote>`, html.EscapeString(link), html.EscapeString(label), quoteHTML)
	body, formatted := content.Body, content.FormattedBody
	plain := content.Format != event.FormatHTML || formatted == ""
	if plain {
		formatted = strings.ReplaceAll(html.EscapeString(body), "\n", "<br>")
	}
	switch content.MsgType {
	case event.MsgText, event.MsgNotice, event.MsgEmote:
	default:
		// A file's body, once it has a file name of its own, is its
		// caption (Matrix v1.10): the quote is the caption of a file
		// that had none, and the file keeps its name.
		if content.FileName == "" {
			content.FileName = body
		}
		if body == content.FileName {
			body, formatted = "", ""
		}
	}
	content.Body = strings.TrimSuffix(quote+"\n\n"+body, "\n\n")
	content.Format = event.FormatHTML
	content.FormattedBody = quoteHTML + formatted
	if plain {
		// HTML spelled out of a plain text up to maxContentBytes
		// (fitText, fitEdit) weighs several times as much for short
		// lines ("<br>", JSON-escaped, for each line break): past what
		// a homeserver takes in one event, which would refuse the
		// message for good. The quote is in the body too.
		if encoded, err := json.Marshal(content); err != nil || len(encoded) > maxContentBytes {
			content.Format, content.FormattedBody = "", ""
		}
	}
}

// keyRunes bounds a reaction's key in a notice: the network's word, which
// may be any text.
const keyRunes = 32

// quoteRunes bounds the quote of an original text: a reminder of which
// message it was, not a copy.
const quoteRunes = 200

// originalText is the text of target, a message of another room, as the
// ghost or the user still reads it there (readElsewhere). An encrypted one
// the ghost's device opens: its own with the keys of what it sent, the
// user's with the keys the user's client shared with it, which it
// decrypted the message with for the network then (the quote goes to the
// upgraded room, encrypted as the old one was). It is "" where that fails,
// and the quote then only links to the message.
func (m *Manager) originalText(ctx context.Context, p *database.Portal, target *database.Message) string {
	ghost := m.ghosts.Intent(p.ContactID)
	evt, err := m.readElsewhere(ctx, p, ghost, target)
	if err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Stringer("old_room_id", target.RoomID).
			Msg("Cannot read the message from before the upgrade; quoting only a link to it")
		return ""
	}
	evt = openEvent(ctx, ghost, evt)
	if evt.Type != event.EventMessage {
		return ""
	}
	_ = evt.Content.ParseRaw(evt.Type)
	return config.TruncateRunes(strings.TrimSpace(evt.Content.AsMessage().Body), quoteRunes)
}

// readElsewhere reads target, an event of a room the portal moved away
// from, as the ghost, and where the homeserver refuses that, as the user.
// The ghost left that room, and a DM's history visibility ("shared") shows
// a former member only what was sent while it was joined: the user's
// first message, which clients send as soon as the room is made, before
// the ghost has taken up its invite, is then hidden from it. The user
// still is in the old room (their client shows its history there), so
// their double puppet, where there is one, reads it.
func (m *Manager) readElsewhere(ctx context.Context, p *database.Portal, ghost matrix.API, target *database.Message) (*event.Event, error) {
	evt, err := ghost.GetEvent(ctx, target.RoomID, target.MXID)
	if err == nil || !(matrix.IsNotFound(err) || matrix.IsRefusal(err)) {
		return evt, err
	}
	login, lerr := m.db.Login.Get(ctx, p.LoginID)
	if lerr != nil || login == nil {
		return nil, err
	}
	dp, lerr := m.dps.Intent(ctx, login.MatrixUser)
	if lerr != nil || dp == nil {
		return nil, err
	}
	evt, dpErr := dp.GetEvent(ctx, target.RoomID, target.MXID)
	if dpErr != nil {
		return nil, fmt.Errorf("as the ghost: %w; as the user: %w", err, dpErr)
	}
	zerolog.Ctx(ctx).Debug().Stringer("old_room_id", target.RoomID).
		Msg("The ghost may no longer read the message from before the upgrade; read it as the user")
	return evt, nil
}

// noticeElsewhere tells the user, as a notice in the portal's room, what
// the sender of ev did to target, a message of another room ("deleted",
// say): a link names the message. It goes out as the remote event's send
// part (see remoteSend), so that a retry does not repeat it.
func (m *Manager) noticeElsewhere(ctx context.Context, p *database.Portal, ev *connector.Event, part int, target *database.Message, did string) (string, error) {
	who := m.contactName(ctx, p.ContactID)
	if ev.Sender != nil && ev.Sender.IsMe {
		who = "You (from another device)"
	}
	link := target.RoomID.EventURI(target.MXID).MatrixToURL()
	const what = "a message from before this room was upgraded"
	content := &event.MessageEventContent{
		MsgType: event.MsgNotice, Body: fmt.Sprintf("%s %s %s.", who, did, what),
		Format: event.FormatHTML, FormattedBody: fmt.Sprintf(`%s %s <a href="%s">%s</a>.`,
			html.EscapeString(who), html.EscapeString(did), html.EscapeString(link), what),
		Mentions: &event.Mentions{},
	}
	zerolog.Ctx(ctx).Debug().Stringer("old_room_id", target.RoomID).Str("kind", ev.Kind).
		Msg("The event points at a message from before the upgrade; telling the user in a notice")
	send := messageSend(m.ghosts.Intent(p.ContactID), p, ev, part, content)
	if _, err := m.sendRemote(ctx, send); err != nil {
		return "", fmt.Errorf("tell of a %s of a message from another room: %w", ev.Kind, err)
	}
	return send.txnID, nil
}

// toldElsewhere tells of a reaction or its removal (did says which, with
// %s for its key) of a message of another room, then runs done, given the
// notice's transaction id, with the notice's send.
func (m *Manager) toldElsewhere(ctx context.Context, p *database.Portal, ev *connector.Event, target *database.Message, did string, done func(ctx context.Context, txnID string) error) error {
	txn, err := m.noticeElsewhere(ctx, p, ev, 0, target, fmt.Sprintf(did, config.TruncateRunes(ev.Key, keyRunes)))
	if err != nil {
		return err
	}
	return m.doneWithSends(ctx, func(ctx context.Context) error { return done(ctx, txn) }, txn)
}

// reactionHere reports whether r, a reaction to a message of another
// room, is an event of the portal's room all the same: the user's own,
// made on Matrix on the message's stand-in here, which a redaction here
// removes when they take it back on another device. Only the user's can
// be: the network's are told of (toldReaction) or in that room. Which
// room it is in, the reaction table does not keep; the homeserver says
// (Dendrite answers for an event of any room, so its room is compared).
func (m *Manager) reactionHere(ctx context.Context, login *database.Login, p *database.Portal, r *database.Reaction) (bool, error) {
	if r.SenderID != login.ID || !strings.HasPrefix(string(r.MXID), "$") {
		return false, nil
	}
	evt, err := m.ghosts.Intent(p.ContactID).GetEvent(ctx, p.RoomID, r.MXID)
	if matrix.IsNotFound(err) || matrix.IsRefusal(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("look up the reaction %s: %w", r.MXID, err)
	}
	return evt.RoomID == p.RoomID, nil
}

// toldReaction is the event id stored for a reaction told of in a notice:
// the notice's transaction id, which names no event. The reaction is in
// no room, and no redaction on Matrix may find it: the user deleting the
// notice takes nothing back on the network. Its row is what drops a
// repeat of the reaction, and what its removal finds.
func toldReaction(txnID string) id.EventID {
	return id.EventID(txnID)
}

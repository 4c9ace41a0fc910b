package xmppconnector

import (
	"context"
	"fmt"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// A message stanza over xmpp.max_stanza_size is not decoded (see
// xmllimit.go), but it is not left unsaid either: the user gets a stand-in
// message in the chat, in the oversized one's place, saying that a message
// was not bridged. What decoding read before the limit (encoding/xml fills
// a struct as it reads, so the start tags before the point where it
// stopped are in it) gives the stanza's addresses and, for an archive
// result, its archive id.
//
// Two kinds of oversized stanza end differently. One with too much text is
// skipped and the stream goes on (textLimit). One with too much markup
// ends the stream (splitReader), and stays in the server's archive: before,
// every catch-up after a reconnect met it again and ended again, so every
// message archived after it waited behind it for as long as it was kept.
// Now the archive result is filed under its query as a stand-in item, and
// the query that the connection's end cut short hands back the items it got
// (mam.go): the catch-up bridges them and the stand-in, and moves its
// cursor past the oversized item, so the next connection's catch-up goes
// on after it. The cost is the connection that ended at it: at most one
// when the message comes live and one at the catch-up after.

// oversized handles a message stanza whose decoding stopped at the limit,
// on the read loop; m is what was decoded before it stopped.
func (c *xmppConn) oversized(m *message, err error) {
	if r := m.Result; r != nil && (m.From == "" || m.From == c.bare) {
		// An archive result of ours (see collectArchived).
		c.mamMu.Lock()
		items, ours := c.mam[r.QueryID]
		if ours && r.ID != "" {
			// Bridged, and given as history, as any archived message.
			inner := &message{}
			if r.Forwarded.Message != nil {
				inner = r.Forwarded.Message
			}
			item := mamItem{id: r.ID, delay: r.Forwarded.Delay, msg: inner.standIn(c.maxText), tooLarge: true}
			*items = append(*items, item)
		}
		c.mamMu.Unlock()
		if ours {
			if r.ID == "" {
				// Too large before its id: nothing can name it to skip it.
				c.log.Error().Err(err).Msg("An archived message is over xmpp.max_stanza_size before its archive id; it cannot be skipped")
			} else {
				c.log.Warn().Err(err).Str("archive_id", r.ID).Msg("An archived message is over xmpp.max_stanza_size; bridging a stand-in")
			}
			return
		}
	}
	c.log.Warn().Err(err).Str("from", m.From).Str("id", m.ID).Msg("A message is over xmpp.max_stanza_size")
	head := m.head()
	head.tooLarge = true
	head.stored = c.flood.isOpen()
	c.sink.onMessage(c, head)
}

// head is a copy of m's addresses, all that is kept of an oversized one,
// and its group chat mark if it came before the limit (a private message
// in a group chat is no DM).
func (m *message) head() *message {
	return &message{XMLName: m.XMLName, From: m.From, To: m.To, ID: m.ID, Type: m.Type, MUCUser: m.MUCUser}
}

// standInPrefix begins the text of every stand-in.
const standInPrefix = "⚠️ A message was not bridged"

// standIn is the message bridged in place of m, an oversized one: from the
// same sender in the same chat, saying that a message was not bridged.
func (m *message) standIn(limit int) *message {
	s := m.head()
	s.Body = fmt.Sprintf("%s: it is larger than the %d KiB this bridge accepts from XMPP (xmpp.max_stanza_size).", standInPrefix, limit>>10)
	return s
}

// refusedStandIn is the event bridged in place of ev, a message the SDK
// refused: the same id, sender, chat and time, its text replaced.
func refusedStandIn(ev *connector.Event) *connector.Event {
	s := *ev
	s.Text = standInPrefix + refusedReason
	s.HTML, s.Attachments, s.ReplyTo = "", nil, ""
	return &s
}

// refusedEditStandIn is the event bridged in place of ev, a correction the
// SDK refused: a message with the correction's id, from its sender, in
// reply to the message it corrects, saying the correction was not bridged.
// Not an edit: one that replaced the text would hide the message the user
// still has.
func refusedEditStandIn(ev *connector.Event) *connector.Event {
	return &connector.Event{
		Kind: connector.KindMessage, Login: ev.Login, TS: ev.TS, Chat: ev.Chat, Sender: ev.Sender, ID: ev.ID, Txn: ev.Txn,
		ReplyTo: ev.Target, Text: editStandInPrefix + refusedReason,
	}
}

// reactionStandIn is the event bridged in place of reactions left out of a
// set, one whose key is over maxReactionKeyBytes (long) or those past
// maxReactionsPerSender: a message from its sender, in reply to the
// message reacted to, saying that a reaction was not bridged, rather than
// silence. Its id is the stanza's with a suffix no reaction's can be (a
// reaction's is the stanza's, "/" and a key of maxReactionKeyBytes at most).
func reactionStandIn(base *connector.Event, target string, long bool) *connector.Event {
	text := reactionStandInPrefix + ": it is longer than this bridge carries."
	if !long {
		text = fmt.Sprintf("%s: this bridge carries the first %d reactions of one person on a message.",
			reactionStandInPrefix, maxReactionsPerSender)
	}
	return &connector.Event{
		Kind: connector.KindMessage, Login: base.Login, TS: base.TS, Chat: base.Chat, Sender: base.Sender,
		ID: base.ID + "/" + toldReactionLeftOut, ReplyTo: target, Text: text,
	}
}

const (
	// reactionStandInPrefix begins the text of the stand-in for reactions
	// left out of a set (reactionStandIn).
	reactionStandInPrefix = "⚠️ A reaction to this message was not bridged"
	// editStandInPrefix begins the text of a refused correction's stand-in.
	editStandInPrefix = "⚠️ A correction of this message was not bridged"
	// refusedReason ends the text of a stand-in for an event the SDK refused.
	refusedReason = ": it is larger than this bridge can carry."
)

// oversizedLive handles a live message over the limit. The server's
// archive has it too (unless the server keeps none), so the stand-in comes
// from there, under its archive id as every message the archive holds, so
// that a later sweep does not bridge it again. The catch-up runs now, not
// queued: the live messages queued behind this one would be bridged before
// it, and the user would see the stand-in after what was sent after it.
// Without an archive the stand-in goes at once, as a message without an
// archive id would.
func (a *account) oversizedLive(ctx context.Context, conn *xmppConn, m *message) error {
	if !conn.noArchive.Load() {
		a.do(ctx, work{conn: conn, catchUp: true})
		return nil
	}
	return a.bridge(ctx, conn, inbound{m: m.standIn(conn.maxText), ts: time.Now(), live: !m.stored})
}

// errArchiveCut is a catch-up or history query that the connection's end
// cut short at an item over the limit.
type errArchiveCut struct{ id string }

func (e *errArchiveCut) Error() string {
	return fmt.Sprintf("the XMPP connection ended at archive item %s, over xmpp.max_stanza_size", e.id)
}

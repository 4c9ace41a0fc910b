package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"
)

// reply posts a markdown notice as the bot, answering the event answered.
// Its transaction id is named after that event, which gets one answer at
// most: the homeserver keeps the first notice when the event is handled
// again (a retry, or a replay after a crash between the answer and marking
// the event done), so the user never reads an answer twice. A failed reply
// is logged, not retried: retrying the whole command could repeat what it
// did.
func (b *Bot) reply(ctx context.Context, roomID id.RoomID, answered id.EventID, markdown string) {
	content := format.RenderMarkdown(markdown, true, false)
	content.MsgType = event.MsgNotice
	txn := mautrix.ReqSendEvent{TransactionID: replyTxn(answered)}
	if _, err := b.intent.SendMessageEvent(ctx, roomID, event.EventMessage, &content, txn); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to send bot reply")
	}
}

// replyTxn is the transaction id of the bot's answer to an event.
func replyTxn(answered id.EventID) string { return "dmb_bot_re_" + string(answered) }

// maxReplyContentBytes bounds the content of one notice of a list answer.
// The homeserver refuses an event over 65536 bytes, and the event carries
// more than its content (ids, signatures, hashes), so the content keeps
// well under it.
const maxReplyContentBytes = 48 << 10

// maxReplyParts bounds how many notices one list answer takes: a user with
// thousands of chats gets the first of them and a count of the rest, not a
// flood of notices.
const maxReplyParts = 10

// replyList answers with intro and one markdown line per item, in as many
// notices as it takes to keep each under maxReplyContentBytes (at most
// maxReplyParts, the last then ending with how many were left out). One
// notice over the limit was refused by the homeserver, and the user, who
// asked for the list, got no answer at all. Each part has a transaction id
// of its own derived from the answered event, so a retry repeats none.
func (b *Bot) replyList(ctx context.Context, roomID id.RoomID, answered id.EventID, intro string, lines []string) {
	for i, part := range splitReply(intro, lines) {
		content := format.RenderMarkdown(part, true, false)
		content.MsgType = event.MsgNotice
		txn := replyTxn(answered)
		if i > 0 {
			txn += "_" + strconv.Itoa(i+1)
		}
		if _, err := b.intent.SendMessageEvent(ctx, roomID, event.EventMessage, &content, mautrix.ReqSendEvent{TransactionID: txn}); err != nil {
			zerolog.Ctx(ctx).Err(err).Int("part", i+1).Msg("Failed to send bot reply")
		}
	}
}

// splitReply cuts a list answer into the markdown of its notices. A line
// is measured as it will be sent (rendered to HTML, with the plain body,
// JSON-encoded): the markdown alone says little, since an escaped "<"
// costs ten bytes in the HTML of the JSON.
func splitReply(intro string, lines []string) []string {
	var parts []string
	var sb strings.Builder
	sb.WriteString(intro)
	size := renderedSize(intro)
	for i, line := range lines {
		cost := renderedSize(line)
		if size+cost > maxReplyContentBytes && sb.Len() > 0 {
			if len(parts) == maxReplyParts-1 {
				fmt.Fprintf(&sb, "\n\n…and %d more.", len(lines)-i)
				break
			}
			parts = append(parts, sb.String())
			sb.Reset()
			size = 0
		}
		sb.WriteString(line + "\n")
		size += cost
	}
	return append(parts, sb.String())
}

// renderedSize is the size of markdown's notice content.
func renderedSize(markdown string) int {
	content := format.RenderMarkdown(markdown, true, false)
	raw, err := json.Marshal(&content)
	if err != nil {
		return len(markdown) * 8 // not expected; a generous guess
	}
	return len(raw)
}

// escape makes user-supplied text safe inside markdown.
func escape(s string) string { return format.EscapeMarkdown(s) }

// roomLink is a matrix.to link to a room, which every client opens.
func roomLink(roomID id.RoomID) string { return roomID.URI().MatrixToURL() }

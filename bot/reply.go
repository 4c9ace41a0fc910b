package bot

import (
	"context"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"
)

// reply posts a markdown notice as the bot. A failed reply is logged, not
// retried: retrying the whole command could repeat what it did.
func (b *Bot) reply(ctx context.Context, roomID id.RoomID, markdown string) {
	b.replyTxn(ctx, roomID, "", markdown)
}

// replyTxn is reply with a fixed transaction id, for answers that a retried
// event must not repeat.
func (b *Bot) replyTxn(ctx context.Context, roomID id.RoomID, txn, markdown string) {
	content := format.RenderMarkdown(markdown, true, false)
	content.MsgType = event.MsgNotice
	var extra []mautrix.ReqSendEvent
	if txn != "" {
		extra = append(extra, mautrix.ReqSendEvent{TransactionID: txn})
	}
	if _, err := b.intent.SendMessageEvent(ctx, roomID, event.EventMessage, &content, extra...); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to send bot reply")
	}
}

// escape makes user-supplied text safe inside markdown.
func escape(s string) string { return format.EscapeMarkdown(s) }

// roomLink is a matrix.to link to a room, which every client opens.
func roomLink(roomID id.RoomID) string { return roomID.URI().MatrixToURL() }

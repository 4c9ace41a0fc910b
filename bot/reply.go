package bot

import (
	"context"

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

// escape makes user-supplied text safe inside markdown.
func escape(s string) string { return format.EscapeMarkdown(s) }

// roomLink is a matrix.to link to a room, which every client opens.
func roomLink(roomID id.RoomID) string { return roomID.URI().MatrixToURL() }

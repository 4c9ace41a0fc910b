package portal

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/database"
)

// What a Matrix client can put into a DM besides messages, reactions and
// deletions. A sticker is an image and goes as one. A poll or a call has no
// counterpart the protocol can carry, so the user is told rather than left
// waiting for an answer or a ring; the events that follow one (answers,
// candidates, hangups) and the client-to-client ones (key verification)
// are meant for no human on the other side and end silently.

// Unstable (MSC3381) and stable poll start types, and the call invite.
var (
	eventPollStartUnstable = event.Type{Type: "org.matrix.msc3381.poll.start", Class: event.MessageEventType}
	eventPollStart         = event.Type{Type: "m.poll.start", Class: event.MessageEventType}
	eventCallInvite        = event.Type{Type: "m.call.invite", Class: event.MessageEventType}
)

// matrixOther handles a user's event of a type the bridge has no command
// for.
func (m *Manager) matrixOther(ctx context.Context, row *database.MXEvent, evt *event.Event, login *database.Login, p *database.Portal) error {
	network := m.networkName(login.ConnectorID)
	switch evt.Type.Type {
	case eventPollStartUnstable.Type, eventPollStart.Type:
		return m.refuseMatrix(ctx, row, p, fmt.Sprintf("⚠️ Your poll was not delivered: %s does not support polls.", network))
	case eventCallInvite.Type:
		return m.refuseMatrix(ctx, row, p, fmt.Sprintf("⚠️ Calls are not bridged: nobody on %s was called.", network))
	}
	zerolog.Ctx(ctx).Debug().Str("type", evt.Type.Type).Msg("No command for this event type")
	return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
}

// stickerAsImage is a sticker's content as an m.image message: a sticker
// carries the same fields without a msgtype.
func stickerAsImage(evt *event.Event) *event.MessageEventContent {
	content := evt.Content.AsMessage()
	if content == nil {
		return nil
	}
	c := *content
	c.MsgType = event.MsgImage
	return &c
}

package portal

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// notice posts an m.notice into a portal as the contact's ghost, the one
// bridge-side member of the room.
func (m *Manager) notice(ctx context.Context, p *database.Portal, text string) {
	if p == nil || p.RoomID == "" {
		return
	}
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: text}
	if _, err := m.ghosts.Intent(p.ContactID).SendMessageEvent(ctx, p.RoomID, event.EventMessage, content); err != nil {
		zerolog.Ctx(ctx).Err(err).Stringer("room_id", p.RoomID).Msg("Failed to send notice")
	}
}

// noticeFailure tells the user that something from the network could not be
// shown, so that a parked event is not silently missing.
func (m *Manager) noticeFailure(ctx context.Context, row *database.InboxRow, ev *connector.Event, cause error) {
	if ev.Chat == nil {
		return
	}
	p, err := m.db.Portal.Get(ctx, database.PortalKey{LoginID: row.LoginID, ChatID: ev.Chat.ID})
	if err != nil {
		return
	}
	m.notice(ctx, p, fmt.Sprintf("⚠️ A %s from the network could not be bridged: %v", ev.Kind, cause))
}

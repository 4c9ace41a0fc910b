// Package bot is the bridge bot: it accepts invites from users the bridge
// serves and answers commands in management rooms, the rooms where a user and
// the bot are alone. It is never a member of portals: clients name a DM after
// its members, and the user must see the contact there, not the bridge.
package bot

import (
	"context"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
	"github.com/dmbridge/dmbridge/portal"
)

// Portals is what the bot needs of the portal manager.
type Portals interface {
	StartChat(ctx context.Context, user id.UserID, loginID, identifier string) (*portal.StartedChat, error)
	LoginStatus(l *database.Login) portal.LoginStatus
}

// Connectors is what the bot needs to know about connector connections.
type Connectors interface {
	Connected(connectorID string) bool
	Hello(connectorID string) (*connector.Hello, bool)
}

// Bot handles the events of rooms that are not portals.
type Bot struct {
	cfg      *config.Config
	db       *database.Database
	link     *appservice.Link
	intent   matrix.API
	portals  Portals
	conn     Connectors
	log      zerolog.Logger
	commands []*command
}

// New creates the bot, which acts on Matrix through intent. It keeps no
// state of its own besides the database.
func New(cfg *config.Config, db *database.Database, link *appservice.Link, intent matrix.API, portals Portals, conn Connectors, log zerolog.Logger) *Bot {
	b := &Bot{
		cfg: cfg, db: db, link: link, intent: intent, portals: portals, conn: conn,
		log: log.With().Str("component", "bot").Logger(),
	}
	b.commands = b.commandTable()
	return b
}

// HandleRoomEvent implements portal.RoomHandler. Events the bridge's own
// users sent never get here.
func (b *Bot) HandleRoomEvent(ctx context.Context, evt *event.Event) error {
	ctx = b.log.With().Stringer("room_id", evt.RoomID).Stringer("sender", evt.Sender).
		Stringer("event_id", evt.ID).Logger().WithContext(ctx)
	switch evt.Type {
	case event.StateMember:
		return b.membership(ctx, evt)
	case event.EventMessage, event.EventEncrypted:
		return b.message(ctx, evt)
	}
	return nil
}

// inRoom reports whether the bot is in the room, from the state store that
// the event intake keeps up to date.
func (b *Bot) inRoom(ctx context.Context, roomID id.RoomID) bool {
	return b.link.StateStore.IsInRoom(ctx, roomID, b.link.BotMXID())
}

var _ portal.RoomHandler = (*Bot)(nil)

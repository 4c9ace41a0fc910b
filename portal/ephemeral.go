package portal

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// ephemeralTimeout bounds one ephemeral update; a late typing notice is
// worthless, so it is not retried.
const ephemeralTimeout = 10 * time.Second

// remoteEphemeral shows typing and presence from the network. It is queued on
// its own lane so the connector's reader never waits for the homeserver;
// ephemeralGate keeps only the latest update per chat or contact and drops
// what exceeds the connector's rate.
func (m *Manager) remoteEphemeral(connectorID string, e *connector.Ephemeral) {
	var key, name string
	var apply func(ctx context.Context, e *connector.Ephemeral)
	switch e.Kind {
	case connector.KindTyping:
		if e.Chat == nil || e.Sender == nil || e.Sender.IsMe {
			return
		}
		key, name, apply = "typing/"+e.Login+"/"+e.Chat.ID, "typing", m.applyRemoteTyping
	case connector.KindPresence:
		key, name = "presence/"+e.Login+"/"+e.Contact, "presence"
		apply = func(ctx context.Context, e *connector.Ephemeral) { m.applyRemotePresence(ctx, connectorID, e) }
	default:
		return
	}
	schedule, dropped := m.ephemeral.offer(connectorID, key, e, time.Now())
	if dropped {
		m.log.Debug().Str("connector_id", connectorID).Str("kind", e.Kind).Msg("Dropped an ephemeral frame over the connector's rate")
	}
	if !schedule {
		return
	}
	m.lanes.submit(key, name, func(ctx context.Context) {
		latest := m.ephemeral.take(key)
		if latest == nil {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, ephemeralTimeout)
		defer cancel()
		apply(ctx, latest)
	})
}

func (m *Manager) applyRemoteTyping(ctx context.Context, e *connector.Ephemeral) {
	p, err := m.db.Portal.Get(ctx, database.PortalKey{LoginID: e.Login, ChatID: e.Chat.ID})
	if err != nil || p == nil || p.RoomID == "" || notFrom(e.Sender, p.ContactID) {
		return
	}
	timeout := time.Duration(e.TimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	timeout = min(timeout, maxTypingTimeout)
	if _, err = m.ghosts.Intent(p.ContactID).UserTyping(ctx, p.RoomID, e.Typing, timeout); err != nil {
		m.log.Warn().Err(err).Msg("Failed to set ghost typing, dropping it")
	}
}

func (m *Manager) applyRemotePresence(ctx context.Context, connectorID string, e *connector.Ephemeral) {
	ghost, err := m.db.Ghost.Get(ctx, e.Contact)
	if err != nil || ghost == nil || !ghost.Registered {
		// Presence of a contact with no ghost has no room to show in.
		return
	}
	if ok, err := m.mayChangeContact(ctx, connectorID, e.Contact); err != nil || !ok {
		return
	}
	if err = m.setGhostPresence(ctx, e.Contact, e.Presence, e.StatusMsg); err != nil {
		m.log.Warn().Err(err).Msg("Failed to set ghost presence, dropping it")
	}
}

// MatrixEphemeral turns the user's typing and read receipts in a portal into
// commands. They are not stored: a lost one is harmless.
func (m *Manager) MatrixEphemeral(ctx context.Context, evt *appservice.EphemeralEvent) {
	switch evt.Type {
	case event.EphemeralEventTyping:
		m.matrixTyping(evt)
	case event.EphemeralEventReceipt:
		m.matrixReceipts(evt)
	case event.EphemeralEventPresence:
		m.matrixPresence(evt)
	default:
		zerolog.Ctx(ctx).Trace().Str("type", evt.Type.Type).Msg("Ignoring ephemeral event")
	}
}

// inPortal queues apply on the room's lane for the kind (typing, receipt),
// bounded by ephemeralTimeout, with the room's portal and its login; a room
// that is no portal, or whose login is gone, is none of the bridge's, and a
// user blocked after the portal was made, or whose login the bridge may no
// longer use, no longer reaches the network (as for their messages,
// handleMatrix).
func (m *Manager) inPortal(evt *appservice.EphemeralEvent, kind string, apply func(ctx context.Context, p *database.Portal, login *database.Login)) {
	m.lanes.submit(kind+"/"+string(evt.RoomID), "matrix "+kind, func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, ephemeralTimeout)
		defer cancel()
		p, err := m.db.Portal.GetByRoom(ctx, evt.RoomID)
		if err != nil || p == nil {
			return
		}
		login, err := m.db.Login.Get(ctx, p.LoginID)
		// Refused as the user's messages are (loginRefusal): a typing
		// notice or a receipt is the user's too.
		if err != nil || login == nil || m.loginRefusal(login) != "" {
			return
		}
		apply(ctx, p, login)
	})
}

func (m *Manager) matrixTyping(evt *appservice.EphemeralEvent) {
	m.inPortal(evt, "typing", func(ctx context.Context, p *database.Portal, login *database.Login) {
		if caps, ok := m.capabilities(login.ConnectorID); !ok || !caps.Typing {
			return
		}
		typing := false
		for _, u := range evt.Content.AsTyping().UserIDs {
			typing = typing || u == login.MatrixUser
		}
		// A typing push lists everyone typing in the room, the ghost too; the
		// network hears only changes of the user's own state.
		if was, _ := m.userTyping.Load(evt.RoomID); was == typing || (was == nil && !typing) {
			return
		}
		m.userTyping.Store(evt.RoomID, typing)
		_, err := m.conn.Command(ctx, login.ConnectorID, connector.OpSetTyping, &connector.Command{
			Login: login.ID, Chat: chatOf(p), Typing: typing, TimeoutMS: 30000,
		})
		if err != nil {
			m.log.Warn().Err(err).Msg("Failed to send typing to the network, dropping it")
		}
	})
}

func (m *Manager) matrixReceipts(evt *appservice.EphemeralEvent) {
	m.inPortal(evt, "receipt", func(ctx context.Context, p *database.Portal, login *database.Login) {
		m.markRead(ctx, p, login, evt.Content.AsReceipt())
	})
}

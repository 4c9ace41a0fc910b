package portal

import (
	"context"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
)

// matrixPresence passes the user's own Matrix presence to each of their
// logins whose network shows presence, when bridge.bridge_own_presence is
// on. It needs m.presence pushed by the homeserver (receive_ephemeral), and
// like typing it is not stored: a lost update is replaced by the next one.
func (m *Manager) matrixPresence(evt *appservice.EphemeralEvent) {
	if !m.cfg.Bridge.BridgePresence || evt.Sender == "" || m.cfg.PermissionLevel(evt.Sender) < config.LevelUser {
		return
	}
	content := evt.Content.AsPresence()
	switch content.Presence {
	case connector.PresenceOnline, connector.PresenceUnavailable, connector.PresenceOffline:
	default:
		return
	}
	user := evt.Sender
	m.lanes.submit("presence-out/"+string(user), "matrix presence", func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, ephemeralTimeout)
		defer cancel()
		logins, err := m.db.Login.ByUser(ctx, user)
		if err != nil {
			m.log.Debug().Err(err).Msg("Failed to load logins for presence")
			return
		}
		for _, login := range logins {
			if m.loginRefusal(login) != "" {
				// Not through a connector that may no longer serve the
				// user, nor a login it now names as someone else's.
				continue
			}
			if caps, ok := m.capabilities(login.ConnectorID); !ok || !caps.Presence {
				continue
			}
			_, err := m.conn.Command(ctx, login.ConnectorID, connector.OpSetPresence, &connector.Command{
				Login: login.ID, Presence: string(content.Presence), StatusMsg: content.StatusMessage,
			})
			if err != nil {
				m.log.Warn().Err(err).Str("login_id", login.ID).Msg("Failed to send presence to the network, dropping it")
			}
		}
	})
}

// setGhostPresence shows a contact's presence on its ghost. The homeserver
// derives last_active_ago from when it was set.
func (m *Manager) setGhostPresence(ctx context.Context, contactID, presence, statusMsg string) error {
	return m.ghosts.Intent(contactID).SetPresence(ctx, presence, statusMsg)
}

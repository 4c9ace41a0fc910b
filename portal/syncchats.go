package portal

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// A login the bridge has never seen gets its most recent chats as portals,
// each with its history (bridge.backfill.sync_recent_chats), if the
// connector can list chats (capability list_chats, a v1 extension). The
// login row is written together with a login_sync_pending row; the sync
// runs when the connector is connected and removes the row when it is
// through, so a sync cut off by a crash or a disconnect runs again on the
// next connection. Portal creation and backfill are idempotent, so a chat
// done before the cut costs nothing the second time.

// storeLogin stores a login from a hello, and queues the sync of its recent
// chats if it is new.
func (m *Manager) storeLogin(ctx context.Context, login *database.Login) (stored bool, err error) {
	err = m.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		existing, err := m.db.Login.Get(ctx, login.ID)
		if err != nil {
			return err
		}
		if stored, err = m.db.Login.Upsert(ctx, login); err != nil || !stored {
			return err
		}
		if existing == nil && m.cfg.Bridge.Backfill.SyncRecentChats > 0 {
			return m.db.LoginSync.Add(ctx, login.ID)
		}
		return nil
	})
	return stored, err
}

// syncNewLogins queues the sync of every login of the connector that waits
// for one.
func (m *Manager) syncNewLogins(connectorID string) {
	logins, err := m.db.LoginSync.ByConnector(m.ctx, connectorID)
	if err != nil {
		m.log.Err(err).Str("connector_id", connectorID).Msg("Failed to load logins waiting for their chats")
		return
	}
	for _, loginID := range logins {
		m.submitLoginSync(connectorID, loginID)
	}
}

// submitLoginSync queues the sync of one login's recent chats on its lane.
func (m *Manager) submitLoginSync(connectorID, loginID string) {
	m.lanes.submit("login-sync/"+loginID, "sync recent chats", func(ctx context.Context) {
		log := m.log.With().Str("connector_id", connectorID).Str("login_id", loginID).Str("action", "sync_recent_chats").Logger()
		if err := m.syncRecentChats(log.WithContext(ctx), connectorID, loginID); err != nil {
			log.Warn().Err(err).Msg("Failed to sync the login's recent chats; trying again on the next connection")
		}
	})
}

// loginBack queues the sync of a login that the network logged out before
// its recent chats were synced, now that it is logged in again (its
// login_sync_pending row was kept for this; see syncRecentChats).
func (m *Manager) loginBack(ctx context.Context, connectorID, loginID string) {
	waiting, err := m.db.LoginSync.ByConnector(ctx, connectorID)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to look up whether the login waits for its chats")
		return
	}
	if slices.Contains(waiting, loginID) {
		m.submitLoginSync(connectorID, loginID)
	}
}

// syncRecentChats makes portals, with history, for the login's most recent
// chats.
func (m *Manager) syncRecentChats(ctx context.Context, connectorID, loginID string) error {
	log := zerolog.Ctx(ctx)
	limit := m.cfg.Bridge.Backfill.SyncRecentChats
	hello, ok := m.conn.Hello(connectorID)
	if !ok {
		return errors.New("connector not connected")
	}
	if limit <= 0 || !hello.Capabilities.ListChats {
		return m.db.LoginSync.Done(ctx, loginID)
	}
	// A login the network logged out would get rooms that carry nothing,
	// right after its logout ended its portals. Its sync waits (the row
	// stays) until it is logged in again (loginBack).
	if login, err := m.db.Login.Get(ctx, loginID); err != nil {
		return fmt.Errorf("load login: %w", err)
	} else if login == nil {
		return m.db.LoginSync.Done(ctx, loginID)
	} else if m.loggedOut(login) != nil {
		log.Info().Msg("The login is logged out; its recent chats are synced once it logs in again")
		return nil
	}
	res, err := m.conn.Command(ctx, connectorID, connector.OpListChats, &connector.Command{Login: loginID, Limit: limit})
	var protoErr *connector.Error
	if errors.As(err, &protoErr) && !protoErr.Retryable {
		log.Warn().Err(err).Msg("Connector cannot list the login's chats")
		return m.db.LoginSync.Done(ctx, loginID)
	} else if err != nil {
		return fmt.Errorf("list chats: %w", err)
	}
	made := 0
	for i := range res.Chats {
		if made >= limit {
			break
		}
		chat := res.Chats[i]
		if chat.ID == "" || chat.Type != connector.ChatTypeDM || chat.With == "" ||
			len(chat.ID) > connector.MaxIDBytes || len(chat.With) > connector.MaxIDBytes {
			log.Warn().Str("chat_id", chat.ID).Str("type", chat.Type).Msg("Skipping a listed chat that is not a valid DM")
			continue
		}
		if err = m.syncChat(ctx, connectorID, loginID, &chat); errors.Is(err, ErrLoggedOut) {
			// Logged out during the sync: the rest waits for the login
			// to come back, as above; the chats done so far are ended
			// with its other portals.
			log.Info().Msg("The login was logged out during the sync of its recent chats; the rest waits until it logs in again")
			return nil
		} else if err != nil {
			return fmt.Errorf("portal for %s: %w", chat.ID, err)
		}
		made++
	}
	log.Info().Int("listed", len(res.Chats)).Int("portals", made).Msg("Synced the new login's recent chats")
	return m.db.LoginSync.Done(ctx, loginID)
}

// syncChat makes one listed chat a portal with its history, under the chat's
// lock like any event of the chat.
func (m *Manager) syncChat(ctx context.Context, connectorID, loginID string, chat *connector.Chat) error {
	ctx = zerolog.Ctx(ctx).With().Str("chat_id", chat.ID).Logger().WithContext(ctx)
	unlock := m.chats.Lock(database.PortalKey{LoginID: loginID, ChatID: chat.ID})
	defer unlock()
	login, err := m.db.Login.Get(ctx, loginID)
	if err != nil || login == nil {
		return err
	}
	if _, err = m.claimForUser(ctx, database.PortalKey{LoginID: loginID, ChatID: chat.ID}, contactOfChat(chat)); err != nil {
		return err
	}
	p, err := m.ensurePortal(ctx, login, connectorID, chat)
	if err != nil {
		return err
	}
	_, err = m.backfill(ctx, connectorID, login, p, nil)
	return err
}

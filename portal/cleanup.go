package portal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
	"github.com/dmbridge/dmbridge/puppet"
)

// cleanupPortal makes the bridge forget a portal's room. The network is not
// told: the conversation still exists there, and its next message opens a
// fresh portal. The caller holds the chat's lock.
//
// The order makes every crash point safe. The cleanup record comes first, so
// that from then on the m.direct repair removes the room instead of restoring
// it. The homeserver steps come next and are idempotent. The portal row goes
// last, together with finish (the triggering event marked handled), so a
// replay of that event finds the portal and does it all again.
func (m *Manager) cleanupPortal(ctx context.Context, login *database.Login, p *database.Portal, farewell string, finish func(context.Context) error) error {
	var ending []id.RoomID // marked by failQueued
	defer func() {
		for _, room := range ending {
			m.ending.Delete(room)
		}
	}()
	ghost := m.ghosts.MXID(p.ContactID)
	if p.RoomID != "" {
		if err := m.db.Cleaned.Add(ctx, login.MatrixUser, p.RoomID, ghost); err != nil {
			return fmt.Errorf("record cleanup of %s: %w", p.RoomID, err)
		}
		if farewell != "" {
			// The user is still in the room: what they sent that is still
			// waiting for the network will not go now, and each gets its
			// notice before the farewell (afterwards no portal is left to
			// tell them in).
			ending = m.failQueued(ctx, login, p, errPortalEnded)
			m.sendOnce(ctx, p, "farewell", farewell)
		}
		if err := m.finishCleanup(ctx, login.MatrixUser, p.RoomID, ghost); err != nil {
			return err
		}
	}
	if err := m.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if err := m.db.Portal.Delete(ctx, p.PortalKey); err != nil {
			return fmt.Errorf("delete portal %s: %w", p.ChatID, err)
		}
		return finish(ctx)
	}); err != nil {
		return err
	}
	m.releaseGhostDevice(ctx, ghost)
	return nil
}

// portalEnding reports whether the room's portal is being cleaned up.
func (m *Manager) portalEnding(roomID id.RoomID) bool {
	_, ending := m.ending.Load(roomID)
	return ending
}

// errPortalEnded is why a command still queued when its portal ended did
// not go (or, if it was written to the connector, may not have arrived).
var errPortalEnded = errors.New("this room stopped being bridged")

// failQueued tells the user about each of the portal's commands still
// waiting for the network, and drops them: those of its room and those of
// the rooms the user upgraded it from (movedFromRooms), which would
// otherwise go out after the farewell, or fail with no portal left to
// tell the user in. It runs on the chat's lane, not the rooms', where a
// flush may be sending: the rooms are marked as ending first, and a flush
// looks at the mark after it marked a command written and before it sends
// it, so a command is either seen here as written (and said to be
// possibly delivered) or not sent. It returns the rooms it marked, for the
// caller to unmark when the cleanup is over.
func (m *Manager) failQueued(ctx context.Context, login *database.Login, p *database.Portal, cause error) []id.RoomID {
	rooms := []id.RoomID{p.RoomID}
	if moved, err := m.movedFromRooms(ctx, login, p); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Could not list the rooms the portal moved from; their waiting commands will fail without a notice")
	} else {
		rooms = append(rooms, moved...)
	}
	for _, room := range rooms {
		m.ending.Store(room, struct{}{})
	}
	for _, room := range rooms {
		cmds, err := m.db.PendingCm.ByRoom(ctx, room)
		if err != nil {
			zerolog.Ctx(ctx).Err(err).Stringer("room_id", room).Msg("Could not list the room's waiting commands; they will fail without a notice")
			continue
		}
		for _, pc := range cmds {
			if pc.PortalKey == p.PortalKey {
				m.commandFailed(ctx, pc, cause)
			}
		}
	}
	return rooms
}

// finishCleanup does the homeserver side of a cleanup: the room leaves the
// user's m.direct and the ghost leaves the room, so that no ghost stays in a
// room nobody bridges. Both steps may run again harmlessly.
func (m *Manager) finishCleanup(ctx context.Context, user id.UserID, roomID id.RoomID, ghost id.UserID) error {
	log := zerolog.Ctx(ctx).With().Stringer("room_id", roomID).Logger()
	dp, err := m.dps.Intent(ctx, user)
	if err != nil {
		log.Warn().Err(err).Msg("Double puppet unavailable, m.direct entry left for the repair")
	} else if dp != nil {
		change := puppet.DirectChange{Remove: map[id.RoomID]bool{roomID: true}}
		if _, err = m.direct.Apply(ctx, dp, change); err != nil {
			return fmt.Errorf("remove %s from m.direct: %w", roomID, err)
		}
	}
	intent := m.mx.Ghost(ghost, false)
	if _, err = intent.LeaveRoom(ctx, roomID); err != nil && !matrix.IsGone(err) {
		return fmt.Errorf("ghost %s leaving %s: %w", ghost, roomID, err)
	}
	_ = m.link.StateStore.SetMembership(ctx, roomID, ghost, event.MembershipLeave)
	log.Info().Stringer("ghost", ghost).Msg("Room cleaned up")
	return nil
}

// sendOnce posts a notice as the portal's ghost with a transaction id derived
// from what it is about, so that a retried cleanup does not say it twice.
func (m *Manager) sendOnce(ctx context.Context, p *database.Portal, what, text string) {
	h := sha256.Sum256([]byte(what + "\x00" + string(p.RoomID) + "\x00" + p.LoginID + "\x00" + p.ChatID))
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: text}
	_, err := m.ghosts.Intent(p.ContactID).SendMessageEvent(ctx, p.RoomID, event.EventMessage, content,
		mautrix.ReqSendEvent{TransactionID: "dmb_" + what + "_" + hex.EncodeToString(h[:12])})
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Stringer("room_id", p.RoomID).Msg("Failed to send notice")
	}
}

// remoteChatDeleted ends the portal of a chat deleted on the network. The
// room stays with its history; it just stops being bridged. The caller
// (applyRemote) holds the chat's lock.
func (m *Manager) remoteChatDeleted(ctx context.Context, connectorID string, login *database.Login, ev *connector.Event, done func(context.Context) error) error {
	if ev.Chat == nil {
		return done(ctx)
	}
	p, err := m.db.Portal.Get(ctx, database.PortalKey{LoginID: login.ID, ChatID: ev.Chat.ID})
	if err != nil {
		return err
	} else if p == nil {
		return done(ctx)
	}
	farewell := fmt.Sprintf("This conversation was deleted on %s. The room stays for its history but is no longer bridged; "+
		"a new message in this conversation opens a new room.", m.networkName(connectorID))
	return m.cleanupPortal(ctx, login, p, farewell, done)
}

// loginGone ends every portal of a login whose network session is over
// (bad_credentials): the bridge can no longer carry anything for those rooms,
// so they should stop looking bridged. The login row stays, so that a new
// login under the same id starts afresh, with new rooms.
func (m *Manager) loginGone(ctx context.Context, login *database.Login, ev *connector.Event, done func(context.Context) error) error {
	portals, err := m.db.Portal.ByLogin(ctx, login.ID)
	if err != nil {
		return err
	}
	farewell := fmt.Sprintf("Your %s account %s was logged out", m.networkName(login.ConnectorID), config.TruncateRunes(login.ID, maxNetworkNameRunes))
	if ev.Message != "" {
		farewell += " (" + config.TruncateRunes(ev.Message, maxReasonRunes) + ")"
	}
	farewell += ". This room is no longer bridged; once you log in again, new messages open new rooms."
	noop := func(context.Context) error { return nil }
	for _, p := range portals {
		if err = m.cleanupLocked(ctx, login, p.PortalKey, farewell, noop); err != nil {
			return err
		}
	}
	if len(portals) > 0 {
		zerolog.Ctx(ctx).Info().Int("portals", len(portals)).Msg("Login logged out, its portals were cleaned up")
	}
	return done(ctx)
}

// cleanupLocked takes the chat's lock and cleans the portal if it still exists.
func (m *Manager) cleanupLocked(ctx context.Context, login *database.Login, key database.PortalKey, farewell string, finish func(context.Context) error) error {
	unlock := m.chats.Lock(key)
	defer unlock()
	p, err := m.db.Portal.Get(ctx, key)
	if err != nil {
		return err
	} else if p == nil {
		return finish(ctx)
	}
	ctx = zerolog.Ctx(ctx).With().Str("chat_id", key.ChatID).Logger().WithContext(ctx)
	return m.cleanupPortal(ctx, login, p, farewell, finish)
}

// networkName is the network's display name for messages to the user.
func (m *Manager) networkName(connectorID string) string {
	if m.conn != nil {
		if hello, ok := m.conn.Hello(connectorID); ok && hello.Network.Name != "" {
			// The connector's hello names it, unbounded but for the frame
			// size; it goes into notices.
			return config.TruncateRunes(hello.Network.Name, maxNetworkNameRunes)
		}
	}
	return "the network"
}

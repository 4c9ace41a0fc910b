package portal

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
	"github.com/dmbridge/dmbridge/metrics"
	"github.com/dmbridge/dmbridge/puppet"
)

// ensurePortal returns the chat's portal with its room created, the user
// joined and the room in the user's m.direct. Every step checks its own flag,
// so a crash anywhere resumes at the step that did not finish, and a portal
// that is complete costs no homeserver call.
func (m *Manager) ensurePortal(ctx context.Context, login *database.Login, connectorID string, chat *connector.Chat) (*database.Portal, error) {
	key := database.PortalKey{LoginID: login.ID, ChatID: chat.ID}
	contactID := chat.With
	if contactID == "" {
		contactID = chat.ID
	}
	p, err := m.db.Portal.GetOrCreate(ctx, key, contactID)
	if err != nil {
		return nil, fmt.Errorf("load portal for %s: %w", chat.ID, err)
	}
	if p.RoomID != "" && p.UserJoined && p.InDirect {
		return p, nil
	}
	log := zerolog.Ctx(ctx)
	ghost, ghostIntent, err := m.ghosts.Ensure(ctx, p.ContactID)
	if err != nil {
		return nil, fmt.Errorf("create portal for %s: %w", chat.ID, err)
	}
	if p.RoomID == "" {
		if p.CreateStarted {
			if p.RoomID, err = m.findOrphanRoom(ctx, ghostIntent, connectorID, p); err != nil {
				return nil, fmt.Errorf("look for a half-created room for %s: %w", chat.ID, err)
			}
			if p.RoomID != "" {
				if _, err = m.ensureDirectInvite(ctx, ghostIntent, p.RoomID, login.MatrixUser); err != nil {
					return nil, fmt.Errorf("invite %s to recovered portal %s: %w", login.MatrixUser, p.RoomID, err)
				}
			}
		}
		if p.RoomID == "" {
			if err = m.db.Portal.MarkCreateStarted(ctx, key); err != nil {
				return nil, fmt.Errorf("create portal for %s: %w", chat.ID, err)
			}
			if p.RoomID, err = m.createRoom(ctx, ghostIntent, connectorID, login, p); err != nil {
				return nil, fmt.Errorf("create portal for %s: %w", chat.ID, err)
			}
		}
		if err = m.db.Portal.SetRoom(ctx, key, p.RoomID); err != nil {
			return nil, fmt.Errorf("store room of portal %s: %w", chat.ID, err)
		}
		log.Info().Stringer("room_id", p.RoomID).Msg("Portal room ready")
	}
	dp, err := m.dps.Intent(ctx, login.MatrixUser)
	if err != nil {
		log.Warn().Err(err).Msg("Double puppeting unavailable, the user gets a plain invite")
	}
	if dp == nil {
		return p, nil
	}
	if !p.UserJoined {
		if err = m.joinUser(ctx, dp, ghostIntent, p.RoomID); err != nil {
			return nil, fmt.Errorf("join %s to portal %s: %w", login.MatrixUser, p.RoomID, err)
		}
		_ = m.link.StateStore.SetMembership(ctx, p.RoomID, login.MatrixUser, event.MembershipJoin)
		if err = m.db.Portal.SetUserJoined(ctx, key, true); err != nil {
			return nil, err
		}
		p.UserJoined = true
	}
	if !p.InDirect {
		change := puppet.DirectChange{Add: map[id.UserID][]id.RoomID{ghost.MXID: {p.RoomID}}}
		if _, err = m.direct.Apply(ctx, dp, change); err != nil {
			return nil, fmt.Errorf("add portal %s to m.direct: %w", p.RoomID, err)
		}
		if err = m.db.Portal.SetInDirect(ctx, key, true); err != nil {
			return nil, err
		}
		p.InDirect = true
	}
	return p, nil
}

// bridgeStateKey names the chat in the room's m.bridge state, so that a room
// whose id was never stored can be recognised.
func (m *Manager) bridgeStateKey(connectorID, chatID string) string {
	return m.networkID(connectorID) + "://" + chatID
}

func (m *Manager) networkID(connectorID string) string {
	if m.conn != nil {
		if hello, ok := m.conn.Hello(connectorID); ok && hello.Network.ID != "" {
			return hello.Network.ID
		}
	}
	return connectorID
}

func (m *Manager) bridgeInfo(connectorID string, login *database.Login, p *database.Portal, ghost id.UserID) *event.BridgeEventContent {
	network := event.BridgeInfoSection{ID: m.networkID(connectorID)}
	if m.conn != nil {
		if hello, ok := m.conn.Hello(connectorID); ok {
			network.DisplayName = hello.Network.Name
		}
	}
	return &event.BridgeEventContent{
		BridgeBot: m.link.BotMXID(),
		Creator:   ghost,
		Protocol:  network,
		Channel:   event.BridgeInfoSection{ID: p.ChatID, Receiver: login.ID},
	}
}

// createRoom creates the DM as the ghost. The bot stays out of the room:
// clients name a DM after its other members, and the user must see the
// contact there, not the bridge.
func (m *Manager) createRoom(ctx context.Context, ghost matrix.API, connectorID string, login *database.Login, p *database.Portal) (id.RoomID, error) {
	stateKey := m.bridgeStateKey(connectorID, p.ChatID)
	info := m.bridgeInfo(connectorID, login, p, ghost.UserID())
	// The ghost's device is not made here (it would be ten more calls and
	// some 60 ms of CPU before the first message): the ghost got it queued
	// when it was registered (e2ee.Manager.Prepare), so that a user who
	// later switches encryption on finds it; an encrypted portal makes it
	// now, below.
	encrypted, err := m.encryptedRoomState(ctx, ghost.UserID())
	if err != nil {
		return "", fmt.Errorf("prepare encrypted portal: %w", err)
	}
	resp, err := ghost.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset:   "trusted_private_chat",
		IsDirect: true,
		Invite:   []id.UserID{login.MatrixUser},
		InitialState: append([]*event.Event{
			{Type: event.StateBridge, StateKey: &stateKey, Content: event.Content{Parsed: info}},
			{Type: event.StateHalfShotBridge, StateKey: &stateKey, Content: event.Content{Parsed: info}},
		}, encrypted...),
	})
	if err != nil {
		return "", err
	}
	for _, evt := range encrypted {
		// Known at once, so the first message is encrypted even before
		// the homeserver's transaction with this state comes in.
		_ = m.link.StateStore.SetEncryptionEvent(ctx, resp.RoomID, evt.Content.AsEncryption())
	}
	return resp.RoomID, nil
}

// joinUser joins the double puppet to the portal. A refused join is most
// likely a missing invite: Dendrite's createRoom logs an invite that failed
// and still answers 200 with the room. The ghost then invites the user (if
// they are not invited already) and the join is tried once more; without
// this every message of the chat would fail on the same refusal.
func (m *Manager) joinUser(ctx context.Context, dp, ghost matrix.API, roomID id.RoomID) error {
	err := m.dps.Join(ctx, dp, roomID)
	if err == nil || !matrix.IsForbidden(err) {
		return err
	}
	zerolog.Ctx(ctx).Warn().Err(err).Stringer("room_id", roomID).Msg("Join refused, checking the user's invite")
	invited, ierr := m.ensureDirectInvite(ctx, ghost, roomID, dp.UserID())
	if ierr != nil {
		return fmt.Errorf("%w (and the invite could not be checked: %w)", err, ierr)
	}
	if invited {
		m.metrics.Repaired(metrics.RepairInvite)
	}
	return m.dps.Join(ctx, dp, roomID)
}

// ensureDirectInvite gives the user of a recovered room the is_direct invite
// that createRoom would have sent. The homeserver stops processing a
// createRoom whose caller went away, so a crash can leave a room that has
// its initial state (and so is found by findOrphanRoom) but no invites yet;
// joinUser asks it too when the user's join is refused. It reports whether
// it sent an invite.
func (m *Manager) ensureDirectInvite(ctx context.Context, ghost matrix.API, roomID id.RoomID, user id.UserID) (bool, error) {
	_ = m.link.StateStore.SetMembership(ctx, roomID, ghost.UserID(), event.MembershipJoin)
	var member event.MemberEventContent
	err := ghost.StateEvent(ctx, roomID, event.StateMember, string(user), &member)
	if err == nil && (member.Membership == event.MembershipInvite || member.Membership == event.MembershipJoin) {
		return false, nil
	} else if err != nil && !matrix.IsNotFound(err) {
		return false, err
	}
	_, err = ghost.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: user}, map[string]any{"is_direct": true})
	return err == nil, err
}

// findOrphanRoom looks for a room the ghost created for this chat before a
// crash kept its id from being stored. It runs only on that recovery path.
func (m *Manager) findOrphanRoom(ctx context.Context, ghost matrix.API, connectorID string, p *database.Portal) (id.RoomID, error) {
	rooms, err := ghost.JoinedRooms(ctx)
	if err != nil {
		return "", err
	}
	stateKey := m.bridgeStateKey(connectorID, p.ChatID)
	for _, roomID := range rooms.JoinedRooms {
		var info event.BridgeEventContent
		if err := ghost.StateEvent(ctx, roomID, event.StateBridge, stateKey, &info); err != nil {
			continue
		}
		if info.Channel.ID == p.ChatID && info.Channel.Receiver == p.LoginID {
			if other, _ := m.db.Portal.GetByRoom(ctx, roomID); other != nil {
				continue
			}
			zerolog.Ctx(ctx).Info().Stringer("room_id", roomID).Msg("Found the room of an interrupted portal creation")
			return roomID, nil
		}
	}
	return "", nil
}

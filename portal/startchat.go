package portal

import (
	"context"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
)

// StartedChat is the outcome of StartChat.
type StartedChat struct {
	RoomID  id.RoomID
	LoginID string
	Contact connector.Contact
	// Created is true when this call made the portal; false when the chat
	// already had one, which the user was brought back into if needed.
	Created bool
}

// StartChat opens the DM with whoever identifier names on the network, for
// the bot's start-chat and the provisioning API. An existing portal is
// reused; otherwise the portal is made on the same path as an incoming first
// message, so both kinds look the same. loginID may be empty to let the
// user's logins answer in turn.
func (m *Manager) StartChat(ctx context.Context, user id.UserID, loginID, identifier string) (*StartedChat, error) {
	identifier = strings.TrimSpace(identifier)
	if identifier == "" {
		return nil, fmt.Errorf("no identifier given")
	}
	logins, err := m.userLogins(ctx, user, loginID)
	if err != nil {
		return nil, err
	}
	log := m.log.With().Stringer("user_id", user).Str("action", "start_chat").Logger()
	ctx = log.WithContext(ctx)
	r, err := m.resolveContact(ctx, logins, identifier, true)
	if err != nil {
		return nil, err
	}
	log = log.With().Str("login_id", r.login.ID).Str("chat_id", r.chat.ID).Logger()
	ctx = log.WithContext(ctx)
	// The profile first, so that a new room is created with the right name;
	// not for a contact only other connectors' users have chats with.
	if ok, err := m.mayChangeContact(ctx, r.login.ConnectorID, r.contact.ID); err != nil {
		log.Warn().Err(err).Msg("Could not check who may describe the contact; leaving its profile")
	} else if ok {
		if _, err = m.ghosts.UpdateProfile(ctx, r.contact); err != nil {
			log.Warn().Err(err).Msg("Failed to apply the contact's profile")
		}
	}
	key := database.PortalKey{LoginID: r.login.ID, ChatID: r.chat.ID}
	unlock := m.chats.Lock(key)
	defer unlock()
	existing, err := m.db.Portal.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("load portal: %w", err)
	}
	if existing != nil && existing.ContactID != contactOfChat(r.chat) {
		// The answer names a chat that is another contact's portal: the
		// user would be handed that room as this contact's.
		return nil, fmt.Errorf("%s answered with the chat %q, which is the chat with %q, not with %q",
			m.networkName(r.login.ConnectorID), r.chat.ID, existing.ContactID, contactOfChat(r.chat))
	}
	created := existing == nil || existing.RoomID == ""
	// The login may have been logged out while the network answered.
	if _, err = m.claimForUser(ctx, key, contactOfChat(r.chat)); err != nil {
		return nil, err
	}
	p, err := m.ensurePortal(ctx, r.login, r.login.ConnectorID, r.chat)
	if err != nil {
		return nil, err
	}
	if !created {
		if err = m.openPortal(ctx, r.login, p); err != nil {
			return nil, err
		}
	}
	// A new portal shows the conversation so far. The chat is started
	// without it if that fails; the next message into the chat tries again.
	if _, err = m.backfill(ctx, r.login.ConnectorID, r.login, p, nil); err != nil {
		log.Warn().Err(err).Msg("Failed to backfill the new chat")
	}
	log.Info().Stringer("room_id", p.RoomID).Bool("created", created).Msg("Chat started from Matrix")
	return &StartedChat{RoomID: p.RoomID, LoginID: r.login.ID, Contact: *r.contact, Created: created}, nil
}

// openPortal brings the user back into an existing portal they are not in
// (normally a portal they leave is cleaned up, but the leave may never have
// reached the bridge). The ghost re-invites them, and the double puppet
// accepts where there is one.
func (m *Manager) openPortal(ctx context.Context, login *database.Login, p *database.Portal) error {
	ghost := m.ghosts.Intent(p.ContactID)
	var member event.MemberEventContent
	err := ghost.RoomStateEvent(ctx, p.RoomID, event.StateMember, string(login.MatrixUser), &member)
	if err != nil && !matrix.IsNotFound(err) {
		return fmt.Errorf("read membership of %s in %s: %w", login.MatrixUser, p.RoomID, err)
	}
	if member.Membership == event.MembershipJoin || member.Membership == event.MembershipInvite {
		return nil
	}
	zerolog.Ctx(ctx).Info().Stringer("room_id", p.RoomID).Str("membership", string(member.Membership)).
		Msg("User is not in the existing portal, inviting them back")
	_, err = ghost.SendStateEvent(ctx, p.RoomID, event.StateMember, string(login.MatrixUser), &event.MemberEventContent{
		Membership: event.MembershipInvite, IsDirect: true,
	})
	if err != nil {
		return fmt.Errorf("invite %s back into %s: %w", login.MatrixUser, p.RoomID, err)
	}
	dp, err := m.dps.Intent(ctx, login.MatrixUser)
	if err != nil || dp == nil {
		return m.db.Portal.SetUserJoined(ctx, p.PortalKey, false)
	}
	if err = m.dps.Join(ctx, dp, p.RoomID); err != nil {
		return fmt.Errorf("join %s to portal %s: %w", login.MatrixUser, p.RoomID, err)
	}
	_ = m.link.StateStore.SetMembership(ctx, p.RoomID, login.MatrixUser, event.MembershipJoin)
	return m.db.Portal.SetUserJoined(ctx, p.PortalKey, true)
}

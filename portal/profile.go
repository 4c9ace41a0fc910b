package portal

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
)

// syncMemberProfiles makes the ghost's member event in each of its portals
// show its current profile. Some homeservers copy a global profile change into
// member events and some do not, so the bridge checks each room and writes
// only where the room still shows the old profile.
func (m *Manager) syncMemberProfiles(ctx context.Context, contactID string) error {
	ghost, err := m.db.Ghost.Get(ctx, contactID)
	if err != nil || ghost == nil {
		return err
	}
	portals, err := m.db.Portal.ByContact(ctx, contactID)
	if err != nil {
		return err
	}
	intent := m.ghosts.Intent(contactID)
	want := m.cfg.GhostDisplayname(ghost.Name, ghost.ID)
	for _, p := range portals {
		var member event.MemberEventContent
		if err := intent.StateEvent(ctx, p.RoomID, event.StateMember, string(ghost.MXID), &member); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Stringer("room_id", p.RoomID).Msg("Failed to read ghost member event")
			continue
		}
		if member.Membership != event.MembershipJoin || (member.Displayname == want && member.AvatarURL == ghost.AvatarMXC) {
			continue
		}
		member.Displayname = want
		member.AvatarURL = ghost.AvatarMXC
		if _, err := intent.SendStateEvent(ctx, p.RoomID, event.StateMember, string(ghost.MXID), &member); err != nil {
			return fmt.Errorf("update member profile of %s in %s: %w", ghost.MXID, p.RoomID, err)
		}
	}
	return nil
}

// mayChangeContact reports whether connectorID may set the profile or the
// presence of a contact's ghost. A ghost is shared by every login that has
// the contact (ghosts are named after the contact id alone), so once a
// portal with the contact exists, only a connector serving one of those
// portals' logins speaks for it: another connector, trusted by the operator
// for other users, could otherwise rename or re-picture this user's
// contact. A contact nobody has a portal with yet is anyone's to describe;
// the connector of the first portal updates it as it goes.
func (m *Manager) mayChangeContact(ctx context.Context, connectorID, contactID string) (bool, error) {
	portals, err := m.db.Portal.ByContact(ctx, contactID)
	if err != nil {
		return false, fmt.Errorf("list the portals of contact %s: %w", contactID, err)
	}
	if len(portals) == 0 {
		return true, nil
	}
	for _, p := range portals {
		login, err := m.db.Login.Get(ctx, p.LoginID)
		if err != nil {
			return false, fmt.Errorf("load login %s: %w", p.LoginID, err)
		}
		if login != nil && login.ConnectorID == connectorID {
			return true, nil
		}
	}
	return false, nil
}

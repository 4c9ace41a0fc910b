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

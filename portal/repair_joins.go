package portal

import (
	"context"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
	"github.com/dmbridge/dmbridge/metrics"
)

// repairUserJoins checks, during the repair pass, that the user is in every
// portal the bridge joined them to. A homeserver may answer a join with an
// event id and still not apply it: Dendrite stores an event that fails the
// auth check against the room's current state as soft-failed and answers
// 200, and it takes that branch too when the check itself hits a database
// error. The bridge then believes the DM is joined while the user sees an
// invite. One call per user (the joined rooms) finds such portals; each is
// then read as its ghost, which is in the room:
//   - still invited: the join did not apply, so the double puppet joins again;
//   - left or banned: the user left and the bridge did not act on it, so the
//     portal is cleaned up as the leave would have done (memberLeft);
//   - joined: the list was older than the join, nothing to do.
//
// Portals whose user is not marked joined are left to ensurePortal, which
// joins them with the next message.
func (m *Manager) repairUserJoins(ctx context.Context, dp matrix.API, portals []*database.Portal) error {
	var check []*database.Portal
	for _, p := range portals {
		if p.RoomID != "" && p.UserJoined {
			check = append(check, p)
		}
	}
	if len(check) == 0 {
		return nil
	}
	resp, err := dp.JoinedRooms(ctx)
	if err != nil {
		return fmt.Errorf("list the rooms %s is in: %w", dp.UserID(), err)
	}
	joined := make(map[id.RoomID]bool, len(resp.JoinedRooms))
	for _, roomID := range resp.JoinedRooms {
		joined[roomID] = true
	}
	var errs []error
	for _, p := range check {
		if joined[p.RoomID] {
			continue
		}
		if err = m.repairJoin(ctx, dp, p); err != nil {
			errs = append(errs, fmt.Errorf("portal %s: %w", p.RoomID, err))
		}
	}
	return errors.Join(errs...)
}

// repairJoin acts on one portal the user is not joined to, under the chat's
// lock so that it does not cross a message creating or cleaning it up.
func (m *Manager) repairJoin(ctx context.Context, dp matrix.API, stale *database.Portal) error {
	unlock := m.chats.Lock(stale.PortalKey)
	defer unlock()
	p, err := m.db.Portal.Get(ctx, stale.PortalKey)
	if err != nil {
		return err
	} else if p == nil || p.RoomID != stale.RoomID || !p.UserJoined {
		return nil
	}
	log := m.log.With().Str("repair", "joins").Str("login_id", p.LoginID).Str("chat_id", p.ChatID).
		Stringer("room_id", p.RoomID).Stringer("user_id", dp.UserID()).Logger()
	ctx = log.WithContext(ctx)
	var member event.MemberEventContent
	err = m.ghosts.Intent(p.ContactID).StateEvent(ctx, p.RoomID, event.StateMember, string(dp.UserID()), &member)
	if err != nil && !matrix.IsNotFound(err) {
		return fmt.Errorf("read the user's membership: %w", err)
	}
	switch member.Membership {
	case event.MembershipJoin:
		return nil
	case event.MembershipInvite:
		log.Warn().Msg("The user's join of this portal did not apply on the homeserver, joining again")
		if err = m.dps.Join(ctx, dp, p.RoomID); err != nil {
			return fmt.Errorf("join again: %w", err)
		}
		_ = m.link.StateStore.SetMembership(ctx, p.RoomID, dp.UserID(), event.MembershipJoin)
		m.metrics.Repaired(metrics.RepairJoin)
		return nil
	case event.MembershipLeave, event.MembershipBan:
		login, err := m.db.Login.Get(ctx, p.LoginID)
		if err != nil || login == nil {
			return err
		}
		log.Warn().Str("membership", string(member.Membership)).
			Msg("The user is no longer in this portal and the bridge missed it, forgetting the room")
		if err = m.cleanupPortal(ctx, login, p, "", func(context.Context) error { return nil }); err != nil {
			return err
		}
		m.metrics.Repaired(metrics.RepairLeave)
		return nil
	default:
		// No member event (or a knock): not a room the bridge made this way.
		log.Warn().Str("membership", string(member.Membership)).Msg("The user is not in this portal; left as it is")
		return nil
	}
}

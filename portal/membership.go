package portal

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
)

// RoomHandler gets the Matrix events of rooms that are not portals: the bot's
// management rooms and invites of the bot. It returns an error only for
// failures worth a retry; the event is marked handled when it returns nil.
type RoomHandler interface {
	HandleRoomEvent(ctx context.Context, evt *event.Event) error
}

// SetRoomHandler names who gets the events of rooms that are not portals.
// It must be called before Start.
func (m *Manager) SetRoomHandler(h RoomHandler) { m.rooms = h }

// notPortal hands an event of a room that is not a portal to the bot.
func (m *Manager) notPortal(ctx context.Context, row *database.MXEvent, evt *event.Event) error {
	if m.rooms != nil {
		if err := m.rooms.HandleRoomEvent(ctx, evt); err != nil {
			return err
		}
	}
	return m.db.MXEvent.MarkDone(ctx, row.Seq, "")
}

// matrixMembership acts on the member events that start or end a portal: a
// ghost invited by a user, the bot invited into a DM, the user leaving a
// portal. It reports whether the event was one of those; it then marks it
// handled itself, in the same step as its own writes where it has any.
func (m *Manager) matrixMembership(ctx context.Context, row *database.MXEvent, evt *event.Event) (bool, error) {
	if evt.Type != event.StateMember || evt.StateKey == nil {
		return false, nil
	}
	member := evt.Content.AsMember()
	target := id.UserID(*evt.StateKey)
	finish := func(ctx context.Context) error { return m.db.MXEvent.MarkDone(ctx, row.Seq, "") }
	switch member.Membership {
	case event.MembershipInvite:
		if contactID, ok := m.cfg.ParseGhostUserID(target); ok {
			if err := m.ghostInvited(ctx, evt, contactID); err != nil {
				return true, err
			}
			return true, finish(ctx)
		}
		if target == m.link.BotMXID() {
			return m.botInvitedToPortal(ctx, evt, finish)
		}
	case event.MembershipLeave, event.MembershipBan:
		return m.memberLeft(ctx, evt, target, finish)
	}
	return false, nil
}

// botInvitedToPortal declines an invite of the bot into a DM: clients name a
// DM after its members, and the user must see the contact there, not the
// bridge. Other rooms' invites go to the bot itself.
func (m *Manager) botInvitedToPortal(ctx context.Context, evt *event.Event, finish func(context.Context) error) (bool, error) {
	p, err := m.db.Portal.GetByRoom(ctx, evt.RoomID)
	if err != nil {
		return true, fmt.Errorf("look up portal of %s: %w", evt.RoomID, err)
	} else if p == nil {
		return false, nil
	}
	err = declineInvite(ctx, m.mx.Bot(), evt.RoomID, "The bridge bot stays out of bridged chats; talk to it in a room of its own.")
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to decline the bot's invite into a portal")
	}
	return true, finish(ctx)
}

// memberLeft cleans up a portal its user left, was kicked or banned from, or
// whose ghost was kicked or banned (by the user, or by a moderator they
// made in a room they started): either way nobody is left to bridge to, and
// a ghost outside an invite-only room could never post the contact's next
// message there; that message opens a new DM. (The ghost's own leaves are
// the bridge's and never get here.) A leave of anybody else (a bot that
// joined the DM, say) changes nothing.
func (m *Manager) memberLeft(ctx context.Context, evt *event.Event, target id.UserID, finish func(context.Context) error) (bool, error) {
	p, err := m.db.Portal.GetByRoom(ctx, evt.RoomID)
	if err != nil {
		return true, fmt.Errorf("look up portal of %s: %w", evt.RoomID, err)
	}
	if p == nil {
		// A replay after a crash in the middle of a cleanup finds the
		// portal gone but its record there: finish the homeserver side.
		// The user is the target of a leave, or the sender of a ghost kick.
		cleaned, err := m.db.Cleaned.Get(ctx, target, evt.RoomID)
		if err == nil && cleaned == nil {
			cleaned, err = m.db.Cleaned.Get(ctx, evt.Sender, evt.RoomID)
		}
		if err != nil {
			return true, err
		} else if cleaned == nil {
			return false, nil
		}
		if err = m.finishCleanup(ctx, cleaned.MatrixUser, cleaned.RoomID, cleaned.GhostMXID); err != nil {
			return true, err
		}
		return true, finish(ctx)
	}
	login, err := m.db.Login.Get(ctx, p.LoginID)
	if err != nil {
		return true, err
	} else if login == nil {
		return false, nil
	}
	ghostKicked := target == m.ghosts.MXID(p.ContactID) && evt.Sender != target
	if login.MatrixUser != target && !ghostKicked {
		return false, nil
	}
	log := zerolog.Ctx(ctx).With().Str("login_id", p.LoginID).Str("chat_id", p.ChatID).Logger()
	ctx = log.WithContext(ctx)
	unlock := m.chats.Lock(p.PortalKey)
	defer unlock()
	// Re-read under the lock: a remote event may have replaced the portal.
	if p, err = m.db.Portal.Get(ctx, p.PortalKey); err != nil {
		return true, err
	} else if p == nil || p.RoomID != evt.RoomID {
		return true, finish(ctx)
	}
	log.Info().Stringer("member", target).Str("membership", string(evt.Content.AsMember().Membership)).
		Msg("The DM lost one of its two sides, forgetting the room")
	return true, m.cleanupPortal(ctx, login, p, "", finish)
}

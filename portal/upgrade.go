package portal

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
	"github.com/dmbridge/dmbridge/puppet"
)

// A room upgrade replaces the DM with a new room: the old one gets a
// tombstone naming the new one, the new one's create event names the old
// one as its predecessor, and the user's client invites the ghost along
// (Element with a plain invite, not as a direct chat). The portal follows
// it there; otherwise the invite would be
// refused as a second DM with the contact, and the contact's messages would
// keep going to the room the user's client now hides.

// upgradedFrom reports whether room is the upgrade of old. Both sides must
// say so: anyone can create a room that names the portal as predecessor,
// but only someone with power in the portal can put the tombstone there.
func (m *Manager) upgradedFrom(ctx context.Context, ghost matrix.API, room, old id.RoomID) bool {
	var create event.CreateEventContent
	if err := ghost.RoomStateEvent(ctx, room, event.StateCreate, "", &create); err != nil ||
		create.Predecessor == nil || create.Predecessor.RoomID != old {
		return false
	}
	var tomb event.TombstoneEventContent
	if err := ghost.RoomStateEvent(ctx, old, event.StateTombstone, "", &tomb); err != nil || tomb.ReplacementRoom != room {
		return false
	}
	return true
}

// upgradedPortal finds the user's portal with the contact whose room was
// upgraded to room: its tombstone names room. Only rooms of the user's own
// portals with that contact are read, and only for an invite into a room
// that is not a portal. notUpgrade is set when a tombstone names room but
// room, read before the ghost joins it, does not name that portal as its
// predecessor: the caller refuses the invite without joining (see
// predecessorUnjoined).
func (m *Manager) upgradedPortal(ctx context.Context, ghost matrix.API, user id.UserID, contactID string, room id.RoomID) (p *database.Portal, login *database.Login, notUpgrade bool, err error) {
	portals, err := m.db.Portal.ByUser(ctx, user)
	if err != nil {
		return nil, nil, false, fmt.Errorf("look for an upgraded portal: %w", err)
	}
	for _, p := range portals {
		if p.ContactID != contactID || p.RoomID == "" || p.RoomID == room {
			continue
		}
		var tomb event.TombstoneEventContent
		if err := ghost.RoomStateEvent(ctx, p.RoomID, event.StateTombstone, "", &tomb); err != nil || tomb.ReplacementRoom != room {
			continue
		}
		login, err := m.db.Login.Get(ctx, p.LoginID)
		if err != nil {
			return nil, nil, false, err
		}
		// A login the bridge may no longer use for the user is not
		// followed into the new room (which would backfill through it):
		// the invite then goes the usual way, which tells the user why.
		if login == nil || login.MatrixUser != user || m.loginRefusal(login) != "" {
			continue
		}
		if pred, known := predecessorUnjoined(ctx, ghost, room); known && pred != p.RoomID {
			zerolog.Ctx(ctx).Warn().Stringer("portal_room_id", p.RoomID).Stringer("predecessor", pred).
				Msg("The portal's tombstone names the room, but the room is not its upgrade")
			return p, login, true, nil
		}
		return p, login, false, nil
	}
	return nil, nil, false, nil
}

// predecessorUnjoined reads the predecessor that room's create event names
// while the ghost is only invited to it, so that a room a tombstone names
// but that is not the upgrade is refused without the ghost ever joining it
// (the user may have pointed it at any room of theirs, with other people
// in it). Dendrite serves an invited user the room's state as of the
// invite; known is false where the homeserver refuses (the spec does not
// promise it), and then adoptRoom checks both sides after the join, as
// before, and leaves a room that is not the upgrade. The invite's stripped
// state is not used: the inviter's server writes it.
func predecessorUnjoined(ctx context.Context, ghost matrix.API, room id.RoomID) (pred id.RoomID, known bool) {
	var create event.CreateEventContent
	if err := ghost.RoomStateEvent(ctx, room, event.StateCreate, "", &create); err != nil {
		zerolog.Ctx(ctx).Debug().Err(err).Stringer("room_id", room).
			Msg("Could not read the invited room's create event before joining; checking it after the join")
		return "", false
	}
	if create.Predecessor == nil {
		return "", true
	}
	return create.Predecessor.RoomID, true
}

// followUpgrade moves the portal p to its upgraded room: the room is stored
// as the portal's (adoptRoom then does what it does for any adopted room:
// bridge info, m.direct, the user joined), the old room leaves the user's
// m.direct, and the ghost leaves it.
func (m *Manager) followUpgrade(ctx context.Context, login *database.Login, ghost matrix.API, p *database.Portal, room id.RoomID) error {
	old := p.RoomID
	log := zerolog.Ctx(ctx).With().Stringer("old_room_id", old).Stringer("room_id", room).Logger()
	if err := m.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if err := m.db.Portal.SetRoom(ctx, p.PortalKey, room); err != nil {
			return err
		}
		if err := m.db.Portal.SetInDirect(ctx, p.PortalKey, false); err != nil {
			return err
		}
		return m.db.Cleaned.Delete(ctx, login.MatrixUser, room)
	}); err != nil {
		return fmt.Errorf("move portal to its upgraded room: %w", err)
	}
	p.RoomID, p.InDirect = room, false
	log.Info().Msg("The DM was upgraded, the portal follows it to the new room")
	if dp, err := m.dps.Intent(ctx, login.MatrixUser); err == nil && dp != nil {
		if _, err = m.direct.Apply(ctx, dp, puppet.DirectChange{Remove: map[id.RoomID]bool{old: true}}); err != nil {
			log.Warn().Err(err).Msg("Failed to take the old room out of m.direct")
		}
	}
	if _, err := ghost.LeaveRoom(ctx, old); err != nil && !matrix.IsGone(err) {
		log.Warn().Err(err).Msg("Failed to leave the old room")
	}
	return nil
}

// oldRoomPortal is the portal that moved away from evt's room, which is no
// portal's, when evt is the user's redaction there of an event the portal
// bridged in it (database.BridgedIn), or nil. After an upgrade the user's
// client still shows the old room's history, and a deletion of a message
// of it is a redaction there: a homeserver refuses one in the new room
// naming an event of the old. Ignored (the old room being no portal's),
// a message the user deleted while it waited for the network went out
// all the same, and the deletion of one that went never reached it. A
// room the bridge cleaned up is no move (movedPortal).
func (m *Manager) oldRoomPortal(ctx context.Context, evt *event.Event) (*database.Portal, error) {
	if evt.Type != event.EventRedaction {
		return nil, nil
	}
	key, found, err := m.db.BridgedIn(ctx, redactedEvent(evt), evt.RoomID)
	if err != nil || !found {
		return nil, err
	}
	return m.movedPortal(ctx, key, evt.RoomID)
}

// commandPortal finds the portal a command of the user's belongs to: the
// portal of its room, or, when the user upgraded that room while the
// command waited for the network (followUpgrade), the portal of its chat,
// now in the new room (moved is then true). A command still queued at an
// upgrade goes out after the portal moved on, and what its result means
// (which network message the user's event became, say) must still be
// stored, or the user's edits and deletions of it never reach the network.
// It is nil when the room is no portal's for another reason: the bridge
// cleaned the room up (cleanup.go), which is no move even if the chat was
// opened again in a room of its own since.
func (m *Manager) commandPortal(ctx context.Context, pc *database.PendingCommand) (p *database.Portal, moved bool, err error) {
	p, err = m.db.Portal.GetByRoom(ctx, pc.RoomID)
	if err != nil {
		return nil, false, fmt.Errorf("look up the command's portal: %w", err)
	}
	if p != nil {
		if p.PortalKey != pc.PortalKey {
			return nil, false, nil
		}
		return p, false, nil
	}
	p, err = m.movedPortal(ctx, pc.PortalKey, pc.RoomID)
	return p, p != nil, err
}

// movedPortal returns the chat key's portal when it moved away from old,
// a room that is no portal's now, because the user upgraded it
// (followUpgrade), or nil: a room the bridge cleaned up (cleanup.go) is no
// move even if the chat was opened again in a room of its own since.
func (m *Manager) movedPortal(ctx context.Context, key database.PortalKey, old id.RoomID) (*database.Portal, error) {
	p, err := m.db.Portal.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("look up the command's chat: %w", err)
	}
	if p == nil || p.RoomID == "" || p.RoomID == old {
		return nil, nil
	}
	login, err := m.db.Login.Get(ctx, key.LoginID)
	if err != nil {
		return nil, fmt.Errorf("load the command's login: %w", err)
	}
	if login == nil {
		return nil, nil
	}
	if cleaned, err := m.db.Cleaned.Get(ctx, login.MatrixUser, old); err != nil {
		return nil, fmt.Errorf("look up the command's room among the cleaned up: %w", err)
	} else if cleaned != nil {
		return nil, nil
	}
	return p, nil
}

// sameChatRoom reports whether an event of the user's in room from is of
// the chat key now in room: from is room, or the room the user upgraded
// to room while the event waited for the network (commandPortal). The
// user's relation (edit, reply, reaction, deletion) of a message still
// queued in the old room is sent from the new one, the old one no longer
// taking their messages, and must still find it. The user may have
// upgraded the room again since (A to B to C, the message queued in A and
// the relation in B): room is then one the chat moved away from as well.
func (m *Manager) sameChatRoom(ctx context.Context, key database.PortalKey, from, room id.RoomID) (bool, error) {
	if from == room {
		return true, nil
	}
	p, err := m.movedFrom(ctx, key, from)
	if err != nil || p == nil {
		return false, err
	}
	if p.RoomID == room {
		return true, nil
	}
	q, err := m.movedFrom(ctx, key, room)
	return q != nil, err
}

// movedFrom is the chat key's portal when room is no portal's room and the
// chat moved away from it (movedPortal), or nil.
func (m *Manager) movedFrom(ctx context.Context, key database.PortalKey, room id.RoomID) (*database.Portal, error) {
	if p, err := m.db.Portal.GetByRoom(ctx, room); err != nil {
		return nil, fmt.Errorf("look up the event's portal: %w", err)
	} else if p != nil {
		return nil, nil
	}
	return m.movedPortal(ctx, key, room)
}

// movedFromRooms lists the rooms with commands of p's chat still queued
// that the chat moved away from (movedPortal): the user upgraded the DM
// while they waited. A room the bridge cleaned up before is not one.
func (m *Manager) movedFromRooms(ctx context.Context, login *database.Login, p *database.Portal) ([]id.RoomID, error) {
	cmds, err := m.db.PendingCm.ByConnector(ctx, login.ConnectorID)
	if err != nil {
		return nil, fmt.Errorf("load the chat's queued commands: %w", err)
	}
	var rooms []id.RoomID
	seen := map[id.RoomID]bool{p.RoomID: true}
	for _, c := range cmds {
		if c.PortalKey != p.PortalKey || seen[c.RoomID] {
			continue
		}
		seen[c.RoomID] = true
		if q, err := m.movedPortal(ctx, p.PortalKey, c.RoomID); err != nil {
			return nil, err
		} else if q != nil {
			rooms = append(rooms, c.RoomID)
		}
	}
	return rooms, nil
}

// flushMovedRoom flushes the queues of the rooms the portal of pc's room
// moved through, if it did: relations the user queued there behind pc, a
// send from before the upgrade (resolveTarget), go now that it went (or
// fail now that it failed). Nothing else would flush them: those rooms'
// queues stopped at them, waiting.
func (m *Manager) flushMovedRoom(ctx context.Context, pc *database.PendingCommand) {
	if pc.Op != connector.OpSendMessage {
		return
	}
	p, moved, err := m.commandPortal(ctx, pc)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Str("txn", pc.Txn).Msg("Could not find the command's portal; its relations wait for the next flush")
		return
	}
	if moved {
		m.flushMovedRooms(ctx, pc, p.RoomID)
	}
}

// flushMovedRooms flushes the room the chat of pc moved to, and every other
// room of the chat with commands still queued: one the user upgraded again
// (A to B to C) holds relations that waited there for pc.
func (m *Manager) flushMovedRooms(ctx context.Context, pc *database.PendingCommand, movedTo id.RoomID) {
	m.submitFlush(movedTo)
	cmds, err := m.db.PendingCm.ByConnector(ctx, pc.ConnectorID)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Str("txn", pc.Txn).Msg("Could not load the chat's queued commands; its relations wait for the next flush")
		return
	}
	seen := map[id.RoomID]bool{pc.RoomID: true, movedTo: true}
	for _, c := range cmds {
		if c.PortalKey == pc.PortalKey && !seen[c.RoomID] {
			seen[c.RoomID] = true
			m.submitFlush(c.RoomID)
		}
	}
}

// noticeCommand tells the user about a command of theirs (one that did not
// go, or failed): as a reply to their event in its room. A command still
// queued when the user upgraded the room is flushed after the portal moved
// on (commandPortal), and then the notice goes to the upgraded room, where
// the user now is, with a link to the event, since a reply cannot quote an
// event of another room. A room the bridge cleaned up is not such a move:
// its commands were failed (with their notices) in it before its farewell
// (failQueued).
func (m *Manager) noticeCommand(ctx context.Context, pc *database.PendingCommand, text, txn string) {
	log := zerolog.Ctx(ctx).With().Str("txn", pc.Txn).Stringer("old_room_id", pc.RoomID).Logger()
	p, moved, err := m.commandPortal(ctx, pc)
	switch {
	case err != nil:
		log.Err(err).Msg("Could not find the command's portal; the user is not told")
	case p == nil || p.RoomID == "":
		log.Debug().Msg("The command's room is no portal's now (cleaned up, where the user was told); nothing more")
	case !moved:
		m.noticeAbout(ctx, p, id.EventID(pc.Txn), isDeletionOp(pc.Op), text, txn)
	default:
		text += fmt.Sprintf(" (This was in the room before its upgrade: %s)", pc.RoomID.EventURI(id.EventID(pc.Txn)).MatrixToURL())
		m.notice(ctx, p, text, txn)
	}
}

package portal

import (
	"context"
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

// ghostInvited turns a DM the user created with a ghost into that contact's
// portal, the way any Matrix client starts a DM. Every refusal is a notice
// from the ghost followed by the ghost leaving, except for users the bridge
// does not serve: their invite is declined without a word in the room and
// without any state written. A nil return means the invite was dealt with.
func (m *Manager) ghostInvited(ctx context.Context, evt *event.Event, contactID string) error {
	user := evt.Sender
	log := zerolog.Ctx(ctx).With().Stringer("inviter", user).Str("contact_id", contactID).Logger()
	ctx = log.WithContext(ctx)
	intent := m.ghosts.Intent(contactID)
	if m.cfg.PermissionLevel(user) < config.LevelUser {
		log.Warn().Msg("Declining a ghost invite from a user the bridge does not serve")
		if err := registerToAnswer(ctx, intent); err != nil {
			return fmt.Errorf("register ghost to decline the invite: %w", err)
		}
		if err := declineInvite(ctx, intent, evt.RoomID, "You are not allowed to use this bridge."); err != nil {
			log.Warn().Err(err).Msg("Failed to decline invite")
		}
		return nil
	}
	if p, err := m.db.Portal.GetByRoom(ctx, evt.RoomID); err != nil {
		return fmt.Errorf("look up portal of %s: %w", evt.RoomID, err)
	} else if p != nil {
		return m.invitedIntoPortal(ctx, evt, p, contactID)
	}
	// An upgrade's client invites the DM's members with a plain invite
	// (Element does), not as a direct chat: asked before that check.
	if old, login, notUpgrade, err := m.upgradedPortal(ctx, intent, user, contactID, evt.RoomID); err != nil {
		return err
	} else if notUpgrade {
		// Refused without joining, in the invite's answer: the room is
		// not the portal's to follow, and may be anyone's.
		reason := fmt.Sprintf("This room is not an upgrade of your chat with %s (it was not created as its successor); "+
			"that chat goes on in %s.", m.contactName(ctx, old.ContactID), old.RoomID.URI().MatrixToURL())
		if err := declineInvite(ctx, intent, evt.RoomID, reason); err != nil {
			return fmt.Errorf("decline an invite into a room that is not the portal's upgrade: %w", err)
		}
		return nil
	} else if old != nil {
		if joined, err := m.joinWithDevice(ctx, intent, evt.RoomID); err != nil || !joined {
			return err
		}
		return m.adoptRoom(ctx, evt, intent, &resolved{login: login,
			chat: &connector.Chat{ID: old.ChatID, Type: connector.ChatTypeDM, With: old.ContactID}})
	}
	if !evt.Content.AsMember().IsDirect {
		return m.refuseInvite(ctx, evt, intent, "I can only be in direct chats: this bridge bridges one-to-one conversations. "+
			"Start a direct chat with me instead (your client's “Start chat”).")
	}
	// The contact is looked up while the ghost is still only invited, so
	// that the ghost joins already named and pictured as the contact: its
	// join is the first member event the user sees, and a join under the
	// bare id followed by a rename would show in the room as two events.
	// Only a contact the user's login resolves gets its profile (and so its
	// ghost row) here. This lookup does not create the chat on the network
	// (on XMPP that asks the contact for a subscription): a room that is
	// refused below must change nothing there; the chat is created once the
	// room passed every check.
	logins, loginErr := m.userLogins(ctx, user, "")
	// A user without a login the bridge may use is told so below, once
	// the ghost joined; only a failure of the bridge itself is retried.
	if loginErr != nil && !errors.Is(loginErr, ErrNoLogin) && !errors.Is(loginErr, ErrLoginUnavailable) && !errors.Is(loginErr, ErrLoggedOut) {
		return loginErr
	}
	if loginErr == nil {
		if r, err := m.resolveContact(ctx, logins, contactID, false); err == nil && contactOfChat(r.chat) == contactID {
			if ok, perr := m.mayChangeContact(ctx, r.login.ConnectorID, contactID); perr != nil {
				log.Warn().Err(perr).Msg("Could not check who may describe the contact; leaving its profile")
			} else if !ok {
				log.Warn().Msg("Profile of a contact that only other connectors' users have chats with, not applying it")
			} else if _, perr := m.ghosts.UpdateProfile(ctx, r.contact); perr != nil {
				log.Warn().Err(perr).Msg("Failed to apply the contact's profile")
			}
		}
	}
	// The ghost joins before any refusal, so that it can explain it, and
	// before reading who else is in the room. A name that is not the
	// user's contact is registered only to answer: it is recorded as a
	// ghost (ghost row) only when the room becomes its portal, in
	// adoptRoom, because anyone may invite any name in the ghost namespace
	// and a refused invite must leave nothing behind in the bridge.
	if err := registerToAnswer(ctx, intent); err != nil {
		return fmt.Errorf("register ghost to answer the invite: %w", err)
	}
	if joined, err := m.joinWithDevice(ctx, intent, evt.RoomID); err != nil || !joined {
		return err
	}
	if others, err := matrix.OtherMembers(ctx, intent, evt.RoomID, user); err != nil {
		return err
	} else if len(others) > 0 {
		return m.refuseJoined(ctx, evt, intent, fmt.Sprintf("This room already has other members (%s). "+
			"This bridge bridges one-to-one conversations only: start a direct chat with just me.", joinUsers(others)))
	}
	if loginErr != nil {
		return m.refuseJoined(ctx, evt, intent, fmt.Sprintf("I cannot reach %s for you: %s.", contactID, UserMessage(loginErr)))
	}
	r, resolveErr := m.resolveContact(ctx, logins, contactID, true)
	if resolveErr != nil {
		return m.refuseJoined(ctx, evt, intent, fmt.Sprintf("I could not start a chat with %s: %s.", contactID, UserMessage(resolveErr)))
	}
	if got := contactOfChat(r.chat); got != contactID {
		return m.refuseJoined(ctx, evt, intent, fmt.Sprintf("%s is known on the network as %s. Start a direct chat with %s instead.",
			contactID, got, m.ghosts.MXID(got).URI().MatrixToURL()))
	}
	return m.adoptRoom(ctx, evt, intent, r)
}

// adoptRoom makes the invited room the chat's portal, unless the chat has one.
func (m *Manager) adoptRoom(ctx context.Context, evt *event.Event, ghost matrix.API, r *resolved) error {
	key := database.PortalKey{LoginID: r.login.ID, ChatID: r.chat.ID}
	log := zerolog.Ctx(ctx).With().Str("login_id", key.LoginID).Str("chat_id", key.ChatID).Logger()
	ctx = log.WithContext(ctx)
	unlock := m.chats.Lock(key)
	defer unlock()
	// The login may have been logged out while the network answered.
	p, err := m.claimForUser(ctx, key, contactOfChat(r.chat))
	if errors.Is(err, ErrLoggedOut) {
		return m.refuseJoined(ctx, evt, ghost, fmt.Sprintf("I cannot reach %s for you: %s.", contactOfChat(r.chat), UserMessage(err)))
	} else if err != nil {
		return fmt.Errorf("load portal: %w", err)
	}
	if p.RoomID != "" && p.RoomID != evt.RoomID && m.upgradedFrom(ctx, ghost, evt.RoomID, p.RoomID) {
		if err = m.followUpgrade(ctx, r.login, ghost, p, evt.RoomID); err != nil {
			return err
		}
	}
	if p.RoomID != "" && p.RoomID != evt.RoomID {
		if err = m.openPortal(ctx, r.login, p); err != nil {
			log.Warn().Err(err).Msg("Failed to bring the user back into the existing portal")
		}
		return m.refuseJoined(ctx, evt, ghost, fmt.Sprintf("You already have a chat with %s: %s — I am leaving this room, "+
			"please continue there.", m.contactName(ctx, p.ContactID), p.RoomID.URI().MatrixToURL()))
	}
	if p.RoomID == "" {
		if err = m.db.DoTxn(ctx, nil, func(ctx context.Context) error {
			if err := m.db.Portal.SetRoom(ctx, key, evt.RoomID); err != nil {
				return err
			}
			// The room may have been a portal once; it is one again, and the
			// m.direct repair must not remove it.
			return m.db.Cleaned.Delete(ctx, r.login.MatrixUser, evt.RoomID)
		}); err != nil {
			return fmt.Errorf("store adopted room: %w", err)
		}
		p.RoomID = evt.RoomID
		log.Info().Stringer("room_id", evt.RoomID).Msg("Room the user started is now the portal")
	}
	m.sendBridgeInfo(ctx, ghost, r, p)
	if err = m.db.Portal.SetUserJoined(ctx, key, true); err != nil {
		return err
	}
	if !p.InDirect {
		if err = m.addToDirect(ctx, r.login.MatrixUser, ghost.UserID(), p); err != nil {
			return err
		}
	}
	// The ghost joined with the profile it had then; should the profile have
	// changed since (or failed to apply), bring its member event up to date.
	if err = m.syncMemberProfiles(ctx, p.ContactID); err != nil {
		log.Warn().Err(err).Msg("Failed to update the ghost's profile in the room")
	}
	// The conversation so far, before the user's first messages go out; the
	// next message into the chat tries again if this fails.
	if _, err = m.backfill(ctx, r.login.ConnectorID, r.login, p, nil); err != nil {
		log.Warn().Err(err).Msg("Failed to backfill the adopted room")
	}
	return m.catchUpEarlyMessages(ctx, ghost, p.RoomID, evt.ID, r.login.MatrixUser)
}

// addToDirect lists the portal under the ghost in the user's m.direct. The
// inviting client usually did so already; Apply then writes nothing.
func (m *Manager) addToDirect(ctx context.Context, user, ghost id.UserID, p *database.Portal) error {
	dp, err := m.dps.Intent(ctx, user)
	if err != nil || dp == nil {
		zerolog.Ctx(ctx).Debug().Err(err).Msg("No double puppet, m.direct is the client's business")
		return nil
	}
	change := puppet.DirectChange{Add: map[id.UserID][]id.RoomID{ghost: {p.RoomID}}}
	if _, err = m.direct.Apply(ctx, dp, change); err != nil {
		return fmt.Errorf("add portal %s to m.direct: %w", p.RoomID, err)
	}
	return m.db.Portal.SetInDirect(ctx, p.PortalKey, true)
}

// sendBridgeInfo writes the m.bridge state that ensurePortal puts into the
// rooms it creates. The user's room may not let the ghost send state; the
// room works without it, so a refusal is only logged.
func (m *Manager) sendBridgeInfo(ctx context.Context, ghost matrix.API, r *resolved, p *database.Portal) {
	stateKey := m.bridgeStateKey(r.login.ConnectorID, p.ChatID)
	info := m.bridgeInfo(r.login.ConnectorID, r.login, p, ghost.UserID())
	for _, typ := range []event.Type{event.StateBridge, event.StateHalfShotBridge} {
		if _, err := ghost.SendStateEvent(ctx, p.RoomID, typ, stateKey, info); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("type", typ.Type).Msg("Failed to set bridge info in the adopted room")
		}
	}
}

// invitedIntoPortal handles a ghost invited into a room that is already a
// portal: its own ghost comes back, any other is refused.
func (m *Manager) invitedIntoPortal(ctx context.Context, evt *event.Event, p *database.Portal, contactID string) error {
	intent := m.ghosts.Intent(contactID)
	if p.ContactID == contactID {
		_, err := m.joinInvited(ctx, intent, evt.RoomID)
		return err
	}
	return m.refuseInvite(ctx, evt, intent, fmt.Sprintf("This room is already the chat with %s; "+
		"this bridge bridges one-to-one conversations only.", m.contactName(ctx, p.ContactID)))
}

// refuseInvite joins to explain a refusal, then leaves.
func (m *Manager) refuseInvite(ctx context.Context, evt *event.Event, intent matrix.API, text string) error {
	if joined, err := m.joinInvited(ctx, intent, evt.RoomID); err != nil || !joined {
		return err
	}
	return m.refuseJoined(ctx, evt, intent, text)
}

// refuseJoined says why the ghost will not bridge the room, and leaves. The
// notice's transaction id comes from the invite, so a retry says it once.
func (m *Manager) refuseJoined(ctx context.Context, evt *event.Event, intent matrix.API, text string) error {
	log := zerolog.Ctx(ctx)
	log.Warn().Str("reason", text).Msg("Refusing ghost invite")
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: text}
	if _, err := intent.SendMessageEvent(ctx, evt.RoomID, event.EventMessage, content,
		mautrix.ReqSendEvent{TransactionID: "dmb_refuse_" + string(evt.ID)}); err != nil {
		log.Warn().Err(err).Msg("Failed to explain the refusal")
	}
	if _, err := intent.LeaveRoom(ctx, evt.RoomID); err != nil && !matrix.IsGone(err) {
		return fmt.Errorf("leave refused room: %w", err)
	}
	// Joining an encrypted room started the ghost device's loop.
	m.releaseGhostDevice(ctx, intent.UserID())
	_ = m.link.StateStore.SetMembership(ctx, evt.RoomID, intent.UserID(), event.MembershipLeave)
	return nil
}

// joinInvited accepts the invite. It reports false when the invite is gone
// (withdrawn, or already answered before a restart): there is nobody to talk to.
func (m *Manager) joinInvited(ctx context.Context, intent matrix.API, roomID id.RoomID) (bool, error) {
	// A ghost invited in a createRoom call was never queried, so it may not
	// exist on the homeserver yet.
	if err := registerToAnswer(ctx, intent); err != nil {
		return false, fmt.Errorf("register %s: %w", intent.UserID(), err)
	}
	if _, err := intent.JoinRoomByID(ctx, roomID); err != nil {
		if matrix.IsGone(err) {
			zerolog.Ctx(ctx).Info().Err(err).Msg("Invite is gone, nothing to do")
			return false, nil
		}
		return false, fmt.Errorf("join %s as %s: %w", roomID, intent.UserID(), err)
	}
	_ = m.link.StateStore.SetMembership(ctx, roomID, intent.UserID(), event.MembershipJoin)
	return true, nil
}

// joinWithDevice is joinInvited for a ghost that may stay in the room: it
// gets its device before it joins (ghostBeforeJoin), and once it is in, the
// room's encryption is read (ghostJoined); if that fails, the invite is
// handled again (the join is then a no-op). A ghost that joins only to
// refuse needs neither.
func (m *Manager) joinWithDevice(ctx context.Context, intent matrix.API, roomID id.RoomID) (bool, error) {
	m.ghostBeforeJoin(ctx, intent.UserID())
	if joined, err := m.joinInvited(ctx, intent, roomID); err != nil || !joined {
		return false, err
	}
	if err := m.ghostJoined(ctx, intent, roomID); err != nil {
		return false, err
	}
	return true, nil
}

func joinUsers(users []id.UserID) string {
	out := ""
	for i, u := range users {
		if i > 0 {
			out += ", "
		}
		out += string(u)
	}
	return out
}

// contactName is what the user knows the contact as.
func (m *Manager) contactName(ctx context.Context, contactID string) string {
	if ghost, err := m.db.Ghost.Get(ctx, contactID); err == nil && ghost != nil && ghost.Name != "" {
		return m.cfg.GhostDisplayname(ghost.Name, contactID)
	}
	return contactID
}

// declineInvite rejects an invite with a reason the inviter sees. It writes
// the member event itself because Dendrite drops the reason given to /leave.
func declineInvite(ctx context.Context, intent matrix.API, roomID id.RoomID, reason string) error {
	_, err := intent.SendStateEvent(ctx, roomID, event.StateMember, string(intent.UserID()),
		&event.MemberEventContent{Membership: event.MembershipLeave, Reason: reason})
	return err
}

// registerToAnswer makes sure the ghost exists on the homeserver so that it
// can answer an invite, without recording it in the bridge's database (the
// ghost table, or the state store's registrations as intent.EnsureRegistered
// would): a ghost becomes the bridge's business once its room is a portal.
// It costs one request per invite, and invites are rare.
func registerToAnswer(ctx context.Context, intent matrix.API) error {
	if err := intent.Register(ctx); err != nil && !errors.Is(err, mautrix.MUserInUse) {
		return err
	}
	return nil
}

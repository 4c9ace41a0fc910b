package bot

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/matrix"
)

func (b *Bot) membership(ctx context.Context, evt *event.Event) error {
	target := id.UserID(evt.GetStateKey())
	switch evt.Content.AsMember().Membership {
	case event.MembershipInvite:
		if target == b.link.BotMXID() {
			return b.invited(ctx, evt)
		}
	case event.MembershipLeave, event.MembershipBan:
		if target == b.link.BotMXID() {
			// Kicked or banned, by the room's user or by anyone they made
			// a moderator: the room is nobody's management room any more.
			// (Clearing the sender's record alone left the user's alerts
			// going to a room the bot is not in.)
			return b.forgetManagementRoom(ctx, evt.RoomID)
		}
		return b.memberLeft(ctx, evt.RoomID, target)
	}
	return nil
}

// invited accepts an invite from a user the bridge serves into a room where
// that user and the bot are alone, which makes it the user's management
// room. Anyone else's invite is declined without writing anything.
func (b *Bot) invited(ctx context.Context, evt *event.Event) error {
	log := zerolog.Ctx(ctx)
	bot := b.intent
	if b.cfg.PermissionLevel(evt.Sender) < config.LevelUser {
		log.Info().Msg("Declining bot invite from a user the bridge does not serve")
		// A member event rather than /leave: Dendrite drops the reason of /leave.
		_, err := bot.SendStateEvent(ctx, evt.RoomID, event.StateMember, string(bot.UserID()),
			&event.MemberEventContent{Membership: event.MembershipLeave, Reason: "You are not allowed to use this bridge."})
		if err != nil {
			log.Warn().Err(err).Msg("Failed to decline invite")
		}
		return nil
	}
	if _, err := bot.JoinRoomByID(ctx, evt.RoomID); err != nil {
		if matrix.IsGone(err) {
			log.Info().Err(err).Msg("Bot invite is gone")
			return nil
		}
		return fmt.Errorf("join %s: %w", evt.RoomID, err)
	}
	_ = b.link.StateStore.SetMembership(ctx, evt.RoomID, bot.UserID(), event.MembershipJoin)
	others, err := matrix.OtherMembers(ctx, b.intent, evt.RoomID, evt.Sender)
	if err != nil {
		return err
	}
	if len(others) > 0 {
		b.reply(ctx, evt.RoomID, evt.ID, "I only answer in a room where just you and I are members. "+
			"Start a direct chat with me to manage the bridge.")
		if _, err = bot.LeaveRoom(ctx, evt.RoomID); err != nil && !matrix.IsGone(err) {
			return fmt.Errorf("leave %s: %w", evt.RoomID, err)
		}
		_ = b.link.StateStore.SetMembership(ctx, evt.RoomID, bot.UserID(), event.MembershipLeave)
		return nil
	}
	if err = b.db.User.SetManagementRoom(ctx, evt.Sender, evt.RoomID); err != nil {
		return fmt.Errorf("store management room: %w", err)
	}
	log.Info().Msg("Joined a management room")
	b.reply(ctx, evt.RoomID, evt.ID, "Hello! I am the bridge bot. "+b.helpText(evt.Sender))
	b.catchUp(ctx, evt)
	return nil
}

// catchUp answers the commands the user wrote before the bot joined (see
// matrix.EarlyEvents): clients create a DM with its first message, which
// the homeserver does not show the bridge while the bot is only invited.
// Its failure is only logged: the welcome is out, and the user can write
// again.
func (b *Bot) catchUp(ctx context.Context, invite *event.Event) {
	log := zerolog.Ctx(ctx)
	early, err := matrix.EarlyEvents(ctx, b.intent, invite.RoomID, invite.ID, invite.Sender, event.EventMessage, event.EventEncrypted)
	if err != nil {
		log.Warn().Err(err).Msg("Failed to read what the user wrote before the bot joined")
		return
	}
	for _, raw := range early {
		var evt event.Event
		if err := json.Unmarshal(raw, &evt); err != nil || evt.Content.ParseRaw(evt.Type) != nil {
			continue
		}
		if err := b.message(ctx, &evt); err != nil {
			log.Warn().Err(err).Stringer("event_id", evt.ID).Msg("Failed to answer a message written before the bot joined")
		}
	}
}

// memberLeft forgets the room as the management room of the user who left
// it, and has the bot leave a room it would be alone in, so that no room
// holds only the bot.
func (b *Bot) memberLeft(ctx context.Context, roomID id.RoomID, user id.UserID) error {
	// Whoever stays: the user's login alerts would otherwise go on to the
	// others in the room (someone they invited), and never to them.
	if err := b.forgetRoom(ctx, user, roomID); err != nil {
		return fmt.Errorf("forget the management room of %s: %w", user, err)
	}
	if !b.inRoom(ctx, roomID) {
		return nil
	}
	resp, err := b.intent.JoinedMembers(ctx, roomID)
	if err != nil {
		return fmt.Errorf("list members of %s: %w", roomID, err)
	}
	for member := range resp.Joined {
		if member != b.link.BotMXID() {
			return nil
		}
	}
	if _, err = b.intent.LeaveRoom(ctx, roomID); err != nil && !matrix.IsGone(err) {
		return fmt.Errorf("leave %s: %w", roomID, err)
	}
	_ = b.link.StateStore.SetMembership(ctx, roomID, b.link.BotMXID(), event.MembershipLeave)
	// The bot's own leave does not come back to it (the bridge's own
	// events are skipped), so the room is forgotten here for anyone else
	// who had it.
	return b.forgetManagementRoom(ctx, roomID)
}

// forgetManagementRoom forgets roomID as the management room of every user
// who has it, once the bot is out of it.
func (b *Bot) forgetManagementRoom(ctx context.Context, roomID id.RoomID) error {
	if err := b.db.User.ClearManagementRoom(ctx, roomID); err != nil {
		return fmt.Errorf("forget management room %s: %w", roomID, err)
	}
	zerolog.Ctx(ctx).Info().Msg("The bot is out of the room; it is nobody's management room now")
	return nil
}

// forgetRoom drops the user's management room record when it names roomID.
func (b *Bot) forgetRoom(ctx context.Context, user id.UserID, roomID id.RoomID) error {
	u, err := b.db.User.Get(ctx, user)
	if err != nil || u == nil || u.ManagementRoom != roomID {
		return err
	}
	zerolog.Ctx(ctx).Info().Msg("Management room gone")
	return b.db.User.SetManagementRoom(ctx, user, "")
}

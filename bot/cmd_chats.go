package bot

import (
	"context"
	"fmt"
	"strings"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/portal"
)

// cmdStartChat opens the DM with a contact: the existing portal, or a new
// one made the same way as for an incoming first message.
func (b *Bot) cmdStartChat(ctx context.Context, req *request) error {
	identifier, loginID, ok := startChatArgs(req.args)
	if !ok {
		b.reply(ctx, req.roomID, req.eventID, "Usage: `start-chat <identifier> [--login <login>]`")
		return nil
	}
	started, err := b.portals.StartChat(ctx, req.user, loginID, identifier)
	if err != nil {
		b.reply(ctx, req.roomID, req.eventID, fmt.Sprintf("I could not start a chat with %s: %s.", escape(identifier), escape(portal.UserMessage(err))))
		return nil
	}
	name := config.TruncateName(started.Contact.Name)
	if name == "" {
		name = started.Contact.ID
	}
	verb := "Started a new chat"
	if !started.Created {
		verb = "You already have a chat"
	}
	b.reply(ctx, req.roomID, req.eventID, fmt.Sprintf("%s with **%s** (%s): %s", verb, escape(name), escape(started.Contact.ID), roomLink(started.RoomID)))
	return nil
}

// startChatArgs takes the identifier (which may contain spaces, like a phone
// number) and an optional --login.
func startChatArgs(args []string) (identifier, loginID string, ok bool) {
	var rest []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--login" {
			if i+1 >= len(args) {
				return "", "", false
			}
			loginID = args[i+1]
			i++
			continue
		}
		rest = append(rest, args[i])
	}
	identifier = strings.Join(rest, " ")
	return identifier, loginID, identifier != ""
}

// cmdList lists the user's portals with links.
func (b *Bot) cmdList(ctx context.Context, req *request) error {
	portals, err := b.db.Portal.ByUser(ctx, req.user)
	if err != nil {
		return fmt.Errorf("list portals: %w", err)
	}
	var lines []string
	for _, p := range portals {
		if p.RoomID == "" {
			continue
		}
		name := p.ContactID
		if ghost, err := b.db.Ghost.Get(ctx, p.ContactID); err == nil && ghost != nil && ghost.Name != "" {
			name = config.TruncateName(ghost.Name)
		}
		lines = append(lines, fmt.Sprintf("* **%s** (%s): %s", escape(name), escape(p.ContactID), roomLink(p.RoomID)))
	}
	if len(lines) == 0 {
		b.reply(ctx, req.roomID, req.eventID, "You have no bridged chats yet. Use `start-chat <identifier>`, or start a direct chat with a contact's ghost.")
		return nil
	}
	// In parts: a few hundred chats are more than one event may hold.
	b.replyList(ctx, req.roomID, req.eventID, "Your chats:\n\n", lines)
	return nil
}

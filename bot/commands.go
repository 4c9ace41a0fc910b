package bot

import (
	"context"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/matrix"
)

// command is one thing the bot can be asked to do.
type command struct {
	name  string
	args  string
	help  string
	level config.Level
	run   func(ctx context.Context, req *request) error
}

// request is one command message, with who sent it and where to answer.
type request struct {
	user   id.UserID
	level  config.Level
	roomID id.RoomID
	// eventID is the command's event, which names the answer (see reply).
	eventID id.EventID
	args    []string
}

func (b *Bot) commandTable() []*command {
	return []*command{
		{name: "help", help: "Show this help.", level: config.LevelUser, run: b.cmdHelp},
		{name: "ping", help: "Show whether the network connector and your logins are up.", level: config.LevelUser, run: b.cmdPing},
		{name: "list", help: "List your direct chats with links to their rooms.", level: config.LevelUser, run: b.cmdList},
		{name: "start-chat", args: "<identifier> [--login <login>]", level: config.LevelUser, run: b.cmdStartChat,
			help: "Open the direct chat with a contact (an address, a number: whatever the network uses), creating it if needed."},
		{name: "logins", help: "List every login on the bridge.", level: config.LevelAdmin, run: b.cmdLogins},
	}
}

// message runs a command from a management room, and answers an encrypted
// message there with why it cannot be read. Messages elsewhere, and
// anything but plain text (notices from other bots, edits), are ignored.
func (b *Bot) message(ctx context.Context, evt *event.Event) error {
	var content *event.MessageEventContent
	if evt.Type == event.EventMessage {
		content = evt.Content.AsMessage()
		if content == nil || content.MsgType != event.MsgText || content.RelatesTo.GetReplaceID() != "" {
			return nil
		}
	}
	if !b.inRoom(ctx, evt.RoomID) {
		return nil
	}
	if others, err := matrix.OtherMembers(ctx, b.intent, evt.RoomID, evt.Sender); err != nil {
		return err
	} else if len(others) > 0 {
		zerolog.Ctx(ctx).Debug().Msg("Ignoring message in a room that is not a management room")
		return nil
	}
	level := b.cfg.PermissionLevel(evt.Sender)
	if level < config.LevelUser {
		zerolog.Ctx(ctx).Info().Msg("Refusing command from a user the bridge does not serve")
		b.reply(ctx, evt.RoomID, evt.ID, "You are not allowed to use this bridge.")
		return nil
	}
	if content == nil {
		// Encrypted: the bot has no device and cannot read it. Many
		// clients encrypt a new DM by default, and without an answer the
		// user would see a bridge that does not react.
		zerolog.Ctx(ctx).Info().Msg("Encrypted message in a management room; telling the user it cannot be read")
		b.reply(ctx, evt.RoomID, evt.ID, "I cannot read encrypted messages, and this room is "+
			"encrypted (a room's encryption cannot be turned off). Please start a new chat with me without encryption "+
			"(in Element: turn off “Enable end-to-end encryption” when you create it) and send your command there.")
		return nil
	}
	name, args := parseCommand(content.Body)
	req := &request{user: evt.Sender, level: level, roomID: evt.RoomID, eventID: evt.ID, args: args}
	cmd := b.find(name)
	switch {
	case cmd == nil:
		b.reply(ctx, evt.RoomID, evt.ID, fmt.Sprintf("Unknown command “%s”. %s", escape(name), b.helpText(evt.Sender)))
		return nil
	case level < cmd.level:
		b.reply(ctx, evt.RoomID, evt.ID, fmt.Sprintf("`%s` is for bridge admins.", cmd.name))
		return nil
	}
	zerolog.Ctx(ctx).Info().Str("command", cmd.name).Msg("Running command")
	return cmd.run(ctx, req)
}

// parseCommand splits a message into a lower-cased command and its
// arguments. A leading "!" is accepted, out of habit from other bridges.
func parseCommand(body string) (string, []string) {
	fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(body), "!"))
	if len(fields) == 0 {
		return "", nil
	}
	return strings.ToLower(fields[0]), fields[1:]
}

func (b *Bot) find(name string) *command {
	for _, c := range b.commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (b *Bot) cmdHelp(ctx context.Context, req *request) error {
	b.reply(ctx, req.roomID, req.eventID, b.helpText(req.user))
	return nil
}

// helpText lists the commands the user may run.
func (b *Bot) helpText(user id.UserID) string {
	level := b.cfg.PermissionLevel(user)
	var sb strings.Builder
	sb.WriteString("Send me one of these commands:\n\n")
	for _, c := range b.commands {
		if level < c.level {
			continue
		}
		sb.WriteString("* `" + c.name)
		if c.args != "" {
			sb.WriteString(" " + c.args)
		}
		sb.WriteString("` — " + c.help + "\n")
	}
	sb.WriteString("\nTo chat with someone you can also just start a direct chat with their ghost user, as with anyone on Matrix: " +
		"the Matrix user that stands for them here, such as `" + string(b.cfg.GhostUserID("bob@example.org")) +
		"` for bob@example.org.")
	return sb.String()
}

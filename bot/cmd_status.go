package bot

import (
	"context"
	"fmt"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/portal"
)

// cmdPing reports the user's logins and whether their connectors are up.
func (b *Bot) cmdPing(ctx context.Context, req *request) error {
	logins, err := b.db.Login.ByUser(ctx, req.user)
	if err != nil {
		return fmt.Errorf("list logins: %w", err)
	}
	if len(logins) == 0 {
		b.reply(ctx, req.roomID, req.eventID, "The bridge is running, but it has no login of yours. "+
			"Your accounts on the other network are set up in the bridge's connector, usually by the "+
			"bridge's admin: ask them to add yours.")
		return nil
	}
	lines := make([]string, 0, len(logins))
	for _, l := range logins {
		lines = append(lines, "* "+b.describeLogin(l, false))
	}
	// In parts, as for list: one event holds a few hundred lines at most.
	b.replyList(ctx, req.roomID, req.eventID, "The bridge is running. Your logins:\n\n", lines)
	return nil
}

// cmdLogins lists every login, for admins.
func (b *Bot) cmdLogins(ctx context.Context, req *request) error {
	logins, err := b.db.Login.All(ctx)
	if err != nil {
		return fmt.Errorf("list logins: %w", err)
	}
	if len(logins) == 0 {
		b.reply(ctx, req.roomID, req.eventID, "The bridge has no logins.")
		return nil
	}
	lines := make([]string, 0, len(logins))
	for _, l := range logins {
		lines = append(lines, "* "+b.describeLogin(l, true))
	}
	// In parts: every login of the bridge may be far more than one event holds.
	b.replyList(ctx, req.roomID, req.eventID, fmt.Sprintf("%d logins:\n\n", len(logins)), lines)
	return nil
}

// describeLogin is one line about a login: who, its state as the connector
// last reported it (disconnected while its connector is), since when, when
// its last event arrived, and whether that connector is connected now.
func (b *Bot) describeLogin(l *database.Login, withOwner bool) string {
	line := escape(l.ID)
	if l.Name != "" {
		line += " (" + escape(config.TruncateName(l.Name)) + ")"
	}
	if withOwner {
		line += " of " + escape(string(l.MatrixUser))
	}
	st := b.portals.LoginStatus(l)
	state := escape(st.State)
	if !st.Since.IsZero() {
		state += " since " + portal.FormatTime(st.Since)
	}
	connection := "offline"
	if !st.ConnectorOffline {
		connection = "online"
		if hello, ok := b.conn.Hello(l.ConnectorID); ok && hello.Network.Name != "" {
			connection += ", " + escape(hello.Network.Name)
		}
		if st.NotHeld {
			// Why a login shows as disconnected while its connector is
			// up: the connector's hello no longer names it for its owner.
			connection += ", but does not hold this login any more"
		}
	}
	return fmt.Sprintf("%s: login %s; last event %s; connector %s is %s", line, state,
		portal.FormatTime(st.LastEvent), escape(l.ConnectorID), connection)
}

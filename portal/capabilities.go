package portal

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// mediaURLer is the part of the connector server that knows under which
// address a connector reached the bridge. Media URLs are stored as paths and
// completed when the command goes out, because the connector that will fetch
// them may not be connected when the user sends the file. It is asked for by
// type assertion so that other Connector implementations need not provide it.
type mediaURLer interface {
	MediaURL(connectorID, server, mediaID string) (string, bool)
}

// capabilities returns what the connector's network can carry, if the
// connector is connected (its hello is the only source).
func (m *Manager) capabilities(connectorID string) (connector.Capabilities, bool) {
	if m.conn == nil {
		return connector.Capabilities{}, false
	}
	hello, ok := m.conn.Hello(connectorID)
	if !ok {
		return connector.Capabilities{}, false
	}
	return hello.Capabilities, true
}

// prepareCommand fits a stored command to the network right before it is
// sent: what the network cannot carry at all is dropped with a notice to the
// user (false: do not send), what it can carry in a simpler form (plain text
// instead of HTML, a reply as a plain message) is simplified, and media
// paths become URLs the connector can fetch.
func (m *Manager) prepareCommand(ctx context.Context, pc *database.PendingCommand, cmd *connector.Command) bool {
	caps, ok := m.capabilities(pc.ConnectorID)
	if !ok {
		// Not connected: the send fails as retryable and waits for the connector.
		return true
	}
	if what := unsupported(caps, pc.Op, cmd); what != "" {
		zerolog.Ctx(ctx).Warn().Str("txn", pc.Txn).Str("op", pc.Op).Msg("Network cannot carry this, telling the user")
		// Told and dropped before the caller marks its event handled.
		m.dropCommand(ctx, pc, fmt.Sprintf("⚠️ %s was not delivered: %s does not support %s.",
			actionOf(pc), m.networkName(pc.ConnectorID), what), "dmb_unsupported_"+pc.Txn)
		return false
	}
	if !caps.HasFormat("html") {
		cmd.HTML = ""
	}
	if !caps.Replies {
		cmd.ReplyTo = ""
	}
	for i := range cmd.Attachments {
		cmd.Attachments[i].URL = m.absoluteMediaURL(pc.ConnectorID, cmd.Attachments[i].URL)
	}
	return true
}

// unsupported names what a command needs that the network lacks, or "".
func unsupported(caps connector.Capabilities, op string, cmd *connector.Command) string {
	switch op {
	case connector.OpSendMessage:
		if len(cmd.Attachments) > 0 && !caps.Media {
			return "files"
		}
	case connector.OpEditMessage:
		if !caps.Edit {
			return "editing messages"
		}
	case connector.OpDeleteMessage:
		if !caps.Delete {
			return "deleting messages"
		}
	case connector.OpReact, connector.OpUnreact:
		if !caps.Reactions {
			return "reactions"
		}
	}
	return ""
}

// opNoun says in plain words what the user's action was, for notices.
func opNoun(op string, cmd *connector.Command) string {
	switch op {
	case connector.OpSendMessage:
		if cmd != nil && len(cmd.Attachments) > 0 {
			return "your file"
		}
		return "your message"
	case connector.OpEditMessage:
		return "your edit"
	case connector.OpDeleteMessage:
		return "your deletion"
	case connector.OpReact:
		return "your reaction"
	case connector.OpUnreact:
		return "the removal of your reaction"
	}
	return "your " + strings.ReplaceAll(op, "_", " ")
}

// absoluteMediaURL completes a stored media path with the address under
// which the connector reached the bridge.
func (m *Manager) absoluteMediaURL(connectorID, stored string) string {
	if !strings.HasPrefix(stored, connector.MediaPathPrefix) {
		return stored
	}
	if mu, ok := m.conn.(mediaURLer); ok {
		if server, mediaID, ok := connector.ParseMediaPath(stored); ok {
			if u, ok := mu.MediaURL(connectorID, server, mediaID); ok {
				return u
			}
		}
	}
	return "http://" + m.cfg.Connector.Listen + stored
}

// actionOf is opNoun for a stored command, capitalised to open a sentence.
func actionOf(pc *database.PendingCommand) string {
	var cmd connector.Command
	if json.Unmarshal(pc.Data, &cmd) != nil {
		return "Your " + strings.ReplaceAll(pc.Op, "_", " ")
	}
	noun := opNoun(pc.Op, &cmd)
	return strings.ToUpper(noun[:1]) + noun[1:]
}

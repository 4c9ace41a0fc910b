package portal

import (
	"context"
	"strings"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
)

// remoteToMatrix converts a connector message into the Matrix events that
// show it: the text, then one event per attachment. textParts is how many
// of the first events carry the text (more than one for a long text), so
// that an edit can tell them from the attachments.
func (m *Manager) remoteToMatrix(ctx context.Context, intent matrix.API, p *database.Portal, ev *connector.Event) (contents []*event.MessageEventContent, textParts int, err error) {
	if ev.Text != "" || ev.HTML != "" {
		texts, err := m.fitText(ctx, intent, textContent(ev.Text, ev.HTML))
		if err != nil {
			return nil, 0, err
		}
		contents = append(contents, texts...)
		textParts = len(texts)
	}
	if len(ev.Attachments) > 0 {
		files, err := m.attachmentContents(ctx, intent, m.encryptsFor(ctx, intent, p.PortalKey), ev)
		if err != nil {
			return nil, 0, err
		}
		contents = append(contents, files...)
	}
	for _, c := range contents {
		// An empty m.mentions: nothing the contact writes ("@room", the
		// user's name) is a mention for push rules, which since Matrix
		// v1.7 look only at m.mentions when an event has one. The DM's
		// own one-to-one rule still notifies.
		c.Mentions = &event.Mentions{}
	}
	if ev.ReplyTo != "" && len(contents) > 0 {
		parts, err := m.db.Message.GetParts(ctx, p.PortalKey, ev.ReplyTo)
		if err != nil {
			return nil, 0, err
		}
		if target := shownPart(p, parts); target != nil {
			contents[0].RelatesTo = (&event.RelatesTo{}).SetReplyTo(target.MXID)
		} else if len(parts) > 0 && elsewhere(p, parts[0]) {
			// A message from before the upgrade (relations_elsewhere.go).
			m.quoteElsewhere(ctx, p, parts[0], contents[0], "In reply to")
		}
	}
	return contents, textParts, nil
}

// emptyBody stands in for a message of which nothing can be shown.
const emptyBody = "(a message with nothing that can be shown here)"

// textContent builds an m.text event; the plain body is derived from the
// HTML when the network sent only HTML. The HTML is the network's, so it is
// sanitised first (see sanitize.go).
func textContent(text, html string) *event.MessageEventContent {
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: text}
	if html == "" {
		return content
	}
	clean := sanitizeRemoteHTML(html)
	plain := htmlToPlain(clean)
	if strings.TrimSpace(plain) == "" && !strings.Contains(clean, "<img") {
		// Nothing visible is left (<p><img src="https://..."></p> becomes
		// <p></p>): HTML clients would show a blank message.
		clean = ""
	}
	if strings.TrimSpace(text) == "" {
		content.Body = plain
	}
	if strings.TrimSpace(content.Body) == "" {
		// Nothing readable was left (an external image, say, which the
		// sanitiser removes): an empty message would look like a glitch.
		content.Body = emptyBody
	}
	if clean != "" {
		content.Format = event.FormatHTML
		content.FormattedBody = clean
	}
	return content
}

// markAsUsers labels the user's own messages when the ghost has to post them
// because no double puppet is available.
func markAsUsers(contents []*event.MessageEventContent) {
	for _, c := range contents {
		c.Body = "You (from another device): " + c.Body
		if c.FormattedBody != "" {
			c.FormattedBody = "<em>You (from another device):</em> " + c.FormattedBody
		}
	}
}

// chatOf is the connector's name for a portal's chat.
func chatOf(p *database.Portal) *connector.Chat {
	return &connector.Chat{ID: p.ChatID, Type: connector.ChatTypeDM, With: p.ContactID}
}

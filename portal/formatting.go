package portal

import (
	"strings"

	"maunium.net/go/mautrix/event"
)

// matrixText is what the network gets for a Matrix message's text: the HTML
// as the client formatted it, and a plain text that reads well on its own
// for networks without HTML. The plain text is derived from the HTML rather
// than taken from body, so that mentions read as names and any reply
// fallback the client put in is gone from both.
func matrixText(content *event.MessageEventContent) (text, html string) {
	c := *content
	c.RemoveReplyFallback()
	if c.Format == event.FormatHTML && strings.TrimSpace(c.FormattedBody) != "" {
		return htmlToPlain(c.FormattedBody), c.FormattedBody
	}
	if c.RelatesTo.GetReplyTo() != "" {
		return event.TrimReplyFallbackText(c.Body), ""
	}
	return c.Body, ""
}

// editText is the text of a Matrix edit: m.new_content when the client sent
// one (the "* " fallback in the outer body is not what the user wrote). For
// a picture or file it is the new caption, as for the message itself
// (captionText): a client that edits the caption away sends the file name
// as body, which is no text of the user's.
func editText(content *event.MessageEventContent) (text, html string) {
	if content.NewContent != nil {
		if isMedia(content.NewContent) {
			return captionText(content.NewContent)
		}
		text, html = matrixText(content.NewContent)
		return emoteText(content.NewContent.MsgType, text, html)
	}
	text, html = matrixText(content)
	return emoteText(content.MsgType, strings.TrimPrefix(text, "* "), strings.TrimPrefix(html, "* "))
}

// emoteText spells an emote as "/me ...", as most networks (and XMPP's
// XEP-0245) do; an edit of one keeps it an emote.
func emoteText(msgType event.MessageType, text, html string) (string, string) {
	if msgType != event.MsgEmote {
		return text, html
	}
	if html != "" {
		html = "/me " + html
	}
	return "/me " + text, html
}

// captionText is the text that goes with a picture or file: its caption,
// or nothing when the body is only the file name.
func captionText(content *event.MessageEventContent) (text, html string) {
	caption := content.GetCaption()
	if caption == "" {
		return "", ""
	}
	c := *content
	c.Body = caption
	if c.FormattedBody == "" {
		c.Format = ""
	}
	return matrixText(&c)
}

package testxmpp

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
)

// The helpers below send what a modern client (Conversations, Dino, Gajim)
// sends for each feature. Message ids equal origin-ids, as those clients
// do, and archive-worthy payloads without a body carry a store hint,
// because Prosody only archives messages with a body otherwise.

const storeHint = `<store xmlns='urn:xmpp:hints'/>`

// NewID returns a random stanza id.
func NewID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// SendChat sends a chat message whose id and origin-id are id (a random
// one if empty) and returns that id.
func (c *Client) SendChat(t testing.TB, to, body, id string) string {
	t.Helper()
	if id == "" {
		id = NewID()
	}
	c.SendRaw(t, fmt.Sprintf(`<message to='%s' type='chat' id='%s'><body>%s</body>`+
		`<origin-id xmlns='urn:xmpp:sid:0' id='%s'/><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
		esc(to), esc(id), esc(body), esc(id)))
	return id
}

// Reply sends a XEP-0461 reply to the message with id target.
func (c *Client) Reply(t testing.TB, to, target, body string) string {
	t.Helper()
	id := NewID()
	c.SendRaw(t, fmt.Sprintf(`<message to='%s' type='chat' id='%s'><body>%s</body>`+
		`<origin-id xmlns='urn:xmpp:sid:0' id='%s'/><reply xmlns='urn:xmpp:reply:0' to='%s' id='%s'/></message>`,
		esc(to), id, esc(body), id, esc(to), esc(target)))
	return id
}

// Correct replaces the text of the message with id target (XEP-0308).
func (c *Client) Correct(t testing.TB, to, target, body string) string {
	t.Helper()
	id := NewID()
	c.SendRaw(t, fmt.Sprintf(`<message to='%s' type='chat' id='%s'><body>%s</body>`+
		`<origin-id xmlns='urn:xmpp:sid:0' id='%s'/><replace xmlns='urn:xmpp:message-correct:0' id='%s'/></message>`,
		esc(to), id, esc(body), id, esc(target)))
	return id
}

// Retract retracts the message with id target (XEP-0424 v1).
func (c *Client) Retract(t testing.TB, to, target string) string {
	t.Helper()
	id := NewID()
	c.SendRaw(t, fmt.Sprintf(`<message to='%s' type='chat' id='%s'><retract xmlns='urn:xmpp:message-retract:1' id='%s'/>`+
		`<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/><body>/me retracted a message</body>`+
		`<origin-id xmlns='urn:xmpp:sid:0' id='%s'/>%s</message>`,
		esc(to), id, esc(target), id, storeHint))
	return id
}

// React sets the full set of the client's reactions on target (XEP-0444);
// no emojis removes them all.
func (c *Client) React(t testing.TB, to, target string, emojis ...string) string {
	t.Helper()
	id := NewID()
	var rs strings.Builder
	for _, e := range emojis {
		rs.WriteString("<reaction>" + esc(e) + "</reaction>")
	}
	c.SendRaw(t, fmt.Sprintf(`<message to='%s' type='chat' id='%s'><reactions xmlns='urn:xmpp:reactions:0' id='%s'>%s</reactions>`+
		`<origin-id xmlns='urn:xmpp:sid:0' id='%s'/>%s</message>`,
		esc(to), id, esc(target), rs.String(), id, storeHint))
	return id
}

// ChatState sends a bare chat state (XEP-0085): active, composing,
// paused, inactive or gone.
func (c *Client) ChatState(t testing.TB, to, state string) {
	t.Helper()
	c.SendRaw(t, fmt.Sprintf(`<message to='%s' type='chat' id='%s'><%s xmlns='http://jabber.org/protocol/chatstates'/>`+
		`<no-store xmlns='urn:xmpp:hints'/></message>`, esc(to), NewID(), state))
}

// Displayed sends a XEP-0333 displayed marker for the message with id target.
func (c *Client) Displayed(t testing.TB, to, target string) {
	t.Helper()
	c.SendRaw(t, fmt.Sprintf(`<message to='%s' type='chat' id='%s'><displayed xmlns='urn:xmpp:chat-markers:0' id='%s'/>%s</message>`,
		esc(to), NewID(), esc(target), storeHint))
}

// Presence sends an available presence with the given show (""/away/xa/dnd/chat).
func (c *Client) Presence(t testing.TB, show, status string) {
	t.Helper()
	var inner string
	if show != "" {
		inner += "<show>" + esc(show) + "</show>"
	}
	if status != "" {
		inner += "<status>" + esc(status) + "</status>"
	}
	c.SendRaw(t, "<presence>"+inner+"</presence>")
}

// Subscribe asks to see to's presence (and thereby its PEP profile updates).
func (c *Client) Subscribe(t testing.TB, to string) {
	t.Helper()
	c.SendRaw(t, fmt.Sprintf(`<presence to='%s' type='subscribe'/>`, esc(to)))
}

// SetVCard stores the client's vcard-temp (XEP-0054) with a full name and
// optionally a photo. With Prosody's vcard_legacy this also publishes the
// PEP nickname/vCard4/avatar nodes that subscribed contacts are notified of.
func (c *Client) SetVCard(t testing.TB, name string, photo []byte, mimetype string) {
	t.Helper()
	var ph string
	if len(photo) > 0 {
		ph = fmt.Sprintf("<PHOTO><TYPE>%s</TYPE><BINVAL>%s</BINVAL></PHOTO>", esc(mimetype), base64.StdEncoding.EncodeToString(photo))
	}
	iq := fmt.Sprintf(`<iq type='set' id='%s'><vCard xmlns='vcard-temp'><FN>%s</FN><NICKNAME>%s</NICKNAME>%s</vCard></iq>`,
		NewID(), esc(name), esc(name), ph)
	ctx := t.Context()
	resp, err := c.sess.SendIQ(ctx, xml.NewDecoder(strings.NewReader(iq)))
	if err != nil {
		t.Fatalf("testxmpp: setting vCard: %v", err)
	}
	defer resp.Close()
	tok, err := resp.Token()
	if err != nil {
		t.Fatalf("testxmpp: reading vCard answer: %v", err)
	}
	if start, ok := tok.(xml.StartElement); ok {
		for _, a := range start.Attr {
			if a.Name.Local == "type" && a.Value != "result" {
				t.Fatalf("testxmpp: setting vCard: server answered type %q", a.Value)
			}
		}
	}
}

// SendFile sends a link to a file the way clients share uploads: the URL
// as body and as XEP-0066 out-of-band data. It returns the message id.
func (c *Client) SendFile(t testing.TB, to, url string) string {
	t.Helper()
	id := NewID()
	c.SendRaw(t, fmt.Sprintf(`<message to='%s' type='chat' id='%s'><body>%s</body>`+
		`<x xmlns='jabber:x:oob'><url>%s</url></x><origin-id xmlns='urn:xmpp:sid:0' id='%s'/></message>`,
		esc(to), id, esc(url), esc(url), id))
	return id
}

// Ping sends a ping (XEP-0199) to the client's server and waits for the
// answer. The server handles a session's stanzas in order, so once it
// answers, everything the client sent before has been routed (delivered,
// archived or stored offline).
func (c *Client) Ping(t testing.TB) {
	t.Helper()
	iq := fmt.Sprintf(`<iq type='get' id='%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>`, NewID(), esc(Domain))
	resp, err := c.sess.SendIQ(t.Context(), xml.NewDecoder(strings.NewReader(iq)))
	if err != nil {
		t.Fatalf("testxmpp: ping: %v", err)
	}
	_ = resp.Close()
}

package bridge_test

import (
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/config"
)

// TestXMPPOversizedMessageIsShownAndSkipped: with the connector's
// xmpp.max_stanza_size (210 KiB) under what Prosody relays (256 KiB), bob
// sends a message with 240 KiB of markup, then another. Alice sees, in her DM, a
// message from bob's ghost saying that a message was not bridged, then
// bob's next message, each once: the oversized message neither vanishes
// in silence nor holds up what comes after it in the server's archive.
// Then bob corrects his first message with a text under that limit but too
// large for the bridge's frame (200 KiB of '>', a 1.2 MiB event): alice sees a reply to
// that message saying a correction was not bridged, and the message keeps
// its text.
func TestXMPPOversizedMessageIsShownAndSkipped(t *testing.T) {
	x := newXMPPStackWith(t, stackOptions{mediaFetchAllow: loopbackMedia, noConnector: true,
		configure: func(c *config.Config) { c.DoublePuppet.Sync = true }})
	x.connCfg.XMPP.MaxStanzaSize = 210 << 10
	x.startConnector()
	room, first, firstXMPP := x.bobOpens("hello alice")
	ghost := x.ghostID()

	x.bob.SendRaw(t, `<message to='`+x.login+`' type='chat' id='big'><body>big</body><x xmlns='urn:example:big' a='`+
		strings.Repeat("a", 240<<10)+`'/></message>`)
	x.bobSays("after the big one")
	x.waitMessage(room, "after the big one")
	x.bob.SendBytes(t, `<message to='`+x.login+`' type='chat' id='wide-fix'><body>`+strings.Repeat(">", 200<<10)+
		`</body><replace xmlns='urn:xmpp:message-correct:0' id='`+firstXMPP+`'/></message>`)
	x.bobSays("after the wide correction")
	x.waitMessage(room, "after the wide correction")

	var bodies []string
	for _, evt := range x.messagesIn(room) {
		if evt.Sender != ghost {
			t.Errorf("message %q sent by %s, want bob's ghost %s", evt.Content.AsMessage().Body, evt.Sender, ghost)
		}
		msg := evt.Content.AsMessage()
		body := msg.Body
		switch {
		case strings.HasPrefix(body, "⚠️ A message was not bridged"):
			body = "(not bridged)"
		case strings.Contains(body, "⚠️ A correction of this message was not bridged"):
			body = "(correction not bridged)"
			if msg.RelatesTo == nil || msg.RelatesTo.GetReplyTo() != first.ID {
				t.Errorf("the correction's notice does not reply to %s: %+v", first.ID, msg.RelatesTo)
			}
		}
		bodies = append(bodies, body)
	}
	want := "hello alice|(not bridged)|after the big one|(correction not bridged)|after the wide correction"
	if got := strings.Join(bodies, "|"); got != want {
		t.Fatalf("alice's DM shows %q, want %q", got, want)
	}
}

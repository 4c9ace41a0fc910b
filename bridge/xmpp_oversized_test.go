package bridge_test

import (
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/config"
)

// TestXMPPOversizedMessageIsShownAndSkipped: with the connector's
// xmpp.max_stanza_size (64 KiB) under what Prosody relays, bob sends a
// message with 100 KiB of markup, then another. Alice sees, in her DM, a
// message from bob's ghost saying that a message was not bridged, then
// bob's next message, each once: the oversized message neither vanishes
// in silence nor holds up what comes after it in the server's archive.
func TestXMPPOversizedMessageIsShownAndSkipped(t *testing.T) {
	x := newXMPPStackWith(t, stackOptions{mediaFetchAllow: loopbackMedia, noConnector: true,
		configure: func(c *config.Config) { c.DoublePuppet.Sync = true }})
	x.connCfg.XMPP.MaxStanzaSize = 64 << 10
	x.startConnector()
	room, _, _ := x.bobOpens("hello alice")
	ghost := x.ghostID()

	x.bob.SendRaw(t, `<message to='`+x.login+`' type='chat' id='big'><body>big</body><x xmlns='urn:example:big' a='`+
		strings.Repeat("a", 100<<10)+`'/></message>`)
	x.bobSays("after the big one")
	x.waitMessage(room, "after the big one")

	var bodies []string
	for _, evt := range x.messagesIn(room) {
		if evt.Sender != ghost {
			t.Errorf("message %q sent by %s, want bob's ghost %s", evt.Content.AsMessage().Body, evt.Sender, ghost)
		}
		body := evt.Content.AsMessage().Body
		if strings.HasPrefix(body, "⚠️ A message was not bridged") {
			body = "(not bridged)"
		}
		bodies = append(bodies, body)
	}
	want := "hello alice|(not bridged)|after the big one"
	if got := strings.Join(bodies, "|"); got != want {
		t.Fatalf("alice's DM shows %q, want %q", got, want)
	}
}

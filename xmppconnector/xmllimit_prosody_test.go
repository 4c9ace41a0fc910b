package xmppconnector

import (
	"strings"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// On real Prosody: a contact's message with more markup than
// xmpp.max_stanza_size (a 100 KiB attribute, under Prosody's own 256 KiB
// limit, against a 64 KiB max_stanza_size) ends the connection, and stays
// in the archive, so every catch-up after a reconnect ends it again.
// Each connection that ends so is followed by a longer wait, as failed
// logins are: before, a successful login reset the wait, and the
// connector logged in again about ten times a second (101 logins in 10 s
// with the tests' 100 ms minimum), for as long as the message was in the
// archive.
func TestOversizedStanzaInArchiveBacksOff(t *testing.T) {
	t.Parallel()
	e, bob := startConfiguredWithBob(t, func(e *env) { e.cfg.XMPP.MaxStanzaSize = minMaxStanza })
	bob.SendRaw(t, `<message to='`+e.alice+`' type='chat' id='big'><body>big</body><x xmlns='urn:example:big' a='`+
		strings.Repeat("a", 100<<10)+`'/></message>`)
	time.Sleep(5 * time.Second)
	logins := len(e.bridge.matching(isLogin(connector.LoginConnected)))
	t.Logf("%d logins in 5 s", logins)
	// 100 ms doubling to the 1 s maximum: 100+200+400+800+1000+1000+...,
	// with jitter halving each wait at most: 10 logins, 13 at the most.
	if logins > 20 {
		t.Fatalf("%d logins in 5 s: the connector does not back off from a stanza over its limit", logins)
	}
	if logins < 2 {
		t.Fatalf("%d logins: the oversized stanza did not end the connection", logins)
	}
	// Messages under the limit still arrive between the reconnects.
	bob.SendChat(t, e.alice, "small", "")
	e.bridge.waitEvent(t, "the message after the oversized one", isMessage("small"))
}

// Prosody counts a stanza against its limit as the client sent it, but
// relays it as it serializes it, escaping every quote in an attribute
// value (' becomes &apos;, six bytes): bob's 200 KiB attribute of quotes,
// under Prosody's 256 KiB, reaches alice as 1.2 MiB of markup. It must
// not end her connection at the default xmpp.max_stanza_size: it would
// again at every catch-up, while the message is in the archive.
func TestEscapedAttributeUnderServerLimitKeepsConnection(t *testing.T) {
	t.Parallel()
	e, bob := startConfiguredWithBob(t, nil)
	bob.SendBytes(t, `<message to='`+e.alice+`' type='chat' id='quotes'><body>quotes</body><x xmlns='urn:example:quotes' a="`+
		strings.Repeat("'", 200<<10)+`"/></message>`)
	bob.SendChat(t, e.alice, "after the quotes", "")
	e.bridge.waitEvent(t, "the message after the quoted attribute", isMessage("after the quotes"))
	if n := len(e.bridge.matching(isLogin(connector.LoginConnected))); n != 1 {
		t.Fatalf("%d logins: the quoted attribute ended the connection", n)
	}
	if len(e.bridge.matching(isMessage("quotes"))) == 0 {
		t.Fatal("the message with the quoted attribute was not bridged")
	}
}

package xmppconnector

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// On real Prosody: a contact's message with more markup than
// xmpp.max_stanza_size (a 100 KiB attribute, under Prosody's own 256 KiB
// limit, against a 64 KiB max_stanza_size) ends the connection when it
// comes live, and stays in the archive, so the catch-up after the
// reconnect meets it again. Before, every catch-up ended there: the
// connector logged in again and again (101 logins in 10 s before it backed
// off, about 10 in 5 s after), the user was never told, and the message
// bob sent after it waited behind it in the archive for as long as the
// archive kept it. Now that catch-up bridges a stand-in in its place,
// saying a message was not bridged, and moves past it: the next connection
// stays up and bob's next message follows the stand-in.
func TestOversizedStanzaInArchiveIsSkipped(t *testing.T) {
	t.Parallel()
	e, bob := startConfiguredWithBob(t, func(e *env) { e.cfg.XMPP.MaxStanzaSize = minMaxStanza })
	bob.SendRaw(t, `<message to='`+e.alice+`' type='chat' id='big'><body>big</body><x xmlns='urn:example:big' a='`+
		strings.Repeat("a", 100<<10)+`'/></message>`)
	bob.SendChat(t, e.alice, "small", "")
	assertStandInThen(t, e, "small")
	// Each connection ended by the stanza is followed by a longer wait
	// (backoff.go); two end at it (live, then at the catch-up), and the
	// one after stays.
	time.Sleep(3 * time.Second)
	if logins := len(e.bridge.matching(isLogin(connector.LoginConnected))); logins < 2 || logins > 3 {
		t.Fatalf("%d logins: want the oversized stanza to end the connection once or twice, and no more", logins)
	}
	if n := len(e.bridge.matching(isStandIn)); n != 1 {
		t.Fatalf("%d stand-ins for one oversized message", n)
	}
	// The server was told why: before, mellium's own stream error never
	// left its buffer, and Prosody logged a plain disconnect.
	if !e.xmpp.LogContains("Session closed by remote with error: policy-violation (a stanza is larger than this client accepts") {
		t.Fatal("Prosody did not log the connector's policy-violation stream error")
	}
}

// On real Prosody: a contact's message with more text than
// xmpp.max_stanza_size (100 KiB of body against 64 KiB) is dropped from
// the stream, which goes on; before, the user was never told. The
// connector takes it from the archive as a stand-in instead, once.
func TestOversizedTextBecomesStandIn(t *testing.T) {
	t.Parallel()
	e, bob := startConfiguredWithBob(t, func(e *env) { e.cfg.XMPP.MaxStanzaSize = minMaxStanza })
	bob.SendChat(t, e.alice, strings.Repeat("t", 100<<10), "")
	bob.SendChat(t, e.alice, "after the long one", "")
	assertStandInThen(t, e, "after the long one")
	if n := len(e.bridge.matching(isLogin(connector.LoginConnected))); n != 1 {
		t.Fatalf("%d logins: the oversized text ended the connection", n)
	}
	if n := len(e.bridge.matching(isStandIn)); n != 1 {
		t.Fatalf("%d stand-ins for one oversized message", n)
	}
}

func isStandIn(ev *connector.Event) bool {
	return ev.Kind == connector.KindMessage && strings.HasPrefix(ev.Text, standInPrefix)
}

// assertStandInThen waits for a stand-in from bob and then the message
// text, in that order.
func assertStandInThen(t *testing.T, e *env, text string) {
	t.Helper()
	standIn := e.bridge.waitEvent(t, "the stand-in for the oversized message", isStandIn)
	after := e.bridge.waitEvent(t, "the message after the oversized one", isMessage(text))
	if standIn.Sender == nil || standIn.Sender.ID != e.bob || standIn.Chat == nil || standIn.Chat.ID != e.bob {
		t.Fatalf("the stand-in is not bob's, in bob's chat: %+v in %+v", standIn.Sender, standIn.Chat)
	}
	all := e.bridge.matching(func(*connector.Event) bool { return true })
	at := func(id string) int {
		return slices.IndexFunc(all, func(ev connector.Event) bool { return ev.ID == id })
	}
	if at(standIn.ID) > at(after.ID) {
		t.Fatalf("the stand-in came after the message sent after it:\n%s", e.bridge.dump())
	}
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

// On real Prosody: a message under every XML limit can still make an event
// over the bridge's frame, since JSON writes each '>' in six bytes: bob's
// 200 KiB of '>' (under Prosody's 256 KiB, and one byte each in XML text)
// is a 1.2 MiB event, which the SDK refuses. Before, the connector dropped
// it with a log line; now a stand-in goes in its place.
func TestMessageOverTheFrameBecomesStandIn(t *testing.T) {
	t.Parallel()
	e, bob := startConfiguredWithBob(t, nil)
	bob.SendBytes(t, `<message to='`+e.alice+`' type='chat' id='wide'><body>`+strings.Repeat(">", 200<<10)+`</body></message>`)
	bob.SendChat(t, e.alice, "after the wide one", "")
	assertStandInThen(t, e, "after the wide one")
	if n := len(e.bridge.matching(isStandIn)); n != 1 {
		t.Fatalf("%d stand-ins for one message", n)
	}
}

// On real Prosody: a correction over the bridge's frame (200 KiB of '>',
// as above) was dropped with a log line, so the user kept the old text
// and never learnt of the new one. Now a message from bob, in reply to the
// message he corrected, says that a correction was not bridged; the
// original stays as it was.
func TestCorrectionOverTheFrameBecomesStandIn(t *testing.T) {
	t.Parallel()
	e, bob := startConfiguredWithBob(t, nil)
	orig := bob.SendChat(t, e.alice, "before the correction", "")
	first := e.bridge.waitEvent(t, "the message bob corrects", isMessage("before the correction"))
	bob.SendBytes(t, `<message to='`+e.alice+`' type='chat' id='wide-fix'><body>`+strings.Repeat(">", 200<<10)+
		`</body><replace xmlns='urn:xmpp:message-correct:0' id='`+orig+`'/></message>`)
	bob.SendChat(t, e.alice, "after the wide correction", "")
	isEditStandIn := func(ev *connector.Event) bool {
		return ev.Kind == connector.KindMessage && strings.HasPrefix(ev.Text, editStandInPrefix)
	}
	standIn := e.bridge.waitEvent(t, "the stand-in for the correction", isEditStandIn)
	after := e.bridge.waitEvent(t, "the message after the correction", isMessage("after the wide correction"))
	if standIn.ReplyTo != first.ID || standIn.Sender == nil || standIn.Sender.ID != e.bob || standIn.Chat == nil || standIn.Chat.ID != e.bob {
		t.Fatalf("the stand-in is not bob's reply to the corrected message %q in his chat: %+v", first.ID, standIn)
	}
	all := e.bridge.matching(func(*connector.Event) bool { return true })
	at := func(id string) int {
		return slices.IndexFunc(all, func(ev connector.Event) bool { return ev.ID == id })
	}
	if at(standIn.ID) > at(after.ID) {
		t.Fatalf("the stand-in came after the message sent after it:\n%s", e.bridge.dump())
	}
	if n := len(e.bridge.matching(isEditStandIn)); n != 1 {
		t.Fatalf("%d stand-ins for one correction", n)
	}
	if edits := e.bridge.matching(func(ev *connector.Event) bool { return ev.Kind == connector.KindEdit }); len(edits) != 0 {
		t.Fatalf("an edit was bridged: %+v", edits)
	}
}

// On real Prosody: alice's roster has 400 contacts with long names, over
// 100 KiB of markup against a 64 KiB xmpp.max_stanza_size (as some 15,000
// contacts are against the default 1 MiB). Carol, whom alice added, asks to see her
// presence; the connector reads the roster to tell a contact from a
// stranger. Before, that answer ended the connection, and the server
// handed the request over again at every login, so every connection
// ended there. Now the roster is read as it arrives: carol is approved
// and the connection stays.
func TestRosterOverTheLimitKeepsConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.XMPP.MaxStanzaSize = minMaxStanza
	e.xmpp.Register(t, "carol", "carol-pw")
	carolJID := e.xmpp.JID("carol")
	carol := e.xmpp.Dial(t, "carol", "carol-pw")
	e.start(t)

	// alice's other client fills her roster, then asks carol, whose
	// client approves at once; her stanzas are handled in order, so once
	// carol approved, the roster is full.
	other := e.xmpp.Dial(t, "alice", alicePW)
	var sets strings.Builder
	// Long names make the roster large with few items: Prosody saves the
	// whole roster at every change, so 2,000 short items took 25 s.
	name := strings.Repeat("n", 250)
	for i := range 400 {
		fmt.Fprintf(&sets, `<iq type='set' id='fill%d'><query xmlns='jabber:iq:roster'><item jid='contact%04d@%s' name='%s'/></query></iq>`, i, i, testxmpp.Domain, name)
	}
	other.SendBytes(t, sets.String())
	other.Subscribe(t, carolJID)
	waitWithin(t, 30*time.Second, "carol approves alice's request", func() bool { return other.ApprovedBy(carolJID) })
	// Closed, so that the connector alone answers carol.
	other.Close()

	carol.Subscribe(t, e.alice)
	waitWithin(t, 30*time.Second, "the connector approves carol's request", func() bool { return carol.ApprovedBy(e.alice) })
	if n := len(e.bridge.matching(isLogin(connector.LoginConnected))); n != 1 {
		t.Fatalf("%d logins: the roster ended the connection", n)
	}
}

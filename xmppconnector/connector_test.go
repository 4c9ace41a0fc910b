package xmppconnector

import (
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

func TestIncomingMessage(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)

	xmppID := bob.SendChat(t, e.alice, "hello alice", "")
	ev := e.bridge.waitEvent(t, "bob's message", isMessage("hello alice"))
	if ev.Login != e.alice || ev.Chat.ID != e.bob || ev.Chat.With != e.bob || ev.Chat.Type != connector.ChatTypeDM {
		t.Errorf("chat = %+v (login %s), want the dm with %s", ev.Chat, ev.Login, e.bob)
	}
	if ev.Sender.ID != e.bob || ev.Sender.IsMe {
		t.Errorf("sender = %+v, want %s", ev.Sender, e.bob)
	}
	// The id is the stanza-id alice's server gave it, not bob's own id.
	if ev.ID == "" || ev.ID == xmppID || ev.Txn != "" {
		t.Errorf("id = %q (bob's id %q), txn %q: want the archive's stanza-id and no txn", ev.ID, xmppID, ev.Txn)
	}
	contact := e.bridge.waitEvent(t, "bob's contact", func(ev *connector.Event) bool { return ev.Kind == connector.KindContact })
	if contact.Contact.ID != e.bob || contact.Contact.Name != "bob" {
		t.Errorf("contact = %+v, want bob with his localpart as name", contact.Contact)
	}
}

func TestSendMessageOnceWithOriginID(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)

	cmd := &connector.Command{
		Login: e.alice,
		Chat:  e.bobChat(),
		Txn:   "$event1:localhost",
		Text:  "hi bob",
	}
	res, err := e.bridge.command(t, connector.OpSendMessage, cmd)
	if err != nil {
		t.Fatalf("send_message: %v", err)
	}
	got := bob.Next(t, waitLong, testxmpp.WithBody)
	if got.Body != "hi bob" || got.OriginID != cmd.Txn || got.ID != cmd.Txn || got.Type != "chat" {
		t.Fatalf("bob got %+v, want the text with origin-id %s", got, cmd.Txn)
	}
	if res.ID != cmd.Txn || res.TS == 0 {
		t.Errorf("result = %+v, want id %s and a ts", res, cmd.Txn)
	}

	// The bridge re-sends a command it got no answer for: same answer, no
	// second message.
	again, err := e.bridge.command(t, connector.OpSendMessage, cmd)
	if err != nil {
		t.Fatalf("repeated send_message: %v", err)
	}
	if again.ID != res.ID || again.TS != res.TS {
		t.Errorf("repeated txn answered %+v, want the original %+v", again, res)
	}
	// A marker message sent afterwards proves bob has seen everything the
	// connector sent before it.
	cmd2 := *cmd
	cmd2.Txn, cmd2.Text = "$event2:localhost", "second"
	if _, err := e.bridge.command(t, connector.OpSendMessage, &cmd2); err != nil {
		t.Fatalf("send_message: %v", err)
	}
	if got := bob.Next(t, waitLong, testxmpp.WithBody); got.Body != "second" {
		t.Fatalf("after the repeated txn bob got %+v, want only the next message", got)
	}
}

func TestCatchUpFromArchive(t *testing.T) {
	t.Parallel()
	// With offline storage the server also redelivers the missed messages
	// after presence, which must not bridge them twice; without it the
	// archive is the only way they come back.
	t.Run("with offline storage", func(t *testing.T) {
		t.Parallel()
		testCatchUp(t, newEnv(t))
	})
	t.Run("archive only", func(t *testing.T) {
		t.Parallel()
		testCatchUp(t, newEnv(t, testxmpp.WithoutOfflineStorage()))
	})
}

func testCatchUp(t *testing.T, e *env) {
	stop := e.start(t)
	bob := e.xmpp.Dial(t, "bob", bobPW)
	bob.SendChat(t, e.alice, "before", "")
	e.bridge.waitEvent(t, "the first message", isMessage("before"))
	stop()

	texts := []string{"while away 1", "while away 2", "while away 3"}
	for _, text := range texts {
		bob.SendChat(t, e.alice, text, "")
	}
	began := time.Now()
	e.start(t)
	for _, text := range texts {
		e.bridge.waitEvent(t, text, isMessage(text))
	}
	t.Logf("caught up in %s", time.Since(began).Round(time.Millisecond))
	// Offline delivery brings the same three once more after presence;
	// a sentinel sent now arrives after all of that.
	bob.SendChat(t, e.alice, "sentinel", "")
	e.bridge.waitEvent(t, "the sentinel", isMessage("sentinel"))

	msgs := e.bridge.matching(func(ev *connector.Event) bool { return ev.Kind == connector.KindMessage })
	var got []string
	ids := make(map[string]bool)
	for _, m := range msgs {
		got = append(got, m.Text)
		if ids[m.ID] {
			t.Errorf("message id %s bridged twice", m.ID)
		}
		ids[m.ID] = true
	}
	want := append(append([]string{"before"}, texts...), "sentinel")
	if len(got) != len(want) {
		t.Fatalf("bridged %q, want exactly %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("bridged %q, want exactly %q in that order", got, want)
		}
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(t)
	began := time.Now()
	e.xmpp.Restart(t)
	e.bridge.waitEvent(t, "login disconnected", isLogin(connector.LoginDisconnected))
	e.bridge.waitFor(t, "login connected again", func(evs []connector.Event, _ []connector.Ephemeral) bool {
		return countMatching(evs, isLogin(connector.LoginConnected)) >= 2
	})
	t.Logf("reconnected %s after the restart began", time.Since(began).Round(time.Millisecond))
	bob := e.xmpp.Dial(t, "bob", bobPW)
	bob.SendChat(t, e.alice, "after restart", "")
	e.bridge.waitEvent(t, "a message after the restart", isMessage("after restart"))
}

func TestCarbonsAreMine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.start(t)
	phone := e.xmpp.Dial(t, "alice", alicePW)
	phone.SendChat(t, e.bob, "sent from my phone", "")
	ev := e.bridge.waitEvent(t, "the sent carbon", isMessage("sent from my phone"))
	if !ev.Sender.IsMe || ev.Sender.ID != e.alice || ev.Chat.ID != e.bob || ev.Chat.With != e.bob {
		t.Errorf("carbon bridged as sender %+v in chat %+v, want is_me in the chat with bob", ev.Sender, ev.Chat)
	}
}

func TestCorrectionIsEdit(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	orig := bob.SendChat(t, e.alice, "helo", "")
	msg := e.bridge.waitEvent(t, "the original", isMessage("helo"))
	bob.Correct(t, e.alice, orig, "hello")
	edit := e.bridge.waitEvent(t, "the edit", func(ev *connector.Event) bool { return ev.Kind == connector.KindEdit })
	if edit.Target != msg.ID || edit.Text != "hello" || edit.Sender.ID != e.bob || edit.ID == msg.ID {
		t.Errorf("edit = %s, want target %s with the new text", eventString(edit), msg.ID)
	}
}

func TestVCardNameChangeIsContactEvent(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	// Mutual subscription, which the connector completes by itself for a
	// roster contact, is what makes the server push bob's profile changes
	// to alice. Starting the chat puts bob in alice's roster.
	e.addToRoster(t, e.bob)
	bob.Subscribe(t, e.alice)
	bob.SendChat(t, e.alice, "hi", "")
	e.bridge.waitEvent(t, "first contact", func(ev *connector.Event) bool {
		return ev.Kind == connector.KindContact && ev.Contact.Name == "bob"
	})
	bob.SetVCard(t, "Bob Builder", nil, "")
	e.bridge.waitEvent(t, "renamed contact", func(ev *connector.Event) bool {
		return ev.Kind == connector.KindContact && ev.Contact.ID == e.bob && ev.Contact.Name == "Bob Builder"
	})
}

package bridge_test

import (
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestLoginAlertsAndPing: the bot's ping shows each login's state, since
// when, and its last message; the user is told in their management room,
// once per problem, when a login stays disconnected for
// bridge.login_alert_after, when its connector stays away that long, and at
// once when it reports bad_credentials.
func TestLoginAlertsAndPing(t *testing.T) {
	for _, target := range testdb.Targets(t) {
		t.Run(target.Name, func(t *testing.T) {
			const alertAfter = 2 * time.Second
			s := newStack(t, target, stackOptions{noBridge: true})
			s.cfg.Bridge.LoginAlertAfter = config.Duration(alertAfter)
			s.startBridge()
			t.Cleanup(s.stopBridge)
			f := s.connectFake(nil)
			bot := s.cfg.BotUserID()
			mgmt := s.createDM(s.alice, bot)
			s.waitNotice(s.sync, mgmt, bot, "start-chat")

			f.send(textFrom("bob@network", "m1", "hello"))
			s.waitMessage(s.roomOf("bob@network"), "hello")
			s.command(mgmt, "ping")
			pong := s.waitNotice(s.sync, mgmt, bot, "login connected; connector fake is online")
			if !strings.Contains(pong, "connected since ") || !strings.Contains(pong, "last message ") {
				t.Errorf("ping lacks the state's time or the last message: %q", pong)
			}

			// The login reports disconnected: told after alertAfter, not before, once.
			sent := time.Now()
			f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, State: connector.LoginDisconnected})
			s.waitNotice(s.sync, mgmt, bot, "has been disconnected since")
			if waited := time.Since(sent); waited < alertAfter {
				t.Errorf("told after %s, before bridge.login_alert_after (%s)", waited, alertAfter)
			}
			f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, State: connector.LoginConnected})

			// The connector goes away and stays away.
			f.stop()
			s.waitNotice(s.sync, mgmt, bot, "has been offline since")
			f = s.connectFakeWith(fakeSetup{store: f.store})

			// Bad credentials are reported without waiting.
			sent = time.Now()
			f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, State: connector.LoginBadCredentials, Message: "password changed"})
			s.waitNotice(s.sync, mgmt, bot, "was logged out (bad credentials)")
			if waited := time.Since(sent); waited > 20*time.Second {
				t.Errorf("bad credentials told after %s", waited)
			}

			// Each problem was told once, even though the checks went on.
			time.Sleep(2 * alertAfter)
			for _, want := range []string{"has been disconnected since", "has been offline since", "was logged out (bad credentials)"} {
				if n := s.noticesWith(mgmt, bot, want); n != 1 {
					t.Errorf("%d notices with %q, want 1", n, want)
				}
			}
		})
	}
}

// noticesWith counts the notices from sender in the room whose text holds want.
func (s *stack) noticesWith(roomID id.RoomID, sender id.UserID, want string) int {
	n := 0
	for _, evt := range s.sync.Events(roomID) {
		if evt.Sender != sender || evt.Type != event.EventMessage {
			continue
		}
		_ = evt.Content.ParseRaw(evt.Type)
		if msg := evt.Content.AsMessage(); msg != nil && msg.MsgType == event.MsgNotice && strings.Contains(msg.Body, want) {
			n++
		}
	}
	return n
}

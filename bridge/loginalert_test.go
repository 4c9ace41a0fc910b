package bridge_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// noticesWith counts the bot's notices in the room whose body contains text.
func (s *stack) noticesWith(roomID id.RoomID, sender id.UserID, text string) int {
	n := 0
	for _, evt := range s.sync.Events(roomID) {
		if evt.Type != event.EventMessage || evt.Sender != sender {
			continue
		}
		_ = evt.Content.ParseRaw(evt.Type)
		if msg := evt.Content.AsMessage(); msg != nil && strings.Contains(msg.Body, text) {
			n++
		}
	}
	return n
}

var pingLine = regexp.MustCompile(`alice@network \(Alice\): login (\S+) since (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC); ` +
	`last event (never|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC); connector fake is (\w+)`)

// ping asks the bot and returns the state, since, last event and connection
// of alice's login as the answer shows them.
func (s *stack) ping(mgmt id.RoomID, wantState string) (since, last time.Time, connection string) {
	s.t.Helper()
	// Only an answer to this ping counts: earlier answers are in the sync too.
	answers := func() []string {
		var out []string
		for _, evt := range s.sync.Events(mgmt) {
			if evt.Type != event.EventMessage || evt.Sender != s.cfg.BotUserID() {
				continue
			}
			_ = evt.Content.ParseRaw(evt.Type)
			if msg := evt.Content.AsMessage(); msg != nil && strings.Contains(msg.Body, "Your logins") {
				out = append(out, msg.Body)
			}
		}
		return out
	}
	before := len(answers())
	s.command(mgmt, "ping")
	var m []string
	deadline := time.Now().Add(30 * time.Second)
	for m == nil {
		if got := answers(); len(got) > before {
			body := got[len(got)-1]
			if m = pingLine.FindStringSubmatch(body); m == nil || m[1] != wantState {
				s.t.Fatalf("ping answer does not show the login %s, since when and its last event: %q", wantState, body)
			}
		} else if time.Now().After(deadline) {
			s.t.Fatal("no answer to ping")
		}
		time.Sleep(50 * time.Millisecond)
	}
	since, err := time.Parse("2006-01-02 15:04:05 MST", m[2])
	if err != nil {
		s.t.Fatal(err)
	}
	if m[3] != "never" {
		if last, err = time.Parse("2006-01-02 15:04:05 MST", m[3]); err != nil {
			s.t.Fatal(err)
		}
	}
	return since, last, m[4]
}

// TestLoginStateInPingAndAlerts: the bot's ping shows the login's state, since
// when, and its last event; the user is told in the management room, once per
// episode, when the login stays disconnected longer than login_alert_after
// (reported by the network, or its connector gone) and when it is back, and
// at once when it is logged out.
func TestLoginStateInPingAndAlerts(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		const alertAfter = time.Second
		s := newStack(t, target, stackOptions{configure: func(c *config.Config) {
			c.Bridge.LoginAlertAfter = config.Duration(alertAfter)
		}})
		f := s.connectFake(nil)
		mgmt, bot := s.managementRoom()

		_, last, conn := s.ping(mgmt, "connected")
		if !last.IsZero() || conn != "online" {
			t.Errorf("ping before any event: last event %v, connector %s; want never, online", last, conn)
		}
		before := time.Now().Truncate(time.Second)
		s.bobPortal(f, "m1", "hello")
		_, last, _ = s.ping(mgmt, "connected")
		if last.Before(before) || last.After(time.Now()) {
			t.Errorf("ping shows last event at %v, want between %v and now", last, before)
		}

		// The network disconnects the login: one alert after alertAfter.
		disconnectedAt := time.Now().Truncate(time.Second)
		f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(), State: connector.LoginDisconnected})
		since, _, _ := s.ping(mgmt, "disconnected")
		if since.Before(disconnectedAt) {
			t.Errorf("ping shows disconnected since %v, want from %v", since, disconnectedAt)
		}
		alert := s.waitNotice(s.sync, mgmt, bot, "has been disconnected since")
		if got := time.Since(disconnectedAt); got < alertAfter {
			t.Errorf("alert came %v after the disconnection, before login_alert_after %v", got, alertAfter)
		}
		if !strings.Contains(alert, "alice@network (Alice)") || !strings.Contains(alert, "the network disconnected it") {
			t.Errorf("alert = %q", alert)
		}
		time.Sleep(2 * alertAfter)
		if n := s.noticesWith(mgmt, bot, "has been disconnected since"); n != 1 {
			t.Errorf("%d disconnection alerts for one episode, want 1", n)
		}
		f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(), State: connector.LoginConnected})
		s.waitNotice(s.sync, mgmt, bot, "is connected again")

		// The connector goes away: the login counts as disconnected.
		f.stop()
		_, _, conn = s.ping(mgmt, "disconnected")
		if conn != "offline" {
			t.Errorf("ping with the connector gone shows it %s", conn)
		}
		s.waitNotice(s.sync, mgmt, bot, "no connection to its connector fake")
		// A restart in the middle of the episode tells nothing twice, and
		// ping still knows the last event.
		s.restartBridge()
		_, lastAfterRestart, _ := s.ping(mgmt, "disconnected")
		if !lastAfterRestart.Equal(last) {
			t.Errorf("ping after a restart shows last event %v, want %v", lastAfterRestart, last)
		}
		time.Sleep(2 * alertAfter)
		if n := s.noticesWith(mgmt, bot, "no connection to its connector fake"); n != 1 {
			t.Errorf("%d alerts for the connector episode across a restart, want 1", n)
		}
		f = s.connectFake(f.store)
		tesths := time.Now().Add(30 * time.Second)
		for s.noticesWith(mgmt, bot, "is connected again") < 2 && time.Now().Before(tesths) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := s.noticesWith(mgmt, bot, "is connected again"); n != 2 {
			t.Errorf("%d recovery notices after two episodes, want 2", n)
		}

		// Logged out: told at once, without waiting for alertAfter.
		loggedOut := time.Now()
		f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(), State: connector.LoginBadCredentials})
		s.waitNotice(s.sync, mgmt, bot, "was logged out by the network (bad credentials)")
		if got := time.Since(loggedOut); got > 10*time.Second {
			t.Errorf("logged-out alert took %v", got)
		}
		s.ping(mgmt, "bad_credentials")
		time.Sleep(2 * alertAfter)
		if n := s.noticesWith(mgmt, bot, "was logged out by the network"); n != 1 {
			t.Errorf("%d logged-out alerts, want 1", n)
		}
		if n := s.noticesWith(mgmt, bot, "has been disconnected since"); n != 2 {
			t.Errorf("%d disconnection alerts in total, want 2", n)
		}
	})
}

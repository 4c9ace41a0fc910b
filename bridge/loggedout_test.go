package bridge_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// loggedOutText is what the user is told when they ask for a chat through
// a login the network logged out.
const loggedOutText = "your Fake network login alice@network is logged out; log in again"

// logOut has the network log alice's login out and waits until the bot
// told her (so the logout is stored); it returns her management room and
// the bot.
func (s *stack) logOut(f *fakeConnector) (id.RoomID, id.UserID) {
	s.t.Helper()
	mgmt, bot := s.managementRoom()
	f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(),
		State: connector.LoginBadCredentials, Message: "password changed"})
	s.waitNotice(s.sync, mgmt, bot, "was logged out by the network")
	return mgmt, bot
}

// TestLoggedOutLoginStartsNoChat: after the network logged alice's only
// login out, the bot's start-chat and the provisioning API refuse to open
// a chat through it, saying she has to log in again, instead of making a
// room that could carry nothing; the network is not even asked.
func TestLoggedOutLoginStartsNoChat(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{configure: func(c *config.Config) {
			c.Provisioning.SharedSecret = "provisioning-secret-for-tests-0123456789"
		}})
		f := s.connectFake(nil)
		mgmt, bot := s.logOut(f)

		s.command(mgmt, "start-chat carol@network")
		answer := s.waitNotice(s.sync, mgmt, bot, "I could not start a chat with carol@network")
		if !strings.Contains(answer, loggedOutText) {
			t.Errorf("start-chat answer = %q, want it to say %q", answer, loggedOutText)
		}
		status, res := s.provision(s.alice.AccessToken, "", "dave@network")
		if status != http.StatusConflict || res.ErrCode != "DMBRIDGE_LOGGED_OUT" || res.RoomID != "" {
			t.Errorf("provisioning through a logged-out login = %d %+v, want 409 DMBRIDGE_LOGGED_OUT", status, res)
		}
		s.wantNothingForLoggedOut(f)
	})
}

// TestLoggedOutLoginRefusesGhostInvite: a DM alice starts with a ghost
// after her login was logged out is refused: the ghost joins, says she has
// to log in again, and leaves, and no portal is made.
func TestLoggedOutLoginRefusesGhostInvite(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f := s.connectFake(nil)
		s.logOut(f)
		ghost := s.ghost("bob@network")

		room := s.createDM(s.alice, ghost)
		s.waitNotice(s.sync, room, ghost, loggedOutText)
		s.waitMembership(s.sync, room, ghost, event.MembershipLeave)
		s.wantNothingForLoggedOut(f)
	})
}

// TestLoggedOutLoginSyncsOnceBack: a login the bridge sees for the first
// time in a hello that says it is logged out gets no rooms for its recent
// chats then; once a login event says it is logged in again, they are
// synced.
func TestLoggedOutLoginSyncsOnceBack(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		mgmt, bot := s.managementRoom()
		caps := helloFor().Capabilities
		caps.ListChats = true
		f := s.connectFakeWith(fakeSetup{caps: &caps, chats: []connector.Chat{*dmChat("carol@network")},
			logins: []connector.Login{{ID: testLogin, MatrixUser: string(s.alice.UserID), Name: "Alice", State: connector.LoginBadCredentials}}})
		s.waitNotice(s.sync, mgmt, bot, "was logged out by the network")
		if n := s.countRows("SELECT COUNT(*) FROM portal"); n != 0 {
			t.Errorf("%d portals for a login that came logged out, want none", n)
		}

		back := time.Now()
		f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(), State: connector.LoginConnected})
		carol := s.roomOf("carol@network")
		s.waitMembership(s.sync, carol, s.alice.UserID, event.MembershipJoin)
		tesths.WaitFor(t, 20*time.Second, "the recent-chats sync to finish", func() (bool, error) {
			return s.countRows("SELECT COUNT(*) FROM login_sync_pending") == 0, nil
		})
		if lists := f.commandsOf(connector.OpListChats); len(lists) != 1 || f.lastCommandAt(connector.OpListChats).Before(back) {
			t.Errorf("%d list_chats, the last at %v; want one, after the login came back at %v",
				len(lists), f.lastCommandAt(connector.OpListChats), back)
		}
	})
}

// wantNothingForLoggedOut checks that a logged-out login got no portal and
// that its network was not asked about any contact.
func (s *stack) wantNothingForLoggedOut(f *fakeConnector) {
	s.t.Helper()
	if n := s.countRows("SELECT COUNT(*) FROM portal"); n != 0 {
		s.t.Errorf("%d portals for a logged-out login, want none", n)
	}
	if got := f.commandsOf(connector.OpResolveIdentifier); len(got) != 0 {
		s.t.Errorf("the network was asked to resolve %+v for a logged-out login", got)
	}
}

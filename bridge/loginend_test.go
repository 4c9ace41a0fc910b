package bridge_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
	"github.com/dmbridge/dmbridge/internal/testlog"
)

// heldAvatar is a picture server that answers only once released: a
// contact event whose avatar it serves holds its lane (its chat's) there,
// while other lanes go on.
type heldAvatar struct {
	*httptest.Server
	asked   chan struct{}
	release chan struct{}
}

func newHeldAvatar(t testing.TB) *heldAvatar {
	h := &heldAvatar{asked: make(chan struct{}, 16), release: make(chan struct{})}
	pic := makePNG(t, 8, 8)
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.asked <- struct{}{}
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(pic)
	}))
	t.Cleanup(h.Close)
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
	})
	return h
}

// earlyMessageHeld holds bob's lane in his picture's fetch (so what comes
// on it waits while other lanes go on) and sends his first message behind
// it; it returns the held picture server and the message's seq.
func (s *stack) earlyMessageHeld(f *fakeConnector) (*heldAvatar, int64) {
	s.t.Helper()
	held := newHeldAvatar(s.t)
	f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, Contact: &connector.Contact{ID: "bob@network", Name: "Bob",
		Avatar: &connector.Avatar{ID: "pic", URL: held.URL + "/bob.png", MimeType: "image/png"}}})
	select {
	case <-held.asked:
	case <-time.After(20 * time.Second):
		s.t.Fatal("the bridge did not fetch bob's picture")
	}
	return held, f.send(textFrom("bob@network", "m1", "sent before the logout"))
}

// waitApplied waits until the connector event with seq left the inbox's
// queue (applied; a done row may also have been pruned).
func (s *stack) waitApplied(seq int64, what string) {
	s.t.Helper()
	tesths.WaitFor(s.t, 30*time.Second, what+" applied", func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM inbox WHERE connector_id='fake' AND seq=$1 AND done=false", seq) == 0, nil
	})
}

// TestMessageBeforeLogoutOpensNoPortal: bob's first message, sent on the
// network before alice's login was logged out but applied after the
// logout's cleanup (its chat's lane was busy), opens no portal: the user
// was just told the login's rooms are no longer bridged. A message after
// the login came back opens one as usual.
func TestMessageBeforeLogoutOpensNoPortal(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{mediaFetchAllow: loopbackMedia})
		f := s.connectFake(nil)
		held, early := s.earlyMessageHeld(f)
		loggedOut := f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(),
			State: connector.LoginBadCredentials, Message: "password changed"})
		s.waitApplied(loggedOut, "the logout")
		close(held.release)
		s.waitApplied(early, "bob's early message")
		if n := s.countRows("SELECT COUNT(*) FROM portal"); n != 0 {
			t.Fatalf("%d portals after the logout, want none: a message from before it opened one", n)
		}
		if n := s.countRows("SELECT COUNT(*) FROM message"); n != 0 {
			t.Errorf("%d messages bridged for a login that is gone, want none", n)
		}

		f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(), State: connector.LoginConnected})
		s.bobPortal(f, "m2", "logged in again")
		if n := s.countRows("SELECT COUNT(*) FROM message WHERE remote_id='m1'"); n != 0 {
			t.Errorf("the message from before the logout was bridged after all")
		}
	})
}

// TestMessageBeforeHelloLogoutOpensNoPortal: as above, with the logout
// said in the connector's next hello instead of a login event: everything
// the bridge accepted before that hello comes from before the logout.
func TestMessageBeforeHelloLogoutOpensNoPortal(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{mediaFetchAllow: loopbackMedia})
		f := s.connectFake(nil)
		held, early := s.earlyMessageHeld(f)
		f.stop()
		s.connectFakeWith(fakeSetup{store: f.store, logins: []connector.Login{{ID: testLogin, MatrixUser: string(s.alice.UserID),
			Name: "Alice", State: connector.LoginBadCredentials}}})
		close(held.release)
		s.waitApplied(early, "bob's early message")
		if n := s.countRows("SELECT COUNT(*) FROM portal"); n != 0 {
			t.Fatalf("%d portals after the hello's logout, want none: a message from before it opened one", n)
		}
	})
}

// TestHelloWithoutStateKeepsIt: a connector's hello that names the login
// without a state (the field is optional) leaves the stored state as it
// was: a logged-out login stays logged out for the user's ping, and is not
// "unknown". A hello that says a state replaces it.
func TestHelloWithoutStateKeepsIt(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f := s.connectFake(nil)
		mgmt, bot := s.managementRoom()
		f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(), State: connector.LoginBadCredentials})
		s.waitNotice(s.sync, mgmt, bot, "was logged out by the network")
		s.ping(mgmt, "bad_credentials")

		alice := connector.Login{ID: testLogin, MatrixUser: string(s.alice.UserID), Name: "Alice"}
		f.stop()
		f = s.connectFakeWith(fakeSetup{store: f.store, logins: []connector.Login{alice}})
		s.ping(mgmt, "bad_credentials")

		f.stop()
		alice.State = connector.LoginConnected
		s.connectFakeWith(fakeSetup{store: f.store, logins: []connector.Login{alice}})
		s.ping(mgmt, "connected")
		s.waitNotice(s.sync, mgmt, bot, "is connected again")
	})
}

// TestHelloWithoutNameKeepsIt: a hello that names the login without a
// name (optional, like the state) keeps the name stored from an earlier
// hello: the user's ping still shows it.
func TestHelloWithoutNameKeepsIt(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f := s.connectFake(nil) // names the login "Alice"
		mgmt, _ := s.managementRoom()
		f.stop()
		s.connectFakeWith(fakeSetup{store: f.store, logins: []connector.Login{
			{ID: testLogin, MatrixUser: string(s.alice.UserID), State: connector.LoginConnected}}})
		// ping fails unless the answer shows "alice@network (Alice)".
		s.ping(mgmt, "connected")
	})
}

// TestLoginAlertWaitsForManagementRoom: a user logged out while they have
// no room with the bot is told once they open one; the alert was not
// recorded as told while it could not be delivered. The bridge's log says
// so once, not at every look.
func TestLoginAlertWaitsForManagementRoom(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{noBridge: true, configure: func(c *config.Config) {
			c.Bridge.LoginAlertAfter = config.Duration(time.Second)
		}})
		logs := &testlog.Lines{}
		s.logTo = logs
		s.startBridge()
		t.Cleanup(s.stopBridge)
		f := s.connectFake(nil)
		f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(), State: connector.LoginBadCredentials})
		tesths.WaitFor(t, 20*time.Second, "the alert found no management room", func() (bool, error) {
			return len(logs.FindPrefix("User has no management room")) > 0, nil
		})

		mgmt, bot := s.managementRoom()
		s.waitNotice(s.sync, mgmt, bot, "was logged out by the network (bad credentials)")
		warned := 0
		for _, line := range logs.FindPrefix("User has no management room") {
			if line["level"] == "warn" {
				warned++
			}
		}
		if warned != 1 {
			t.Errorf("the undeliverable alert was logged %d times at warn, want once", warned)
		}
	})
}

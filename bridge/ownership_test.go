package bridge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/rawconn"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// helloRaw says hello as connectorID with the token and returns the
// connection and the message of every login refusal that came with the
// welcome; want lists the logins expected to be refused.
func (s *stack) helloRaw(t *testing.T, token, connectorID string, want []string, logins ...connector.Login) (*rawconn.Conn, map[string]string) {
	t.Helper()
	conn, _, err := rawconn.Dial(context.Background(), "ws://"+s.cfg.Connector.Listen+connector.Path, token, []string{connector.Subprotocol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	hello := helloFor(logins...)
	hello.Connector.ID = connectorID
	if err = conn.WriteFrame(connector.Frame{Type: connector.TypeHello}, hello); err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{}
	welcomed := false
	for !welcomed || len(refused) < len(want) {
		f, err := conn.ReadFrame(10 * time.Second)
		if err != nil {
			t.Fatalf("after hello: %v (welcome %v, refused %v, want refused %v)", err, welcomed, refused, want)
		}
		switch {
		case f.Type == connector.TypeWelcome:
			welcomed = true
		case f.Type == connector.TypeErr && f.Error != nil && f.Error.Code == connector.ErrForbidden && f.Error.Login != "":
			refused[f.Error.Login] = f.Error.Message
		default:
			t.Fatalf("after hello: unexpected %+v", f)
		}
	}
	for _, l := range want {
		if _, ok := refused[l]; !ok {
			t.Errorf("login %s was not refused; refusals: %v", l, refused)
		}
	}
	return conn, refused
}

// TestLoginOwnerMustBeAPerson: a connector that names the bridge bot or a
// ghost as a login's owner is refused with M_FORBIDDEN, and nothing is
// stored for those logins.
func TestLoginOwnerMustBeAPerson(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		ghost := s.ghost("bob@network")
		conn, refused := s.helloRaw(t, testConnectorToken, "raw", []string{"bot-login", "ghost-login"},
			connector.Login{ID: "bot-login", MatrixUser: string(s.cfg.BotUserID())},
			connector.Login{ID: "ghost-login", MatrixUser: string(ghost)})
		t.Logf("refusals: %v", refused)
		// An event for such a login is refused too, and creates nothing.
		ev := textFrom("carol@network", "m1", "through the ghost")
		ev.Login = "ghost-login"
		if err := conn.WriteFrame(connector.Frame{Type: connector.TypeEvent, Seq: 1}, ev); err != nil {
			t.Fatal(err)
		}
		expectErr(t, conn, connector.ErrForbidden)
		for query, want := range map[string]int{
			"SELECT COUNT(*) FROM login":  0,
			"SELECT COUNT(*) FROM portal": 0,
			"SELECT COUNT(*) FROM inbox":  0,
		} {
			if n := s.countRows(query); n != want {
				t.Errorf("%s = %d, want %d", query, n, want)
			}
		}
	})
}

// TestLoginCannotChangeOwner: a second connector announcing alice's login,
// for bob or for alice herself, is refused; the login stays alice's on her
// connector, and alice keeps getting her contacts' messages through it.
func TestLoginCannotChangeOwner(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		bob := s.hs.CreateUser(t, "bob")
		f := s.connectFake(nil)
		f.send(textFrom("carol@network", "m1", "before the takeover"))
		room := s.roomOf("carol@network")
		s.waitMessage(room, "before the takeover")

		// Another Matrix owner, and the same owner through another
		// connector holding the shared token: either would pour the
		// intruder's traffic into alice's rooms and lock her connector out.
		for i, owner := range []id.UserID{bob.UserID, s.alice.UserID} {
			conn, refused := s.helloRaw(t, testConnectorToken, fmt.Sprintf("raw%d", i), []string{testLogin},
				connector.Login{ID: testLogin, MatrixUser: string(owner), Name: "Intruder"})
			t.Logf("refusal for %s: %s", owner, refused[testLogin])
			var stored, connectorID string
			if err := s.br.DB.QueryRow(context.Background(), "SELECT matrix_user, connector_id FROM login WHERE id=$1", testLogin).Scan(&stored, &connectorID); err != nil {
				t.Fatal(err)
			}
			if stored != string(s.alice.UserID) || connectorID != "fake" {
				t.Errorf("login after the refused move to %s: owner %s, connector %s", owner, stored, connectorID)
			}
			// The intruder cannot send for the login either.
			ev := textFrom("carol@network", fmt.Sprintf("x%d", i), "from the intruder")
			if err := conn.WriteFrame(connector.Frame{Type: connector.TypeEvent, Seq: 1}, ev); err != nil {
				t.Fatal(err)
			}
			expectErr(t, conn, connector.ErrForbidden)

			body := fmt.Sprintf("after takeover attempt %d", i)
			f.send(textFrom("carol@network", fmt.Sprintf("m%d", i+2), body))
			s.waitMessage(room, body)
		}
		if n := s.countRows("SELECT COUNT(*) FROM portal"); n != 1 {
			t.Errorf("%d portals, want alice's one", n)
		}
		for _, evt := range s.messagesIn(room) {
			if body := evt.Content.AsMessage().Body; body == "from the intruder" {
				t.Errorf("the intruder's message reached alice's room")
			}
		}
	})
}

// TestConnectorTokenLimitedToServer: a connector with a token of its own
// that may serve example.org users only cannot hold alice's (localhost)
// login, while one allowed localhost serves her; and neither own token can
// be used under another connector id.
func TestConnectorTokenLimitedToServer(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		const (
			elsewhereToken = "token-of-the-elsewhere-connector-0123"
			localToken     = "token-of-the-local-connector-0123456"
		)
		s := newStack(t, target, stackOptions{configure: func(c *config.Config) {
			c.Connector.Connectors = []config.ConnectorAccess{
				{ID: "elsewhere", Token: elsewhereToken, AllowedServers: []string{"example.org"}},
				{ID: "local", Token: localToken, AllowedServers: []string{"localhost"}},
			}
		}})
		alice := connector.Login{ID: testLogin, MatrixUser: string(s.alice.UserID), Name: "Alice", State: connector.LoginConnected}

		conn, refused := s.helloRaw(t, elsewhereToken, "elsewhere", []string{testLogin}, alice)
		t.Logf("refusal: %s", refused[testLogin])
		if err := conn.WriteFrame(connector.Frame{Type: connector.TypeEvent, Seq: 1}, textFrom("carol@network", "e1", "wrong server")); err != nil {
			t.Fatal(err)
		}
		expectErr(t, conn, connector.ErrForbidden)
		if n := s.countRows("SELECT COUNT(*) FROM login"); n != 0 {
			t.Errorf("the refused login left %d rows", n)
		}

		// The local connector's token cannot pose as another id.
		impostor, _, err := rawconn.Dial(context.Background(), "ws://"+s.cfg.Connector.Listen+connector.Path, localToken, []string{connector.Subprotocol})
		if err != nil {
			t.Fatal(err)
		}
		defer impostor.Close()
		hello := helloFor(alice)
		hello.Connector.ID = "elsewhere"
		if err = impostor.WriteFrame(connector.Frame{Type: connector.TypeHello}, hello); err != nil {
			t.Fatal(err)
		}
		expectErr(t, impostor, connector.ErrForbidden)

		f := s.connectFakeWith(fakeSetup{id: "local", token: localToken})
		f.send(textFrom("carol@network", "m1", "through the local connector"))
		s.waitMessage(s.roomOf("carol@network"), "through the local connector")
	})
}

// TestForeignConnectorCannotRenameContact: a connector whose token may
// serve only @eve announces eve's login and names bob@network, alice's
// contact on another connector, in a contact event. Bob's ghost is shared,
// so this would rename him in alice's DM; it is skipped, while alice's own
// connector still renames him.
func TestForeignConnectorCannotRenameContact(t *testing.T) {
	const evilToken = "token-of-the-eve-only-connector-0123"
	s := newStack(t, testdb.SQLite(t), stackOptions{configure: func(c *config.Config) {
		c.Connector.Connectors = []config.ConnectorAccess{{ID: "evil", Token: evilToken, AllowedUsers: []string{"@eve:localhost"}}}
	}})
	f := s.connectFake(nil)
	room := s.bobPortal(f, "m1", "hi alice")
	ghost := s.ghost("bob@network")

	conn, _ := s.helloRaw(t, evilToken, "evil", nil, connector.Login{ID: "eve@elsewhere", MatrixUser: "@eve:localhost", State: connector.LoginConnected})
	ev := &connector.Event{Kind: connector.KindContact, Login: "eve@elsewhere",
		Contact: &connector.Contact{ID: "bob@network", Name: "Bob (new number, write to eve)"}}
	if err := conn.WriteFrame(connector.Frame{Type: connector.TypeEvent, Seq: 1}, ev); err != nil {
		t.Fatal(err)
	}
	tesths.WaitFor(t, 20*time.Second, "the contact event handled", func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM inbox WHERE connector_id = 'evil' AND done") == 1, nil
	})
	// Handled means applied: the profile and the member event change before
	// the event is marked done.
	var member event.MemberEventContent
	if err := s.alice.StateEvent(context.Background(), room, event.StateMember, string(ghost), &member); err != nil || strings.Contains(member.Displayname, "eve") {
		t.Errorf("bob in alice's DM after eve's connector's event: %+v, %v", member, err)
	}
	if profile, err := s.alice.GetProfile(context.Background(), ghost); err != nil || strings.Contains(profile.DisplayName, "eve") {
		t.Errorf("bob's profile after eve's connector's event: %+v, %v", profile, err)
	}
	f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, TS: time.Now().UnixMilli(),
		Contact: &connector.Contact{ID: "bob@network", Name: "Bob Builder"}})
	tesths.WaitFor(t, 20*time.Second, "alice's connector's rename in her DM", func() (bool, error) {
		var m event.MemberEventContent
		err := s.alice.StateEvent(context.Background(), room, event.StateMember, string(ghost), &m)
		return err == nil && m.Displayname == "Bob Builder", nil
	})
}

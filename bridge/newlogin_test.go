package bridge_test

import (
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestLoginAddedWhileConnected: the user adds a second account on the
// network while the connector is connected. A connector written with the
// SDK calls SetLogins and goes on; the new account's first message must
// open a DM for the user, not be refused by the bridge (which knows logins
// from a hello only) and lost.
func TestLoginAddedWhileConnected(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f := s.connectFake(nil)
		s.bobPortal(f, "m1", "hello from the first account")

		const second = "alice-work@network"
		f.client.SetLogins([]connector.Login{
			{ID: testLogin, MatrixUser: string(s.alice.UserID), Name: "Alice", State: connector.LoginConnected},
			{ID: second, MatrixUser: string(s.alice.UserID), Name: "Alice at work", State: connector.LoginConnected},
		})
		ev := textFrom("carol@network", "w1", "hello to the second account")
		ev.Login = second
		f.send(ev)

		room := s.portalRoom(30*time.Second, "a portal of the second account", second, "carol@network", "")
		s.waitMessage(room, "hello to the second account")
	})
}

package sdk

import (
	"slices"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connectortest"
)

// TestClientSetLoginsAnnouncesNewLogin: the bridge takes a login's events
// only once a hello named it, and refuses (acking, so losing) the rest. A
// connector that adds an account while connected calls SetLogins and sends
// the account's events: they must reach the bridge's store, after a hello
// that names the account.
func TestClientSetLoginsAnnouncesNewLogin(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	h.Handler.CheckFunc = func(ev *connector.Event) *connector.Error {
		if !h.Handler.KnowsLogin(ev.Login) {
			return &connector.Error{Code: connector.ErrForbidden, Message: "login " + ev.Login + " was not in a hello"}
		}
		return nil
	}
	c := newClient(t, h, "c", nil)
	runClient(t, c)
	waitConnected(t, c)
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := c.Send(ctx, connectortest.Message(1)); err != nil {
		t.Fatal(err)
	}
	logins := append(slices.Clone(connectortest.Hello("c").Logins),
		connector.Login{ID: "carol@testnet", MatrixUser: "@carol:hs", State: connector.LoginConnected})
	c.SetLogins(logins)
	ev := connectortest.Message(2)
	ev.Login = "carol@testnet"
	seq, err := c.Send(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if err = c.WaitAcked(ctx, seq); err != nil {
		t.Fatal(err)
	}
	got := h.Store.Snapshot("c")
	if len(got) != 2 || got[1].Ev.Login != "carol@testnet" {
		t.Fatalf("bridge stored %d events (%+v), want alice's and then carol's", len(got), got)
	}
	h.Handler.Mu.Lock()
	hellos := h.Handler.Hellos
	h.Handler.Mu.Unlock()
	if hellos != 2 {
		t.Errorf("%d hellos, want a second one naming the new login", hellos)
	}
	// A change that adds no login needs no new hello.
	logins[1].Name = "Carol"
	c.SetLogins(logins)
	if _, err = c.Send(ctx, connectortest.Message(3)); err != nil {
		t.Fatal(err)
	}
	connectortest.Eventually(t, "third event stored", func() bool { return len(h.Store.Snapshot("c")) == 3 })
	h.Handler.Mu.Lock()
	hellos = h.Handler.Hellos
	h.Handler.Mu.Unlock()
	if hellos != 2 {
		t.Errorf("%d hellos after a name change, want still 2", hellos)
	}
}

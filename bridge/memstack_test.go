package bridge_test

import (
	"testing"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/memhs"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// newMemStack is newStack's benchmark variant: the bridge talks to an
// in-memory homeserver, so that what is measured is the bridge's own cost.
// The appservice tokens act as their sender (the bridge's bot, or for the
// double-puppet registration whoever user_id names).
func newMemStack(t testing.TB, cfg *config.Config, target testdb.Target, regs []*mas.Registration, o stackOptions) *stack {
	t.Helper()
	m := memhs.Start(cfg.Homeserver.Domain)
	t.Cleanup(m.Close)
	m.AddToken(regs[0].AppToken, string(cfg.BotUserID()))
	cfg.Homeserver.Address = m.URL
	alice := m.CreateUser("alice")
	client, err := mautrix.NewClient(m.URL, id.UserID(alice), "alice-token")
	if err != nil {
		t.Fatal(err)
	}
	m.AddToken("alice-token", alice)
	s := &stack{t: t, cfg: cfg, target: target, mem: m, alice: client}
	s.configureAndStart(o)
	return s
}

package bridge_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestBlockedUserIsRefused: a user the operator blocked gets nowhere, with
// ghosts, with the bot or through provisioning, and the bridge writes nothing
// for them. The user had a management room from before the block, so their
// commands reach the bot and are refused there.
func TestBlockedUserIsRefused(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	ctx := context.Background()
	mallory := s.hs.CreateUser(t, "mallory")
	malSync := tesths.NewSyncWatcher(t, mallory)
	bot := s.cfg.BotUserID()
	mgmt := s.createDM(mallory, bot)
	s.waitNotice(malSync, mgmt, bot, "start-chat")

	// The operator blocks mallory and restarts the bridge.
	s.stopBridge()
	s.cfg.Provisioning.SharedSecret = "provisioning-secret-for-tests-0123456789"
	s.cfg.Permissions = config.Permissions{"localhost": config.LevelUser, string(mallory.UserID): config.LevelBlock}
	s.startBridge()
	f := s.connectFake(nil)
	var usersBefore int
	if err := s.br.DB.QueryRow(ctx, "SELECT COUNT(*) FROM matrix_user").Scan(&usersBefore); err != nil {
		t.Fatal(err)
	}

	ghost := s.ghost("bob@network")
	dm := s.createDM(mallory, ghost)
	s.waitMembership(malSync, dm, ghost, event.MembershipLeave)
	botRoom := s.createDM(mallory, bot)
	s.waitMembership(malSync, botRoom, bot, event.MembershipLeave)

	if _, err := mallory.SendText(ctx, mgmt, "start-chat bob@network"); err != nil {
		t.Fatal(err)
	}
	s.waitNotice(malSync, mgmt, bot, "not allowed")

	if status, res := s.provision(mallory.AccessToken, "", "bob@network"); status != http.StatusForbidden {
		t.Errorf("provisioning with a blocked user's token = %d %+v, want 403", status, res)
	}
	if status, res := s.provision("provisioning-secret-for-tests-0123456789", mallory.UserID, "bob@network"); status != http.StatusForbidden {
		t.Errorf("provisioning for a blocked user = %d %+v, want 403", status, res)
	}
	if status, _ := s.provision("not-a-token", "", "bob@network"); status != http.StatusUnauthorized {
		t.Errorf("provisioning with a bad token = %d, want 401", status)
	}

	// Give the bridge time to (wrongly) act on anything still queued.
	time.Sleep(300 * time.Millisecond)
	for query, want := range map[string]int{
		"SELECT COUNT(*) FROM portal":       0,
		"SELECT COUNT(*) FROM cleaned_room": 0,
		"SELECT COUNT(*) FROM ghost":        0,
		"SELECT COUNT(*) FROM matrix_user":  usersBefore,
	} {
		if n := s.countRows(query); n != want {
			t.Errorf("%s = %d, want %d", query, n, want)
		}
	}
	if n := len(f.commandsOf(connector.OpResolveIdentifier)); n != 0 {
		t.Errorf("the connector got %d resolve_identifier commands for a blocked user", n)
	}
	if direct := tesths.DirectContent(t, mallory); len(direct) != 0 {
		t.Errorf("the bridge wrote the blocked user's m.direct: %v", direct)
	}
	var member event.MemberEventContent
	if err := mallory.StateEvent(ctx, dm, event.StateMember, string(ghost), &member); err != nil {
		t.Fatal(err)
	}
	if member.Membership != event.MembershipLeave || member.Reason == "" {
		t.Errorf("ghost membership = %+v, want a declined invite with a reason", member)
	}
}

package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestMadeUpGhostQueries: a local user looking up many made-up names in the
// bridge's namespace (each lookup makes Dendrite ask the bridge whether the
// user exists) gets accounts, and devices, only while the bridge's budget
// for new names lasts; every other name stays unknown to Dendrite and to
// the bridge, and no lookup starts a /sync loop or writes a ghost row.
// Once the budget refills, a user starting an encrypted DM with a new
// contact the way Element X does (profile lookup, then the invite, then
// the first message at once) still reaches the contact, and the contact's
// answer comes encrypted by the ghost's device.
func TestMadeUpGhostQueries(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{encryption: true})
		ctx := context.Background()
		budget := s.cfg.Appservice.NewGhostQueries
		n := 3 * budget.Burst
		start := time.Now()
		var accepted, refused []id.UserID
		for i := range n {
			ghost := s.ghost(fmt.Sprintf("made-up-%d@network", i))
			if _, err := s.alice.GetProfile(ctx, ghost); err == nil {
				accepted = append(accepted, ghost)
			} else if isNotFound(err) {
				refused = append(refused, ghost)
			} else {
				t.Fatalf("profile of %s: %v", ghost, err)
			}
		}
		limit := budget.Burst + int(time.Since(start)/budget.Every.D()) + 1
		t.Logf("%d of %d made-up names answered in %s (budget allows %d)", len(accepted), n, time.Since(start).Round(time.Millisecond), limit)
		if len(accepted) == 0 || len(accepted) > limit {
			t.Fatalf("%d made-up names exist on the homeserver, want between 1 and %d", len(accepted), limit)
		}

		// Dendrite: an answered name has its account and one device (for
		// an encrypted DM it may be invited into next); a refused one has
		// no account at all.
		for _, ghost := range accepted {
			if devs := ghostDevices(ctx, t, s, ghost); devs != 1 {
				t.Errorf("%s has %d devices on the homeserver, want 1", ghost, devs)
			}
		}
		for _, ghost := range refused {
			if devs := ghostDevices(ctx, t, s, ghost); devs != -1 {
				t.Errorf("refused %s has an account with %d devices on the homeserver, want none", ghost, devs)
			}
		}
		// The bridge: a device row per answered name, none syncing, no
		// /sync loop, no ghost rows.
		if got := s.countRows("SELECT COUNT(*) FROM ghost_device WHERE mxid LIKE '%made-up%'"); got != len(accepted) {
			t.Errorf("%d ghost_device rows for made-up names, want %d", got, len(accepted))
		}
		if got := s.countRows("SELECT COUNT(*) FROM ghost_device WHERE syncing"); got != 0 {
			t.Errorf("%d ghost devices marked syncing after queries alone", got)
		}
		if loops := s.br.E2EE.SyncLoops(); loops != 0 {
			t.Errorf("%d /sync loops after queries alone, want 0", loops)
		}
		if got := s.countRows("SELECT COUNT(*) FROM ghost WHERE id LIKE 'made-up%'"); got != 0 {
			t.Errorf("%d ghost rows for made-up names, want 0", got)
		}

		// A real new contact, once the budget has a name again.
		ghost := s.ghost("bob@network")
		tesths.WaitFor(t, 2*budget.Every.D()+10*time.Second, "the budget to answer a new name", func() (bool, error) {
			_, err := s.alice.GetProfile(ctx, ghost)
			return err == nil, nil
		})
		f := s.connectFake(nil)
		nio := startNio(t, s, "alice")
		dm := nio.do(map[string]any{"cmd": "create_dm", "ghost": string(ghost), "text": "hello new contact"})
		expectFirstOnce(t, f, "hello new contact", dm["event_id"])
		f.send(textFrom("bob@network", "r1", "hello back"))
		expectFromGhostDevice(t, s, nio, ghost, "hello back")
		if loops := s.br.E2EE.SyncLoops(); loops != 1 {
			t.Errorf("%d /sync loops with one encrypted portal, want 1", loops)
		}
	})
}

// TestConfiguredGhostQueryBudget: appservice.new_ghost_queries set below
// its default takes effect. With a burst of 2 and a refill far beyond the
// test, only 2 of 6 made-up names get an account on the homeserver (the
// default would let all 6 through), and a ghost the bridge knows is still
// answered once the budget is spent.
func TestConfiguredGhostQueryBudget(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{configure: func(c *config.Config) {
			c.Appservice.NewGhostQueries = config.QueryBudget{Burst: 2, Every: config.Duration(time.Hour)}
		}})
		ctx := context.Background()
		f := s.connectFake(nil)
		known := s.ghost("bob@network")
		s.bobPortal(f, "m1", "hello")
		accepted := 0
		for i := range 6 {
			ghost := s.ghost(fmt.Sprintf("made-up-%d@network", i))
			if _, err := s.alice.GetProfile(ctx, ghost); err == nil {
				accepted++
			} else if !isNotFound(err) {
				t.Fatalf("profile of %s: %v", ghost, err)
			}
		}
		if accepted != 2 {
			t.Errorf("%d of 6 made-up names exist on the homeserver, want the configured burst of 2", accepted)
		}
		if _, err := s.alice.GetProfile(ctx, known); err != nil {
			t.Errorf("profile of the known ghost %s with the budget spent: %v", known, err)
		}
	})
}

// isNotFound: the homeserver's answer for a user that does not exist.
func isNotFound(err error) bool {
	var herr mautrix.HTTPError
	return errors.As(err, &herr) && herr.IsStatus(404)
}

// ghostDevices is how many devices Dendrite lists for the ghost, asked with
// the appservice's token masquerading as it; -1 when Dendrite refuses, as
// for a user the appservice never registered.
func ghostDevices(ctx context.Context, t *testing.T, s *stack, ghost id.UserID) int {
	t.Helper()
	c, err := mautrix.NewClient(s.hs.URL, ghost, s.cfg.Appservice.ASToken)
	if err != nil {
		t.Fatal(err)
	}
	c.SetAppServiceUserID = true
	resp, err := c.GetDevicesInfo(ctx)
	if err != nil {
		return -1
	}
	return len(resp.Devices)
}

// TestConcurrentQueriesOfOneNewName: lookups of one new name at the same
// moment (a client asking for the profile while it invites, two devices of
// the user) cost the budget one name, not one per lookup: with a burst of
// 2, every lookup is answered and another new name still gets through
// afterwards.
func TestConcurrentQueriesOfOneNewName(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{configure: func(c *config.Config) {
			c.Appservice.NewGhostQueries = config.QueryBudget{Burst: 2, Every: config.Duration(time.Hour)}
		}})
		ctx := context.Background()
		ghost := s.ghost("carol@network")
		const n = 8
		errs := make(chan error, n)
		start := make(chan struct{})
		for range n {
			go func() {
				<-start
				_, err := s.alice.GetProfile(ctx, ghost)
				errs <- err
			}()
		}
		close(start)
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("profile of %s, looked up %d times at once: %v", ghost, n, err)
			}
		}
		if _, err := s.alice.GetProfile(ctx, ghost); err != nil {
			t.Fatalf("profile of %s after the concurrent lookups: %v", ghost, err)
		}
		other := s.ghost("dave@network")
		if _, err := s.alice.GetProfile(ctx, other); err != nil {
			t.Errorf("a second new name with a budget of 2 after lookups of one name: %v", err)
		}
	})
}

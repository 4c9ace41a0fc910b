package puppet

import (
	"context"
	"fmt"
	"testing"

	"github.com/rs/zerolog"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/memhs"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/matrix"
)

// TestDoublePuppetIntentsBounded: more users than the bound get intents;
// the kept ones are bounded, and a user whose intent was dropped gets a new
// one without a second whoami.
func TestDoublePuppetIntentsBounded(t *testing.T) {
	ctx := context.Background()
	hs := memhs.Start("example.org")
	t.Cleanup(hs.Close)
	as, err := mas.CreateFull(mas.CreateOpts{
		Registration:     &mas.Registration{ID: "dmbridge", AppToken: "as", ServerToken: "hs", SenderLocalpart: "bot"},
		HomeserverDomain: "example.org", HomeserverURL: hs.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	as.Log = zerolog.Nop()
	target := testdb.SQLite(t)
	db := testdb.Open(t, target)
	cfg := config.Default()
	cfg.DoublePuppet.Secrets = map[string]string{"example.org": "as_token:dp-token"}
	d := NewDoublePuppets(matrix.NewIntents(as), db, cfg, zerolog.Nop())

	user := func(i int) id.UserID { return id.UserID(fmt.Sprintf("@user%d:example.org", i)) }
	first, err := d.Intent(ctx, user(0))
	if err != nil || first == nil || first.UserID() != user(0) || !first.IsDoublePuppet() {
		t.Fatalf("Intent = %+v, %v", first, err)
	}
	for i := 1; i <= maxDoublePuppetIntents; i++ {
		if _, err = d.Intent(ctx, user(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.intents.Len(); n != maxDoublePuppetIntents {
		t.Errorf("%d intents kept, want %d", n, maxDoublePuppetIntents)
	}
	calls, _ := hs.Calls()
	if calls["GET /whoami"] != maxDoublePuppetIntents+1 {
		t.Errorf("%d whoami calls for %d users", calls["GET /whoami"], maxDoublePuppetIntents+1)
	}
	again, err := d.Intent(ctx, user(0))
	if err != nil || again == nil || again == first || again.UserID() != user(0) || !again.IsDoublePuppet() {
		t.Fatalf("Intent after eviction = %+v, %v", again, err)
	}
	if calls, _ = hs.Calls(); len(calls) != 0 {
		t.Errorf("rebuilding a dropped intent called the homeserver: %v", calls)
	}
}

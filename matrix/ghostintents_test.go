package matrix

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/rs/zerolog"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
)

func testAppService(t testing.TB) *mas.AppService {
	t.Helper()
	as, err := mas.CreateFull(mas.CreateOpts{
		Registration:     &mas.Registration{ID: "dmbridge", AppToken: "as", ServerToken: "hs", SenderLocalpart: "bot"},
		HomeserverDomain: "example.org", HomeserverURL: "http://127.0.0.1:1",
	})
	if err != nil {
		t.Fatal(err)
	}
	as.Log = zerolog.Nop()
	return as
}

// TestGhostIntentsBounded: intents act as their ghost through the
// appservice like mautrix's own, the most recently used are reused, and no
// more than the bound are kept.
func TestGhostIntentsBounded(t *testing.T) {
	as := testAppService(t)
	g := newGhostIntents(as, 3)
	ghost := id.UserID("@dm_bob:example.org")
	a := g.get(ghost)
	want := as.NewIntentAPI("dm_bob")
	if a.UserID != ghost || a.Localpart != "dm_bob" || a.Client.UserID != ghost || !a.Client.SetAppServiceUserID ||
		a.Client.AccessToken != "as" || a.Client.StateStore != as.StateStore || a.IsCustomPuppet || a.Registered {
		t.Errorf("intent = %+v, want one acting as %s through the appservice", a, ghost)
	}
	if a.Client.HomeserverURL.String() != want.Client.HomeserverURL.String() {
		t.Errorf("homeserver %s, want %s", a.Client.HomeserverURL, want.Client.HomeserverURL)
	}
	if g.get(ghost) != a {
		t.Error("a second get built a new intent")
	}
	for i := 0; i < 3; i++ {
		g.get(id.UserID(fmt.Sprintf("@dm_%d:example.org", i)))
	}
	if g.recent.Len() != 3 {
		t.Errorf("%d intents kept, want 3", g.recent.Len())
	}
	if g.get(ghost) == a {
		t.Error("the least recently used intent was not dropped")
	}
	if g.get("@someone:elsewhere.org") != nil || g.get("not an id") != nil {
		t.Error("an intent for a user not on the homeserver")
	}
	if g.get(as.BotMXID()) != as.BotIntent() {
		t.Error("the bot's intent is not mautrix's")
	}
}

// TestGhostIntentsMemory: 100,000 ghosts' intents cost the bound, not one
// intent each (mautrix's AppService.Intent keeps ~1.3 KB per ghost).
func TestGhostIntentsMemory(t *testing.T) {
	as := testAppService(t)
	g := newGhostIntents(as, maxGhostIntents)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	const n = 100000
	before := heap()
	for i := 0; i < n; i++ {
		g.get(id.UserID(fmt.Sprintf("@dm_contact%d:example.org", i)))
	}
	grew := int64(heap()) - int64(before)
	runtime.KeepAlive(g)
	t.Logf("heap grew %d KB for %d ghosts", grew/1024, n)
	if grew > 20<<20 {
		t.Errorf("heap grew %d MB for %d ghosts, want the bound's few MB", grew>>20, n)
	}
}

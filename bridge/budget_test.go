package bridge_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// callCounter sits between the bridge and the homeserver and counts the
// bridge's requests, so the homeserver-call budget is measured, not assumed.
type callCounter struct {
	mu    sync.Mutex
	calls []string
}

func (c *callCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

func countHomeserverCalls(t *testing.T, s *stack) *callCounter {
	t.Helper()
	target, err := url.Parse(s.hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	counter := &callCounter{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		// Txn ids make every send path unique; keep the endpoint.
		parts := strings.Split(path, "/")
		if len(parts) > 7 {
			parts = parts[:7]
		}
		counter.mu.Lock()
		counter.calls = append(counter.calls, r.Method+" "+strings.Join(parts, "/"))
		counter.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.stopBridge()
	s.cfg.Homeserver.Address = srv.URL
	s.startBridge()
	return counter
}

// TestHomeserverCallBudget measures the requests of a new DM with a known
// ghost (goal: 5), of one more message (goal: 1), and of a new DM with a new
// ghost (goal: 8, the message included).
func TestHomeserverCallBudget(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	counter := countHomeserverCalls(t, s)
	f := s.connectFake(nil)
	// Warm-up: the first DM of the user also verifies the double puppet.
	f.send(textFrom("warmup@network", "w1", "warm up"))
	s.waitMessage(s.roomOf("warmup@network"), "warm up")
	// The contact becomes known: ghost registered and named, once per ghost.
	f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, Contact: &connector.Contact{ID: "bob@network", Name: "Bob"}})
	time.Sleep(300 * time.Millisecond)
	counter.take()

	roomID := s.bobPortal(f, "m1", "first")
	time.Sleep(300 * time.Millisecond)
	newDM := counter.take()

	f.send(textFrom("bob@network", "m2", "second"))
	s.waitMessage(roomID, "second")
	time.Sleep(300 * time.Millisecond)
	perMessage := counter.take()

	// Issue 14's P3: a contact never seen before, so a new ghost (register,
	// displayname, without reading it first) as well as a new portal.
	f.send(textFrom("carol@network", "c1", "hello from carol"))
	s.waitMessage(s.roomOf("carol@network"), "hello from carol")
	time.Sleep(300 * time.Millisecond)
	newGhostDM := counter.take()

	sort.Strings(newDM)
	sort.Strings(newGhostDM)
	t.Logf("new ghost and new DM, first message included: %d calls: %q", len(newGhostDM), newGhostDM)
	if len(newGhostDM) > 8 {
		t.Errorf("a new ghost with a new DM took %d homeserver calls, budget is 8", len(newGhostDM))
	}
	t.Logf("new DM with a known ghost, first message included: %d calls: %q", len(newDM), newDM)
	t.Logf("one more message: %d calls: %q", len(perMessage), perMessage)
	// createRoom, join, m.direct GET + PUT + GET, and the message itself.
	if len(newDM) > 6 {
		t.Errorf("a new DM took %d homeserver calls, budget is 5 plus the message", len(newDM))
	}
	if len(perMessage) != 1 {
		t.Errorf("a message took %d homeserver calls, want 1", len(perMessage))
	}
}

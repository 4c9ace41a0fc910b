package bridge_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestUnappliedJoinIsRepaired: the homeserver answers the double puppet's
// join of a new portal with an event id but does not apply it (Dendrite does
// this for an event it soft-fails). The user would be left with an invite to
// a DM the bridge thinks they are in; the repair pass finds the portal
// missing from the user's joined rooms, sees the invite and joins again, and
// the user ends up in the DM with the message.
func TestUnappliedJoinIsRepaired(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{hsProxy: true, configure: func(c *config.Config) {
			c.Bridge.MDirectRepairInterval = config.Duration(3 * time.Second)
		}})
		ctx := context.Background()
		alice := string(s.alice.UserID)
		var swallowed, joins atomic.Int32
		s.proxy.setAnswer(func(r *http.Request, body []byte) any {
			if r.Method != http.MethodPut || !strings.HasSuffix(r.URL.Path, "/state/m.room.member/"+alice) {
				return nil
			}
			var member event.MemberEventContent
			if json.Unmarshal(body, &member) != nil || member.Membership != event.MembershipJoin {
				return nil
			}
			joins.Add(1)
			if swallowed.CompareAndSwap(0, 1) {
				return map[string]string{"event_id": "$swallowed-by-the-test-proxy"}
			}
			return nil
		})
		f := s.connectFake(nil)
		f.send(textFrom("bob@network", "m1", "hello after a lost join"))
		roomID := s.roomOf("bob@network")
		joined := func() bool {
			resp, err := s.alice.JoinedRooms(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return slices.Contains(resp.JoinedRooms, roomID)
		}
		if swallowed.Load() == 1 && joins.Load() == 1 && joined() {
			t.Fatal("alice is in the portal although her only join was swallowed: the test proves nothing")
		}
		tesths.WaitFor(t, 30*time.Second, "alice joined to the portal by the repair", func() (bool, error) {
			return joined(), nil
		})
		if n := joins.Load(); n != 2 {
			t.Errorf("%d joins of alice went out, want 2 (the lost one and the repair's)", n)
		}
		s.waitMessage(roomID, "hello after a lost join")
		if direct := tesths.DirectContent(t, s.alice); !slices.Contains(direct[s.ghost("bob@network")], roomID) {
			t.Errorf("m.direct %v does not list the portal %s", direct, roomID)
		}
	})
}

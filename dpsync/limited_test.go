package dpsync

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// pagingAPI is scriptedAPI that answers /messages from older, newest
// first, timelineLimit at a time, and records each page asked for.
type pagingAPI struct {
	*scriptedAPI
	mu    sync.Mutex
	older []map[string]any
	pages []string // from/to of each Messages call
}

func (a *pagingAPI) Messages(_ context.Context, _ id.RoomID, from, to string, dir mautrix.Direction, filter *mautrix.FilterPart, limit int) (*mautrix.RespMessages, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pages = append(a.pages, from+"/"+to)
	if dir != mautrix.DirectionBackward || len(filter.Senders) != 1 || filter.Senders[0] != alice {
		return nil, fmt.Errorf("page asked %c with filter %+v", dir, filter)
	}
	var resp mautrix.RespMessages
	n := min(limit, len(a.older))
	for _, raw := range a.older[:n] {
		body, _ := json.Marshal(raw)
		var evt event.Event
		if err := json.Unmarshal(body, &evt); err != nil {
			return nil, err
		}
		resp.Chunk = append(resp.Chunk, &evt)
	}
	a.older = a.older[n:]
	resp.Start, resp.End = from, fmt.Sprintf("%s-%d", from, n)
	return &resp, nil
}

// TestLimitedTimelineFetchesTheRest: after an outage the user deleted 130
// messages in one DM. The incremental sync brings the newest 100 of the
// user's redactions there, limited, with a prev_batch; the 30 older ones
// are only reachable by paging back. They used to be left out (a warning),
// and the position moved past them: 30 deletions never reached the
// network. Found by a review (helper agent).
func TestLimitedTimelineFetchesTheRest(t *testing.T) {
	ctx := context.Background()
	db := withPortal(t)
	var newest []any
	for i := 30; i < 130; i++ {
		newest = append(newest, redaction(fmt.Sprintf("$r%d", i), alice))
	}
	var older []map[string]any
	for i := 29; i >= 0; i-- {
		r := redaction(fmt.Sprintf("$r%d", i), alice)
		r["room_id"] = portal
		older = append(older, r)
	}
	api := &pagingAPI{older: older, scriptedAPI: &scriptedAPI{answers: []any{
		response("p1", nil),
		response("p2", map[id.RoomID]any{portal: map[string]any{
			"timeline": map[string]any{"events": newest, "limited": true, "prev_batch": "t29"},
		}}),
	}}}
	in := &intake{db: db}
	f := &follower{m: New(db, puppets{api}, in, zerolog.Nop()), user: alice, log: zerolog.Nop(), filter: followFilter(alice)}
	for i := 0; i < 2; i++ {
		if _, err := f.step(ctx); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	seen := map[string]bool{}
	for _, batch := range in.stored {
		for _, raw := range batch {
			var head struct {
				ID     string    `json:"event_id"`
				RoomID id.RoomID `json:"room_id"`
			}
			if err := json.Unmarshal(raw, &head); err != nil || head.RoomID != portal {
				t.Fatalf("stored %s (%v)", raw, err)
			}
			seen[head.ID] = true
		}
	}
	if len(seen) != 130 {
		t.Errorf("%d of the 130 deletions stored", len(seen))
	}
	if pos, _ := db.DPSync.Get(ctx, alice); pos != "p2" {
		t.Errorf("position %q, want p2", pos)
	}
	if len(api.pages) == 0 || api.pages[0] != "t29/p1" {
		t.Errorf("pages %v, want the first from prev_batch t29 back to the last position p1", api.pages)
	}
}

package dpsync

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/matrix"
)

const (
	alice  = id.UserID("@alice:hs")
	portal = id.RoomID("!portal:hs")
	other  = id.RoomID("!other:hs")
)

// syncCall is one Sync the follower made.
type syncCall struct {
	since, filter string
}

// scriptedAPI answers each Sync with the next scripted answer.
type scriptedAPI struct {
	matrix.API
	mu      sync.Mutex
	calls   []syncCall
	answers []any // a JSON-able response or an error
}

func (a *scriptedAPI) Sync(_ context.Context, since, filter string, _ time.Duration, out any) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, syncCall{since, filter})
	if len(a.answers) == 0 {
		return fmt.Errorf("no answer scripted for sync %d", len(a.calls))
	}
	answer := a.answers[0]
	a.answers = a.answers[1:]
	if err, ok := answer.(error); ok {
		return err
	}
	body, err := json.Marshal(answer)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, out)
}

type puppets struct{ api matrix.API }

func (p puppets) Intent(context.Context, id.UserID) (matrix.API, error) { return p.api, nil }

// intake stores positions like appservice.StoreSynced and records the rest.
type intake struct {
	db         *database.Database
	stored     [][]json.RawMessage
	ephemerals []id.RoomID
}

func (in *intake) StoreSynced(ctx context.Context, user id.UserID, next string, raw []json.RawMessage) (int, error) {
	in.stored = append(in.stored, raw)
	return len(raw), in.db.DPSync.Put(ctx, user, next)
}

func (in *intake) HandSyncedEphemeral(_ context.Context, roomID id.RoomID, _ json.RawMessage) error {
	in.ephemerals = append(in.ephemerals, roomID)
	return nil
}

func response(next string, rooms map[id.RoomID]any) map[string]any {
	return map[string]any{"next_batch": next, "rooms": map[string]any{"join": rooms}}
}

func redaction(eventID string, sender id.UserID) map[string]any {
	return map[string]any{"type": "m.room.redaction", "event_id": eventID, "sender": sender, "redacts": "$target",
		"content": map[string]any{}}
}

func refusal(status int, code string) error {
	return mautrix.HTTPError{Response: &http.Response{StatusCode: status},
		RespError: &mautrix.RespError{ErrCode: code, Err: code, StatusCode: status}}
}

// TestFollowerDecisions walks one user's follower through the answers a
// homeserver gives: the first sync only takes the position; the user's own
// redactions in portals are stored with their room added, nothing else is;
// empty answers are not stored until idleStoreInterval; a refused position
// starts over from now, refused credentials do not.
func TestFollowerDecisions(t *testing.T) {
	ctx := context.Background()
	db := withPortal(t)
	api := &scriptedAPI{answers: []any{
		response("p1", nil),
		response("p2", map[id.RoomID]any{
			portal: map[string]any{
				"timeline": map[string]any{"events": []any{
					redaction("$mine", alice), redaction("$ghosts", "@bob:hs"), redaction("", alice),
					map[string]any{"type": "m.room.message", "event_id": "$msg", "sender": alice, "content": map[string]any{"body": "x"}},
				}},
				"ephemeral": map[string]any{"events": []any{map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": []id.UserID{alice}}}}},
			},
			other: map[string]any{
				"timeline":  map[string]any{"events": []any{redaction("$elsewhere", alice)}},
				"ephemeral": map[string]any{"events": []any{map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": []id.UserID{alice}}}}},
			},
		}),
		response("p3", nil),
		response("p4", nil),
		refusal(http.StatusBadRequest, "M_INVALID_PARAM"),
		response("q1", nil),
		refusal(http.StatusUnauthorized, "M_UNKNOWN_TOKEN"),
	}}
	in := &intake{db: db}
	m := New(db, puppets{api}, in, zerolog.Nop())
	f := &follower{m: m, user: alice, log: zerolog.Nop(), filter: followFilter(alice)}
	step := func(wantErr bool) {
		t.Helper()
		done, err := f.step(ctx)
		if done || (err != nil) != wantErr {
			t.Fatalf("step %d: done %v, err %v; want an error: %v", len(api.calls), done, err, wantErr)
		}
	}
	stored := func() string {
		t.Helper()
		pos, err := db.DPSync.Get(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		return pos
	}

	step(false)
	if c := api.calls[0]; c.since != "" || c.filter != positionFilter() || len(in.stored) != 1 || len(in.stored[0]) != 0 || stored() != "p1" {
		t.Fatalf("first sync %+v stored %v at %q; want a position-only sync storing p1 and no events", c, in.stored, stored())
	}

	step(false)
	if c := api.calls[1]; c.since != "p1" || c.filter != followFilter(alice) {
		t.Fatalf("second sync %+v, want from p1 with the follow filter", c)
	}
	if !f.synced {
		t.Error("an incremental sync that worked does not count as one")
	}
	if len(in.stored) != 2 || len(in.stored[1]) != 1 || stored() != "p2" {
		t.Fatalf("stored %d batches, last %v at %q; want alice's one redaction in the portal at p2", len(in.stored), in.stored, stored())
	}
	var got struct {
		ID     id.EventID `json:"event_id"`
		RoomID id.RoomID  `json:"room_id"`
	}
	if err := json.Unmarshal(in.stored[1][0], &got); err != nil || got.ID != "$mine" || got.RoomID != portal {
		t.Errorf("stored event %s, want $mine with room_id %s", in.stored[1][0], portal)
	}
	if len(in.ephemerals) != 1 || in.ephemerals[0] != portal {
		t.Errorf("ephemerals handed for rooms %v, want the portal's typing only", in.ephemerals)
	}

	step(false)
	if len(in.stored) != 2 || stored() != "p2" || f.since != "p3" {
		t.Fatalf("an empty answer stored (%d batches, position %q, in memory %q); want p3 kept in memory only", len(in.stored), stored(), f.since)
	}
	f.storedAt = time.Now().Add(-idleStoreInterval)
	step(false)
	if stored() != "p4" {
		t.Fatalf("position %q after idleStoreInterval, want p4", stored())
	}

	step(true)
	if stored() != "" || f.since != "" {
		t.Fatalf("after a refused position: stored %q, in memory %q; want both forgotten", stored(), f.since)
	}
	step(false)
	if f.synced {
		t.Error("a fresh start after a refusal counts as a sync that worked: the backoff would start over")
	}
	if c := api.calls[5]; c.since != "" || c.filter != positionFilter() || stored() != "q1" {
		t.Fatalf("sync after the refusal %+v stored %q; want a new position-only start at q1", c, stored())
	}
	step(true)
	if stored() != "q1" || f.since != "q1" {
		t.Errorf("refused credentials changed the position to %q (memory %q), want q1 kept", stored(), f.since)
	}
}

// TestFilters: the filters name what they keep positively (Dendrite's
// SQLite backend takes not_types ["*"] literally), the follow filter keeps
// only the user's own redactions, and the position filter keeps nothing.
func TestFilters(t *testing.T) {
	var follow filter
	if err := json.Unmarshal([]byte(followFilter(alice)), &follow); err != nil {
		t.Fatal(err)
	}
	tl := follow.Room.Timeline
	if len(tl.Types) != 1 || tl.Types[0] != "m.room.redaction" || len(tl.Senders) != 1 || tl.Senders[0] != alice ||
		tl.Limit == nil || *tl.Limit != timelineLimit {
		t.Errorf("follow timeline filter = %+v, want alice's redactions, %d at most", tl, timelineLimit)
	}
	if eph := follow.Room.Ephemeral.Types; len(eph) != 2 {
		t.Errorf("follow ephemeral types = %v, want typing and receipts", eph)
	}
	var pos filter
	if err := json.Unmarshal([]byte(positionFilter()), &pos); err != nil {
		t.Fatal(err)
	}
	if pos.Room.Timeline.Limit == nil || *pos.Room.Timeline.Limit != 0 || pos.Room.State.Types[0] != none[0] {
		t.Errorf("position filter = %+v, want no timeline and no state", pos.Room)
	}
	for _, f := range []string{followFilter(alice), positionFilter()} {
		if strings.Contains(f, "*") || strings.Contains(f, "not_types") {
			t.Errorf("filter %s relies on not_types or a wildcard", f)
		}
	}
}

// TestUnfollowWhenLoginsAreGone: a rescan that finds the user owns no
// login any more stops the user's loop and forgets its position; a user
// who never owned one is not followed at all.
func TestUnfollowWhenLoginsAreGone(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, testdb.SQLite(t))
	if _, err := db.Login.Upsert(ctx, &database.Login{ID: "l", ConnectorID: "c", MatrixUser: alice}); err != nil {
		t.Fatal(err)
	}
	api := &scriptedAPI{answers: []any{response("p1", nil)}}
	m := New(db, puppets{api}, &intake{db: db}, zerolog.Nop())
	m.Start(ctx)
	defer m.Stop()
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitUntil("alice's position stored", func() bool { pos, _ := db.DPSync.Get(ctx, alice); return pos == "p1" })
	// Every sync after the first fails here (no answer scripted).
	waitUntil("alice counted as failing", func() bool { n, failing := m.Counts(); return n == 1 && failing == 1 })
	api.mu.Lock()
	calls := len(api.calls)
	api.mu.Unlock()
	m.Follow("@nologin:hs")
	waitUntil("the user without a login not followed", func() bool { return !m.Following("@nologin:hs") })
	api.mu.Lock()
	for _, c := range api.calls[calls:] {
		if c.since == "" {
			t.Errorf("a first sync went out after Follow of a user without a login: %+v", c)
		}
	}
	api.mu.Unlock()
	if pos, err := db.DPSync.Get(ctx, "@nologin:hs"); err != nil || pos != "" {
		t.Errorf("position of the user without a login = %q, %v; want none", pos, err)
	}

	if err := db.Login.Delete(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	m.followOwners()
	waitUntil("alice no longer followed", func() bool { return !m.Following(alice) })
	if pos, err := db.DPSync.Get(ctx, alice); err != nil || pos != "" {
		t.Errorf("alice's position after unfollowing = %q, %v; want it forgotten", pos, err)
	}
	if n, failing := m.Counts(); n != 0 || failing != 0 {
		t.Errorf("counts after unfollowing = %d followed, %d failing; want none", n, failing)
	}
}

// withPortal is a database with alice's login and her portal with bob in
// the room portal.
func withPortal(t *testing.T) *database.Database {
	t.Helper()
	ctx := context.Background()
	db := testdb.Open(t, testdb.SQLite(t))
	if _, err := db.Login.Upsert(ctx, &database.Login{ID: "l", ConnectorID: "c", MatrixUser: alice}); err != nil {
		t.Fatal(err)
	}
	key := database.PortalKey{LoginID: "l", ChatID: "bob"}
	if _, err := db.Portal.GetOrCreate(ctx, key, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := db.Portal.SetRoom(ctx, key, portal); err != nil {
		t.Fatal(err)
	}
	return db
}

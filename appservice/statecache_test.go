package appservice_test

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestStateStoreCacheFollowsWrites: the cached "joined" answer goes with
// every kind of membership write, and a write inside a transaction (which
// might roll back) turns the cache off.
func TestStateStoreCacheFollowsWrites(t *testing.T) {
	ctx := context.Background()
	db, link := linkOnSQLite(t)
	s := link.StateStore
	if link.AS.StateStore != mautrix.StateStore(s) {
		t.Fatal("the appservice's intents do not use the caching store")
	}
	room, ghost := id.RoomID("!r:localhost"), id.UserID("@dm_bob:localhost")
	// sqlIn asks the database itself, past the cache.
	sqlIn := func() bool { return s.SQLStateStore.IsInRoom(ctx, room, ghost) }
	steps := []struct {
		name  string
		write func() error
		want  bool
	}{
		{"join", func() error { return s.SetMembership(ctx, room, ghost, event.MembershipJoin) }, true},
		{"leave", func() error { return s.SetMembership(ctx, room, ghost, event.MembershipLeave) }, false},
		{"member event join", func() error {
			return s.SetMember(ctx, room, ghost, &event.MemberEventContent{Membership: event.MembershipJoin})
		}, true},
		{"member event via UpdateStateStore", func() error {
			key := string(ghost)
			evt := &event.Event{Type: event.StateMember, RoomID: room, StateKey: &key,
				Content: event.Content{Parsed: &event.MemberEventContent{Membership: event.MembershipBan}}}
			mautrix.UpdateStateStore(ctx, s, evt)
			return nil
		}, false},
		{"join again", func() error { return s.SetMembership(ctx, room, ghost, event.MembershipJoin) }, true},
		{"room cleared", func() error { return s.ClearCachedMembers(ctx, room) }, false},
		{"join after clear", func() error { return s.SetMembership(ctx, room, ghost, event.MembershipJoin) }, true},
		{"replaced without the ghost", func() error {
			other := "@carol:localhost"
			return s.ReplaceCachedMembers(ctx, room, []*event.Event{{Type: event.StateMember, RoomID: room, StateKey: &other,
				Content: event.Content{Parsed: &event.MemberEventContent{Membership: event.MembershipJoin}}}})
		}, false},
	}
	for _, step := range steps {
		if err := step.write(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		// Twice: the first may fill the cache, the second reads it.
		for i := 0; i < 2; i++ {
			if got := s.IsInRoom(ctx, room, ghost); got != step.want || sqlIn() != step.want {
				t.Fatalf("after %s: IsInRoom = %v (database %v), want %v", step.name, got, sqlIn(), step.want)
			}
		}
	}

	// A leave written in a transaction: a read outside it before the
	// commit sees the old join, which must not stay cached after.
	if err := s.SetMembership(ctx, room, ghost, event.MembershipJoin); err != nil {
		t.Fatal(err)
	}
	err := db.DoTxn(ctx, nil, func(txnCtx context.Context) error {
		if err := s.SetMembership(txnCtx, room, ghost, event.MembershipLeave); err != nil {
			return err
		}
		if !s.IsInRoom(ctx, room, ghost) {
			t.Log("the database showed the uncommitted leave outside the transaction")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.IsInRoom(ctx, room, ghost) {
		t.Fatal("left in a committed transaction, but IsInRoom says joined")
	}
}

// linkOnSQLite is an appservice link (with its caching state store) on a
// fresh SQLite database.
func linkOnSQLite(t *testing.T) (*database.Database, *appservice.Link) {
	t.Helper()
	target := testdb.SQLite(t)
	db, err := database.Open(context.Background(), target.Type, target.URI, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	link, err := appservice.New(context.Background(), testConfig(), db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return db, link
}

package appservice_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestStateStoreEncryptionCache: the cached answer to "is this room
// encrypted" follows every way the bridge learns of a room's encryption,
// "not encrypted" included, and a write inside a transaction turns the
// cache off.
func TestStateStoreEncryptionCache(t *testing.T) {
	ctx := context.Background()
	db, link := linkOnSQLite(t)
	s := link.StateStore
	megolm := &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}
	check := func(what string, room id.RoomID, want bool) {
		t.Helper()
		// Twice: the first may fill the cache, the second reads it.
		for i := 0; i < 2; i++ {
			got, err := s.IsEncrypted(ctx, room)
			if err != nil {
				t.Fatal(err)
			}
			inDB, _ := s.SQLStateStore.IsEncrypted(ctx, room)
			if got != want || inDB != want {
				t.Fatalf("%s: IsEncrypted = %v (database %v), want %v", what, got, inDB, want)
			}
		}
	}

	plain, pushed, inTxn := id.RoomID("!plain:localhost"), id.RoomID("!pushed:localhost"), id.RoomID("!txn:localhost")
	check("a room never seen", plain, false)
	if err := s.SetEncryptionEvent(ctx, plain, megolm); err != nil {
		t.Fatal(err)
	}
	check("after SetEncryptionEvent", plain, true)

	check("before the pushed event", pushed, false)
	evt := &event.Event{Type: event.StateEncryption, RoomID: pushed, StateKey: new(string),
		Content: event.Content{Parsed: megolm}}
	mautrix.UpdateStateStore(ctx, s, evt)
	check("after the pushed m.room.encryption", pushed, true)

	// Written in a transaction: a read outside it before the commit may
	// see the room unencrypted, which must not stay cached after.
	check("before the transaction", inTxn, false)
	err := db.DoTxn(ctx, nil, func(txnCtx context.Context) error {
		if err := s.SetEncryptionEvent(txnCtx, inTxn, megolm); err != nil {
			return err
		}
		_, _ = s.IsEncrypted(ctx, inTxn)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check("after the committed transaction", inTxn, true)
}

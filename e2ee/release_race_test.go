package e2ee

import (
	"context"
	"testing"
	"time"
)

// TestReleaseDoesNotStopALoopJustActivated: two portals share the
// ghost bob (two users, or two logins, chat with the same contact). A new
// encrypted portal is being made: encryptedRoomState (or ghostJoined for an
// adopted room) calls Active, the room is created, and only then is the
// portal's room stored. Meanwhile the other portal with bob ends and its
// cleanup calls Release: inPortal reads no portal with a room (the new
// room is not stored yet) and stops the loop that Active found running.
// The new portal's ghost then never receives room keys: every encrypted
// message of the user in it is undecryptable until a restart.
func TestReleaseDoesNotStopALoopJustActivated(t *testing.T) {
	hs, db := syncLoopSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The old portal's loop runs; the new portal's creation asks for it.
	m := ghostLoopRunning(ctx, t, hs, db)
	if _, err := m.Active(ctx, ownGhost); err != nil { // new portal: encryptedRoomState
		t.Fatal(err)
	}
	// The old portal ends before the new portal's room is stored.
	if err := m.Release(ctx, ownGhost); err != nil {
		t.Fatal(err)
	}
	// (the new portal's room is stored now; nothing calls Active again)
	time.Sleep(300 * time.Millisecond)
	if n := m.SyncLoops(); n != 1 {
		t.Fatalf("%d /sync loops for a ghost whose new encrypted portal was just activated; want 1", n)
	}
}

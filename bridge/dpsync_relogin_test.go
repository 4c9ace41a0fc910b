package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestDeletionRightAfterReLogin: the network logs alice's login out and
// she logs in again; in the new portal she deletes a message right away.
// The deletion reaches the network at once (Dendrite pushes no
// redactions: it comes through her double puppet's /sync), not after the
// minute the follower's rescan would take.
func TestDeletionRightAfterReLogin(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newFidelityStack(t, target, func(c *config.Config) { c.DoublePuppet.Sync = true })
		f := s.fidConnect(fakeSetup{})
		old, _ := s.fidPortal(f, "m1", "hello alice")
		s.waitFollowing(s.alice.UserID)
		s.logOut(f)
		f.send(&connector.Event{Kind: connector.KindLogin, Login: testLogin, TS: time.Now().UnixMilli(), State: connector.LoginConnected})
		// logOut returns at the notice, which comes before the old portal's
		// row is gone: roomOf could still read the old room then.
		f.send(textFrom(fidBob, "m2", "hello again"))
		roomID := s.roomOfOther(fidBob, old)
		s.waitMessage(roomID, "hello again")
		ctx := context.Background()
		sent, _ := s.fidSendText(roomID, "oops")
		red, err := s.alice.RedactEvent(ctx, roomID, sent)
		if err != nil {
			t.Fatal(err)
		}
		f.fidWaitCommand(connector.OpDeleteMessage, func(c *connector.Command) bool { return c.Txn == string(red.EventID) })
	})
}

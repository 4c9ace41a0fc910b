package bridge_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/tesths"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// TestXMPPBackfillFromArchive: bob wrote 20 messages to alice's XMPP
// account before her login was bridged (the server keeps them in its
// archive only: no offline storage). When bob writes again, the new portal
// shows the 20 from the archive in order, as bob's ghost, at the times they
// were sent, then the new one.
func TestXMPPBackfillFromArchive(t *testing.T) {
	x := newXMPPStackWith(t, stackOptions{mediaFetchAllow: loopbackMedia, noConnector: true,
		xmpp: []testxmpp.Option{testxmpp.WithoutOfflineStorage()}})
	// The portal comes with bob's next message here, not with the login.
	x.stopBridge()
	x.cfg.Bridge.Backfill.SyncRecentChats = 0
	x.startBridge()
	var want []string
	start := time.Now().Add(-time.Second).UnixMilli()
	for i := 1; i <= 20; i++ {
		want = append(want, fmt.Sprintf("before the bridge %d", i))
		x.bobSays(want[i-1])
	}
	// The archive stamps whole seconds, and not always rounded down (one
	// run saw a message sent at .997 stamped with the next second).
	sentBy := time.Now().Truncate(time.Second).Add(time.Second).UnixMilli()
	x.startConnector()
	x.bobSays("bob again")
	want = append(want, "bob again")
	room := x.portal()
	tesths.WaitFor(t, 60*time.Second, "history and the new message", func() (bool, error) {
		return len(timeline(t, x.alice, room)) >= len(want), nil
	})
	time.Sleep(time.Second)
	evts := timeline(t, x.alice, room)
	if got := bodies(evts); !slices.Equal(got, want) {
		t.Fatalf("room shows %q, want %q", got, want)
	}
	last := int64(0)
	for i, evt := range evts {
		if evt.Sender != x.ghostID() {
			t.Errorf("%d: sent by %s, want bob's ghost", i, evt.Sender)
		}
		if evt.Timestamp < last {
			t.Errorf("%d: ts %d before the previous %d", i, evt.Timestamp, last)
		}
		last = evt.Timestamp
		if i < 20 && (evt.Timestamp < start || evt.Timestamp > sentBy) {
			t.Errorf("%q has ts %d, want the time bob sent it (%d..%d)", bodies(evts)[i], evt.Timestamp, start, sentBy)
		}
	}
}

// TestXMPPSyncRecentChats: bob and carol wrote to alice's XMPP account
// before her login was bridged; when it is, both chats become portals with
// their history from the archive, without anyone writing again.
func TestXMPPSyncRecentChats(t *testing.T) {
	x := newXMPPStackWith(t, stackOptions{mediaFetchAllow: loopbackMedia, noConnector: true,
		xmpp: []testxmpp.Option{testxmpp.WithoutOfflineStorage()}})
	x.xmpp.Register(t, "carol", "carol-pw")
	carol := x.xmpp.Dial(t, "carol", "carol-pw")
	var fromBob []string
	for i := 1; i <= 20; i++ {
		fromBob = append(fromBob, fmt.Sprintf("bob before %d", i))
		x.bobSays(fromBob[i-1])
	}
	carol.SendChat(t, x.login, "carol before", "")
	x.startConnector()
	for _, c := range []struct {
		room id.RoomID
		want []string
	}{{x.portal(), fromBob}, {x.portalOf(x.xmpp.JID("carol")), []string{"carol before"}}} {
		tesths.WaitFor(t, 60*time.Second, fmt.Sprintf("%d history messages", len(c.want)), func() (bool, error) {
			return len(timeline(t, x.alice, c.room)) >= len(c.want), nil
		})
		time.Sleep(500 * time.Millisecond)
		if got := bodies(timeline(t, x.alice, c.room)); !slices.Equal(got, c.want) {
			t.Errorf("room shows %q, want %q", got, c.want)
		}
	}
}

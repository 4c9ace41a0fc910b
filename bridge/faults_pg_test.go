//go:build linux

package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestFaultPostgresRestarts restarts the bridge's PostgreSQL server twice
// while messages stream both ways: every remote message shows once in the
// room, every reply reaches the network once.
func TestFaultPostgresRestarts(t *testing.T) { postgresRestarts(t, "fast") }

// TestFaultPostgresCrashes is TestFaultPostgresRestarts with the server
// crashing (pg_ctl -m immediate) instead: in-doubt markers commit without
// waiting for their WAL flush, alone (database/indoubt.go) or in a group
// commit's transaction of markers (portal/groupcommit.go), so a crash can
// lose one whose send went out; the event is applied again and its resend
// under the same transaction id must not show twice.
func TestFaultPostgresCrashes(t *testing.T) { postgresRestarts(t, "immediate") }

func postgresRestarts(t *testing.T, mode string) {
	remote, replies := faultSize(60, 600), faultSize(10, 100)
	pg := testdb.StartPrivate(t)
	s := newStack(t, pg.Target())
	f := s.connectFake(sdk.NewMemoryStore())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	pace := 50 * time.Millisecond
	stream, roomID := s.startStream(ctx, t, f, "remote", pace, remote, remote)
	s.waitMessage(roomID, "first")
	replyStream := s.sendReplies(ctx, t, roomID, replies, func() time.Duration { return time.Duration(remote) * pace / time.Duration(replies) })
	// Two restarts, a third and two thirds of the way through the stream.
	third := time.Duration(remote) * pace / 3
	for i := 0; i < 2; i++ {
		time.Sleep(third)
		pg.RestartWith(mode, time.Duration(faultSize(2, 5))*time.Second)
		t.Logf("PostgreSQL restarted (%s, %d)", mode, i+1)
	}
	sent := stream.finish(ctx, t)
	toNetwork := replyStream.wait(t, f)
	sent = append(sent, sortedKeys(toNetwork)...)
	tally("postgres restarts ("+mode+") x2: replies at the connector", "postgres (private)", sortedKeys(toNetwork), toNetwork).check(t)
	got := s.waitTimeline(t, roomID, sent, 3*time.Minute)
	r := tally("postgres restarts ("+mode+") x2: room timeline", "postgres (private)", sent, got)
	r.check(t)
	s.explainMissing(t, roomID, r)
}

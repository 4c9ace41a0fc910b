package bridge_test

import (
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestReplayedMessageIsNotSentAgain: a connector that lost its state sends
// an already bridged message again under a new seq; the bridge recognises it
// before any send, so the homeserver sees no second send request (not even
// one it would answer idempotently). Against the in-memory homeserver, which
// counts the requests.
func TestReplayedMessageIsNotSentAgain(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{memHS: true})
		arr := &arrivals{at: map[string]time.Time{}, order: map[string][]string{}}
		s.mem.OnSend = arr.record
		f := s.connectFake(nil)
		f.send(textFrom("bob@network", "m1", "first"))
		tesths.WaitFor(t, 20*time.Second, "the first message", func() (bool, error) {
			return !arr.when("first").IsZero(), nil
		})
		time.Sleep(300 * time.Millisecond)
		s.mem.Calls()
		f.stop()

		again := s.connectFake(sdk.NewMemoryStore())
		again.send(textFrom("bob@network", "m1", "first"))
		again.send(textFrom("bob@network", "m2", "second"))
		tesths.WaitFor(t, 20*time.Second, "the second message", func() (bool, error) {
			return !arr.when("second").IsZero(), nil
		})
		time.Sleep(300 * time.Millisecond)
		calls, _ := s.mem.Calls()
		if n := calls["PUT /rooms/send"]; n != 1 {
			t.Errorf("%d send requests after the replay, want 1 (only the new message): %v", n, calls)
		}
		if n := s.countRows("SELECT COUNT(*) FROM in_doubt_send"); n != 0 {
			t.Errorf("%d in-doubt markers left", n)
		}
		if n := s.countRows("SELECT COUNT(*) FROM inbox WHERE done=false"); n != 0 {
			t.Errorf("%d inbox rows not done", n)
		}
	})
}

package bridge_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// roomBodyCounts reads the room's whole timeline through /messages (not
// sync, whose timeline may be cut short) and counts each message body.
func (s *stack) roomBodyCounts(ctx context.Context, roomID id.RoomID) (map[string]int, error) {
	counts := map[string]int{}
	from := ""
	for {
		resp, err := s.alice.Messages(ctx, roomID, from, "", mautrix.DirectionBackward, nil, 500)
		if err != nil {
			return nil, err
		}
		for _, evt := range resp.Chunk {
			if evt.Type != event.EventMessage {
				continue
			}
			_ = evt.Content.ParseRaw(evt.Type)
			if msg := evt.Content.AsMessage(); msg != nil {
				counts[msg.Body]++
			}
		}
		if resp.End == "" || len(resp.Chunk) == 0 {
			return counts, nil
		}
		from = resp.End
	}
}

// tally compares what was sent with how often each arrived.
type tally struct{ sent, delivered, lost, doubled int }

func count(sent []string, got map[string]int) tally {
	tl := tally{sent: len(sent)}
	for _, b := range sent {
		switch n := got[b]; {
		case n == 0:
			tl.lost++
		default:
			tl.delivered++
			tl.doubled += n - 1
		}
	}
	return tl
}

func (tl tally) String() string {
	return fmt.Sprintf("sent %d, delivered %d, lost %d, doubled %d", tl.sent, tl.delivered, tl.lost, tl.doubled)
}

// TestHomeserverOutageLosesNothing: the homeserver is unreachable for the
// bridge (every request gets a 502 or a dropped connection) far longer than
// the five tries after which the bridge used to give up, and the bridge is
// restarted in the middle of it. Meanwhile a contact keeps writing in an
// existing chat, a new contact writes for the first time (no room yet), and
// the user keeps writing from Matrix. Afterwards every message is there
// exactly once.
//
// The outage lasts 15 s with retries capped at 1 s; DMBRIDGE_OUTAGE=6m (make
// faults) runs it for that long with the default 30 s cap.
func TestHomeserverOutageLosesNothing(t *testing.T) {
	outage, retryCap, every := 15*time.Second, time.Second, 300*time.Millisecond
	if v := os.Getenv("DMBRIDGE_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("DMBRIDGE_OUTAGE: %v", err)
		}
		outage, retryCap, every = d, 30*time.Second, 2*time.Second
	}
	for _, target := range testdb.Targets(t) {
		t.Run(target.Name, func(t *testing.T) {
			s := newProxiedStack(t, target, func(cfg *config.Config) {
				cfg.Bridge.RetryMaxDelay = config.Duration(retryCap)
			})
			f := s.connectFake(nil)
			f.send(textFrom("bob@network", "b0", "bob 0"))
			bobRoom := s.roomOf("bob@network")
			s.waitMessage(bobRoom, "bob 0")
			ctx := context.Background()

			bobSent, carolSent, aliceSent := []string{"bob 0"}, []string{}, map[string]bool{}
			s.proxy.down.Store(true)
			start, restarted := time.Now(), false
			for i := 1; time.Since(start) < outage; i++ {
				body := fmt.Sprintf("bob %d", i)
				f.send(textFrom("bob@network", fmt.Sprintf("b%d", i), body))
				bobSent = append(bobSent, body)
				if i%3 == 1 {
					body = fmt.Sprintf("carol %d", i)
					f.send(textFrom("carol@network", fmt.Sprintf("c%d", i), body))
					carolSent = append(carolSent, body)
				}
				if i%3 == 2 {
					resp, err := s.alice.SendText(ctx, bobRoom, fmt.Sprintf("alice %d", i))
					if err != nil {
						t.Fatal(err)
					}
					aliceSent[string(resp.EventID)] = true
				}
				if !restarted && time.Since(start) > outage/2 {
					s.restartBridge()
					restarted = true
				}
				time.Sleep(every)
			}
			turned := s.proxy.turned.Load()
			s.proxy.down.Store(false)
			t.Logf("outage of %s over: the proxy turned away %d requests", time.Since(start).Round(time.Second), turned)

			// The first try after the outage may be a whole retry cap away.
			deadline := 2*retryCap + 2*time.Minute
			carolRoom := s.roomWithin("carol@network", deadline)
			var bob, carol tally
			tesths.WaitFor(t, deadline, "every message in the rooms", func() (bool, error) {
				bobGot, err := s.roomBodyCounts(ctx, bobRoom)
				if err != nil {
					return false, err
				}
				carolGot, err := s.roomBodyCounts(ctx, carolRoom)
				if err != nil {
					return false, err
				}
				bob, carol = count(bobSent, bobGot), count(carolSent, carolGot)
				return bob.lost == 0 && carol.lost == 0, nil
			})
			tesths.WaitFor(t, deadline, "the user's messages at the connector", func() (bool, error) {
				return len(f.commandsOf(connector.OpSendMessage)) >= len(aliceSent), nil
			})
			time.Sleep(2 * time.Second) // anything doubled has time to show
			bobGot, err := s.roomBodyCounts(ctx, bobRoom)
			if err != nil {
				t.Fatal(err)
			}
			carolGot, err := s.roomBodyCounts(ctx, carolRoom)
			if err != nil {
				t.Fatal(err)
			}
			bob, carol = count(bobSent, bobGot), count(carolSent, carolGot)
			atConnector := map[string]int{}
			for _, c := range f.commandsOf(connector.OpSendMessage) {
				atConnector[c.Txn]++
			}
			var txns []string
			for txn := range aliceSent {
				txns = append(txns, txn)
			}
			alice := count(txns, atConnector)
			t.Logf("outage %s, %s: existing chat: %s; new contact: %s; user to network: %s",
				outage, target.Name, bob, carol, alice)
			for name, tl := range map[string]tally{"existing chat": bob, "new contact": carol, "user to network": alice} {
				if tl.lost != 0 || tl.doubled != 0 {
					t.Errorf("%s: %s", name, tl)
				}
			}
		})
	}
}

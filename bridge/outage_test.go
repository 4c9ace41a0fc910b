package bridge_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

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
	testdb.EachParallel(t, func(t *testing.T, target testdb.Target) {
		s := newProxiedStack(t, target, func(cfg *config.Config) {
			cfg.Bridge.RetryMaxDelay = config.Duration(retryCap)
		})
		f := s.connectFake(nil)
		bobRoom := s.bobPortal(f, "b0", "bob 0")
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
		var bob, carol faultTally
		fault := fmt.Sprintf("homeserver outage of %s", outage)
		tesths.WaitFor(t, deadline, "every message in the rooms", func() (bool, error) {
			bobGot, err := s.timelineBodies(ctx, bobRoom)
			if err != nil {
				return false, err
			}
			carolGot, err := s.timelineBodies(ctx, carolRoom)
			if err != nil {
				return false, err
			}
			bob, carol = tally(fault+", existing chat", target.Name, bobSent, bobGot), tally(fault+", new contact", target.Name, carolSent, carolGot)
			return bob.Lost == 0 && carol.Lost == 0, nil
		})
		tesths.WaitFor(t, deadline, "the user's messages at the connector", func() (bool, error) {
			return len(f.commandsOf(connector.OpSendMessage)) >= len(aliceSent), nil
		})
		time.Sleep(2 * time.Second) // anything doubled has time to show
		bobGot, err := s.timelineBodies(ctx, bobRoom)
		if err != nil {
			t.Fatal(err)
		}
		carolGot, err := s.timelineBodies(ctx, carolRoom)
		if err != nil {
			t.Fatal(err)
		}
		bob, carol = tally(fault+", existing chat", target.Name, bobSent, bobGot), tally(fault+", new contact", target.Name, carolSent, carolGot)
		atConnector := map[string]int{}
		for _, c := range f.commandsOf(connector.OpSendMessage) {
			atConnector[c.Txn]++
		}
		var txns []string
		for txn := range aliceSent {
			txns = append(txns, txn)
		}
		alice := tally(fault+", user to network", target.Name, txns, atConnector)
		for _, tl := range []faultTally{bob, carol, alice} {
			tl.check(t)
		}
	})
}

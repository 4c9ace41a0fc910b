package bridge_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// BenchmarkDendriteRatio measures issue 14's P1 goal: the bridge's
// throughput on real Dendrite as a share of what a client sending the same
// messages directly gets from the same Dendrite in the same run. Both send
// as the 8 portals' ghosts into their rooms, one room after another message
// by message and the rooms side by side (the bridge keeps each chat in
// order, so a direct client that did not would not be the same work): the
// direct client with the appservice token, the bridge from the fake
// connector's events. The phases alternate (direct, bridged, direct,
// bridged) so that a machine getting busier or quieter shows in both.
// Run it with -benchtime 1x (make bench-dendrite).
func BenchmarkDendriteRatio(b *testing.B) { eachBenchDB(b, measureDendriteRatio) }

func measureDendriteRatio(b *testing.B, name string, target testdb.Target) {
	const chats, perChat = 8, 50
	s := newStack(b, target)
	f := s.connectFake(nil)
	ctx := context.Background()
	rooms := make([]id.RoomID, chats)
	for c := range chats {
		f.send(textFrom(fmt.Sprintf("c%d@network", c), "warm", "warm"))
	}
	for c := range chats {
		rooms[c] = s.roomOf(fmt.Sprintf("c%d@network", c))
	}
	bridged := func() int {
		var n int
		if err := s.br.DB.QueryRow(ctx, "SELECT COUNT(*) FROM message").Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	tesths.WaitFor(b, 60*time.Second, "warm-up messages", func() (bool, error) { return bridged() == chats, nil })

	direct := func(round int) float64 {
		var wg sync.WaitGroup
		t0 := time.Now()
		for c := range chats {
			ghost := s.ghost(fmt.Sprintf("c%d@network", c))
			client, err := mautrix.NewClient(s.cfg.Homeserver.Address, ghost, s.cfg.Appservice.ASToken)
			if err != nil {
				b.Fatal(err)
			}
			client.SetAppServiceUserID = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perChat {
					content := &event.MessageEventContent{MsgType: event.MsgText, Body: fmt.Sprintf("direct %d.%d", round, i)}
					if _, err := client.SendMessageEvent(ctx, rooms[c], event.EventMessage, content); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return chats * perChat / time.Since(t0).Seconds()
	}
	viaBridge := func(round int) float64 {
		before := bridged()
		t0 := time.Now()
		for i := range perChat {
			for c := range chats {
				body := fmt.Sprintf("bridged %d.%d", round, i)
				f.send(textFrom(fmt.Sprintf("c%d@network", c), fmt.Sprintf("r%d-%d", round, i), body))
			}
		}
		for bridged() < before+chats*perChat {
			time.Sleep(5 * time.Millisecond)
		}
		return chats * perChat / time.Since(t0).Seconds()
	}
	var d, v []float64
	for round := range 2 {
		d = append(d, direct(round))
		v = append(v, viaBridge(round))
	}
	dSum, vSum := d[0]+d[1], v[0]+v[1]
	fmt.Printf("P1 %s on Dendrite, %d rooms: a client sending directly %.0f and %.0f msg/s, the bridge %.0f and %.0f msg/s: ratio %.2f (goal ≥ 0.95)\n",
		name, chats, d[0], d[1], v[0], v[1], vSum/dSum)
	b.ReportMetric(vSum/dSum, "ratio")
}

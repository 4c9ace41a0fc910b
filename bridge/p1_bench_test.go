package bridge_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
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
// connector's events. The phases alternate in pairs of rounds (direct,
// bridged, bridged, direct) so that a machine or a Dendrite getting busier
// or quieter shows in both alike.
// Run it with -benchtime 1x (make bench-dendrite). Dendrite's own rate swings
// between rounds on a shared machine; DMBRIDGE_P1_ROUNDS (default 2) runs
// more pairs of phases for a steadier ratio.
func BenchmarkDendriteRatio(b *testing.B) { eachBenchDB(b, measureDendriteRatio) }

func measureDendriteRatio(b *testing.B, name string, target testdb.Target) {
	const chats, perChat = 8, 50
	// With DMBRIDGE_P1_DPSYNC=1 the bridge follows alice's /sync
	// (double_puppet.sync), as a Dendrite deployment would: every event in
	// her rooms, either side's, answers her long poll, which Dendrite pays
	// for in both phases.
	s := newStack(b, target, stackOptions{configure: func(c *config.Config) {
		c.DoublePuppet.Sync = os.Getenv("DMBRIDGE_P1_DPSYNC") == "1"
	}})
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

	// What each side asked of Dendrite, over all rounds: whether the bridge
	// kept as many sends in flight as the direct client, and whether its
	// events cost Dendrite more CPU, tell a gap the bridge causes from
	// Dendrite's own swings.
	var dStat, vStat p1Side
	// With DMBRIDGE_P1_MARKER=1 the direct client's messages also carry the
	// transaction marker the bridge puts into every message's content
	// (contentTxnKey in portal/indoubt.go, for exactly-once after a cut-off
	// send), so that the ratio shows the bridge's pipeline apart from what
	// the bigger event costs Dendrite.
	withMarker := os.Getenv("DMBRIDGE_P1_MARKER") == "1"
	var directBusy atomic.Int64
	metricsURL := "http://" + s.br.MetricsAddr().String() + "/metrics"
	direct := func(round int) float64 {
		defer dStat.end(dStat.begin(s.hs.Pid()), func() float64 { return time.Duration(directBusy.Swap(0)).Seconds() }, 0)
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
					var content any = &event.MessageEventContent{MsgType: event.MsgText, Body: fmt.Sprintf("direct %d.%d", round, i)}
					if withMarker {
						content = map[string]any{"msgtype": event.MsgText, "body": fmt.Sprintf("direct %d.%d", round, i),
							"com.github.dmbridge.txn": fmt.Sprintf("dmb_%032x", uint64(time.Now().UnixNano()))}
					}
					sent := time.Now()
					_, err := client.SendMessageEvent(ctx, rooms[c], event.EventMessage, content)
					directBusy.Add(int64(time.Since(sent)))
					if err != nil {
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
		busy0, calls0 := bridgeSends(scrape(b, metricsURL))
		defer vStat.end(vStat.begin(s.hs.Pid()), func() float64 {
			busy, calls := bridgeSends(scrape(b, metricsURL))
			vStat.calls += calls - calls0
			return busy - busy0
		}, chats*perChat)
		before := bridged()
		t0 := time.Now()
		// The events stream as a connector sends them (the SDK keeps up to
		// max_in_flight unacknowledged), not one by one waiting for each ack:
		// acks are batched for up to ack_delay (20 ms), which alone would cap
		// a send-and-wait loop at about 50 events/s.
		for i := range perChat {
			for c := range chats {
				body := fmt.Sprintf("bridged %d.%d", round, i)
				if _, err := f.client.Send(ctx, textFrom(fmt.Sprintf("c%d@network", c), fmt.Sprintf("r%d-%d", round, i), body)); err != nil {
					b.Fatal(err)
				}
			}
		}
		// Counting the mappings is a query on the bridge's database,
		// which shares the cores with Dendrite in this phase only: at one
		// count every 5 ms it cost PostgreSQL a share of a core. So it
		// counts every 50 ms until the last few messages are due, then
		// every 2 ms for an end time as exact as before.
		want := before + chats*perChat
		for n := bridged(); n < want; n = bridged() {
			if want-n > 2*chats {
				time.Sleep(50 * time.Millisecond)
			} else {
				time.Sleep(2 * time.Millisecond)
			}
		}
		return chats * perChat / time.Since(t0).Seconds()
	}
	rounds := 2
	if n, err := strconv.Atoi(os.Getenv("DMBRIDGE_P1_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	var d, v []string
	var dSum, vSum float64
	var perRound []float64
	for round := range rounds {
		// Odd rounds run the bridge first (direct, bridged, bridged,
		// direct): the rooms grow by every phase, and a Dendrite that gets
		// slower as they do would otherwise always meet the bridge later.
		var dr, vr float64
		if round%2 == 0 {
			dr, vr = direct(round), viaBridge(round)
		} else {
			vr, dr = viaBridge(round), direct(round)
		}
		d, v = append(d, fmt.Sprintf("%.0f", dr)), append(v, fmt.Sprintf("%.0f", vr))
		dSum, vSum = dSum+dr, vSum+vr
		perRound = append(perRound, vr/dr)
	}
	marked := ""
	if withMarker {
		marked = " (its messages with the bridge's marker)"
	}
	fmt.Printf("P1 %s on Dendrite, %d rooms, %d rounds: a client sending directly%s %s msg/s, the bridge %s msg/s: ratio %.2f (goal ≥ 0.95)\n",
		name, chats, rounds, marked, strings.Join(d, ", "), strings.Join(v, ", "), vSum/dSum)
	// Dendrite's own rate swings from round to round by more than the
	// goal's margin, so the ratio comes with how far its rounds disagree:
	// a gap to 0.95 smaller than that is not yet a measured gap.
	fmt.Printf("P1 %s: ratio per round %s; standard error of their mean %.3f\n", name, ratioList(perRound), standardError(perRound))
	fmt.Printf("P1 %s: sends in flight on average: direct %.2f, bridge %.2f; Dendrite CPU per message: direct %.2f ms, bridge %.2f ms; "+
		"homeserver requests by the bridge beside its sends: %.0f\n", name, dStat.inFlight(), vStat.inFlight(),
		dStat.dendriteMs(chats*perChat*rounds), vStat.dendriteMs(chats*perChat*rounds), vStat.calls)
	b.ReportMetric(vSum/dSum, "ratio")
}

func ratioList(rs []float64) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(out, ", ")
}

// standardError is the standard error of the mean of xs (0 for fewer than
// two).
func standardError(xs []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sum, sq float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / n
	for _, x := range xs {
		sq += (x - mean) * (x - mean)
	}
	return math.Sqrt(sq/(n-1)) / math.Sqrt(n)
}

// p1Side sums one side's phases of BenchmarkDendriteRatio.
type p1Side struct {
	elapsed, busy float64 // seconds of phase, seconds of sends in flight
	dendrite      time.Duration
	calls         float64 // the bridge's homeserver requests beyond its sends
}

type p1Phase struct {
	pid   int
	start time.Time
	cpu   time.Duration
}

func (p *p1Side) begin(pid int) p1Phase { return p1Phase{pid, time.Now(), procCPU(pid)} }

// end adds the phase begun at ph: busy is the seconds its sends were in
// flight; sends the messages it had to send, taken off calls.
func (p *p1Side) end(ph p1Phase, busy func() float64, sends float64) {
	p.elapsed += time.Since(ph.start).Seconds()
	p.dendrite += procCPU(ph.pid) - ph.cpu
	p.busy += busy()
	p.calls -= sends
}

func (p *p1Side) inFlight() float64 { return p.busy / p.elapsed }

func (p *p1Side) dendriteMs(messages int) float64 {
	return float64(p.dendrite.Microseconds()) / 1000 / float64(messages)
}

// bridgeSends reads the bridge's homeserver requests from a scrape: the
// seconds its sends were in flight, and the count of all its requests.
func bridgeSends(r scrapeResult) (busy, calls float64) {
	for _, m := range r["dmbridge_homeserver_request_duration_seconds"].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == "class" && l.GetValue() == "send" {
				busy = m.Histogram.GetSampleSum()
			}
		}
	}
	for _, m := range r["dmbridge_homeserver_requests_total"].GetMetric() {
		calls += m.Counter.GetValue()
	}
	return busy, calls
}

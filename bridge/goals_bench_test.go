package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/memhs"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// BenchmarkGoals measures the bridge against issue 14's goals, against the
// in-memory homeserver (internal/memhs) so that only the bridge's own cost
// counts, on SQLite and PostgreSQL, and prints one table with the goals
// beside the figures. It runs every scenario once whatever b.N is (run it
// with -benchtime 1x, as `make bench` does). It complements the Dendrite
// benchmarks in bench_test.go, which measure the whole path.
func BenchmarkGoals(b *testing.B) {
	results := map[string]*goalFigures{}
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			results[name] = measureGoals(b, name)
		})
	}
	printGoals(os.Stdout, results["sqlite"], results["postgres"])
}

// goalFigures is what measureGoals found on one database.
type goalFigures struct {
	rate8, rate1, cmdRate    float64
	cpuPerMsg                time.Duration
	harnessCPUPerMsg         time.Duration
	serverCPUPerMsg          time.Duration // PostgreSQL's processes
	machineBusy              float64       // share of the cores busy, 8 chats
	inProcess                bool
	loadP50, loadP99         time.Duration
	loneP50, loneP99         time.Duration
	newDMCalls, furtherCalls int
	newDeviceCalls           int
	newDMBreakdown           string
	xactPerMsg, rowsPerMsg   float64
	orderKept                bool
	// server says which PostgreSQL server ran, when not the shared one.
	server string
}

// arrivals records when each message body reached the homeserver.
type arrivals struct {
	mu sync.Mutex
	at map[string]time.Time
	// order is the bodies per room in arrival order.
	order map[string][]string
}

func (a *arrivals) record(s memhs.Sent) {
	if s.Type != "m.room.message" {
		return
	}
	var c struct {
		Body string `json:"body"`
	}
	_ = json.Unmarshal(s.Content, &c)
	a.mu.Lock()
	a.at[c.Body] = s.At
	a.order[s.RoomID] = append(a.order[s.RoomID], c.Body)
	a.mu.Unlock()
}

func (a *arrivals) wait(b *testing.B, what string, bodies ...string) {
	b.Helper()
	tesths.WaitFor(b, 3*time.Minute, what, func() (bool, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, body := range bodies {
			if _, ok := a.at[body]; !ok {
				return false, nil
			}
		}
		return true, nil
	})
}

// last is when the last of bodies arrived. Throughput is timed to it, not
// to the moment wait noticed it: wait polls with a growing delay (up to
// 250 ms), which on a run of half a second was a large part of the time.
func (a *arrivals) last(bodies []string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	var last time.Time
	for _, body := range bodies {
		if at := a.at[body]; at.After(last) {
			last = at
		}
	}
	return last
}

func (a *arrivals) when(body string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.at[body]
}

// roomOf is the room a body arrived in, or "".
func (a *arrivals) roomOf(body string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for room, bodies := range a.order {
		if slices.Contains(bodies, body) {
			return room
		}
	}
	return ""
}

func measureGoals(b *testing.B, dbName string) *goalFigures {
	target := testdb.SQLite(b)
	var server string
	if dbName == "postgres" {
		target, server = goalsPostgres(b)
	}
	g := startGoalsBridge(b, target)
	started := time.Now()
	s := g.s
	arr := &arrivals{at: map[string]time.Time{}, order: map[string][]string{}}
	s.mem.OnSend = arr.record
	f := s.connectFake(nil)
	ctx := context.Background()
	out := &goalFigures{inProcess: g.inProcess(), server: server}
	send := func(contact, body string) {
		if _, err := f.client.Send(ctx, textFrom(contact, body, body)); err != nil {
			b.Fatal(err)
		}
	}

	// Portals of 8 chats exist first; the first DM also verifies the
	// double puppet, which happens once per user.
	var warm []string
	for c := 0; c < 8; c++ {
		body := fmt.Sprintf("warm c%d", c)
		send(fmt.Sprintf("c%d@network", c), body)
		warm = append(warm, body)
	}
	arr.wait(b, "warm-up portals", warm...)
	// With encryption on (the binary's default), the warm-up's ghosts get
	// devices in the background, paced: wait until that is over.
	quiet(b, s)
	// The repair pass runs 5 s after start (portal/repair.go): let it be
	// over, so that its reads are not counted as the new DM's calls.
	if d := time.Until(started.Add(6 * time.Second)); d > 0 {
		time.Sleep(d)
		quiet(b, s)
	}

	// P3: a new ghost, a new portal and the first message; then the
	// ghost's device, made in the background, is counted apart.
	send("newghost@network", "p3 first")
	arr.wait(b, "first message of a new DM", "p3 first")
	calls := quiet(b, s)
	out.newDMCalls, out.newDeviceCalls = splitDeviceCalls(calls)
	out.newDMBreakdown = breakdown(calls)
	send("newghost@network", "p3 second")
	arr.wait(b, "second message", "p3 second")
	path, device := splitDeviceCalls(quiet(b, s))
	out.furtherCalls = path + device
	if u := s.mem.Unknown(); len(u) > 0 {
		b.Logf("memhs did not answer: %q", u)
	}

	// A lone message: nothing else in flight.
	var lone []time.Duration
	for i := 0; i < 40; i++ {
		body := fmt.Sprintf("lone %d", i)
		start := time.Now()
		send("c0@network", body)
		arr.wait(b, body, body)
		lone = append(lone, arr.when(body).Sub(start))
		time.Sleep(20 * time.Millisecond)
	}
	out.loneP50, out.loneP99 = percentile(lone, 50), percentile(lone, 99)

	// Capacity over 8 chats, with CPU and (PostgreSQL) transactions.
	const n8 = 3000
	pg := newPGStats(b, target)
	pg.settle()
	c0 := g.countersStart(b)
	cpu0, harness0, t0 := g.cpu(), harnessCPU(), time.Now()
	busy0, total0 := machineJiffies()
	var server0 time.Duration
	var postmaster int
	if dbName == "postgres" {
		postmaster = postmasterOf(target.URI)
		server0 = postgresCPU(postmaster)
	}
	var bodies []string
	for i := 0; i < n8; i++ {
		body := fmt.Sprintf("b8 %d", i)
		send(fmt.Sprintf("c%d@network", i%8), body)
		bodies = append(bodies, body)
	}
	arr.wait(b, "8-chat run", bodies...)
	cpu, harness := g.cpu()-cpu0, harnessCPU()-harness0
	g.countersEnd(b, c0, n8)
	if busy1, total1 := machineJiffies(); total1 > total0 {
		out.machineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	if dbName == "postgres" {
		out.serverCPUPerMsg = (postgresCPU(postmaster) - server0) / n8
	}
	out.rate8 = n8 / arr.last(bodies).Sub(t0).Seconds()
	out.cpuPerMsg = cpu / n8
	if !g.inProcess() {
		out.harnessCPUPerMsg = harness / n8
	}
	out.xactPerMsg, out.rowsPerMsg = pg.perMessage(n8)

	// One chat: order must be kept.
	const n1 = 1000
	bodies = bodies[:0]
	t0 = time.Now()
	for i := 0; i < n1; i++ {
		body := fmt.Sprintf("b1 %d", i)
		send("c1@network", body)
		bodies = append(bodies, body)
	}
	arr.wait(b, "1-chat run", bodies...)
	out.rate1 = n1 / arr.last(bodies).Sub(t0).Seconds()
	out.orderKept = inOrder(arr, bodies)

	// Added latency at an offered load of ~1,000 msg/s over 8 chats.
	const nLoad = 2000
	sentAt := make([]time.Time, nLoad)
	bodies = bodies[:0]
	traced := g.traceLoad(b, dbName)
	tick := time.NewTicker(time.Millisecond)
	for i := 0; i < nLoad; i++ {
		<-tick.C
		body := fmt.Sprintf("load %d", i)
		sentAt[i] = time.Now()
		send(fmt.Sprintf("c%d@network", i%8), body)
		bodies = append(bodies, body)
	}
	tick.Stop()
	arr.wait(b, "load run", bodies...)
	var load []time.Duration
	for i, body := range bodies {
		load = append(load, arr.when(body).Sub(sentAt[i]))
	}
	out.loadP50, out.loadP99 = percentile(load, 50), percentile(load, 99)
	traced(load, sentAt)

	var rooms []string
	for c := 0; c < 8; c++ {
		rooms = append(rooms, arr.roomOf(fmt.Sprintf("warm c%d", c)))
	}
	pgssReset(b)
	out.cmdRate = measureCommands(b, s, f, rooms)
	if target.Type == testdb.TypePostgres {
		pgssDump(b, target.URI, "Matrix→remote commands", commandsMeasured)
	}

	// Last, and only for make bench-profile: the 8-chat load again, for as
	// long as the bridge process's CPU profile runs.
	g.profile(b, dbName, func(stop <-chan struct{}) {
		for round := 0; ; round++ {
			select {
			case <-stop:
				return
			default:
			}
			var batch []string
			for i := 0; i < 500; i++ {
				body := fmt.Sprintf("prof %d %d", round, i)
				send(fmt.Sprintf("c%d@network", i%8), body)
				batch = append(batch, body)
			}
			arr.wait(b, "profile load", batch...)
		}
	})
	return out
}

// measureCommands pushes Matrix messages of the user into the 8 portals, as
// the homeserver's appservice transactions, and times until the connector
// received every send_message command.
// commandsMeasured is how many commands measureCommands sends.
const commandsMeasured = 4000

func measureCommands(b *testing.B, s *stack, f *fakeConnector, rooms []string) float64 {
	const n, perTxn = commandsMeasured, 50
	before := len(f.commandsOf(connector.OpSendMessage))
	t0 := time.Now()
	for i := 0; i < n; i += perTxn {
		var events []json.RawMessage
		for j := i; j < i+perTxn; j++ {
			raw, _ := json.Marshal(map[string]any{
				"type": "m.room.message", "event_id": fmt.Sprintf("$cmd%d-%d", j, t0.UnixNano()),
				"room_id": rooms[j%len(rooms)], "sender": string(s.alice.UserID),
				"origin_server_ts": time.Now().UnixMilli(),
				"content":          map[string]string{"msgtype": "m.text", "body": fmt.Sprintf("cmd %d", j)},
			})
			events = append(events, raw)
		}
		s.fidPush(events, nil)
	}
	tesths.WaitFor(b, 3*time.Minute, "commands at the connector", func() (bool, error) {
		return len(f.commandsOf(connector.OpSendMessage))-before >= n, nil
	})
	// Timed to the last command's arrival (see arrivals.last).
	return n / f.lastCommandAt(connector.OpSendMessage).Sub(t0).Seconds()
}

func inOrder(arr *arrivals, bodies []string) bool {
	arr.mu.Lock()
	defer arr.mu.Unlock()
	var got []string
	for _, list := range arr.order {
		for _, body := range list {
			if strings.HasPrefix(body, "b1 ") {
				got = append(got, body)
			}
		}
	}
	return slices.Equal(got, bodies)
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// quiet waits until the homeserver has had no call for 500 ms and returns
// the calls counted since the last look.
func quiet(b *testing.B, s *stack) map[string]int {
	b.Helper()
	all := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		calls, n := s.mem.Calls()
		for k, v := range calls {
			all[k] += v
		}
		if n == 0 {
			return all
		}
		if time.Now().After(deadline) {
			b.Fatalf("the homeserver still gets calls after 30 s: %v", calls)
		}
	}
}

// splitDeviceCalls counts apart the calls that make a ghost's device (its
// login and its keys), which the bridge makes in the background with
// encryption on, from those on the path of the message.
func splitDeviceCalls(calls map[string]int) (path, device int) {
	for k, v := range calls {
		if strings.HasSuffix(k, " /login") || strings.Contains(k, "/keys/") {
			device += v
		} else {
			path += v
		}
	}
	return path, device
}

func breakdown(calls map[string]int) string {
	var parts []string
	for k, v := range calls {
		parts = append(parts, fmt.Sprintf("%s×%d", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// goalsPostgres is the benchmark's PostgreSQL database: a fresh one on the
// shared server, or, with DMBRIDGE_BENCH_PG_SETTINGS ("name=value ..."),
// on a private server started with those settings, described in the second
// result. make bench-slow-flush so simulates a disk whose flush is slow (a
// network disk) without changing the shared server under other tests.
func goalsPostgres(b *testing.B) (testdb.Target, string) {
	settings := strings.Fields(os.Getenv("DMBRIDGE_BENCH_PG_SETTINGS"))
	if len(settings) == 0 {
		return testdb.Postgres(b), ""
	}
	return testdb.StartPrivate(b, settings...).Target(), "a private server started with " + strings.Join(settings, " ")
}

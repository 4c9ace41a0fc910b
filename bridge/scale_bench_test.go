package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/internal/testdb"
)

// BenchmarkScaleDirect measures issue 14's P4 goals on m.direct, against the
// in-memory homeserver: the time from starting a bridge that has
// DMBRIDGE_SCALE_USERS (default 10,000) double-puppeted users to its first
// delivered message, with the homeserver calls of the first second, and
// the rate of new DMs of a user whose m.direct lists no other DM against
// one whose lists 5,000. Run it with -benchtime 1x.
func BenchmarkScaleDirect(b *testing.B) { eachBenchDB(b, measureScaleDirect) }

// eachBenchDB runs measure as a sub-benchmark on SQLite, then PostgreSQL.
func eachBenchDB(b *testing.B, measure func(b *testing.B, name string, target testdb.Target)) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) { measure(b, name, benchTarget(b, name)) })
	}
}

// benchTarget is a fresh database of the named kind.
func benchTarget(b *testing.B, name string) testdb.Target {
	if name == "postgres" {
		return testdb.Postgres(b)
	}
	return testdb.SQLite(b)
}

func measureScaleDirect(b *testing.B, name string, target testdb.Target) {
	users := 10000
	if v := os.Getenv("DMBRIDGE_SCALE_USERS"); v != "" {
		_, _ = fmt.Sscan(v, &users)
	}
	s := newStack(b, target, stackOptions{memHS: true})
	arr := &arrivals{at: map[string]time.Time{}, order: map[string][]string{}}
	s.mem.OnSend = arr.record
	f := s.connectFake(nil)
	ctx := context.Background()
	f.send(textFrom("c0@network", "warm", "warm"))
	arr.wait(b, "warm-up", "warm")

	// New DMs: a burst of first messages from new contacts, timed until
	// the last one is delivered (each a new ghost, room, join and
	// m.direct entry).
	const dms = 150
	var mdCalls []int
	newDMs := func(prefix string) float64 {
		s.mem.Calls()
		defer func() {
			calls, _ := s.mem.Calls()
			mdCalls = append(mdCalls, calls["GET /account_data"]+calls["PUT /account_data"])
		}()
		t0 := time.Now()
		var bodies []string
		for i := 0; i < dms; i++ {
			body := fmt.Sprintf("%s %d", prefix, i)
			f.send(textFrom(fmt.Sprintf("%s%d@network", prefix, i), body, body))
			bodies = append(bodies, body)
		}
		arr.wait(b, prefix, bodies...)
		return dms / time.Since(t0).Seconds()
	}
	rateNone := newDMs("fresh")
	// 5,000 DMs more in the user's m.direct, as rooms of other ghosts.
	direct := map[string][]string{}
	_ = json.Unmarshal(s.mem.AccountData(string(s.alice.UserID), event.AccountDataDirectChats.Type), &direct)
	for i := 0; i < 5000; i++ {
		direct[fmt.Sprintf("@dmbridge_other%d:localhost", i)] = []string{fmt.Sprintf("!otherroom%dabcdefghijkl:localhost", i)}
	}
	if err := s.alice.SetAccountData(ctx, event.AccountDataDirectChats.Type, direct); err != nil {
		b.Fatal(err)
	}
	rateMany := newDMs("crowded")
	direct = map[string][]string{}
	_ = json.Unmarshal(s.mem.AccountData(string(s.alice.UserID), event.AccountDataDirectChats.Type), &direct)
	if len(direct) < 5000+2*dms {
		b.Fatalf("m.direct has %d entries, want at least %d", len(direct), 5000+2*dms)
	}

	// Start with many double-puppeted users (logins of another connector).
	var sql strings.Builder
	for i := 0; i < users; i++ {
		if sql.Len() == 0 {
			sql.WriteString("INSERT INTO login (id, connector_id, matrix_user) VALUES ")
		} else {
			sql.WriteString(",")
		}
		fmt.Fprintf(&sql, "('scale%d', 'elsewhere', '@scale%d:localhost')", i, i)
		if i%1000 == 999 || i == users-1 {
			if _, err := s.br.DB.Exec(ctx, sql.String()); err != nil {
				b.Fatal(err)
			}
			sql.Reset()
		}
	}
	f.stop()
	s.stopBridge()
	s.mem.Calls()
	t0 := time.Now()
	s.startBridge()
	f = s.connectFake(f.store)
	sentAt := time.Now()
	f.send(textFrom("c0@network", "after start", "after start"))
	arr.wait(b, "first message after start", "after start")
	first, sendToArrival := arr.when("after start").Sub(t0), arr.when("after start").Sub(sentAt)
	if d := time.Until(t0.Add(time.Second)); d > 0 {
		time.Sleep(d)
	}
	_, firstSecond := s.mem.Calls()
	// The repair's pace, once it runs: calls per second over seconds 6-9.
	time.Sleep(time.Until(t0.Add(6 * time.Second)))
	s.mem.Calls()
	time.Sleep(3 * time.Second)
	_, later := s.mem.Calls()

	fmt.Printf("SCALE %s: %d new DMs/s with an empty m.direct %.0f, with 5,000 DMs %.0f (ratio %.2f, goal ≥ 0.80); m.direct calls %d and %d\n",
		name, dms, rateNone, rateMany, rateMany/rateNone, mdCalls[0], mdCalls[1])
	fmt.Printf("SCALE %s: %d users: start to first delivered message %.0f ms (goal ≤ 1,000 ms; its send to delivery %.1f ms); homeserver calls in the first second %d, per second over seconds 6-9 %.0f\n",
		name, users, float64(first.Microseconds())/1000, float64(sendToArrival.Microseconds())/1000, firstSecond, float64(later)/3)
}

package bridge_test

import (
	"database/sql"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/internal/testdb"
)

// pgStats counts the database's committed and rolled-back transactions and
// the rows it fetched (pg_stat_database), which is every round-trip
// transaction of the bridge, autocommitted statements included. SQLite has
// no such counter: its figures stay zero.
type pgStats struct {
	b               *testing.B
	db              *sql.DB
	xacts0, fetched int64
	uri             string
}

func newPGStats(b *testing.B, target testdb.Target) *pgStats {
	p := &pgStats{b: b}
	if target.Type != testdb.TypePostgres {
		return p
	}
	db, err := sql.Open("postgres", target.URI)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { _ = db.Close() })
	p.db = db
	p.uri = target.URI
	return p
}

func (p *pgStats) read() (xacts, fetched int64) {
	err := p.db.QueryRow(`SELECT xact_commit + xact_rollback, tup_fetched
		FROM pg_stat_database WHERE datname = current_database()`).Scan(&xacts, &fetched)
	if err != nil {
		p.b.Fatal(err)
	}
	return xacts, fetched
}

// stable waits until the counters stop moving: a busy backend flushes its
// statistics at most once a second, and one that went idle up to 10 s
// (PostgreSQL's PGSTAT_IDLE_INTERVAL) after its last transaction, so the
// counters must stand still for longer than that.
func (p *pgStats) stable() (xacts, fetched int64) {
	x, f := p.read()
	deadline := time.Now().Add(40 * time.Second)
	for still := 0; still < 12 && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		x2, f2 := p.read()
		if x2-x <= 1 { // our own read is one transaction
			still++
		} else {
			still = 0
		}
		x, f = x2, f2
	}
	return x, f
}

// settle takes the starting point of a measured run.
func (p *pgStats) settle() {
	if p.db != nil {
		p.xacts0, p.fetched = p.stable()
		pgssReset(p.b)
	}
}

// perMessage returns transactions and rows fetched per message since settle.
func (p *pgStats) perMessage(n int) (float64, float64) {
	if p.db == nil {
		return 0, 0
	}
	x, f := p.stable()
	pgssDump(p.b, p.uri, "remote messages over 8 chats", n)
	return float64(x-p.xacts0) / float64(n), float64(f-p.fetched) / float64(n)
}

// printGoals prints issue 14's goals beside the figures of both databases.
func printGoals(w io.Writer, sq, pg *goalFigures) {
	// A database left out (-bench BenchmarkGoals/postgres) shows dashes.
	var left *goalFigures
	if sq == nil {
		sq = &goalFigures{}
		left = sq
	}
	if pg == nil {
		pg = &goalFigures{}
		left = pg
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
	rate := func(r float64) string { return fmt.Sprintf("%.0f/s", r) }
	const format = "| %-52s | %-13s | %-16s | %-16s |\n"
	row := func(what, goal string, v func(g *goalFigures) string) {
		shown := func(g *goalFigures) string {
			if g == left {
				return "—"
			}
			return v(g)
		}
		fmt.Fprintf(w, format, what, goal, shown(sq), shown(pg))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "dmbridge against the in-memory homeserver (internal/memhs), issue 14's goals:")
	fmt.Fprintf(w, format, "measure", "goal", "SQLite", "PostgreSQL")
	fmt.Fprintf(w, "|%s|%s|%s|%s|\n", dashes(54), dashes(15), dashes(18), dashes(18))
	row("remote→Matrix, 8 chats", "≥ 5,000/s", func(g *goalFigures) string { return rate(g.rate8) })
	row("remote→Matrix, 1 chat (order kept)", "≥ 1,000/s", func(g *goalFigures) string {
		return fmt.Sprintf("%s%s", rate(g.rate1), map[bool]string{true: "", false: " DISORDER"}[g.orderKept])
	})
	row("Matrix→remote commands", "≥ 2,000/s", func(g *goalFigures) string { return rate(g.cmdRate) })
	cpuWhat := "bridge process CPU per message, 8 chats"
	if sq.inProcess || pg.inProcess {
		cpuWhat = "process CPU per message, 8 chats (upper bound*)"
	}
	row(cpuWhat, "≤ 0.2 ms", func(g *goalFigures) string { return ms(g.cpuPerMsg) })
	row("harness CPU per message (memhs, connector, bench)", "—", func(g *goalFigures) string {
		if g.inProcess {
			return "in the above"
		}
		return ms(g.harnessCPUPerMsg)
	})
	row("PostgreSQL server CPU per message (its processes)", "—", func(g *goalFigures) string {
		if g.serverCPUPerMsg == 0 {
			return "—"
		}
		return ms(g.serverCPUPerMsg)
	})
	row(fmt.Sprintf("machine's %d cores busy during the 8-chat run", runtime.NumCPU()), "—", func(g *goalFigures) string {
		return fmt.Sprintf("%.0f%%", 100*g.machineBusy)
	})
	row("added latency at ~1,000 msg/s offered, p50", "≤ 2 ms", func(g *goalFigures) string { return ms(g.loadP50) })
	row("added latency at ~1,000 msg/s offered, p99", "≤ 5 ms", func(g *goalFigures) string { return ms(g.loadP99) })
	row("added latency of a lone message, p50", "≤ 2 ms", func(g *goalFigures) string { return ms(g.loneP50) })
	row("added latency of a lone message, p99", "—", func(g *goalFigures) string { return ms(g.loneP99) })
	row("homeserver calls: new ghost + portal + 1st message", "≤ 8", func(g *goalFigures) string { return fmt.Sprint(g.newDMCalls) })
	row("  + the new ghost's device (background, encryption)", "—", func(g *goalFigures) string { return fmt.Sprint(g.newDeviceCalls) })
	row("homeserver calls: each further message", "1", func(g *goalFigures) string { return fmt.Sprint(g.furtherCalls) })
	row("DB transactions per message (pg_stat_database)", "≤ 2", func(g *goalFigures) string { return pgOnly(g.xactPerMsg) })
	row("DB rows fetched per message (pg_stat_database)", "—", func(g *goalFigures) string { return pgOnly(g.rowsPerMsg) })
	if sq.inProcess || pg.inProcess {
		fmt.Fprintln(w, "* DMBRIDGE_BENCH_INPROCESS=1: the bridge ran in the benchmark's process, with the in-memory homeserver and the connector client.")
	} else {
		fmt.Fprintln(w, "The bridge ran as its own process (the production binary, logging at warn); the homeserver and the connector client in the benchmark's.")
	}
	if pg.server != "" {
		fmt.Fprintf(w, "PostgreSQL: %s.\n", pg.server)
	}
	fmt.Fprintf(w, "new DM calls (SQLite): %s\n", sq.newDMBreakdown)
	fmt.Fprintf(w, "new DM calls (PostgreSQL): %s\n", pg.newDMBreakdown)
}

func pgOnly(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}

func dashes(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = '-'
	}
	return string(b)
}

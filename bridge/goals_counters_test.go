package bridge_test

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Counters of BenchmarkGoals' 8-chat run that do not depend on the load of
// a shared machine, as wall-clock and CPU figures do:
//
//   - ALLOCS: the bridge process's allocations per message, from the Go
//     collector of its /metrics (always printed).
//   - PGSS: SQL statements, rows and buffer blocks per message by
//     statement, from pg_stat_statements, with DMBRIDGE_BENCH_PGSS=1 and
//     DMBRIDGE_TEST_PG naming a private server that preloads it (the
//     shared one does not, and its counters are cluster-wide), e.g. one
//     initdb'd with shared_preload_libraries = 'pg_stat_statements' on
//     port 55433, after CREATE EXTENSION pg_stat_statements in its
//     postgres database.
//   - CALLGRIND: instructions of the bridge process, with
//     DMBRIDGE_BENCH_WRAP="env GOMAXPROCS=1 valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file=F.%p",
//     DMBRIDGE_BENCH_CALLGRIND=1 and GODEBUG=asyncpreemptoff=1 (callgrind
//     asserts on Go's preemption signals): the counters are zeroed before
//     the run and dumped after it (F.PID.1; callgrind_annotate prints the
//     total). Without GOMAXPROCS=1 and --fair-sched an occasional run came
//     out 25-70% higher (threads spinning under valgrind's serialisation);
//     with them, runs of one tree agreed within 1%. Its per-function
//     attribution is unreliable for Go: take the shape from pprof.
//
// Run the PostgreSQL part alone with -bench '^BenchmarkGoals$/postgres'.
const benchWrapEnv = "DMBRIDGE_BENCH_WRAP"

func pgssOn() bool { return os.Getenv("DMBRIDGE_BENCH_PGSS") == "1" }

// pgssAdmin connects to the private server's postgres database, where the
// extension's view is.
func pgssAdmin(b *testing.B) *sql.DB {
	db, err := sql.Open("postgres", os.Getenv("DMBRIDGE_TEST_PG"))
	if err != nil {
		b.Fatal(err)
	}
	return db
}

// pgssReset clears the statement counters before the run.
func pgssReset(b *testing.B) {
	if !pgssOn() {
		return
	}
	db := pgssAdmin(b)
	defer db.Close()
	if _, err := db.Exec(`SELECT pg_stat_statements_reset()`); err != nil {
		b.Fatal(err)
	}
}

// pgssDump prints the run's statements of the test database per message
// (what names the messages): calls, rows, buffer blocks, mean ms and the
// statement.
func pgssDump(b *testing.B, uri, what string, n int) {
	if !pgssOn() {
		return
	}
	u, _ := url.Parse(uri)
	dbName := strings.TrimPrefix(u.Path, "/")
	db := pgssAdmin(b)
	defer db.Close()
	rows, err := db.Query(`SELECT calls, rows, shared_blks_hit + shared_blks_read, total_exec_time, query FROM pg_stat_statements
		WHERE dbid = (SELECT oid FROM pg_database WHERE datname=$1) ORDER BY calls DESC`, dbName)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var tc, tr, tb float64
	fmt.Printf("PGSS per message over %d %s: calls rows blocks ms query\n", n, what)
	for rows.Next() {
		var calls, nrows, blks int64
		var ms float64
		var q string
		if err := rows.Scan(&calls, &nrows, &blks, &ms, &q); err != nil {
			b.Fatal(err)
		}
		if strings.Contains(q, "pg_stat_database") {
			continue
		}
		q = strings.Join(strings.Fields(q), " ")
		if len(q) > 160 {
			q = q[:160]
		}
		c, r, bl := float64(calls)/float64(n), float64(nrows)/float64(n), float64(blks)/float64(n)
		tc, tr, tb = tc+c, tr+r, tb+bl
		if c >= 0.005 {
			fmt.Printf("PGSS %6.3f %6.3f %6.2f %8.4f %s\n", c, r, bl, ms/float64(calls), q)
		}
	}
	fmt.Printf("PGSS total %6.3f statements %6.3f rows %6.2f blocks per message (%s)\n", tc, tr, tb, what)
}

// procCounters are the bridge process's counters that countersEnd turns
// into figures per message.
type procCounters struct {
	mallocs, bytes float64
	// syscr and syscw count the system calls that read and write
	// (/proc/PID/io: sockets, files, pipes), switches the context switches
	// of all its threads: what callgrind, which counts user-space
	// instructions only, does not see of the wall-clock CPU.
	syscr, syscw, switches int64
	// user and sys are its CPU time in user space and in the kernel
	// (/proc/PID/stat, clock ticks of 10 ms).
	user, sys time.Duration
}

// countersStart reads the bridge process's allocation and system-call
// counters and, under callgrind, zeroes its instruction counters.
func (g *goalsBridge) countersStart(b *testing.B) procCounters {
	if g.inProcess() {
		return procCounters{}
	}
	if os.Getenv("DMBRIDGE_BENCH_CALLGRIND") == "1" {
		out, err := exec.Command("callgrind_control", "-z", strconv.Itoa(g.proc.cmd.Process.Pid)).CombinedOutput()
		fmt.Printf("CALLGRIND zero: %v %s\n", err, out)
	}
	return g.readCounters(b)
}

// countersEnd prints the counters' change per message of the n sent.
func (g *goalsBridge) countersEnd(b *testing.B, c0 procCounters, n int) {
	if g.inProcess() {
		return
	}
	if os.Getenv("DMBRIDGE_BENCH_CALLGRIND") == "1" {
		out, err := exec.Command("callgrind_control", "--dump=8chat", strconv.Itoa(g.proc.cmd.Process.Pid)).CombinedOutput()
		fmt.Printf("CALLGRIND dump: %v %s\n", err, out)
	}
	c1 := g.readCounters(b)
	per := func(a, b int64) float64 { return float64(b-a) / float64(n) }
	fmt.Printf("ALLOCS per message over %d: %.1f objects, %.0f bytes\n", n, (c1.mallocs-c0.mallocs)/float64(n), (c1.bytes-c0.bytes)/float64(n))
	fmt.Printf("SYSCALLS per message over %d: %.2f reads, %.2f writes, %.2f context switches; CPU %.3f ms user, %.3f ms system\n", n,
		per(c0.syscr, c1.syscr), per(c0.syscw, c1.syscw), per(c0.switches, c1.switches),
		float64(c1.user-c0.user)/float64(n)/1e6, float64(c1.sys-c0.sys)/float64(n)/1e6)
}

func (g *goalsBridge) readCounters(b *testing.B) procCounters {
	var c procCounters
	c.mallocs, c.bytes = g.memstats(b)
	pid := g.proc.cmd.Process.Pid
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "syscr":
				c.syscr = n
			case "syscw":
				c.syscw = n
			}
		}
	}
	c.user, c.sys = procUserSys(pid)
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				c.switches += n
			}
		}
	}
	return c
}

// memstats reads go_memstats_mallocs_total and _alloc_bytes_total.
func (g *goalsBridge) memstats(b *testing.B) (mallocs, bytes float64) {
	resp, err := http.Get(g.metrics + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "go_memstats_mallocs_total":
			mallocs = v
		case "go_memstats_alloc_bytes_total":
			bytes = v
		}
	}
	return mallocs, bytes
}

// procUserSys reads utime and stime of /proc/PID/stat (fields 14 and 15,
// in clock ticks of 1/100 s on Linux, for all of the process's threads).
func procUserSys(pid int) (user, sys time.Duration) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fields := strings.Fields(rest) // fields[0] is field 3 (state)
	if len(fields) < 13 {
		return 0, 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const tick = 10 * time.Millisecond
	return time.Duration(utime) * tick, time.Duration(stime) * tick
}

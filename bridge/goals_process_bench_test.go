package bridge_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// goalsBridge is the bridge BenchmarkGoals measures. By default it is the
// production binary in its own process, so that the CPU counted is the
// bridge's alone: the in-memory homeserver, the connector client and the
// benchmark's own bookkeeping stay in the test process. With
// DMBRIDGE_BENCH_INPROCESS=1 the bridge runs inside the test process as in
// the tests (the figures of earlier rounds were taken that way), and the
// CPU counted is the whole process's.
type goalsBridge struct {
	s       *stack
	proc    *bridgeProcess
	metrics string // the bridge process's metrics listener (pprof)
}

func startGoalsBridge(b *testing.B, target testdb.Target) *goalsBridge {
	if os.Getenv("DMBRIDGE_BENCH_INPROCESS") == "1" {
		return &goalsBridge{s: newStack(b, target, stackOptions{memHS: true})}
	}
	s := newStack(b, target, stackOptions{memHS: true, noBridge: true})
	s.cfg.Connector.Listen = fmt.Sprintf("127.0.0.1:%d", tesths.FreePort(b))
	s.cfg.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", tesths.FreePort(b))
	// Warnings only: the logs go to a file, and writing a line per message
	// is not what an operator at info level pays either (it logs nothing
	// per message).
	s.cfg.Logging.Level = "warn"
	g := &goalsBridge{s: s, proc: newBridgeProcess(b, s), metrics: "http://" + s.cfg.Metrics.Listen}
	g.proc.start(s.cfg.Connector.Listen)
	return g
}

// inProcess says whether the CPU figure includes the harness.
func (g *goalsBridge) inProcess() bool { return g.proc == nil }

// cpu is the CPU time the bridge has used so far: the bridge process's
// (user + system, all threads) or, in process, this whole process's.
func (g *goalsBridge) cpu() time.Duration {
	if g.inProcess() {
		return cpuTime()
	}
	return procCPU(g.proc.cmd.Process.Pid)
}

// harnessCPU is the test process's CPU: with the bridge in its own process,
// what the homeserver, the connector client and the benchmark used.
func harnessCPU() time.Duration { return cpuTime() }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the bridge process's CPU time, user and system, for all of
// its threads (procUserSys).
func procCPU(pid int) time.Duration {
	user, sys := procUserSys(pid)
	return user + sys
}

// profile takes a CPU profile of the bridge process while load runs for
// the profile's length, into dir/bridge-cpu-DB.out, and an allocation
// profile after it (dir/bridge-allocs-DB.out). Nothing happens unless
// DMBRIDGE_BENCH_PROFILE names the directory (make bench-profile), or when
// the bridge runs in process (take -cpuprofile of the test then).
func (g *goalsBridge) profile(b *testing.B, dbName string, load func(stop <-chan struct{})) {
	dir := os.Getenv("DMBRIDGE_BENCH_PROFILE")
	if dir == "" || g.inProcess() {
		return
	}
	const seconds = 10
	got := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		got <- fetchTo(g.metrics+"/debug/pprof/profile?seconds="+strconv.Itoa(seconds), filepath.Join(dir, "bridge-cpu-"+dbName+".out"))
		close(stop)
	}()
	// The load runs here, in the benchmark's goroutine, where it may fail
	// the benchmark; it ends with the profile.
	load(stop)
	err := <-got
	if err != nil {
		b.Fatalf("CPU profile of the bridge: %v", err)
	}
	if err = fetchTo(g.metrics+"/debug/pprof/allocs", filepath.Join(dir, "bridge-allocs-"+dbName+".out")); err != nil {
		b.Fatalf("allocation profile of the bridge: %v", err)
	}
	fmt.Printf("profiles of the bridge process (%s) in %s: go tool pprof -top %s\n", dbName, dir,
		filepath.Join(dir, "bridge-cpu-"+dbName+".out"))
}

// traceLoad starts, for make bench-profile only, an execution trace of the
// bridge process that covers the 1,000/s load run (2 s); the func it
// returns waits for the trace and prints the messages that were over 4 ms
// late, with when they were sent, so that a tail can be laid against the
// trace (go tool trace). The tail's late messages came in runs (see
// docs/design.md), and only a trace shows what the process did meanwhile.
func (g *goalsBridge) traceLoad(b *testing.B, dbName string) func(load []time.Duration, sentAt []time.Time) {
	dir := os.Getenv("DMBRIDGE_BENCH_PROFILE")
	if dir == "" || g.inProcess() {
		return func([]time.Duration, []time.Time) {}
	}
	path := filepath.Join(dir, "bridge-trace-"+dbName+".out")
	got := make(chan error, 1)
	go func() { got <- fetchTo(g.metrics+"/debug/pprof/trace?seconds=3", path) }()
	// The trace starts when the request arrives: give it a moment.
	time.Sleep(50 * time.Millisecond)
	return func(load []time.Duration, sentAt []time.Time) {
		if err := <-got; err != nil {
			b.Fatalf("execution trace of the bridge: %v", err)
		}
		var late []string
		for i, d := range load {
			if d > 4*time.Millisecond {
				late = append(late, fmt.Sprintf("%d at +%.1f ms: %.2f ms", i,
					float64(sentAt[i].Sub(sentAt[0]).Microseconds())/1000, float64(d.Microseconds())/1000))
			}
		}
		fmt.Printf("execution trace of the bridge process (%s) over the 1,000/s load: go tool trace %s; "+
			"messages over 4 ms: %d (%s)\n", dbName, path, len(late), strings.Join(late, "; "))
	}
}

func fetchTo(url, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err = io.Copy(out, resp.Body); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// machineJiffies reads the first line of /proc/stat: the clock ticks all
// CPUs spent busy and in all, so that a run can say whether the machine's
// cores were the limit (busy near 100%) or the run waited on something
// else.
func machineJiffies() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	for i, field := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(field, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle and iowait
			busy += v
		}
	}
	return busy, total
}

// postgresCPU is the CPU time of the processes of the PostgreSQL server
// the run uses (its postmaster and the postmaster's children), the server's
// share of a run's cost as far as its processes outlive the run (the
// bridge's pool keeps its connections). Other users of the same server
// count too, but not other servers on the machine. When the server's
// postmaster is not found (postmaster 0: not on this machine), every
// postgres process on the machine counts.
func postgresCPU(postmaster int) time.Duration {
	entries, _ := os.ReadDir("/proc")
	var sum time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if postmaster != 0 {
			if pid == postmaster || procParent(pid) == postmaster {
				sum += procCPU(pid)
			}
		} else if comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); strings.TrimSpace(string(comm)) == "postgres" {
			sum += procCPU(pid)
		}
	}
	return sum
}

// postmasterOf returns the pid of the postmaster of the server at uri, the
// parent of a backend, or 0 when that process is not on this machine.
func postmasterOf(uri string) int {
	db, err := sql.Open("postgres", uri)
	if err != nil {
		return 0
	}
	defer db.Close()
	var backend int
	if err := db.QueryRow("SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return 0
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", backend)); strings.TrimSpace(string(comm)) != "postgres" {
		return 0
	}
	return procParent(backend)
}

// procParent is the parent pid of pid, 0 when it is not known.
func procParent(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fields := strings.Fields(rest) // fields[0] is field 3 (state)
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

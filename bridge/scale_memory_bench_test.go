package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/memhs"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// BenchmarkScaleMemory measures issue 14's P4 memory goal on the bridge
// binary alone (its own process, so that the in-memory homeserver and the
// fake connector of this test do not count): DMBRIDGE_SCALE_PORTALS
// (default 100,000) contacts each send a first message, which makes a ghost
// and a portal each, while the process's resident memory is sampled; then
// it idles; then it is killed and started again over the same database and
// the first messages after the restart are sent. Each phase prints a SCALE
// line with the peak and the last resident set size. Run it with
// -benchtime 1x (make bench-scale); DMBRIDGE_SCALE_DB picks sqlite
// (default) or postgres, DMBRIDGE_SCALE_IDLE the idle phase's length
// (default 15s).
func BenchmarkScaleMemory(b *testing.B) {
	portals := 100000
	if v := os.Getenv("DMBRIDGE_SCALE_PORTALS"); v != "" {
		_, _ = fmt.Sscan(v, &portals)
	}
	// The idle phase is when the device preparer (encryption.allow is on
	// by default) works through the ghosts at 10 a second: a longer one
	// shows whether that adds up.
	idle := 15 * time.Second
	if v := os.Getenv("DMBRIDGE_SCALE_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("DMBRIDGE_SCALE_IDLE: %v", err)
		}
		idle = d
	}
	target := benchTarget(b, os.Getenv("DMBRIDGE_SCALE_DB"))
	s := newStack(b, target, stackOptions{memHS: true, noBridge: true, noDoublePuppet: true})
	s.cfg.Connector.Listen = fmt.Sprintf("127.0.0.1:%d", tesths.FreePort(b))
	s.cfg.Logging.Level = "warn"
	if v := os.Getenv("DMBRIDGE_SCALE_PPROF"); v != "" {
		s.cfg.Metrics.Listen = v // a profile of the creation phase can be taken there
	}
	var mu sync.Mutex
	delivered := map[string]bool{}
	s.mem.OnSend = func(m memhs.Sent) {
		mu.Lock()
		delivered[string(m.Content)] = true
		mu.Unlock()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered)
	}
	proc := newBridgeProcess(b, s)
	proc.start(s.cfg.Connector.Listen)
	f := s.connectFake(sdk.NewMemoryStore())
	ctx := context.Background()

	rss := &rssSampler{pid: proc.cmd.Process.Pid}
	stop := rss.every(200 * time.Millisecond)
	t0 := time.Now()
	stopProgress := progress(t0, count, rss)
	// A window of first messages in flight at a time: the bridge's inbox
	// would take them all at once, but the figure wanted is the memory of
	// making portals, not of a backlog.
	const window = 2000
	for i := 0; i < portals; i++ {
		contact := fmt.Sprintf("c%d@network", i)
		if _, err := f.client.Send(ctx, textFrom(contact, "m"+strconv.Itoa(i), fmt.Sprintf("first %d", i))); err != nil {
			b.Fatal(err)
		}
		for i+1-count() > window {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCount(b, count, portals, 10*time.Minute)
	created := time.Since(t0)
	stopProgress()
	stop()
	peak, last := rss.result()
	fmt.Printf("SCALE %s: %d portals and ghosts created in %.0f s (%.0f/s): bridge RSS peak %.1f MB, at the end %.1f MB (goal ≤ 100 MB)\n",
		target.Name, portals, created.Seconds(), float64(portals)/created.Seconds(), mb(peak), mb(last))

	rss = &rssSampler{pid: proc.cmd.Process.Pid}
	stop = rss.every(200 * time.Millisecond)
	time.Sleep(idle)
	stop()
	peak, last = rss.result()
	fmt.Printf("SCALE %s: idle %v with %d portals: bridge RSS peak %.1f MB, at the end %.1f MB\n", target.Name, idle, portals, mb(peak), mb(last))

	proc.kill()
	proc.start(s.cfg.Connector.Listen)
	rss = &rssSampler{pid: proc.cmd.Process.Pid}
	stop = rss.every(200 * time.Millisecond)
	t1 := time.Now()
	if _, err := f.client.Send(ctx, textFrom("c0@network", "after-old", "after restart, old portal")); err != nil {
		b.Fatal(err)
	}
	if _, err := f.client.Send(ctx, textFrom("new@network", "after-new", "after restart, new portal")); err != nil {
		b.Fatal(err)
	}
	waitCount(b, count, portals+2, 2*time.Minute)
	firstAfter := time.Since(t1)
	time.Sleep(15 * time.Second)
	stop()
	peak, last = rss.result()
	fmt.Printf("SCALE %s: restarted with %d portals: first messages delivered %.0f ms after the start; bridge RSS peak %.1f MB, after 15 s %.1f MB\n",
		target.Name, portals, float64(firstAfter.Microseconds())/1000, mb(peak), mb(last))
}

// progress prints, every 10 s until stopped, how many portals exist and
// the resident set size then, so that a slope in the creation rate shows
// (the lines do not start with SCALE: make bench-scale keeps only totals).
func progress(t0 time.Time, count func() int, rss *rssSampler) (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		prev, prevAt := 0, t0
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				n := count()
				_, last := rss.result()
				fmt.Printf("progress %4.0f s: %6d portals, %4.0f/s over the last interval, RSS %.1f MB\n",
					now.Sub(t0).Seconds(), n, float64(n-prev)/now.Sub(prevAt).Seconds(), mb(last))
				prev, prevAt = n, now
			}
		}
	}()
	return func() { close(done) }
}

// rssSampler reads a process's resident set size from /proc.
type rssSampler struct {
	pid        int
	mu         sync.Mutex
	peak, last int64
}

func (r *rssSampler) sample() {
	kb := procStatusKB(r.pid, "VmRSS:")
	r.mu.Lock()
	r.last = kb
	r.peak = max(r.peak, kb)
	r.mu.Unlock()
}

// every samples until the returned stop is called (which samples once more).
func (r *rssSampler) every(d time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			r.sample()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		r.sample()
	}
}

func (r *rssSampler) result() (peak, last int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peak, r.last
}

// procStatusKB is a kB field of /proc/PID/status, or 0.
func procStatusKB(pid int, field string) int64 {
	file, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

func mb(kb int64) float64 { return float64(kb) / 1024 }

func waitCount(b *testing.B, count func() int, want int, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for count() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d messages delivered after %v", count(), want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

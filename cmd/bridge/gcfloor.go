package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// heapFloor is the least heap the garbage collector lets grow before it
// collects. With Go's default (GOGC=100) the goal is twice the live heap,
// and a busy bridge's live heap is a few MB: it collected every ~4 MB
// allocated, every couple of hundred messages. With the floor a collection
// comes after ~32 MB, and the 8-chat benchmark's bridge ran 22% (SQLite)
// and 28% (PostgreSQL) fewer instructions per message. Once the default's
// goal is past the floor the default stands; below it the heap holds up
// to the floor's worth of garbage: make bench-scale's RSS with 100,000
// portals peaked at 86.9 MB against 75.6 MB without the floor, and was
// 83.6 MB against 34.8 MB after a restart (P4's goal is 100 MB).
const heapFloor = 32 << 20

// gcFloor raises GOGC after each collection so that the next goal is
// heapFloor while the default's goal is less, and keeps the default
// otherwise. An operator's GOGC or GOMEMLIMIT turns it off: theirs is the
// say.
type gcFloor struct {
	// floor is heapFloor (tests change it while collections run).
	floor   atomic.Uint64
	percent int
	sample  []metrics.Sample
	// set is debug.SetGCPercent (tests watch it).
	set func(int) int
}

// startGCFloor starts the floor unless the environment sets the collector.
func startGCFloor() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	f := newGCFloor(heapFloor, debug.SetGCPercent)
	f.tune()
	f.arm()
}

func newGCFloor(floor uint64, set func(int) int) *gcFloor {
	f := &gcFloor{percent: 100, set: set, sample: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}}
	f.floor.Store(floor)
	return f
}

// gcSentinel's finalizer runs once after each collection that finds it
// unreachable, which is every collection, since the finalizer makes it
// reachable again until the next one. It holds a pointer so that it is
// not one of the tiny allocations whose finalizers may never run.
type gcSentinel struct{ f *gcFloor }

func (f *gcFloor) arm() {
	runtime.SetFinalizer(&gcSentinel{f: f}, func(s *gcSentinel) {
		s.f.tune()
		s.f.arm()
	})
}

// tune sets the GOGC that puts the next goal at the floor, given the heap
// the last collection found live.
func (f *gcFloor) tune() {
	metrics.Read(f.sample)
	for _, s := range f.sample {
		if s.Value.Kind() != metrics.KindUint64 {
			return
		}
	}
	live := f.sample[0].Value.Uint64()
	roots := f.sample[1].Value.Uint64() + f.sample[2].Value.Uint64()
	percent := floorPercent(live, roots, f.floor.Load())
	// Only a change worth the call: the goal moves with every collection.
	if d := percent - f.percent; d > f.percent/8 || -d > f.percent/8 {
		f.set(percent)
		f.percent = percent
	}
}

// floorPercent is the GOGC whose goal, for a live heap of live bytes and
// roots bytes of goroutine stacks and globals to scan, is floor, and never
// less than Go's default of 100. Go's goal is live + (live + roots) ×
// GOGC/100: the roots count too, and a bridge with messages in flight has
// megabytes of stacks, which a percent reckoned on the heap alone
// multiplies (the scale run's heap after a restart grew past 100 MB so).
func floorPercent(live, roots, floor uint64) int {
	base := live + roots
	if live == 0 || live+base >= floor {
		return 100
	}
	return int((floor - live) * 100 / base)
}

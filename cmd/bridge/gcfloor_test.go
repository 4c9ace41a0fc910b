package main

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestFloorPercent(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		live, roots, floor uint64
		want               int
	}{
		{4 * mb, 0, 32 * mb, 700},      // goal 32 MB instead of 8
		{8 * mb, 0, 32 * mb, 300},      // 32 instead of 16
		{4 * mb, 4 * mb, 32 * mb, 350}, // the stacks count: 4 + 8 × 3.5
		{2 * mb, 6 * mb, 32 * mb, 375}, // not 1,500% of them (122 MB)
		{16 * mb, 0, 32 * mb, 100},     // twice the live heap is the floor
		{12 * mb, 8 * mb, 32 * mb, 100},
		{27 * mb, 6 * mb, 32 * mb, 100}, // P4's live heap: the default
		{0, 1 * mb, 32 * mb, 100},
	} {
		got := floorPercent(c.live, c.roots, c.floor)
		if got != c.want {
			t.Errorf("floorPercent(%d, %d, %d) = %d, want %d", c.live, c.roots, c.floor, got, c.want)
		}
		if goal := c.live + (c.live+c.roots)*uint64(got)/100; got > 100 && goal > c.floor {
			t.Errorf("floorPercent(%d, %d, %d) = %d: goal %d above the floor", c.live, c.roots, c.floor, got, goal)
		}
	}
}

// TestGCFloorFollowsCollections: after a collection the floor sets the
// GOGC for the heap that collection left live, and again after the next
// one; with a floor below twice the live heap it keeps the default and
// sets nothing.
func TestGCFloorFollowsCollections(t *testing.T) {
	var mu sync.Mutex
	var set []int
	f := newGCFloor(1<<40, func(p int) int {
		mu.Lock()
		defer mu.Unlock()
		set = append(set, p)
		return 100
	})
	f.arm()
	calls := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), set...)
	}
	waitCalls := func(n int) []int {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			runtime.GC()
			if got := calls(); len(got) >= n {
				return got
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("GOGC set %v times after collections, want %d", calls(), n)
		return nil
	}
	got := waitCalls(1)
	if got[0] <= 100 {
		t.Fatalf("GOGC set to %d for a floor far above the live heap", got[0])
	}
	// The next collections tune again; the percent moves only with the
	// live heap, so a change is not required, only that tuning goes on:
	// lower the floor and the default comes back.
	f.floor.Store(1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		if got := calls(); got[len(got)-1] == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC after the floor went below the live heap: %v, want back to 100", calls())
		}
		time.Sleep(10 * time.Millisecond)
	}

	g := newGCFloor(1, func(p int) int { t.Errorf("GOGC set to %d with no floor to keep", p); return 100 })
	g.tune()
}

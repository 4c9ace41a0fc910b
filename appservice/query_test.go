package appservice

import (
	"testing"
	"time"
)

// TestBudget: the budget answers burst new names at once, then one per
// interval, and never saves more than burst however long it rests.
func TestBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newBudget(3, time.Second)
	take := func() bool { return l.AllowN(now, 1) }
	for i := range 3 {
		if !take() {
			t.Fatalf("take %d of the burst refused", i)
		}
	}
	if take() {
		t.Fatal("a fourth name at once was answered")
	}
	now = now.Add(999 * time.Millisecond)
	if take() {
		t.Fatal("answered before a full interval passed")
	}
	now = now.Add(time.Millisecond)
	if !take() || take() {
		t.Fatal("want exactly one name after one interval")
	}
	now = now.Add(time.Hour)
	n := 0
	for take() {
		n++
	}
	if n != 3 {
		t.Fatalf("%d names after a long rest, want the burst of 3", n)
	}
	now = now.Add(-time.Minute) // a clock stepping back gives nothing
	if take() {
		t.Fatal("a clock stepping back refilled the budget")
	}
}

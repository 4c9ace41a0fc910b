package appservice

import (
	"testing"
	"time"
)

// TestBudget: the budget answers burst new names at once, then one per
// interval, and never saves more than burst however long it rests.
func TestBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBudget(3, time.Second, func() time.Time { return now })
	for i := range 3 {
		if !b.take() {
			t.Fatalf("take %d of the burst refused", i)
		}
	}
	if b.take() {
		t.Fatal("a fourth name at once was answered")
	}
	now = now.Add(999 * time.Millisecond)
	if b.take() {
		t.Fatal("answered before a full interval passed")
	}
	now = now.Add(time.Millisecond)
	if !b.take() || b.take() {
		t.Fatal("want exactly one name after one interval")
	}
	now = now.Add(time.Hour)
	n := 0
	for b.take() {
		n++
	}
	if n != 3 {
		t.Fatalf("%d names after a long rest, want the burst of 3", n)
	}
	now = now.Add(-time.Minute) // a clock stepping back gives nothing
	if b.take() {
		t.Fatal("a clock stepping back refilled the budget")
	}
}

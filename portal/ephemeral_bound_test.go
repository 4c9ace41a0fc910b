package portal

import (
	"fmt"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// TestEphemeralGateCoalesces: a flood for one key costs one job, and the
// job sees the newest update.
func TestEphemeralGateCoalesces(t *testing.T) {
	var g ephemeralGate
	now := time.Now()
	scheduled := 0
	for i := range 100 {
		schedule, dropped := g.offer("c", "typing/l/chat", &connector.Ephemeral{TimeoutMS: int64(i)}, now)
		if dropped {
			t.Fatalf("update %d dropped", i)
		}
		if schedule {
			scheduled++
		}
	}
	if scheduled != 1 {
		t.Errorf("%d jobs scheduled for one key, want 1", scheduled)
	}
	if e := g.take("typing/l/chat"); e == nil || e.TimeoutMS != 99 {
		t.Errorf("job got %+v, want the last update", e)
	}
	if schedule, _ := g.offer("c", "typing/l/chat", &connector.Ephemeral{}, now); !schedule {
		t.Error("an update after the job took the last one schedules no new job")
	}
}

// TestEphemeralGateBounds: a connector over its rate is dropped (others are
// not), the bucket refills with time, and the number of waiting keys is capped.
func TestEphemeralGateBounds(t *testing.T) {
	var g ephemeralGate
	now := time.Now()
	accepted := 0
	for i := range ephemeralBurst * 3 {
		if _, dropped := g.offer("flood", fmt.Sprintf("k%d", i), &connector.Ephemeral{}, now); !dropped {
			accepted++
		}
	}
	if accepted != ephemeralBurst {
		t.Errorf("accepted %d frames at once, want the burst of %d", accepted, ephemeralBurst)
	}
	// Over the rate, a newer state for a waiting key still replaces it.
	if _, dropped := g.offer("flood", "k0", &connector.Ephemeral{Typing: true}, now); dropped {
		t.Error("an update of a waiting key was dropped over the rate")
	}
	if e := g.take("k0"); e == nil || !e.Typing {
		t.Errorf("waiting job got %+v, want the newer state", e)
	}
	if _, dropped := g.offer("calm", "other", &connector.Ephemeral{}, now); dropped {
		t.Error("another connector was dropped for the flood")
	}
	if _, dropped := g.offer("flood", "later", &connector.Ephemeral{}, now.Add(time.Second)); dropped {
		t.Error("the bucket did not refill")
	}

	var full ephemeralGate
	waiting := 0
	for i := range maxPendingEphemeral + 10 {
		// A fresh connector each time, so only the key cap applies.
		if schedule, _ := full.offer(fmt.Sprintf("c%d", i), fmt.Sprintf("k%d", i), &connector.Ephemeral{}, now); schedule {
			waiting++
		}
	}
	if waiting != maxPendingEphemeral {
		t.Errorf("%d keys waiting, want at most %d", waiting, maxPendingEphemeral)
	}
}

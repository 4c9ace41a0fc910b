package metrics

import (
	"sync"
	"time"
)

// startTimes remembers when work began, for the latency observed when it
// ends. It is bounded: a backlog larger than max is not timed rather than
// held in memory, and an entry whose end this process never sees (a stop
// before the event was applied) is dropped when the map is full and the
// entry is old.
type startTimes[K comparable] struct {
	mu    sync.Mutex
	max   int
	start map[K]time.Time
	swept time.Time
}

func newStartTimes[K comparable](max int) *startTimes[K] {
	return &startTimes[K]{max: max, start: make(map[K]time.Time)}
}

// staleAfter is the age beyond which an entry is presumed orphaned.
const staleAfter = time.Hour

func (s *startTimes[K]) begin(key K, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.start) >= s.max {
		// A full sweep is O(max), so it runs at most once a minute while
		// the map stays full; it frees every orphan at once.
		now := time.Now()
		if now.Sub(s.swept) < time.Minute {
			return
		}
		s.swept = now
		cutoff := now.Add(-staleAfter)
		for k, t := range s.start {
			if t.Before(cutoff) {
				delete(s.start, k)
			}
		}
		if len(s.start) >= s.max {
			return
		}
	}
	s.start[key] = at
}

func (s *startTimes[K]) end(key K) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.start[key]
	if ok {
		delete(s.start, key)
	}
	return t, ok
}

func (s *startTimes[K]) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.start)
}

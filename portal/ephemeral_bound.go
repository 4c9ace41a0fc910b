package portal

import (
	"sync"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// Ephemeral frames are never stored and may be lost, so under pressure the
// bridge drops them rather than let a connector grow its memory or its
// homeserver traffic without end.
const (
	// maxPendingEphemeral bounds the updates waiting for the homeserver.
	maxPendingEphemeral = 1024
	// ephemeralRate and ephemeralBurst bound how many ephemeral frames a
	// connector may have applied per second; more are dropped.
	ephemeralRate  = 50
	ephemeralBurst = 200
	// maxTypingTimeout caps how long one remote typing notice lasts.
	maxTypingTimeout = 2 * time.Minute
)

// ephemeralGate keeps, per key (a chat's typing, a contact's presence),
// only the latest update not yet applied: a newer state makes an older one
// worthless, so a flood for one key costs one job. It also holds each
// connector's token bucket.
type ephemeralGate struct {
	mu      sync.Mutex
	latest  map[string]*connector.Ephemeral
	buckets map[string]*tokenBucket
}

// offer records e as the latest update for key. schedule is true when no
// job for key is waiting yet, so the caller must submit one; false with
// dropped false means a waiting job will pick e up. dropped is true when e
// is refused: the connector is over its rate, or too many keys wait.
func (g *ephemeralGate) offer(connectorID, key string, e *connector.Ephemeral, now time.Time) (schedule, dropped bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.latest == nil {
		g.latest = make(map[string]*connector.Ephemeral)
		g.buckets = make(map[string]*tokenBucket)
	}
	if _, waiting := g.latest[key]; waiting {
		// Free: the waiting job shows this newer state instead, so the
		// last word (typing stopped, gone offline) is never dropped.
		g.latest[key] = e
		return false, false
	}
	b := g.buckets[connectorID]
	if b == nil {
		b = &tokenBucket{tokens: ephemeralBurst, last: now}
		g.buckets[connectorID] = b
	}
	if len(g.latest) >= maxPendingEphemeral || !b.take(now) {
		return false, true
	}
	g.latest[key] = e
	return true, false
}

// take returns the latest update for key and forgets it.
func (g *ephemeralGate) take(key string) *connector.Ephemeral {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.latest[key]
	delete(g.latest, key)
	return e
}

// tokenBucket refills at ephemeralRate per second up to ephemeralBurst.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

func (b *tokenBucket) take(now time.Time) bool {
	b.tokens = min(ephemeralBurst, b.tokens+now.Sub(b.last).Seconds()*ephemeralRate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

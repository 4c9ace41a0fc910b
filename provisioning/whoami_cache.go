package provisioning

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
)

// Verifying an access token costs a homeserver request, and anyone can
// send a provisioning request with any token. The answers are therefore
// kept for a short while, per token, and only a few checks run at once.
const (
	whoamiTTL         = time.Minute      // how long a verified token is trusted
	whoamiBadTTL      = 10 * time.Second // how long a rejected token stays rejected
	whoamiMaxEntries  = 4096
	whoamiConcurrency = 4
)

// errBusy answers a request while whoamiConcurrency checks are running.
var errBusy = errors.New("too many access token checks at once")

// whoamiCache wraps a whoamiFunc with the cache and the concurrency bound.
// Tokens are kept only as SHA-256 digests.
type whoamiCache struct {
	inner       whoamiFunc
	ttl, badTTL time.Duration
	maxEntries  int
	sem         chan struct{}
	mu          sync.Mutex
	entries     map[[32]byte]whoamiEntry
	now         func() time.Time
}

type whoamiEntry struct {
	user    id.UserID
	bad     bool
	expires time.Time
}

func newWhoamiCache(inner whoamiFunc) *whoamiCache {
	return &whoamiCache{
		inner: inner, ttl: whoamiTTL, badTTL: whoamiBadTTL, maxEntries: whoamiMaxEntries,
		sem: make(chan struct{}, whoamiConcurrency), entries: make(map[[32]byte]whoamiEntry), now: time.Now,
	}
}

// lookup is a whoamiFunc. A failure other than a rejected token is not
// remembered, so the next request asks the homeserver again.
func (c *whoamiCache) lookup(ctx context.Context, token string) (id.UserID, error) {
	key := sha256.Sum256([]byte(token))
	if e, ok := c.get(key); ok {
		if e.bad {
			return "", errBadToken
		}
		return e.user, nil
	}
	select {
	case c.sem <- struct{}{}:
	default:
		return "", errBusy
	}
	defer func() { <-c.sem }()
	user, err := c.inner(ctx, token)
	switch {
	case errors.Is(err, errBadToken):
		c.put(key, whoamiEntry{bad: true, expires: c.now().Add(c.badTTL)})
	case err == nil:
		c.put(key, whoamiEntry{user: user, expires: c.now().Add(c.ttl)})
	}
	return user, err
}

func (c *whoamiCache) get(key [32]byte) (whoamiEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.now().Before(e.expires) {
		return whoamiEntry{}, false
	}
	return e, true
}

// put stores an entry; when full it first drops the expired entries, then,
// if still full, an arbitrary one.
func (c *whoamiCache) put(key [32]byte, e whoamiEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.maxEntries {
		now := c.now()
		for k, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.maxEntries {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = e
}

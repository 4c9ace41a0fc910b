package puppet

import "github.com/dmbridge/dmbridge/internal/keyedmutex"

// keyedLocks hands out one mutex per user or ghost, so that work on
// different ones runs in parallel while work on the same one is serialised.
type keyedLocks struct {
	m keyedmutex.Map[string]
}

func (k *keyedLocks) lock(key string) func() { return k.m.Lock(key) }

// Package keyedmutex hands out one mutex per key, so that work on different
// keys runs in parallel while work on the same key is serialised.
package keyedmutex

import "sync"

// Mutex is a set of mutexes, one per key. The zero value is ready; an entry
// exists only while its key is held or awaited, so the set does not grow
// with every key ever seen.
type Mutex[K comparable] struct {
	mu    sync.Mutex
	locks map[K]*entry
}

type entry struct {
	sync.Mutex
	refs int // holders and waiters
}

// Lock takes key's mutex and returns its release. It is not reentrant: a
// goroutine that locks a key it already holds deadlocks.
func (m *Mutex[K]) Lock(key K) (unlock func()) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = make(map[K]*entry)
	}
	l := m.locks[key]
	if l == nil {
		l = &entry{}
		m.locks[key] = l
	}
	l.refs++
	m.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		m.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(m.locks, key)
		}
		m.mu.Unlock()
	}
}

// Len is the number of keys held or awaited.
func (m *Mutex[K]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.locks)
}

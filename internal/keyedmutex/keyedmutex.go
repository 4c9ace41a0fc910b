// Package keyedmutex hands out one mutex per key, so that work on different
// keys runs in parallel while work on the same key is serialised. The portal
// locks chats with it, and the puppets lock users and ghosts.
package keyedmutex

import "sync"

// Map is a set of mutexes by key. The zero value is ready; an entry exists
// only while its mutex is held or awaited, so a Map over an unbounded key
// space stays as small as the work in flight.
type Map[K comparable] struct {
	mu    sync.Mutex
	locks map[K]*entry
}

type entry struct {
	sync.Mutex
	refs int
}

// Lock takes key's mutex and returns its release. It is not reentrant.
func (m *Map[K]) Lock(key K) (unlock func()) {
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

package portal

import (
	"sync"

	"github.com/dmbridge/dmbridge/database"
)

// chatLocks serialises everything that creates, adopts or forgets a chat's
// portal. Remote events already run one at a time per chat on their lane,
// but an invite, a start-chat or a user leaving arrives on other paths; without
// this lock an invite and a first message could each give the chat a room.
// The zero value is ready; entries exist only while held or awaited.
type chatLocks struct {
	mu    sync.Mutex
	locks map[database.PortalKey]*chatLock
}

type chatLock struct {
	sync.Mutex
	refs int
}

// lock takes the chat's lock and returns its release. It is not reentrant:
// code running under applyRemote already holds the lock of its event's chat.
func (c *chatLocks) lock(key database.PortalKey) func() {
	c.mu.Lock()
	if c.locks == nil {
		c.locks = make(map[database.PortalKey]*chatLock)
	}
	l := c.locks[key]
	if l == nil {
		l = &chatLock{}
		c.locks[key] = l
	}
	l.refs++
	c.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		c.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(c.locks, key)
		}
		c.mu.Unlock()
	}
}

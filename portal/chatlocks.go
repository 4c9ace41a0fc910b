package portal

import (
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/keyedmutex"
)

// chatLocks serialises everything that creates, adopts or forgets a chat's
// portal. Remote events already run one at a time per chat on their lane,
// but an invite, a start-chat or a user leaving arrives on other paths; without
// this lock an invite and a first message could each give the chat a room.
// The zero value is ready.
type chatLocks struct {
	m keyedmutex.Map[database.PortalKey]
}

// lock takes the chat's lock and returns its release. It is not reentrant:
// code running under applyRemote already holds the lock of its event's chat.
func (c *chatLocks) lock(key database.PortalKey) func() { return c.m.Lock(key) }

package portal

import (
	"sync"

	"maunium.net/go/mautrix/id"
)

// quietRooms remembers the rooms this process has seen with no stored
// command, so that a direct send (sendDirect) does not ask the database
// each time. Only the room's lane stores a command for it, and a room
// leaves the set before that store, so membership can only be stale in the
// safe direction: a room missing from the set is read again. The set
// belongs to one process's time as the active instance (a process that
// loses the lease exits); a new process starts with it empty.
type quietRooms struct {
	mu sync.Mutex
	m  map[id.RoomID]struct{}
}

// maxQuietRooms bounds the set, like the database's row caches; past it
// the set starts over.
const maxQuietRooms = 20000

func (q *quietRooms) has(roomID id.RoomID) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.m[roomID]
	return ok
}

func (q *quietRooms) add(roomID id.RoomID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.m == nil || len(q.m) >= maxQuietRooms {
		q.m = make(map[id.RoomID]struct{})
	}
	q.m[roomID] = struct{}{}
}

func (q *quietRooms) remove(roomID id.RoomID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.m, roomID)
}

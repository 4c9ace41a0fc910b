package appservice

import (
	"context"
	"sync"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// encryptionCache answers the other question every bridged message asks:
// with encryption on, each ghost's client has a crypto helper, so mautrix's
// Client.SendMessageEvent first asks the state store whether the room is
// encrypted, a database query per message (12% of the bridge's CPU over
// 8 busy chats on SQLite, most of it preparing the statement). Both answers
// are cached here, "encrypted" and "not": the bridge learns of a room's
// encryption only through SetEncryptionEvent (the event pushed to the
// appservice, through mautrix.UpdateStateStore, or the bridge's own
// create and enable paths), which goes through this store and forgets the
// room first. The generation stops a read that raced with such a write from
// putting the old answer back; a write inside a database transaction could
// roll back, so, as for memberships, it turns this cache off for good.
type encryptionCache struct {
	mu    sync.Mutex
	gen   uint64
	rooms map[id.RoomID]*event.EncryptionEventContent
	off   bool
}

// maxEncryptionCached bounds the cache; past it the cache starts over.
const maxEncryptionCached = 20000

// GetEncryptionEvent returns the room's m.room.encryption content, or nil.
func (s *StateStore) GetEncryptionEvent(ctx context.Context, roomID id.RoomID) (*event.EncryptionEventContent, error) {
	c := &s.enc
	c.mu.Lock()
	content, ok := c.rooms[roomID]
	gen, off := c.gen, c.off
	c.mu.Unlock()
	if ok {
		return content, nil
	}
	content, err := s.SQLStateStore.GetEncryptionEvent(ctx, roomID)
	if err != nil || off || s.inTxn(ctx) {
		return content, err
	}
	c.mu.Lock()
	if gen == c.gen && !c.off {
		if c.rooms == nil || len(c.rooms) >= maxEncryptionCached {
			c.rooms = make(map[id.RoomID]*event.EncryptionEventContent)
		}
		c.rooms[roomID] = content
	}
	c.mu.Unlock()
	return content, nil
}

// IsEncrypted reports whether the room is encrypted with Megolm, as
// mautrix's SQL store does, from the cached event.
func (s *StateStore) IsEncrypted(ctx context.Context, roomID id.RoomID) (bool, error) {
	content, err := s.GetEncryptionEvent(ctx, roomID)
	return content != nil && content.Algorithm == id.AlgorithmMegolmV1, err
}

// SetEncryptionEvent stores the room's encryption and forgets the cached one.
func (s *StateStore) SetEncryptionEvent(ctx context.Context, roomID id.RoomID, content *event.EncryptionEventContent) error {
	defer s.forgetEncryption(ctx, roomID)
	return s.SQLStateStore.SetEncryptionEvent(ctx, roomID, content)
}

func (s *StateStore) forgetEncryption(ctx context.Context, roomID id.RoomID) {
	inTxn := s.inTxn(ctx)
	c := &s.enc
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if inTxn {
		c.off = true
		c.rooms = nil
		return
	}
	delete(c.rooms, roomID)
}

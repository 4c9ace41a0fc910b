package appservice

import (
	"context"
	"sync"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"
)

// maxJoinedCached bounds the membership cache; past it the cache starts
// over, so memory stays flat however many rooms there are.
const maxJoinedCached = 20000

// StateStore is mautrix's SQL state store with the one question every
// bridged message asks cached: IntentAPI.SendMessageEvent first checks that
// the sender is joined (IsInRoom), a database round trip per message. Only
// "joined" answers are cached; every membership write that goes through the
// store (SetMembership, SetMember, ReplaceCachedMembers, ClearCachedMembers,
// and mautrix.UpdateStateStore, which calls them) forgets what it touches,
// and the generation stops a read that raced with such a write from putting
// the old answer back. A write inside a database transaction might still roll
// back, and what it wrote is read back before the commit by the transaction
// alone; rather than track that, such a write turns the cache off for good.
// Each elected instance builds a fresh store, so no other process writes
// behind it. The room's encryption is cached the same way
// (statecache_encryption.go).
type StateStore struct {
	*sqlstatestore.SQLStateStore

	mu     sync.Mutex
	gen    uint64
	joined map[memberKey]struct{}
	off    bool

	enc encryptionCache
}

type memberKey struct {
	room id.RoomID
	user id.UserID
}

// NewStateStore wraps store.
func NewStateStore(store *sqlstatestore.SQLStateStore) *StateStore {
	return &StateStore{SQLStateStore: store, joined: make(map[memberKey]struct{})}
}

func (s *StateStore) inTxn(ctx context.Context) bool {
	_, ok := s.Execable(ctx).(dbutil.Transaction)
	return ok
}

// IsInRoom reports whether the user is joined to the room.
func (s *StateStore) IsInRoom(ctx context.Context, roomID id.RoomID, userID id.UserID) bool {
	key := memberKey{roomID, userID}
	s.mu.Lock()
	_, ok := s.joined[key]
	gen, off := s.gen, s.off
	s.mu.Unlock()
	if ok {
		return true
	}
	in := s.SQLStateStore.IsInRoom(ctx, roomID, userID)
	if in && !off && !s.inTxn(ctx) {
		s.mu.Lock()
		if gen == s.gen && !s.off {
			if len(s.joined) >= maxJoinedCached {
				clear(s.joined)
			}
			s.joined[key] = struct{}{}
		}
		s.mu.Unlock()
	}
	return in
}

// forget drops the cached answers for a user in a room, or for the whole
// room when user is empty, after a write.
func (s *StateStore) forget(ctx context.Context, roomID id.RoomID, userID id.UserID) {
	inTxn := s.inTxn(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	if inTxn {
		s.off = true
		clear(s.joined)
		return
	}
	if userID != "" {
		delete(s.joined, memberKey{roomID, userID})
		return
	}
	for k := range s.joined {
		if k.room == roomID {
			delete(s.joined, k)
		}
	}
}

// SetMembership stores a membership and forgets the cached one.
func (s *StateStore) SetMembership(ctx context.Context, roomID id.RoomID, userID id.UserID, membership event.Membership) error {
	defer s.forget(ctx, roomID, userID)
	return s.SQLStateStore.SetMembership(ctx, roomID, userID, membership)
}

// SetMember stores a member event and forgets the cached membership.
func (s *StateStore) SetMember(ctx context.Context, roomID id.RoomID, userID id.UserID, member *event.MemberEventContent) error {
	defer s.forget(ctx, roomID, userID)
	return s.SQLStateStore.SetMember(ctx, roomID, userID, member)
}

// ReplaceCachedMembers replaces a room's members and forgets the room.
func (s *StateStore) ReplaceCachedMembers(ctx context.Context, roomID id.RoomID, evts []*event.Event, onlyMemberships ...event.Membership) error {
	defer s.forget(ctx, roomID, "")
	return s.SQLStateStore.ReplaceCachedMembers(ctx, roomID, evts, onlyMemberships...)
}

// ClearCachedMembers clears a room's members and forgets the room.
func (s *StateStore) ClearCachedMembers(ctx context.Context, roomID id.RoomID, memberships ...event.Membership) error {
	defer s.forget(ctx, roomID, "")
	return s.SQLStateStore.ClearCachedMembers(ctx, roomID, memberships...)
}

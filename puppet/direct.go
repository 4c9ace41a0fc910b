package puppet

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/matrix"
)

// mDirectAttempts bounds how often the merge is redone when a client's
// concurrent write dropped the bridge's entries.
const mDirectAttempts = 4

// Direct edits users' m.direct account data without clobbering. Matrix has no
// compare-and-swap on account data, so the bridge serialises its own writes per
// user (directqueue.go), writes only when its merge changes something, and
// reads back to verify.
type Direct struct {
	log zerolog.Logger

	mu     sync.Mutex
	queues map[id.UserID]*directQueue
}

// NewDirect creates the m.direct editor.
func NewDirect(log zerolog.Logger) *Direct {
	return &Direct{log: log.With().Str("component", "m_direct").Logger(), queues: make(map[id.UserID]*directQueue)}
}

// DirectChange is what the bridge wants of one user's m.direct: rooms to be
// listed under ghosts, and rooms it cleaned up, to be dropped wherever listed.
type DirectChange struct {
	Add    map[id.UserID][]id.RoomID
	Remove map[id.RoomID]bool
}

// Empty reports whether the change asks for nothing.
func (c DirectChange) Empty() bool { return len(c.Add) == 0 && len(c.Remove) == 0 }

// AccountData is what Apply needs of the user's Matrix API (matrix.API).
type AccountData interface {
	UserID() id.UserID
	GetAccountData(ctx context.Context, eventType string, out any) error
	SetAccountData(ctx context.Context, eventType string, data any) error
}

// write reads m.direct, merges the change and writes the result when it
// differs, then reads back and merges again until the change holds. The
// caller runs it alone for the user (Apply's queue).
func (d *Direct) write(ctx context.Context, client AccountData, change DirectChange) (bool, error) {
	current, err := getDirect(ctx, client)
	if err != nil {
		return false, err
	}
	wrote := false
	for attempt := 1; ; attempt++ {
		merged, changed := mergeDirect(current, change)
		if !changed {
			return wrote, nil
		}
		if attempt > mDirectAttempts {
			return wrote, fmt.Errorf("m.direct of %s kept losing the bridge's entries after %d writes", client.UserID(), mDirectAttempts)
		}
		if err = putDirect(ctx, client, merged); err != nil {
			return wrote, fmt.Errorf("write m.direct of %s: %w", client.UserID(), err)
		}
		wrote = true
		if current, err = getDirect(ctx, client); err != nil {
			return wrote, err
		}
		if attempt > 1 {
			d.log.Debug().Stringer("user_id", client.UserID()).Int("attempt", attempt).Msg("m.direct changed under us, merged again")
		}
	}
}

// putDirect writes m.direct. The body is put together by hand: the values
// are raw JSON that came from the homeserver or from json.Marshal, and
// handing the map to json.Marshal would re-validate and compact every one
// of them, which for a user with thousands of DMs is most of a write's cost.
func putDirect(ctx context.Context, client AccountData, content map[string]json.RawMessage) error {
	size := 2
	for k, v := range content {
		size += len(k) + len(v) + 4
	}
	body := make([]byte, 0, size+size/16)
	body = append(body, '{')
	for i, k := range slices.Sorted(maps.Keys(content)) {
		if i > 0 {
			body = append(body, ',')
		}
		key, err := json.Marshal(k)
		if err != nil {
			return fmt.Errorf("encode m.direct key %q: %w", k, err)
		}
		body = append(body, key...)
		body = append(body, ':')
		body = append(body, content[k]...)
	}
	body = append(body, '}')
	// matrix.API sends a json.RawMessage as it is.
	return client.SetAccountData(ctx, event.AccountDataDirectChats.Type, json.RawMessage(body))
}

// getDirect reads m.direct keeping every value as raw JSON, so that entries
// the bridge does not understand survive the round trip byte for byte.
func getDirect(ctx context.Context, client AccountData) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage)
	err := client.GetAccountData(ctx, event.AccountDataDirectChats.Type, &out)
	if matrix.IsNotFound(err) {
		return make(map[string]json.RawMessage), nil
	} else if err != nil {
		return nil, fmt.Errorf("read m.direct of %s: %w", client.UserID(), err)
	}
	if out == nil {
		out = make(map[string]json.RawMessage)
	}
	return out, nil
}

// mergeDirect returns current with the change applied, and whether that
// differs from current. Values that are not room lists are left alone.
func mergeDirect(current map[string]json.RawMessage, change DirectChange) (map[string]json.RawMessage, bool) {
	merged := make(map[string]json.RawMessage, len(current)+len(change.Add))
	for k, v := range current {
		merged[k] = v
	}
	changed := false
	touch := func(key string, edit func([]id.RoomID) []id.RoomID) {
		var rooms []id.RoomID
		if raw, ok := merged[key]; ok {
			if json.Unmarshal(raw, &rooms) != nil {
				return
			}
		}
		edited := edit(slices.Clone(rooms))
		if slices.Equal(edited, rooms) {
			return
		}
		changed = true
		if len(edited) == 0 {
			delete(merged, key)
			return
		}
		data, _ := json.Marshal(edited)
		merged[key] = data
	}
	if len(change.Remove) > 0 {
		for key := range current {
			touch(key, func(rooms []id.RoomID) []id.RoomID {
				return slices.DeleteFunc(rooms, func(r id.RoomID) bool { return change.Remove[r] })
			})
		}
	}
	for ghost, rooms := range change.Add {
		touch(string(ghost), func(have []id.RoomID) []id.RoomID {
			for _, r := range rooms {
				if !slices.Contains(have, r) && !change.Remove[r] {
					have = append(have, r)
				}
			}
			return have
		})
	}
	return merged, changed
}

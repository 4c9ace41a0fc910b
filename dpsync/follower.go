package dpsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/matrix"
)

// noRoom is a room id no homeserver has: the first sync names it as the
// only room wanted, so that it brings the position and nothing else.
const noRoom = "!none:dmbridge.invalid"

// positionFilter keeps a first sync to its next_batch.
const positionFilter = `{"account_data":{"not_types":["*"]},"presence":{"not_types":["*"]},` +
	`"room":{"rooms":["` + noRoom + `"]}}`

// followFilter keeps a sync to the redactions, typing and receipts of the
// user's rooms. The room list is not narrowed to portals: it would have to
// change with every new DM, and rooms that are none are dropped below.
const followFilter = `{"account_data":{"not_types":["*"]},"presence":{"not_types":["*"]},` +
	`"room":{"account_data":{"not_types":["*"]},"state":{"not_types":["*"]},` +
	`"timeline":{"types":["m.room.redaction"],"limit":100},"ephemeral":{"types":["m.typing","m.receipt"]}}}`

// idleStoreInterval is how long a position that brought nothing may stay
// unstored. The homeserver answers a long poll whenever any event arrives in
// one of the user's rooms, so nearly every response is empty after the
// filter; storing each would add a database write per bridged message. A
// crash loses only positions whose responses held nothing, so resuming from
// the older one misses nothing.
const idleStoreInterval = 30 * time.Second

// syncResponse is the part of a /sync response the follower reads, with
// events kept raw for the intake.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[id.RoomID]struct {
			Timeline struct {
				Events  []json.RawMessage `json:"events"`
				Limited bool              `json:"limited"`
			} `json:"timeline"`
			Ephemeral struct {
				Events []json.RawMessage `json:"events"`
			} `json:"ephemeral"`
		} `json:"join"`
	} `json:"rooms"`
}

// follower is one user's loop state.
type follower struct {
	m    *Manager
	user id.UserID
	log  zerolog.Logger

	api    matrix.API
	loaded bool
	since  string
	// storedAt is when since was last stored; dirty says since is newer
	// than what is stored.
	storedAt time.Time
	dirty    bool
}

// ephemeral is an ephemeral event and the room it came under.
type ephemeral struct {
	room id.RoomID
	raw  json.RawMessage
}

// step makes one sync and takes in what it brought. done means the user
// cannot be followed (no double puppet covers them).
func (f *follower) step(ctx context.Context) (done bool, err error) {
	if f.api == nil {
		api, err := f.m.puppets.Intent(ctx, f.user)
		if err != nil {
			return false, fmt.Errorf("get the double puppet: %w", err)
		} else if api == nil {
			f.log.Debug().Msg("No double puppet covers this user; not following their /sync")
			return true, nil
		}
		f.api = api
	}
	if !f.loaded {
		if f.since, err = f.m.db.DPSync.Get(ctx, f.user); err != nil {
			return false, fmt.Errorf("read the stored sync position: %w", err)
		}
		f.loaded, f.storedAt = true, time.Now()
	}
	if f.since == "" {
		return false, f.start(ctx)
	}
	var resp syncResponse
	if err = f.api.Sync(ctx, f.since, followFilter, f.m.pollTimeout, &resp); err != nil {
		if matrix.IsRefusal(err) && !isAuthError(err) {
			// Most likely a position the homeserver no longer knows (its
			// database was reset): start again from now.
			f.log.Warn().Err(err).Msg("The homeserver refused the stored sync position; following from now on")
			if derr := f.m.db.DPSync.Delete(ctx, f.user); derr != nil {
				return false, errors.Join(err, derr)
			}
			f.since = ""
		}
		return false, fmt.Errorf("sync: %w", err)
	} else if resp.NextBatch == "" {
		return false, errors.New("sync: the response has no next_batch")
	}
	events, ephemerals, err := f.collect(ctx, &resp)
	if err != nil {
		return false, err
	}
	if len(events) > 0 || (f.dirty && time.Since(f.storedAt) >= idleStoreInterval) {
		if _, err = f.m.intake.StoreSynced(ctx, f.user, resp.NextBatch, events); err != nil {
			return false, fmt.Errorf("store what the sync brought: %w", err)
		}
		f.storedAt, f.dirty = time.Now(), false
		if len(events) > 0 {
			f.log.Debug().Int("events", len(events)).Msg("Took in the user's redactions from /sync")
		}
	} else {
		f.dirty = true
	}
	f.since = resp.NextBatch
	for _, e := range ephemerals {
		if err := f.m.intake.HandSyncedEphemeral(ctx, e.room, e.raw); err != nil {
			f.log.Debug().Err(err).Msg("Skipping an unparsable ephemeral event from /sync")
		}
	}
	return false, nil
}

// start takes the user's current position, without events: what the user
// did before the bridge followed them is not replayed.
func (f *follower) start(ctx context.Context) error {
	var resp syncResponse
	if err := f.api.Sync(ctx, "", positionFilter, 0, &resp); err != nil {
		return fmt.Errorf("first sync: %w", err)
	} else if resp.NextBatch == "" {
		return errors.New("first sync: the response has no next_batch")
	}
	if _, err := f.m.intake.StoreSynced(ctx, f.user, resp.NextBatch, nil); err != nil {
		return fmt.Errorf("store the first sync position: %w", err)
	}
	f.since, f.storedAt, f.dirty = resp.NextBatch, time.Now(), false
	f.log.Info().Msg("Following the user's /sync for their redactions, typing and receipts")
	return nil
}

// collect picks the user's own redactions in portals, with their room_id
// added (a /sync response leaves it out), and the portals' typing and
// receipts.
func (f *follower) collect(ctx context.Context, resp *syncResponse) ([]json.RawMessage, []ephemeral, error) {
	var events []json.RawMessage
	var ephemerals []ephemeral
	for roomID, room := range resp.Rooms.Join {
		if len(room.Timeline.Events) == 0 && len(room.Ephemeral.Events) == 0 {
			continue
		}
		p, err := f.m.db.Portal.GetByRoom(ctx, roomID)
		if err != nil {
			return nil, nil, fmt.Errorf("look up portal of %s: %w", roomID, err)
		} else if p == nil {
			continue
		}
		if room.Timeline.Limited {
			f.log.Warn().Stringer("room_id", roomID).
				Msg("The homeserver left out some of the user's redactions in this portal (limited timeline)")
		}
		for _, raw := range room.Timeline.Events {
			var ev map[string]json.RawMessage
			if json.Unmarshal(raw, &ev) != nil {
				continue
			}
			var typ string
			var sender id.UserID
			if json.Unmarshal(ev["type"], &typ) != nil || typ != event.EventRedaction.Type ||
				json.Unmarshal(ev["sender"], &sender) != nil || sender != f.user {
				continue
			}
			ev["room_id"], _ = json.Marshal(roomID)
			withRoom, err := json.Marshal(ev)
			if err != nil {
				continue
			}
			events = append(events, withRoom)
		}
		for _, raw := range room.Ephemeral.Events {
			ephemerals = append(ephemerals, ephemeral{room: roomID, raw: raw})
		}
	}
	return events, ephemerals, nil
}

// isAuthError reports whether a refusal is about the double puppet's
// credentials rather than the request: retried, not acted on.
func isAuthError(err error) bool {
	return errors.Is(err, mautrix.MUnknownToken) || errors.Is(err, mautrix.MMissingToken) ||
		errors.Is(err, mautrix.MForbidden)
}

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

// none is an event type no homeserver has: a filter part that lists only it
// keeps nothing. (not_types ["*"] would say the same, but Dendrite's SQLite
// backend takes the "*" literally; a filter's "rooms" list it ignores.)
var none = []string{"dmbridge.none"}

// filterPart is a /sync filter part; filter is the whole filter.
type filterPart struct {
	Types   []string    `json:"types,omitempty"`
	Senders []id.UserID `json:"senders,omitempty"`
	Limit   *int        `json:"limit,omitempty"`
}

type roomFilter struct {
	AccountData filterPart `json:"account_data"`
	State       filterPart `json:"state"`
	Timeline    filterPart `json:"timeline"`
	Ephemeral   filterPart `json:"ephemeral"`
}

type filter struct {
	AccountData filterPart `json:"account_data"`
	Presence    filterPart `json:"presence"`
	Room        roomFilter `json:"room"`
}

// timelineLimit is how many of the user's redactions per room one response
// may hold.
const timelineLimit = 100

// positionFilter keeps a first sync to its next_batch: no state, no
// timeline, no account data.
func positionFilter() string {
	zero := 0
	return encodeFilter(filter{AccountData: filterPart{Types: none}, Presence: filterPart{Types: none},
		Room: roomFilter{AccountData: filterPart{Types: none}, State: filterPart{Types: none},
			Timeline: filterPart{Types: none, Limit: &zero}, Ephemeral: filterPart{Types: none}}})
}

// followFilter keeps a sync to the user's own redactions and the typing and
// receipts of the user's rooms. The rooms are not narrowed to portals: the
// list would change with every new DM, and rooms that are none are dropped
// in collect.
func followFilter(user id.UserID) string {
	limit := timelineLimit
	return encodeFilter(filter{AccountData: filterPart{Types: none}, Presence: filterPart{Types: none},
		Room: roomFilter{AccountData: filterPart{Types: none}, State: filterPart{Types: none},
			Timeline:  filterPart{Types: []string{event.EventRedaction.Type}, Senders: []id.UserID{user}, Limit: &limit},
			Ephemeral: filterPart{Types: []string{event.EphemeralEventTyping.Type, event.EphemeralEventReceipt.Type}}}})
}

func encodeFilter(f filter) string {
	out, err := json.Marshal(f)
	if err != nil {
		panic(err) // only fixed types and a user id go in
	}
	return string(out)
}

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
				Events    []json.RawMessage `json:"events"`
				Limited   bool              `json:"limited"`
				PrevBatch string            `json:"prev_batch"`
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

	api matrix.API
	// filter is followFilter of user.
	filter string
	loaded bool
	since  string
	// synced says the last step made an incremental sync that worked: only
	// that resets the backoff, so that a homeserver refusing every
	// position after a fresh start is not asked again each second.
	synced bool
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
	f.synced = false
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
	if err = f.api.Sync(f.quiet(ctx), f.since, f.filter, pollTimeout, &resp); err != nil {
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
	f.since, f.synced = resp.NextBatch, true
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
	if err := f.api.Sync(f.quiet(ctx), "", positionFilter(), 0, &resp); err != nil {
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

// collect picks the user's own redactions in portals and in rooms portals
// left (pastPortalRedactions), with their room_id added (a /sync response
// leaves it out), and the portals' typing and receipts.
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
			past, err := f.pastPortalRedactions(ctx, roomID, room.Timeline.Events)
			if err != nil {
				return nil, nil, err
			}
			events = append(events, past...)
			continue
		}
		for _, raw := range room.Timeline.Events {
			if ev, ok := f.redaction(roomID, raw); ok {
				events = append(events, ev)
			}
		}
		// limited alone is no loss: a server sets it for a room the user
		// joined since the last sync, too. A full page may have left some
		// out (more than timelineLimit deletions in one room between two
		// syncs, after an outage): those are paged back to the last
		// position, so that every deletion reaches the network.
		if room.Timeline.Limited && len(room.Timeline.Events) >= timelineLimit && room.Timeline.PrevBatch != "" {
			earlier, err := f.earlier(ctx, roomID, room.Timeline.PrevBatch)
			if err != nil {
				return nil, nil, err
			}
			events = append(events, earlier...)
		}
		for _, raw := range room.Ephemeral.Events {
			ephemerals = append(ephemerals, ephemeral{room: roomID, raw: raw})
		}
	}
	return events, ephemerals, nil
}

// pastPortalRedactions picks, in a room that is no portal's, the user's
// redactions of events the bridge bridged there (database.BridgedIn): the
// room a portal left when the user upgraded the DM. Their client still
// shows its history, and deletes a message of it there, the only room a
// homeserver takes the redaction in; skipped, the deletion of a message
// that went never reached the network, and a message still queued went
// after the user deleted it. The portal decides whether the room is one it
// moved away from (portal.Manager.oldRoomPortal). A full page of them is
// not paged back, unlike in a portal: the old room takes no new messages.
func (f *follower) pastPortalRedactions(ctx context.Context, roomID id.RoomID, raws []json.RawMessage) ([]json.RawMessage, error) {
	var out []json.RawMessage
	for _, raw := range raws {
		ev, ok := f.redaction(roomID, raw)
		if !ok {
			continue
		}
		if _, found, err := f.m.db.BridgedIn(ctx, redactedBy(raw), roomID); err != nil {
			return nil, fmt.Errorf("look up what a redaction in %s removes: %w", roomID, err)
		} else if found {
			out = append(out, ev)
		}
	}
	return out, nil
}

// redactedBy is the event a redaction removes: named in its content from
// room version 11 on, at the top before.
func redactedBy(raw json.RawMessage) id.EventID {
	var red struct {
		Redacts id.EventID `json:"redacts"`
		Content struct {
			Redacts id.EventID `json:"redacts"`
		} `json:"content"`
	}
	if json.Unmarshal(raw, &red) != nil {
		return ""
	}
	if red.Content.Redacts != "" {
		return red.Content.Redacts
	}
	return red.Redacts
}

// redaction returns raw with its room_id added (a /sync response leaves
// it out) if it is one of the user's own redactions.
func (f *follower) redaction(roomID id.RoomID, raw json.RawMessage) (json.RawMessage, bool) {
	var head struct {
		ID     id.EventID `json:"event_id"`
		Type   string     `json:"type"`
		Sender id.UserID  `json:"sender"`
	}
	if json.Unmarshal(raw, &head) != nil || head.Type != event.EventRedaction.Type || head.Sender != f.user {
		return nil, false
	}
	if head.ID == "" {
		// The intake refuses it, and the same response would then be
		// asked for again and again: skipped instead.
		f.log.Warn().Stringer("room_id", roomID).Msg("Skipping a redaction without an event_id from /sync")
		return nil, false
	}
	var ev map[string]json.RawMessage
	if json.Unmarshal(raw, &ev) != nil {
		return nil, false
	}
	ev["room_id"], _ = json.Marshal(roomID)
	withRoom, err := json.Marshal(ev)
	return withRoom, err == nil
}

// maxEarlierPages bounds the paging back of one limited timeline: 50 pages
// of timelineLimit are 5,000 deletions in one DM during one outage.
const maxEarlierPages = 50

// earlier pages the user's redactions in a portal back from a limited
// timeline's prev_batch to the last position (f.since), with the sync's
// own filter. The intake drops what it has already (by event id).
func (f *follower) earlier(ctx context.Context, roomID id.RoomID, from string) ([]json.RawMessage, error) {
	filter := &mautrix.FilterPart{Types: []event.Type{event.EventRedaction}, Senders: []id.UserID{f.user}}
	var out []json.RawMessage
	for page := 0; page < maxEarlierPages && from != ""; page++ {
		resp, err := f.api.Messages(f.quiet(ctx), roomID, from, f.since, mautrix.DirectionBackward, filter, timelineLimit)
		if err != nil {
			return nil, fmt.Errorf("page back the deletions in %s: %w", roomID, err)
		}
		for _, evt := range resp.Chunk {
			raw, err := json.Marshal(evt)
			if err != nil {
				continue
			}
			if ev, ok := f.redaction(roomID, raw); ok {
				out = append(out, ev)
			}
		}
		if len(resp.Chunk) == 0 || resp.End == from {
			return out, nil
		}
		from = resp.End
	}
	if from != "" {
		f.log.Warn().Stringer("room_id", roomID).Int("redactions", len(out)).
			Msg("Stopped paging back the user's deletions in this portal; older ones are left out")
	}
	return out, nil
}

// quiet keeps mautrix's own request logging to errors: a long poll cut
// short by a stop would otherwise warn once per followed user, and this
// loop logs its failures itself.
func (f *follower) quiet(ctx context.Context) context.Context {
	return f.log.Level(zerolog.ErrorLevel).WithContext(ctx)
}

// isAuthError reports whether a refusal is about the double puppet's
// credentials rather than the request: retried, not acted on.
func isAuthError(err error) bool {
	return errors.Is(err, mautrix.MUnknownToken) || errors.Is(err, mautrix.MMissingToken) ||
		errors.Is(err, mautrix.MForbidden)
}

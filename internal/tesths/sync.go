package tesths

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// WaitFor polls cond until it reports true, failing the test with what (and
// cond's last error) if that does not happen within timeout. Errors from cond
// do not stop the polling: "not there yet" often looks like an error, such as
// M_NOT_FOUND for state that the bridge has not written yet.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 10 * time.Millisecond
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, err)
			}
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(delay)
		delay = min(delay*2, 250*time.Millisecond)
	}
}

// DirectContent reads the client user's m.direct account data. A user that
// never had any gets an empty map rather than an error.
func DirectContent(t testing.TB, c *mautrix.Client) map[id.UserID][]id.RoomID {
	t.Helper()
	content := map[id.UserID][]id.RoomID{}
	err := c.GetAccountData(t.Context(), event.AccountDataDirectChats.Type, &content)
	if errors.Is(err, mautrix.MNotFound) {
		return map[id.UserID][]id.RoomID{}
	} else if err != nil {
		t.Fatalf("reading m.direct of %s: %v", c.UserID, err)
	}
	return content
}

// syncFilter does not filter anything out. It only raises the per-room
// timeline limit (Dendrite's default is 20) so a burst of events between two
// polls is delivered in full instead of as a gapped, "limited" timeline, and
// includes rooms the user has left so their final events are seen too.
const syncFilter = `{"room":{"timeline":{"limit":1000},"include_leave":true}}`

// SyncWatcher long-polls /sync for one client in the background and keeps
// every event it is given: room timeline and state events (with RoomID
// filled in), the stripped state of invites, global and per-room account
// data, and room ephemeral events (receipts, typing). Event.Mautrix.EventSource tells which part of the sync
// response an event came from. The watcher stops when the test finishes.
//
// It calls /sync directly rather than through the client's Syncer, so the
// client itself stays free for the test (and the bridge) to use.
type SyncWatcher struct {
	client *mautrix.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	events  []*event.Event
	seen    map[id.EventID]struct{}
	lastErr error
	batches int
	// changed is closed and replaced whenever something is recorded, so
	// waiters can sleep until there is something new to look at.
	changed chan struct{}
}

// NewSyncWatcher starts watching c's /sync.
func NewSyncWatcher(t testing.TB, c *mautrix.Client) *SyncWatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &SyncWatcher{
		client:  c,
		cancel:  cancel,
		done:    make(chan struct{}),
		seen:    map[id.EventID]struct{}{},
		changed: make(chan struct{}),
	}
	go w.run(ctx)
	t.Cleanup(w.stop)
	return w
}

func (w *SyncWatcher) stop() {
	w.cancel()
	<-w.done
}

func (w *SyncWatcher) run(ctx context.Context) {
	defer close(w.done)
	since := ""
	for ctx.Err() == nil {
		resp, err := w.client.SyncRequest(ctx, 30000, since, syncFilter, false, "")
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.record(nil, err)
			// A failing homeserver should not be hammered; the error is
			// surfaced by the next wait that times out.
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		since = resp.NextBatch
		w.record(collect(resp), nil)
	}
}

// collect flattens a sync response into events tagged with their room and
// source, parsing content so matchers can use the Content.AsX helpers.
func collect(resp *mautrix.RespSync) []*event.Event {
	var out []*event.Event
	add := func(roomID id.RoomID, source event.Source, evts []*event.Event) {
		for _, evt := range evts {
			if roomID != "" {
				evt.RoomID = roomID
			}
			switch {
			case source&event.SourceEphemeral != 0:
				evt.Type.Class = event.EphemeralEventType
			case source&event.SourceAccountData != 0:
				evt.Type.Class = event.AccountDataEventType
			case evt.StateKey != nil:
				evt.Type.Class = event.StateEventType
			default:
				evt.Type.Class = event.MessageEventType
			}
			// Unknown types simply stay unparsed.
			_ = evt.Content.ParseRaw(evt.Type)
			evt.Mautrix.EventSource = source
			out = append(out, evt)
		}
	}
	add("", event.SourceAccountData, resp.AccountData.Events)
	for roomID, room := range resp.Rooms.Join {
		add(roomID, event.SourceJoin|event.SourceState, room.State.Events)
		add(roomID, event.SourceJoin|event.SourceTimeline, room.Timeline.Events)
		add(roomID, event.SourceJoin|event.SourceAccountData, room.AccountData.Events)
		add(roomID, event.SourceJoin|event.SourceEphemeral, room.Ephemeral.Events)
	}
	for roomID, room := range resp.Rooms.Invite {
		add(roomID, event.SourceInvite|event.SourceState, room.State.Events)
	}
	for roomID, room := range resp.Rooms.Leave {
		add(roomID, event.SourceLeave|event.SourceState, room.State.Events)
		add(roomID, event.SourceLeave|event.SourceTimeline, room.Timeline.Events)
	}
	return out
}

func (w *SyncWatcher) record(evts []*event.Event, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastErr = err
	if err == nil {
		w.batches++
	}
	for _, evt := range evts {
		// The same room event can arrive twice (as state and again in a
		// timeline, or in a later sync); keep the first. Stripped invite
		// state and account data have no IDs and are all kept.
		if evt.ID != "" {
			if _, dup := w.seen[evt.ID]; dup {
				continue
			}
			w.seen[evt.ID] = struct{}{}
		}
		w.events = append(w.events, evt)
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

// WaitEvent returns the first recorded event (since the watcher started,
// including the initial sync) for which match returns true, waiting up to
// timeout for one to arrive. match runs with the watcher locked and must
// not call back into the watcher.
func (w *SyncWatcher) WaitEvent(t testing.TB, timeout time.Duration, match func(*event.Event) bool) *event.Event {
	t.Helper()
	evt := w.wait(timeout, match)
	if evt == nil {
		w.mu.Lock()
		n, batches, lastErr := len(w.events), w.batches, w.lastErr
		w.mu.Unlock()
		t.Fatalf("timed out after %s waiting for a matching event in the sync of %s (%d events in %d syncs so far, last sync error: %v)",
			timeout, w.client.UserID, n, batches, lastErr)
	}
	return evt
}

// WaitInvite waits for an invite of the client's own user and returns the
// room and the m.room.member invite event from the invite state.
func (w *SyncWatcher) WaitInvite(t testing.TB, timeout time.Duration) (id.RoomID, *event.Event) {
	t.Helper()
	self := w.client.UserID.String()
	evt := w.WaitEvent(t, timeout, func(evt *event.Event) bool {
		return evt.Mautrix.EventSource&event.SourceInvite != 0 &&
			evt.Type == event.StateMember &&
			evt.GetStateKey() == self &&
			evt.Content.AsMember().Membership == event.MembershipInvite
	})
	return evt.RoomID, evt
}

func (w *SyncWatcher) wait(timeout time.Duration, match func(*event.Event) bool) *event.Event {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	checked := 0
	for {
		w.mu.Lock()
		// Events are only ever appended, so earlier ones need no re-check.
		for ; checked < len(w.events); checked++ {
			if match(w.events[checked]) {
				evt := w.events[checked]
				w.mu.Unlock()
				return evt
			}
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-w.done:
			return nil
		case <-timer.C:
			return nil
		}
	}
}

// Events returns the events recorded so far for a room, in arrival order.
func (w *SyncWatcher) Events(roomID id.RoomID) []*event.Event {
	return w.recorded(func(evt *event.Event) bool { return evt.RoomID == roomID })
}

// AccountData returns the global account data events of type typ recorded so
// far, oldest first, so a test can follow how e.g. m.direct evolved.
func (w *SyncWatcher) AccountData(typ event.Type) []*event.Event {
	return w.recorded(func(evt *event.Event) bool {
		return evt.RoomID == "" && evt.Mautrix.EventSource == event.SourceAccountData && evt.Type.Type == typ.Type
	})
}

// recorded returns the events recorded so far that match, in arrival order.
func (w *SyncWatcher) recorded(match func(*event.Event) bool) []*event.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*event.Event
	for _, evt := range w.events {
		if match(evt) {
			out = append(out, evt)
		}
	}
	return out
}

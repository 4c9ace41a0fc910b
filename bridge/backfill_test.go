package bridge_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

const backfillContact = "bob@network"

// history is what the fake network holds of bob's chat: n earlier messages,
// every third one written by the user from another device, an hour apart
// and a day ago, followed by the live message itself (an archive has the
// new message too by the time the bridge asks).
type history struct {
	msgs []connector.Event
	live *connector.Event
}

func newHistory(n int) *history {
	h := &history{}
	start := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	for i := 1; i <= n; i++ {
		sender := &connector.Sender{ID: backfillContact}
		if i%3 == 0 {
			sender = &connector.Sender{ID: testLogin, IsMe: true}
		}
		h.msgs = append(h.msgs, connector.Event{
			Kind: connector.KindMessage, Login: testLogin, TS: start.Add(time.Duration(i) * time.Minute).UnixMilli(),
			Chat: dmChat(backfillContact), Sender: sender, ID: fmt.Sprintf("h%d", i), Text: fmt.Sprintf("history %d", i),
		})
	}
	h.live = textFrom(backfillContact, "live", "live message")
	return h
}

// setup is a fake connector that can backfill and answers from h, newest
// first, page by page as the protocol says.
func (h *history) setup(store *sdk.MemoryStore) fakeSetup {
	caps := helloFor().Capabilities
	caps.Backfill = true
	all := append(slices.Clone(h.msgs), *h.live)
	return fakeSetup{caps: &caps, store: store, backfill: func(cmd *connector.Command) *connector.Result {
		if cmd.Chat == nil || cmd.Chat.ID != backfillContact {
			return &connector.Result{}
		}
		end := len(all)
		if cmd.Before != nil {
			end = slices.IndexFunc(all, func(ev connector.Event) bool { return ev.ID == *cmd.Before })
		}
		start := max(0, end-cmd.Limit)
		return &connector.Result{Messages: slices.Clone(all[start:end]), HasMore: start > 0}
	}}
}

// timeline reads the room as the user, oldest first.
func timeline(t *testing.T, c *mautrix.Client, roomID id.RoomID) []*event.Event {
	t.Helper()
	var out []*event.Event
	from := ""
	for page := 0; page < 20; page++ {
		resp, err := c.Messages(context.Background(), roomID, from, "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatalf("read the room: %v", err)
		}
		for _, evt := range resp.Chunk {
			if evt.Type == event.EventMessage {
				_ = evt.Content.ParseRaw(evt.Type)
				out = append(out, evt)
			}
		}
		if len(resp.Chunk) == 0 || resp.End == "" || resp.End == from {
			break
		}
		from = resp.End
	}
	slices.Reverse(out)
	return out
}

// checkBackfilled asserts that the room shows the history in order, with
// the original times and senders, then the live message, each once.
func (h *history) checkBackfilled(t *testing.T, s *stack, roomID id.RoomID) []*event.Event {
	t.Helper()
	want := append(bodiesOf(h.msgs), h.live.Text)
	var evts []*event.Event
	tesths.WaitFor(t, 60*time.Second, "history and live message in the room", func() (bool, error) {
		evts = timeline(t, s.alice, roomID)
		return len(evts) >= len(want), nil
	})
	time.Sleep(time.Second)
	evts = timeline(t, s.alice, roomID)
	if got := bodies(evts); !slices.Equal(got, want) {
		t.Fatalf("room shows %q, want %q", got, want)
	}
	for i, ev := range h.msgs {
		evt := evts[i]
		wantSender := s.ghost(backfillContact)
		if ev.Sender.IsMe {
			wantSender = s.alice.UserID
		}
		if evt.Sender != wantSender {
			t.Errorf("%q sent by %s, want %s", ev.Text, evt.Sender, wantSender)
		}
		if evt.Timestamp != ev.TS {
			t.Errorf("%q has ts %d, want the original %d", ev.Text, evt.Timestamp, ev.TS)
		}
	}
	if evts[len(evts)-1].Sender != s.ghost(backfillContact) {
		t.Errorf("live message sent by %s", evts[len(evts)-1].Sender)
	}
	return evts
}

func bodiesOf(evs []connector.Event) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.Text)
	}
	return out
}

// TestBackfillNewPortal: bob's chat has 20 earlier messages on the network
// (some written by the user elsewhere); when bob writes, the new portal
// shows the 20 in order, as their senders, at their times, then the new
// one; the user's read marker is past the history; a history message that
// comes again live does not double.
func TestBackfillNewPortal(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		h := newHistory(20)
		f := s.connectFakeWith(h.setup(nil))
		f.send(h.live)
		roomID := s.roomOf(backfillContact)
		evts := h.checkBackfilled(t, s, roomID)

		// One page of 50 is enough for 21 messages.
		if got := f.commandsOf(connector.OpBackfill); len(got) != 1 || got[0].Limit != 50 || got[0].Chat == nil || got[0].Chat.ID != backfillContact {
			t.Errorf("backfill commands = %+v, want one for %s with limit 50", got, backfillContact)
		}
		var marker struct {
			EventID id.EventID `json:"event_id"`
		}
		if err := s.alice.GetRoomAccountData(context.Background(), roomID, event.AccountDataFullyRead.Type, &marker); err != nil {
			t.Errorf("read marker: %v", err)
		} else if last := evts[len(h.msgs)-1].ID; marker.EventID != last {
			t.Errorf("m.fully_read at %s, want the last history event %s", marker.EventID, last)
		}

		// The network sends an old message again, as a live event: it
		// is the one already in the room.
		again := h.msgs[4]
		again.TS = time.Now().UnixMilli()
		f.send(&again)
		f.send(textFrom(backfillContact, "live2", "after"))
		s.waitMessage(roomID, "after")
		if got := bodies(timeline(t, s.alice, roomID)); len(got) != len(h.msgs)+2 {
			t.Errorf("room shows %d messages after a repeat, want %d: %q", len(got), len(h.msgs)+2, got)
		}
		if n := len(f.commandsOf(connector.OpBackfill)); n != 1 {
			t.Errorf("%d backfill commands, want 1: an existing portal is not backfilled again", n)
		}
	})
}

// TestBackfillOff: initial_limit 0 asks the connector for nothing.
func TestBackfillOff(t *testing.T) {
	s := newStack(t, testdb.SQLite(t), stackOptions{configure: func(c *config.Config) {
		c.Bridge.Backfill.InitialLimit = 0
	}})
	h := newHistory(3)
	f := s.connectFakeWith(h.setup(nil))
	f.send(h.live)
	roomID := s.roomOf(backfillContact)
	s.waitMessage(roomID, h.live.Text)
	if got := bodies(timeline(t, s.alice, roomID)); !slices.Equal(got, []string{h.live.Text}) {
		t.Errorf("room shows %q, want only the live message", got)
	}
	if n := len(f.commandsOf(connector.OpBackfill)); n != 0 {
		t.Errorf("%d backfill commands with backfill off", n)
	}
}

// TestBackfillKilledMidway kills the bridge binary with SIGKILL while it
// posts the history; after the restart the room shows every message once,
// in order.
func TestBackfillKilledMidway(t *testing.T) {
	testdb.EachParallel(t, func(t *testing.T, target testdb.Target) {
		s := newProcessStack(t, target)
		s.cfg.Bridge.InDoubtGrace = config.Duration(3 * time.Second)
		proc := newBridgeProcess(t, s)
		proc.start(s.cfg.Connector.Listen)
		h := newHistory(20)
		f := s.connectFakeWith(h.setup(sdk.NewMemoryStore()))
		f.send(h.live)
		// Kill as soon as the third history message shows.
		s.sync.WaitEvent(t, 60*time.Second, func(evt *event.Event) bool {
			_ = evt.Content.ParseRaw(evt.Type)
			msg := evt.Content.AsMessage()
			return evt.Type == event.EventMessage && msg != nil && msg.Body == "history 3"
		})
		proc.kill()
		roomID := s.onlyJoinedRoom(context.Background(), 20*time.Second)
		shown := len(timeline(t, s.alice, roomID))
		t.Logf("killed with %d of %d messages in the room", shown, len(h.msgs)+1)
		if shown > len(h.msgs) {
			t.Log("the kill came after the backfill had finished; this run proves less")
		}
		proc.start(s.cfg.Connector.Listen)
		h.checkBackfilled(t, s, roomID)
		t.Logf("sends in doubt after the kill: %d had landed, %d sent again",
			proc.countLogs("Send in doubt had landed"), proc.countLogs("Send in doubt did not land"))
	})
}

// TestHomeserverCallBudgetBackfill measures what history costs: a new DM
// with 20 earlier messages against a new DM whose chat has none (both with
// known ghosts, after a warm-up). Goal: one request per history message and
// one per portal (the read markers).
func TestHomeserverCallBudgetBackfill(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	counter := countHomeserverCalls(t, s)
	h := newHistory(20)
	f := s.connectFakeWith(h.setup(nil))
	f.send(textFrom("warmup@network", "w1", "warm up"))
	s.waitMessage(s.roomOf("warmup@network"), "warm up")
	for _, contact := range []string{backfillContact, "carol@network"} {
		f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, Contact: &connector.Contact{ID: contact, Name: contact}})
	}
	time.Sleep(300 * time.Millisecond)
	counter.take()

	f.send(textFrom("carol@network", "c1", "no history"))
	s.waitMessage(s.roomOf("carol@network"), "no history")
	time.Sleep(300 * time.Millisecond)
	plain := counter.take()

	f.send(h.live)
	h.checkBackfilled(t, s, s.roomOf(backfillContact))
	withHistory := counter.take()
	// checkBackfilled's reads go to Dendrite directly, not through the proxy.
	extra := len(withHistory) - len(plain)
	t.Logf("new DM without history: %d calls; with %d history messages: %d calls: %d per history message, %d per portal on top",
		len(plain), len(h.msgs), len(withHistory), (extra-1)/len(h.msgs), extra-len(h.msgs))
	sort.Strings(withHistory)
	t.Logf("calls with history: %q", withHistory)
	if extra != len(h.msgs)+1 {
		t.Errorf("history of %d messages cost %d extra calls, want %d (one send each and the read markers)", len(h.msgs), extra, len(h.msgs)+1)
	}
}

// TestBackfillStartedChats: a chat the user starts (provisioning API) and a
// DM the user creates with a ghost both start with the chat's history.
func TestBackfillStartedChats(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{configure: func(c *config.Config) {
			c.Provisioning.SharedSecret = "provisioning-secret-for-tests"
		}})
		h := newHistory(20)
		f := s.connectFakeWith(h.setup(nil))

		// Started from Matrix, the whole archive is history: the
		// "live" message included.
		status, res := s.provision(s.alice.AccessToken, "", backfillContact)
		if status != 200 || !res.Created {
			t.Fatalf("start chat = %d %+v", status, res)
		}
		h.checkBackfilled(t, s, res.RoomID)

		// A DM the user creates with the ghost of a chat with history.
		h2 := newHistory(5)
		for i := range h2.msgs {
			h2.msgs[i].Chat, h2.msgs[i].ID = dmChat("carol@network"), "carol-"+h2.msgs[i].ID
			h2.msgs[i].Text = "carol " + h2.msgs[i].Text
			if h2.msgs[i].Sender.ID == backfillContact {
				h2.msgs[i].Sender = &connector.Sender{ID: "carol@network"}
			}
		}
		f.mu.Lock()
		f.backfill = func(cmd *connector.Command) *connector.Result {
			return &connector.Result{Messages: slices.Clone(h2.msgs)}
		}
		f.mu.Unlock()
		ghost := s.ghost("carol@network")
		roomID := s.createDM(s.alice, ghost)
		tesths.WaitFor(t, 30*time.Second, "carol's history in the DM", func() (bool, error) {
			return len(timeline(t, s.alice, roomID)) >= len(h2.msgs), nil
		})
		if got, want := bodies(timeline(t, s.alice, roomID)), bodiesOf(h2.msgs); !slices.Equal(got, want) {
			t.Errorf("DM with carol's ghost shows %q, want %q", got, want)
		}
	})
}

// TestSyncRecentChats: a login that connects for the first time gets its
// most recent chats as portals, each with its history; a listed chat that is
// not a DM is skipped, and a reconnect syncs nothing again.
func TestSyncRecentChats(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		h := newHistory(20)
		setup := h.setup(sdk.NewMemoryStore())
		setup.caps.ListChats = true
		setup.chats = []connector.Chat{*dmChat(backfillContact), {ID: "group", Type: "group"}, *dmChat("carol@network")}
		f := s.connectFakeWith(setup)
		// The whole archive is history, the newest message included.
		h.checkBackfilled(t, s, s.roomOf(backfillContact))
		carol := s.roomOf("carol@network")
		s.waitMembership(s.sync, carol, s.alice.UserID, event.MembershipJoin)
		if n := s.countRows("SELECT COUNT(*) FROM portal"); n != 2 {
			t.Errorf("%d portals, want 2", n)
		}
		if got := f.commandsOf(connector.OpListChats); len(got) != 1 || got[0].Login != testLogin || got[0].Limit != 10 {
			t.Errorf("list_chats commands = %+v, want one for %s with limit 10", got, testLogin)
		}
		// The sync is done once its row is gone; a connection cut
		// before that syncs again on purpose.
		tesths.WaitFor(t, 30*time.Second, "the recent-chats sync to finish", func() (bool, error) {
			return s.countRows("SELECT COUNT(*) FROM login_sync_pending") == 0, nil
		})
		f.stop()
		f2 := s.connectFakeWith(setup)
		time.Sleep(time.Second)
		if n := len(f2.commandsOf(connector.OpListChats)); n != 0 {
			t.Errorf("a known login's reconnect listed its chats again (%d times)", n)
		}
	})
}

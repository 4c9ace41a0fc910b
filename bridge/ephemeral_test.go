package bridge_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// readBy reports whether a receipt event marks eventID read (m.read) by user.
func readBy(evt *event.Event, eventID id.EventID, user id.UserID) bool {
	receipts := evt.Content.AsReceipt()
	if receipts == nil {
		return false
	}
	_, ok := (*receipts)[eventID][event.ReceiptTypeRead][user]
	return ok
}

func TestReadReceiptsFromNetwork(t *testing.T) {
	s, f, roomID, first := newFidPortal(t, testdb.SQLite(t), "m1", "did you get this?")
	ghost := s.ghost(fidBob)

	// The contact reads the user's message: the ghost's receipt moves there.
	sent, remote := s.fidSendText(roomID, "yes I did")
	ev := fidFromBob(connector.KindReadReceipt, "")
	ev.UpTo = remote
	f.send(ev)
	s.fidRoomEvent(roomID, event.EphemeralEventReceipt, func(evt *event.Event) bool {
		return readBy(evt, sent, ghost)
	})

	// The user read the contact's message on another device: their own
	// receipt moves, through the double puppet.
	f.send(&connector.Event{Kind: connector.KindReadReceipt, Login: testLogin, TS: time.Now().UnixMilli(), Chat: dmChat(fidBob),
		Sender: &connector.Sender{ID: testLogin, IsMe: true}, UpTo: "m1"})
	s.fidRoomEvent(roomID, event.EphemeralEventReceipt, func(evt *event.Event) bool {
		return readBy(evt, first.ID, s.alice.UserID)
	})

	// A receipt for a message the bridge never saw is skipped.
	ev = fidFromBob(connector.KindReadReceipt, "")
	ev.UpTo = "never-seen"
	f.send(ev)
	s.fidBobSays(f, roomID, "m2", "after the receipts")
}

func TestTypingFromNetwork(t *testing.T) {
	s, f, roomID, _ := newFidPortal(t, testdb.SQLite(t), "m1", "hi")
	ctx := context.Background()
	ghost := s.ghost(fidBob)
	typing := func(on bool) {
		t.Helper()
		err := f.client.SendEphemeral(ctx, &connector.Ephemeral{Kind: connector.KindTyping, Login: testLogin,
			Chat: dmChat(fidBob), Sender: &connector.Sender{ID: fidBob}, Typing: on, TimeoutMS: 20000})
		if err != nil {
			t.Fatal(err)
		}
	}
	typing(true)
	s.fidRoomEvent(roomID, event.EphemeralEventTyping, func(evt *event.Event) bool {
		return slices.Equal(evt.Content.AsTyping().UserIDs, []id.UserID{ghost})
	})
	typing(false)
	sawTyping := false
	s.fidRoomEvent(roomID, event.EphemeralEventTyping, func(evt *event.Event) bool {
		users := evt.Content.AsTyping().UserIDs
		sawTyping = sawTyping || slices.Contains(users, ghost)
		return sawTyping && len(users) == 0
	})
}

func TestPresenceFromNetwork(t *testing.T) {
	s, f, _, _ := newFidPortal(t, testdb.SQLite(t), "m1", "hi")
	ctx := context.Background()
	ghost := s.ghost(fidBob)
	for _, want := range []struct{ presence, status string }{{"online", "at the beach"}, {"unavailable", "back soon"}, {"offline", ""}} {
		err := f.client.SendEphemeral(ctx, &connector.Ephemeral{Kind: connector.KindPresence, Login: testLogin,
			Contact: fidBob, Presence: want.presence, StatusMsg: want.status})
		if err != nil {
			t.Fatal(err)
		}
		tesths.WaitFor(t, 20*time.Second, "ghost presence "+want.presence, func() (bool, error) {
			got, err := s.alice.GetPresence(ctx, ghost)
			if err != nil {
				return false, err
			}
			return string(got.Presence) == want.presence && got.StatusMsg == want.status, nil
		})
	}
}

// TestMatrixEphemeralIntake feeds the bridge the user's typing, read
// receipt and presence the way Synapse pushes them (MSC2409 / spec v1.13
// receive_ephemeral). Dendrite pushes no ephemeral events to appservices, so
// the test delivers them itself into the portal Dendrite created.
func TestMatrixEphemeralIntake(t *testing.T) {
	s := newFidelityStack(t, testdb.SQLite(t), func(cfg *config.Config) { cfg.Bridge.BridgePresence = true })
	f := s.fidConnect(fakeSetup{})
	roomID, first := s.fidPortal(f, "m1", "are you typing?")
	alice := s.alice.UserID

	// The user answers, so that the newest event in the room is their own:
	// their receipt on it means they read bob's message before it.
	sent, _ := s.fidSendText(roomID, "hold on")
	ephemeral := []any{
		map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": []id.UserID{alice}}},
		map[string]any{"type": "m.receipt", "room_id": roomID, "content": map[id.EventID]any{
			sent: map[string]any{"m.read": map[id.UserID]any{alice: map[string]any{"ts": time.Now().UnixMilli()}}},
		}},
		map[string]any{"type": "m.presence", "sender": alice, "content": map[string]any{"presence": "online", "status_msg": "on Matrix"}},
	}
	s.fidPush(nil, rawList(t, ephemeral...))
	typing := f.fidWaitCommand(connector.OpSetTyping, func(c *connector.Command) bool { return c.Typing })
	if typing.Chat == nil || typing.Chat.ID != fidBob || typing.Login != testLogin || typing.TimeoutMS <= 0 {
		t.Errorf("set_typing = %+v", typing)
	}
	read := f.fidWaitCommand(connector.OpMarkRead, nil)
	if read.UpTo != "m1" || read.Chat.ID != fidBob {
		t.Errorf("mark_read = %+v, want up_to m1 (bob's message before the user's own)", read)
	}
	presence := f.fidWaitCommand(connector.OpSetPresence, nil)
	if presence.Presence != "online" || presence.StatusMsg != "on Matrix" || presence.Login != testLogin {
		t.Errorf("set_presence = %+v", presence)
	}

	// The unstable MSC2409 key works as well; the user stopped typing.
	body, err := json.Marshal(map[string]any{"events": []any{}, "de.sorunome.msc2409.ephemeral": []any{
		map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": []id.UserID{}}},
		map[string]any{"type": "m.receipt", "room_id": roomID, "content": map[id.EventID]any{
			first.ID: map[string]any{"m.read": map[id.UserID]any{alice: map[string]any{"ts": time.Now().UnixMilli()}}},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.fidPushRaw(body)
	f.fidWaitCommand(connector.OpSetTyping, func(c *connector.Command) bool { return !c.Typing })
	tesths.WaitFor(t, 20*time.Second, "second mark_read", func() (bool, error) {
		return len(f.commandsOf(connector.OpMarkRead)) == 2, nil
	})
	if got := f.commandsOf(connector.OpMarkRead)[1]; got.UpTo != "m1" {
		t.Errorf("mark_read for a receipt on bob's message = %+v", got)
	}

	// Only the ghost typing: the user's state did not change, the network
	// hears nothing. The user typing again afterwards is the third command.
	s.fidPush(nil, rawList(t, map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": []id.UserID{s.ghost(fidBob)}}}))
	s.fidPush(nil, rawList(t, map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": []id.UserID{s.ghost(fidBob), alice}}}))
	tesths.WaitFor(t, 20*time.Second, "third set_typing", func() (bool, error) {
		return len(f.commandsOf(connector.OpSetTyping)) >= 3, nil
	})
	if got := f.commandsOf(connector.OpSetTyping); len(got) != 3 || !got[2].Typing {
		t.Errorf("set_typing commands = %+v, want typing, stopped, typing", got)
	}
}

// TestOwnPresenceOffByDefault: without bridge_own_presence the user's
// presence stays on Matrix.
func TestOwnPresenceOffByDefault(t *testing.T) {
	s, f, roomID, _ := newFidPortal(t, testdb.SQLite(t), "m1", "hi")
	s.fidPush(nil, rawList(t,
		map[string]any{"type": "m.presence", "sender": s.alice.UserID, "content": map[string]any{"presence": "online"}},
		map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": []id.UserID{s.alice.UserID}}},
	))
	// The typing from the same transaction shows the transaction was taken
	// in; the presence before it is dropped on intake.
	f.fidWaitCommand(connector.OpSetTyping, nil)
	if got := f.commandsOf(connector.OpSetPresence); len(got) != 0 {
		t.Errorf("set_presence sent with bridge_own_presence off: %+v", got)
	}
}

func rawList(t *testing.T, items ...any) []json.RawMessage {
	t.Helper()
	out := make([]json.RawMessage, len(items))
	for i, item := range items {
		data, err := json.Marshal(item)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = data
	}
	return out
}

// TestEphemeralOnlyForOwnLogins: a second connector cannot make alice's
// contact type or change its presence through a login it does not hold;
// the connector that holds the login still can.
func TestEphemeralOnlyForOwnLogins(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s, f, roomID, _ := newFidPortal(t, target, "m1", "hi")
		ctx := context.Background()
		ghost := s.ghost(fidBob)
		if err := f.client.SendEphemeral(ctx, &connector.Ephemeral{Kind: connector.KindPresence, Login: testLogin,
			Contact: fidBob, Presence: "unavailable", StatusMsg: "the real status"}); err != nil {
			t.Fatal(err)
		}
		tesths.WaitFor(t, 20*time.Second, "the real presence", func() (bool, error) {
			got, err := s.alice.GetPresence(ctx, ghost)
			return err == nil && got.StatusMsg == "the real status", err
		})

		raw := s.rawHello(t)
		for _, e := range []*connector.Ephemeral{
			{Kind: connector.KindTyping, Login: testLogin, Chat: dmChat(fidBob), Sender: &connector.Sender{ID: fidBob}, Typing: true, TimeoutMS: 60000},
			{Kind: connector.KindPresence, Login: testLogin, Contact: fidBob, Presence: "online", StatusMsg: "hijacked"},
		} {
			if err := raw.WriteFrame(connector.Frame{Type: connector.TypeEphemeral}, e); err != nil {
				t.Fatal(err)
			}
		}
		// Something both connectors' frames have passed by now.
		s.fidBobSays(f, roomID, "m2", "marker")
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			got, err := s.alice.GetPresence(ctx, ghost)
			if err != nil {
				t.Fatal(err)
			}
			if got.StatusMsg == "hijacked" {
				t.Fatal("another connector set the ghost's presence through alice's login")
			}
			time.Sleep(200 * time.Millisecond)
		}
		for _, evt := range s.sync.Events(roomID) {
			if evt.Type.Type == event.EphemeralEventTyping.Type && slices.Contains(evt.Content.AsTyping().UserIDs, ghost) {
				t.Fatal("another connector made the ghost type through alice's login")
			}
		}
		// The login's own connector still can.
		if err := f.client.SendEphemeral(ctx, &connector.Ephemeral{Kind: connector.KindTyping, Login: testLogin,
			Chat: dmChat(fidBob), Sender: &connector.Sender{ID: fidBob}, Typing: true, TimeoutMS: 20000}); err != nil {
			t.Fatal(err)
		}
		s.fidRoomEvent(roomID, event.EphemeralEventTyping, func(evt *event.Event) bool {
			return slices.Contains(evt.Content.AsTyping().UserIDs, ghost)
		})
	})
}

// TestDoublePuppetSyncOnDendrite: Dendrite pushes neither redactions nor
// typing nor receipts to appservices. With double_puppet.sync the bridge
// follows alice's /sync, so that, with nothing delivered by the test, her
// deleting her message reaches the network as delete_message, her typing as
// set_typing, her reading bob's message as mark_read and removing her
// reaction as unreact. A deletion made while the bridge is stopped reaches
// the network once after it starts, and a message sent and deleted while it
// is stopped never reaches the network.
func TestDoublePuppetSyncOnDendrite(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newFidelityStack(t, target, func(c *config.Config) { c.DoublePuppet.Sync = true })
		f := s.fidConnect(fakeSetup{})
		roomID, first := s.fidPortal(f, "m1", "hello alice")
		ctx := context.Background()
		alice := s.alice.UserID
		s.waitFollowing(alice)

		sent, remote := s.fidSendText(roomID, "oops, wrong chat")
		red, err := s.alice.RedactEvent(ctx, roomID, sent)
		if err != nil {
			t.Fatal(err)
		}
		del := f.fidWaitCommand(connector.OpDeleteMessage, func(c *connector.Command) bool { return c.Txn == string(red.EventID) })
		if del.Target != remote || del.Chat == nil || del.Chat.ID != fidBob || del.Login != testLogin {
			t.Errorf("delete_message = %+v, want target %s in bob's chat", del, remote)
		}
		waitMetric(t, "http://"+s.br.MetricsAddr().String()+"/metrics", "dmbridge_double_puppet_syncs", labels{"state": "ok"}, 1)

		if _, err = s.alice.UserTyping(ctx, roomID, true, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		typing := f.fidWaitCommand(connector.OpSetTyping, func(c *connector.Command) bool { return c.Typing })
		if typing.Chat == nil || typing.Chat.ID != fidBob {
			t.Errorf("set_typing = %+v, want bob's chat", typing)
		}
		if _, err = s.alice.UserTyping(ctx, roomID, false, 0); err != nil {
			t.Fatal(err)
		}
		f.fidWaitCommand(connector.OpSetTyping, func(c *connector.Command) bool { return !c.Typing })

		if err = s.alice.SendReceipt(ctx, roomID, first.ID, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		read := f.fidWaitCommand(connector.OpMarkRead, nil)
		if read.UpTo != "m1" || read.Chat == nil || read.Chat.ID != fidBob {
			t.Errorf("mark_read = %+v, want up to bob's m1", read)
		}

		// Removing her reaction reaches the network as unreact.
		react, err := s.alice.SendReaction(ctx, roomID, first.ID, "👍")
		if err != nil {
			t.Fatal(err)
		}
		f.fidWaitCommand(connector.OpReact, func(c *connector.Command) bool { return c.Txn == string(react.EventID) })
		unred, err := s.alice.RedactEvent(ctx, roomID, react.EventID)
		if err != nil {
			t.Fatal(err)
		}
		un := f.fidWaitCommand(connector.OpUnreact, func(c *connector.Command) bool { return c.Txn == string(unred.EventID) })
		if un.Target != "m1" || un.Key != "👍" {
			t.Errorf("unreact = %+v, want 👍 off bob's m1", un)
		}

		// Deleted while the bridge is down: the stored position brings it.
		sent2, remote2 := s.fidSendText(roomID, "and this one")
		s.stopBridge()
		red2, err := s.alice.RedactEvent(ctx, roomID, sent2)
		if err != nil {
			t.Fatal(err)
		}
		s.startBridge()
		del2 := f.fidWaitCommand(connector.OpDeleteMessage, func(c *connector.Command) bool { return c.Txn == string(red2.EventID) })
		if del2.Target != remote2 {
			t.Errorf("delete_message after the restart = %+v, want target %s", del2, remote2)
		}
		// Once each: the restart replayed neither deletion.
		s.waitMessage(roomID, "hello alice")
		f.send(textFrom(fidBob, "m2", "after the restart"))
		s.waitMessage(roomID, "after the restart")
		counts := map[string]int{}
		for _, c := range f.commandsOf(connector.OpDeleteMessage) {
			counts[c.Txn]++
		}
		if counts[string(red.EventID)] != 1 || counts[string(red2.EventID)] != 1 || len(counts) != 2 {
			t.Errorf("delete_message commands by txn: %v, want each of the two deletions once", counts)
		}

		// Sent and deleted while the bridge is down: Dendrite's push of the
		// message waits out its retry backoff, while alice's /sync brings
		// the deletion as soon as the bridge is up, so the deletion usually
		// comes first. The deleted message must not reach bob either way
		// (or, if it did come first, be deleted there).
		s.stopBridge()
		never, err := s.alice.SendText(ctx, roomID, "never meant for bob")
		if err != nil {
			t.Fatal(err)
		}
		red3, err := s.alice.RedactEvent(ctx, roomID, never.EventID)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second) // Dendrite's first retry fails and it backs off
		s.startBridge()
		// Both handled, in whichever order, and nothing left to send.
		tesths.WaitFor(t, 120*time.Second, "the deleted message and its deletion handled", func() (bool, error) {
			return s.countRows("SELECT COUNT(*) FROM mx_event WHERE event_id IN ($1, $2) AND done", never.EventID, red3.EventID) == 2 &&
				s.countRows("SELECT COUNT(*) FROM pending_command") == 0, nil
		})
		sent3 := len(f.fidCommandsFor(connector.OpSendMessage, string(never.EventID)))
		deleted3 := len(f.fidCommandsFor(connector.OpDeleteMessage, string(red3.EventID)))
		t.Logf("deleted message: %d send_message, %d delete_message", sent3, deleted3)
		if sent3 != deleted3 || sent3 > 1 {
			t.Errorf("the message alice deleted went to bob %d times and was deleted %d times; want neither, or once each", sent3, deleted3)
		}
	})
}

// waitFollowing waits until the bridge has taken the user's /sync position:
// it does so once the user's double puppet is in use, and what the user
// does before that is not replayed.
func (s *stack) waitFollowing(user id.UserID) {
	s.t.Helper()
	tesths.WaitFor(s.t, 20*time.Second, string(user)+"'s sync position stored", func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM double_puppet_sync WHERE mxid = $1", user) == 1, nil
	})
}

// TestDeletedWhileQueuedIsNotSent: alice sends a message while the
// connector is away and deletes it before it comes back. The command
// waiting for the connector is dropped: bob never gets the message, and
// no deletion of it goes out either.
func TestDeletedWhileQueuedIsNotSent(t *testing.T) {
	s := newFidelityStack(t, testdb.SQLite(t), func(c *config.Config) { c.DoublePuppet.Sync = true })
	f := s.fidConnect(fakeSetup{})
	roomID, _ := s.fidPortal(f, "m1", "hello alice")
	ctx := context.Background()
	s.waitFollowing(s.alice.UserID)
	f.stop()
	queued, err := s.alice.SendText(ctx, roomID, "sent while bob's network was away")
	if err != nil {
		t.Fatal(err)
	}
	tesths.WaitFor(t, 20*time.Second, "the send queued", func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM pending_command WHERE txn = $1", string(queued.EventID)) == 1, nil
	})
	red, err := s.alice.RedactEvent(ctx, roomID, queued.EventID)
	if err != nil {
		t.Fatal(err)
	}
	tesths.WaitFor(t, 20*time.Second, "the deletion handled", func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM mx_event WHERE event_id = $1 AND done", red.EventID) == 1, nil
	})
	f = s.fidConnect(fakeSetup{store: f.store})
	tesths.WaitFor(t, 20*time.Second, "the queue empty", func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM pending_command") == 0, nil
	})
	// A later message still goes: the room's queue is not stuck.
	s.fidSendText(roomID, "and this one is for bob")
	if n := len(f.fidCommandsFor(connector.OpSendMessage, string(queued.EventID))); n != 0 {
		t.Errorf("bob's network got the deleted message %d times", n)
	}
	if n := len(f.commandsOf(connector.OpDeleteMessage)); n != 0 {
		t.Errorf("%d delete_message commands for a message the network never had", n)
	}
}

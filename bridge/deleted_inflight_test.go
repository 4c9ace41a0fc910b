package bridge_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// A message the user deletes while its command is with the connector and no
// answer has come back: the network may have it, so the command goes again
// (answered with its first result) and the message is then deleted there.

// holdFirstSend is a fake connector's before hook that passes the first
// send_message of text on to the network and then holds it until release
// closes (by then the connection is gone, and the answer with it); held
// gets a value when it starts holding.
func holdFirstSend(text string) (before func(context.Context, *sdk.Client, string, *connector.Command) error, held chan struct{}, release chan struct{}) {
	held, release = make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	before = func(_ context.Context, _ *sdk.Client, op string, cmd *connector.Command) error {
		if op == connector.OpSendMessage && cmd.Text == text {
			once.Do(func() {
				held <- struct{}{}
				<-release
			})
		}
		return nil
	}
	return before, held, release
}

// sendUntilHeld sends alice's text into the room and waits until the
// connector holds it (holdFirstSend).
func (s *stack) sendUntilHeld(roomID id.RoomID, text string, held <-chan struct{}) id.EventID {
	s.t.Helper()
	sent, err := s.alice.SendText(context.Background(), roomID, text)
	if err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		s.t.Fatal("the message never reached the connector")
	}
	return sent.EventID
}

// sentAsConnectionDropped connects a fake (connect) that passes alice's
// message on to the network and whose connection drops before the answer
// leaves: alice sends it into the room that portal makes, and this returns
// once the send is queued again and the fake has stopped, with the fake,
// the room and alice's event.
func (s *stack) sentAsConnectionDropped(connect func(fakeSetup) *fakeConnector, portal func(*fakeConnector) id.RoomID) (*fakeConnector, id.RoomID, id.EventID) {
	s.t.Helper()
	const text = "sent as the connection dropped"
	before, held, release := holdFirstSend(text)
	f := connect(fakeSetup{before: before})
	var once sync.Once
	releaseHeld := func() { once.Do(func() { close(release) }) }
	// Registered after the fake's stop, so run before it: the stop waits
	// for the held command.
	s.t.Cleanup(releaseHeld)
	room := portal(f)
	sent := s.sendUntilHeld(room, text, held)
	f.cancel() // the connection closes; Run waits for the held command
	s.waitQueued(sent, "the send queued after the dropped connection")
	releaseHeld()
	<-f.done
	return f, room, sent
}

// TestDeletedAfterConnectorDroppedMidSend: the connector passes alice's
// message on to bob's network and its connection drops before the answer
// leaves; alice deletes the message while the connector is away. The
// message is with bob, so the command is not dropped as one that never went
// out: when the connector is back it goes again (a repeated txn, which the
// connector answers with its first result without acting twice) and the
// message is then deleted on bob's network.
func TestDeletedAfterConnectorDroppedMidSend(t *testing.T) {
	s := newFidelityStack(t, testdb.SQLite(t), func(c *config.Config) { c.DoublePuppet.Sync = true })
	f, roomID, sentID := s.sentAsConnectionDropped(s.fidConnect, func(f *fakeConnector) id.RoomID {
		roomID, _ := s.fidPortal(f, "m1", "hello alice")
		s.waitFollowing(s.alice.UserID)
		return roomID
	})
	ctx := context.Background()
	first := f.answeredID(connector.OpSendMessage, string(sentID))
	if first == "" {
		t.Fatal("bob's network has no id for the message")
	}
	red, err := s.alice.RedactEvent(ctx, roomID, sentID)
	if err != nil {
		t.Fatal(err)
	}
	tesths.WaitFor(t, 20*time.Second, "the deletion handled", func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM mx_event WHERE event_id = $1 AND done", red.EventID) == 1, nil
	})
	f = s.fidConnect(fakeSetup{store: f.store})
	del := f.fidWaitCommand(connector.OpDeleteMessage, func(c *connector.Command) bool { return c.Txn == string(red.EventID) })
	if n := len(f.fidCommandsFor(connector.OpSendMessage, string(sentID))); n != 0 {
		t.Errorf("bob's network acted on the repeated send %d times; want it answered from the first", n)
	}
	if del.Target != first || len(f.commandsOf(connector.OpDeleteMessage)) != 1 {
		t.Errorf("delete_message = %+v (of %d); want one, of %s", del, len(f.commandsOf(connector.OpDeleteMessage)), first)
	}
	tesths.WaitFor(t, 20*time.Second, "the queue empty", func() (bool, error) {
		return s.countRows("SELECT COUNT(*) FROM pending_command") == 0, nil
	})
}

// TestKilledMidSendThenDeleted: alice's message goes out directly (nothing
// stored for it but the unhandled Matrix event); the connector passes it on
// to bob's network, and the bridge binary is killed (SIGKILL) before the
// answer comes. It restarts before the connector is back, handles the event
// again and queues it; alice deletes the message; the connector comes back.
// The queued command counts as possibly sent, so it goes again and the
// message is deleted on bob's network.
func TestKilledMidSendThenDeleted(t *testing.T) {
	s := newProcessStack(t, testdb.SQLite(t))
	proc := newBridgeProcess(t, s)
	proc.start(s.cfg.Connector.Listen)
	const text = "sent as the bridge was killed"
	before, held, release := holdFirstSend(text)
	f := s.fidConnect(fakeSetup{before: before})
	ctx := context.Background()
	roomID := s.firstPortal(ctx, f)
	sentID := s.sendUntilHeld(roomID, text, held)
	proc.kill()
	f.cancel()
	close(release) // bob's network has the message; the answer is lost
	<-f.done
	first := f.answeredID(connector.OpSendMessage, string(sentID))
	if first == "" {
		t.Fatal("bob's network has no id for the message")
	}
	proc.start(s.cfg.Connector.Listen) // the connector is not back yet
	tesths.WaitFor(t, 30*time.Second, "the event handled again and queued", func() (bool, error) {
		return proc.countLogs("Connector offline, commands wait for it") > 0, nil
	})
	red, err := s.alice.RedactEvent(ctx, roomID, sentID)
	if err != nil {
		t.Fatal(err)
	}
	// Dendrite does not push redactions to appservices (double_puppet.sync
	// brings them, tested above); this hands it over as Synapse would.
	s.fidDeliverRedaction(roomID, red.EventID)
	tesths.WaitFor(t, 30*time.Second, "the deletion handled", func() (bool, error) {
		// Dropped as never sent (the defect this test guards against), or
		// noted for the command that may have been.
		return proc.countLogs("The user deleted a message that was waiting to be sent") > 0 ||
			proc.countLogs("Redaction of an event the bridge has not bridged") > 0, nil
	})
	f = s.fidConnect(fakeSetup{store: f.store})
	del := f.fidWaitCommand(connector.OpDeleteMessage, func(c *connector.Command) bool { return c.Txn == string(red.EventID) })
	if del.Target != first || len(f.commandsOf(connector.OpDeleteMessage)) != 1 {
		t.Errorf("delete_message = %+v (of %d); want one, of %s", del, len(f.commandsOf(connector.OpDeleteMessage)), first)
	}
	if n := len(f.fidCommandsFor(connector.OpSendMessage, string(sentID))); n != 0 {
		t.Errorf("bob's network acted on the repeated send %d times; want it answered from the first", n)
	}
}

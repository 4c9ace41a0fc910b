package bridge_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/rawconn"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// waitBodies waits until the room shows exactly want, in order, and then
// checks that nothing more arrives within a short grace period.
func (s *stack) waitBodies(roomID id.RoomID, want []string) {
	s.t.Helper()
	tesths.WaitFor(s.t, 30*time.Second, fmt.Sprintf("messages %q", want), func() (bool, error) {
		got := bodies(s.messagesIn(roomID))
		if len(got) > len(want) {
			return false, fmt.Errorf("too many messages: %q", got)
		}
		return slices.Equal(got, want), nil
	})
	time.Sleep(300 * time.Millisecond)
	if got := bodies(s.messagesIn(roomID)); !slices.Equal(got, want) {
		s.t.Fatalf("room shows %q, want exactly %q", got, want)
	}
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s %d", prefix, i))
	}
	return out
}

// TestConnectorReconnectMidStream: the connector drops while events are in
// flight and keeps producing while offline; after it reconnects, every event
// shows once, in order.
func TestConnectorReconnectMidStream(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		store := sdk.NewMemoryStore()
		f := s.connectFake(store)
		f.send(textFrom("bob@network", "m0", "message 0"))
		roomID := s.roomOf("bob@network")
		ctx := context.Background()
		for i := 1; i <= 5; i++ {
			if _, err := f.client.Send(ctx, textFrom("bob@network", fmt.Sprintf("m%d", i), fmt.Sprintf("message %d", i))); err != nil {
				t.Fatal(err)
			}
		}
		f.stop()
		for i := 6; i <= 10; i++ {
			if _, err := f.client.Send(ctx, textFrom("bob@network", fmt.Sprintf("m%d", i), fmt.Sprintf("message %d", i))); err != nil {
				t.Fatal(err)
			}
		}
		s.connectFake(store)
		s.waitBodies(roomID, numbered("message", 0, 10))
	})
}

// TestBridgeRestartBetweenEvents: the bridge stops and starts between two
// events; the connector reconnects by itself and nothing is lost or doubled.
func TestBridgeRestartBetweenEvents(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f := s.connectFake(nil)
		f.send(textFrom("bob@network", "m1", "message 1"))
		roomID := s.roomOf("bob@network")
		s.waitBodies(roomID, []string{"message 1"})
		s.restartBridge()
		f.send(textFrom("bob@network", "m2", "message 2"))
		s.waitBodies(roomID, []string{"message 1", "message 2"})
	})
}

// TestReplayWholeStream: a connector replays its whole stream from seq 1,
// then, having lost its state, sends the same messages again under new seqs.
// The bridge acks it all and shows only what is new.
func TestReplayWholeStream(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f := s.connectFake(nil)
		for i := 1; i <= 3; i++ {
			f.send(textFrom("bob@network", fmt.Sprintf("m%d", i), fmt.Sprintf("message %d", i)))
		}
		roomID := s.roomOf("bob@network")
		s.waitBodies(roomID, numbered("message", 1, 3))
		f.stop()

		// Seq 1..3 again, on a raw connection under the same connector id.
		raw, _, err := rawconn.Dial(context.Background(), "ws://"+s.cfg.Connector.Listen+connector.Path, testConnectorToken, []string{connector.Subprotocol})
		if err != nil {
			t.Fatal(err)
		}
		hello := helloFor(connector.Login{ID: testLogin, MatrixUser: string(s.alice.UserID)})
		if err = raw.WriteFrame(connector.Frame{Type: connector.TypeHello}, hello); err != nil {
			t.Fatal(err)
		}
		welcome, err := raw.ReadFrame(5 * time.Second)
		if err != nil || welcome.Type != connector.TypeWelcome {
			t.Fatalf("welcome: %+v, %v", welcome, err)
		}
		for i := 1; i <= 3; i++ {
			if err = raw.WriteFrame(connector.Frame{Type: connector.TypeEvent, Seq: int64(i)}, textFrom("bob@network", fmt.Sprintf("m%d", i), fmt.Sprintf("message %d", i))); err != nil {
				t.Fatal(err)
			}
		}
		for {
			ack, err := raw.ReadFrame(5 * time.Second)
			if err != nil {
				t.Fatalf("waiting for the replay's ack: %v", err)
			}
			if ack.Type == connector.TypeErr {
				t.Fatalf("replay answered with %+v", ack.Error)
			}
			if ack.Type == connector.TypeAck && ack.Seq == 3 {
				break
			}
		}
		_ = raw.Close()

		// A connector whose store was reset: the SDK numbers after the
		// bridge's acked_seq, and the known message ids are deduplicated.
		again := s.connectFake(sdk.NewMemoryStore())
		for i := 1; i <= 3; i++ {
			again.send(textFrom("bob@network", fmt.Sprintf("m%d", i), fmt.Sprintf("message %d", i)))
		}
		again.send(textFrom("bob@network", "m4", "message 4"))
		s.waitBodies(roomID, numbered("message", 1, 4))
	})
}

// TestMatrixMessagesWhileConnectorOffline: the user writes while the
// connector is away and the bridge restarts in between; each message reaches
// the connector exactly once, in order, when it is back.
func TestMatrixMessagesWhileConnectorOffline(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		store := sdk.NewMemoryStore()
		f := s.connectFake(store)
		roomID := s.bobPortal(f, "m1", "hello")
		f.stop()
		ctx := context.Background()
		var sent []id.EventID
		for i := 1; i <= 3; i++ {
			resp, err := s.alice.SendText(ctx, roomID, fmt.Sprintf("reply %d", i))
			if err != nil {
				t.Fatal(err)
			}
			sent = append(sent, resp.EventID)
		}
		// Let the homeserver deliver them before the bridge goes down.
		tesths.WaitFor(t, 20*time.Second, "replies queued", func() (bool, error) {
			var n int
			err := s.br.DB.QueryRow(ctx, "SELECT COUNT(*) FROM pending_command").Scan(&n)
			return n == 3, err
		})
		s.restartBridge()
		back := s.connectFake(store)
		tesths.WaitFor(t, 20*time.Second, "3 send_message commands", func() (bool, error) {
			return len(back.commandsOf(connector.OpSendMessage)) >= 3, nil
		})
		time.Sleep(300 * time.Millisecond)
		cmds := back.commandsOf(connector.OpSendMessage)
		if len(cmds) != 3 {
			t.Fatalf("connector got %d send_message commands, want 3", len(cmds))
		}
		for i, c := range cmds {
			if c.Txn != string(sent[i]) || c.Text != fmt.Sprintf("reply %d", i+1) {
				t.Errorf("command %d = txn %s text %q, want txn %s text %q", i, c.Txn, c.Text, sent[i], fmt.Sprintf("reply %d", i+1))
			}
		}
	})
}

// TestInterruptedPortalCreationResumes sets up what a crash inside
// createRoom leaves behind: the portal row marked as creating, and a room the
// ghost made with its m.bridge state but without the user's invite (the
// homeserver stops a createRoom whose caller went away). The next event
// adopts that room instead of making a second one, and the user still gets
// an is_direct invite, a join and the m.direct entry.
func TestInterruptedPortalCreationResumes(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	ctx := context.Background()
	f := s.connectFake(nil)
	f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, Contact: &connector.Contact{ID: "bob@network", Name: "Bob"}})
	ghost := s.ghost("bob@network")
	tesths.WaitFor(t, 20*time.Second, "bob's ghost registered", func() (bool, error) {
		g, err := s.br.DB.Ghost.Get(ctx, "bob@network")
		return g != nil && g.Registered, err
	})
	key := database.PortalKey{LoginID: testLogin, ChatID: "bob@network"}
	if _, err := s.br.DB.Portal.GetOrCreate(ctx, key, "bob@network"); err != nil {
		t.Fatal(err)
	}
	if err := s.br.DB.Portal.MarkCreateStarted(ctx, key); err != nil {
		t.Fatal(err)
	}
	stateKey := "fakenet://bob@network"
	info := &event.BridgeEventContent{BridgeBot: s.br.Link.BotMXID(), Creator: ghost,
		Protocol: event.BridgeInfoSection{ID: "fakenet"}, Channel: event.BridgeInfoSection{ID: "bob@network", Receiver: testLogin}}
	orphan, err := s.br.Link.AS.Intent(ghost).CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset:       "trusted_private_chat",
		InitialState: []*event.Event{{Type: event.StateBridge, StateKey: &stateKey, Content: event.Content{Parsed: info}}},
	})
	if err != nil {
		t.Fatal(err)
	}

	f.send(textFrom("bob@network", "m1", "after the crash"))
	roomID, invite := s.sync.WaitInvite(t, 30*time.Second)
	if roomID != orphan.RoomID {
		t.Fatalf("invited to %s, want the interrupted room %s", roomID, orphan.RoomID)
	}
	if invite.Sender != ghost || !invite.Content.AsMember().IsDirect {
		t.Errorf("invite from %s with is_direct=%v, want from the ghost with is_direct", invite.Sender, invite.Content.AsMember().IsDirect)
	}
	s.waitBodies(orphan.RoomID, []string{"after the crash"})
	s.waitDirect(ghost, orphan.RoomID, true)
	joined, err := s.alice.JoinedRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(joined.JoinedRooms) != 1 || joined.JoinedRooms[0] != orphan.RoomID {
		t.Errorf("alice is in %v, want only %s", joined.JoinedRooms, orphan.RoomID)
	}
}

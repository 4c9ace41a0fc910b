package bridge_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestEncryptedDMWithKnownContact: a contact the bridge already knows (its
// ghost was registered from the contact list, and has no portal) gets its
// own device in the background, before anyone invites it. So when the user
// starts an encrypted DM with it and sends at once, as Element X does, the
// user's client finds the ghost's device and shares the room key with it:
// the first message reaches the network. Without the device ahead of need
// the client encrypts for no device of the ghost's, and that message is
// lost to the bridge for good.
func TestEncryptedDMWithKnownContact(t *testing.T) {
	target := testdb.Targets(t)[0]
	s := newStack(t, target, stackOptions{encryption: true})
	f := s.connectFake(nil)
	f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, Contact: &connector.Contact{ID: "carol@network", Name: "Carol"}})
	ghost := s.ghost("carol@network")
	ctx := context.Background()
	var device id.DeviceID
	tesths.WaitFor(t, 60*time.Second, "the known contact's ghost device", func() (bool, error) {
		dev, err := s.br.DB.GhostDev.Get(ctx, ghost)
		if dev != nil {
			device = dev.DeviceID
		}
		return dev != nil, err
	})
	// Its keys are on the homeserver, cross-signed, before any invite.
	tesths.WaitFor(t, 30*time.Second, "the ghost device's keys on the homeserver", func() (bool, error) {
		resp, err := s.alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{ghost: {}}})
		if err != nil {
			return false, err
		}
		_, ok := resp.DeviceKeys[ghost][device]
		return ok && len(resp.SelfSigningKeys[ghost].Keys) == 1, nil
	})
	assertCrossSigned(t, s, ghost, device)
	if n := len(f.commandsOf(connector.OpSendMessage)); n != 0 {
		t.Fatalf("%d send_message commands before the DM", n)
	}

	nio := startNio(t, s, "alice")
	dm := nio.do(map[string]any{"cmd": "create_dm", "ghost": string(ghost), "text": "hello carol, encrypted"})
	tesths.WaitFor(t, 60*time.Second, "the first message at the connector", func() (bool, error) {
		return len(f.commandsOf(connector.OpSendMessage)) >= 1, nil
	})
	time.Sleep(2 * time.Second) // a second delivery would show by now
	cmds := f.commandsOf(connector.OpSendMessage)
	if len(cmds) != 1 || cmds[0].Text != "hello carol, encrypted" || cmds[0].Txn != dm["event_id"] {
		t.Fatalf("send_message commands = %+v, want the first message once, in plaintext", cmds)
	}
	// The ghost kept the device it was given ahead of need.
	if dev, err := s.br.DB.GhostDev.Get(ctx, ghost); err != nil || dev == nil || dev.DeviceID != device {
		t.Fatalf("ghost device after the DM = %+v (%v), want %s", dev, err, device)
	}
	f.send(textFrom("carol@network", "c1", "hi, from carol"))
	if got := nio.do(map[string]any{"cmd": "expect", "body": "hi, from carol", "timeout": 60}); got["encrypted"] != true ||
		got["device_id"] != string(device) {
		t.Fatalf("contact's answer as the client saw it = %v, want encrypted by device %s", got, device)
	}
}

// TestGhostsFromBeforeEncryptionGetDevices: ghosts an install registered
// while it ran without encryption are found at the first start with it, by
// the scan of the ghost table, and each gets its device in the background.
func TestGhostsFromBeforeEncryptionGetDevices(t *testing.T) {
	target := testdb.Targets(t)[0]
	s := newStack(t, target)
	f := s.connectFake(nil)
	contacts := []string{"dave@network", "erin@network", "frank@network"}
	ctx := context.Background()
	for _, c := range contacts {
		f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, Contact: &connector.Contact{ID: c, Name: c}})
	}
	tesths.WaitFor(t, 30*time.Second, "the contacts' ghosts registered", func() (bool, error) {
		for _, c := range contacts {
			g, err := s.br.DB.Ghost.Get(ctx, c)
			if err != nil || g == nil || !g.Registered {
				return false, err
			}
		}
		return true, nil
	})
	for _, c := range contacts {
		if dev, err := s.br.DB.GhostDev.Get(ctx, s.ghost(c)); err != nil || dev != nil {
			t.Fatalf("%s has a device without encryption: %+v, %v", c, dev, err)
		}
	}
	s.cfg.Encryption.PickleKey = "pickle-key-for-tests-0123456789abcdef"
	s.restartBridge()
	tesths.WaitFor(t, 60*time.Second, "a device for each ghost from before encryption", func() (bool, error) {
		for _, c := range contacts {
			dev, err := s.br.DB.GhostDev.Get(ctx, s.ghost(c))
			if err != nil || dev == nil {
				return false, err
			}
		}
		return true, nil
	})
	// The row is stored at login, the keys are uploaded just after.
	tesths.WaitFor(t, 30*time.Second, "each ghost's device keys on the homeserver", func() (bool, error) {
		for _, c := range contacts {
			resp, err := s.alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{s.ghost(c): {}}})
			if err != nil || len(resp.DeviceKeys[s.ghost(c)]) != 1 {
				return false, err
			}
		}
		return true, nil
	})
	// Making the devices left no ghost's intent or client behind in
	// mautrix's appservice, whose maps are never emptied: the preparer goes
	// through every ghost, so each would be held for good. (The bot's and
	// matrix.ghostIntents' template are there by design.)
	as := reflect.ValueOf(s.br.Link.AS).Elem()
	for _, field := range []string{"intents", "clients"} {
		for _, key := range as.FieldByName(field).MapKeys() {
			if _, ghost := s.cfg.ParseGhostUserID(id.UserID(key.String())); ghost {
				t.Errorf("mautrix's appservice holds the %s of ghost %s after its device was made", field, key.String())
			}
		}
	}
}

// TestEncryptedFirstMessageBeforeJoin: a client creates an encrypted DM with
// a ghost and sends the first message at once, as Element X does. When the
// ghost joins only after that message (here the connector answers the
// contact's resolve_identifier late, and the join waits for it), the
// homeserver never pushes the message to the bridge: the ghost was only
// invited. The catch-up after the join reads it from the room, decrypts it
// with the key the client shared with the invited ghost's device, and
// bridges it once. It used to skip m.room.encrypted, so the user's first
// words were lost without a word.
func TestEncryptedFirstMessageBeforeJoin(t *testing.T) {
	target := testdb.Targets(t)[0]
	s := newStack(t, target, stackOptions{encryption: true})
	ctx := context.Background()
	release := make(chan struct{})
	f := s.connectFakeWith(fakeSetup{before: func(ctx context.Context, _ *sdk.Client, op string, _ *connector.Command) error {
		if op == connector.OpResolveIdentifier {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}})
	ghost := s.ghost("bob@network")
	nio := startNio(t, s, "alice")

	dm := nio.do(map[string]any{"cmd": "create_dm", "ghost": string(ghost), "text": "first words before the join"})
	roomID := id.RoomID(dm["room_id"].(string))
	var member event.MemberEventContent
	if err := s.alice.StateEvent(ctx, roomID, event.StateMember, string(ghost), &member); err != nil {
		t.Fatal(err)
	} else if member.Membership != event.MembershipInvite {
		t.Fatalf("the ghost's membership when the first message was sent = %s, want invite", member.Membership)
	}
	close(release)
	expectFirstOnce(t, f, "first words before the join", dm["event_id"])
	s.waitMembership(s.sync, roomID, ghost, event.MembershipJoin)
}

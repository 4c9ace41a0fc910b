package bridge_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestEncryptedDoublePuppetEcho: the user's own messages from their other
// device on the network come into an encrypted portal as the user (double
// puppet), encrypted with the ghost's device and session, which the user's
// client already has the key of: the client decrypts them, sees the user as
// sender and a session of the ghost's device (so it cannot verify it: the
// documented price of not giving the user a device). The user's own edit,
// reaction and file are encrypted the same way; none of it goes back to the
// network.
func TestEncryptedDoublePuppetEcho(t *testing.T) {
	testdb.EachParallel(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{encryption: true})
		f, ghost, nio, answer := encryptedDMWithBob(t, s, "hello bob", "hi alice")

		me := &connector.Sender{ID: testLogin, IsMe: true}
		f.send(&connector.Event{Kind: connector.KindMessage, Login: testLogin, TS: time.Now().UnixMilli(),
			Chat: dmChat("bob@network"), Sender: me, ID: "me1", Text: "sent from my phone"})
		echo := nio.do(map[string]any{"cmd": "expect", "own": true, "body": "sent from my phone", "timeout": 60})

		ctx := context.Background()
		dev, err := s.br.DB.GhostDev.Get(ctx, ghost)
		if err != nil || dev == nil {
			t.Fatalf("ghost device row: %v %v", dev, err)
		}
		keys, err := s.alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{ghost: {}}})
		if err != nil {
			t.Fatal(err)
		}
		ghostKey := keys.DeviceKeys[ghost][dev.DeviceID].Keys.GetCurve25519(dev.DeviceID)
		t.Logf("the user's echo as matrix-nio reports it: %v", echo)
		if echo["sender"] != string(s.alice.UserID) || echo["encrypted"] != true || echo["body"] != "sent from my phone" ||
			echo["sender_key"] != string(ghostKey) || echo["sender_key_owner"] != string(ghost) {
			t.Fatalf("echo = %v; want it sent as %s, encrypted with the session of %s's device %s (key %s)",
				echo, s.alice.UserID, ghost, dev.DeviceID, ghostKey)
		}
		if echo["verified"] != false {
			t.Fatalf("echo = %v: a client cannot verify a session of another user's device for the user's event", echo)
		}
		// Nothing of the user's own account changed: no device of the bridge's.
		own, err := s.alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{s.alice.UserID: {}}})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(own.DeviceKeys[s.alice.UserID]); n != 1 {
			t.Fatalf("the user has %d devices with keys, want only the nio client's: %v", n, own.DeviceKeys[s.alice.UserID])
		}

		f.send(&connector.Event{Kind: connector.KindEdit, Login: testLogin, TS: time.Now().UnixMilli(),
			Chat: dmChat("bob@network"), Sender: me, ID: "me1-edit", Target: "me1", Text: "sent from my phone, edited"})
		if edit := nio.do(map[string]any{"cmd": "expect", "own": true, "body": "* sent from my phone, edited", "timeout": 60}); edit["encrypted"] != true ||
			edit["sender"] != string(s.alice.UserID) || edit["sender_key"] != string(ghostKey) {
			t.Fatalf("the user's own edit as the client saw it = %v, want encrypted with the ghost's session", edit)
		}
		f.send(&connector.Event{Kind: connector.KindReaction, Login: testLogin, TS: time.Now().UnixMilli(),
			Chat: dmChat("bob@network"), Sender: me, ID: "me-x1", Target: "r1", Key: "🙂"})
		if rx := nio.do(map[string]any{"cmd": "expect_reaction", "own": true, "key": "🙂", "timeout": 60}); rx["encrypted"] != true ||
			rx["sender"] != string(s.alice.UserID) || rx["target"] != answer["event_id"] {
			t.Fatalf("the user's own reaction as the client saw it = %v, want encrypted, on %v", rx, answer["event_id"])
		}

		f.send(&connector.Event{Kind: connector.KindMessage, Login: testLogin, TS: time.Now().UnixMilli(),
			Chat: dmChat("bob@network"), Sender: me, ID: "me-file",
			Attachments: []connector.Attachment{{Name: "mine.txt", MimeType: "text/plain", Data: []byte("my own file")}}})
		if file := nio.do(map[string]any{"cmd": "expect_file", "own": true, "name": "mine.txt", "timeout": 60}); file["data"] != "my own file" ||
			file["encrypted"] != true || file["plain_url"] != nil || file["sender"] != string(s.alice.UserID) {
			t.Fatalf("the user's own file as the client saw it = %v, want an encrypted event with an encrypted file", file)
		}

		// The echoes come back to the bridge as the user's events: none of
		// them may reach the network.
		time.Sleep(3 * time.Second)
		if n := len(f.commandsOf(connector.OpSendMessage)); n != 1 {
			t.Fatalf("%d send_message commands, want only the user's first message", n)
		}
		if n := len(f.commandsOf(connector.OpEditMessage)) + len(f.commandsOf(connector.OpReact)); n != 0 {
			t.Fatalf("%d edit/react commands: the bridge's own echoes went back to the network", n)
		}
	})
}

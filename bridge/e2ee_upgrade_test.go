package bridge_test

import (
	"context"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestUpgradedEncryptedDM: the user upgrades an encrypted DM while a
// message of theirs, sent encrypted in it, waits for the connector. The
// homeserver copies m.room.encryption into the new room; the portal
// follows the user there and must treat it as encrypted from the start:
// the contact's next message arrives in the new room encrypted by the
// ghost's device under a room key shared with the user's device (a
// plaintext message there, or one the user cannot decrypt, is a defect),
// the user's encrypted message in the new room reaches the network, and so
// does the one queued in the old room, each once.
func TestUpgradedEncryptedDM(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{encryption: true})
		ctx := context.Background()
		f, ghost, nio, _ := encryptedDMWithBob(t, s, "hello bob", "hello alice")
		old := s.roomOf("bob@network")

		// The connector is away: the encrypted message waits for it.
		f.stop()
		queued := nio.do(map[string]any{"cmd": "send", "text": "sent before the upgrade"})
		s.waitQueued(id.EventID(queued["event_id"].(string)), "the encrypted message queued for the connector")
		oldGhostEvents := len(ghostMessages(s, old))

		room := s.upgradeDM(old, ghost)
		if got := s.roomOf("bob@network"); got != room {
			t.Fatalf("portal room = %s, want the upgraded room %s", got, room)
		}
		if joined := nio.do(map[string]any{"cmd": "use_room", "room_id": string(room), "member": string(ghost)}); joined["encrypted"] != true {
			t.Fatalf("the upgraded room as the user's client sees it = %v, want encrypted", joined)
		}
		if encrypted, err := s.br.Link.StateStore.IsEncrypted(ctx, room); err != nil || !encrypted {
			t.Fatalf("the bridge's state store says the upgraded room is encrypted: %v (%v), want true", encrypted, err)
		}

		back := s.connectFake(f.store)
		waitSent(t, back, 1)
		back.send(textFrom("bob@network", "r2", "after the upgrade"))
		expectFromGhostDevice(t, s, nio, ghost, "after the upgrade")
		nio.sendText(back, 2, "sent in the new room")
		// The contact's file goes to the media repository encrypted too.
		back.send(&connector.Event{Kind: connector.KindMessage, Login: testLogin, TS: time.Now().UnixMilli(), Chat: dmChat("bob@network"),
			Sender: &connector.Sender{ID: "bob@network"}, ID: "r-file",
			Attachments: []connector.Attachment{{Name: "photo.txt", MimeType: "text/plain", Data: []byte("bob's file")}}})
		if got := nio.do(map[string]any{"cmd": "expect_file", "name": "photo.txt"}); got["data"] != "bob's file" ||
			got["encrypted"] != true || got["plain_url"] != nil {
			t.Errorf("contact's file in the new room as the client saw it = %v, want an encrypted event with an encrypted file", got)
		}

		// Nothing doubled: each of the user's messages reached the network
		// once, the contact's message shows once, in the new room only.
		if n := nio.do(map[string]any{"cmd": "count", "body": "after the upgrade", "wait": 3}); n["count"] != float64(1) {
			t.Errorf("the user's client shows the contact's message %v times in the new room, want once", n["count"])
		}
		sent := back.commandsOf(connector.OpSendMessage)
		if len(sent) != 2 || sent[0].Text != "sent before the upgrade" || sent[0].Txn != queued["event_id"] ||
			sent[1].Text != "sent in the new room" {
			t.Errorf("send_message commands after the upgrade = %+v, want the queued message and the new one, once each", sent)
		}
		if n := len(ghostMessages(s, old)); n != oldGhostEvents {
			t.Errorf("the ghost sent %d messages into the old room after the upgrade", n-oldGhostEvents)
		}
		shown := ghostMessages(s, room)
		if len(shown) != 2 {
			t.Errorf("the ghost sent %d messages into the new room, want the contact's message and file", len(shown))
		}
		for _, evt := range shown {
			if evt.Type != event.EventEncrypted {
				t.Errorf("the ghost sent %s %s in the clear into the encrypted room", evt.Type.Type, evt.ID)
			}
		}
	})
}

// ghostMessages lists the messages (encrypted or not) from ghosts that
// alice's sync saw in room so far, after giving the sync a moment.
func ghostMessages(s *stack, room id.RoomID) []*event.Event {
	time.Sleep(time.Second)
	var out []*event.Event
	for _, evt := range s.sync.Events(room) {
		if (evt.Type == event.EventMessage || evt.Type == event.EventEncrypted) && evt.Sender != s.alice.UserID {
			out = append(out, evt)
		}
	}
	return out
}

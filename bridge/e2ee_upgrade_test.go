package bridge_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestUpgradedEncryptedDM: the user upgrades an encrypted DM while a
// message of theirs, sent encrypted in it, waits for the connector. The
// homeserver copies m.room.encryption into the new room; the portal
// follows the user there and must treat it as encrypted from the start:
// the contact's next message arrives in the new room encrypted by the
// ghost's device under a room key shared with the user's device (a
// plaintext message there, or one the user cannot decrypt, is a defect),
// the user's encrypted message in the new room reaches the network, and so
// does the one queued in the old room, each once, and the user's edit of
// the queued message, sent from the new room, after it.
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
		nioFollows(t, nio, room, ghost)
		if encrypted, err := s.br.Link.StateStore.IsEncrypted(ctx, room); err != nil || !encrypted {
			t.Fatalf("the bridge's state store says the upgraded room is encrypted: %v (%v), want true", encrypted, err)
		}
		// From the new room (the old one takes no more messages) the user
		// corrects the queued message: the edit waits behind it.
		edit := nio.do(map[string]any{"cmd": "edit", "target": queued["event_id"], "text": "sent before the upgrade, corrected"})
		s.waitQueued(id.EventID(edit["event_id"].(string)), "the encrypted edit queued behind the message")

		back := s.connectFake(f.store)
		waitSent(t, back, 1)
		tesths.WaitFor(t, 60*time.Second, "the edit at the network", func() (bool, error) {
			return back.answeredID(connector.OpEditMessage, edit["event_id"].(string)) != "", nil
		})
		wantEditOf(t, back, back.answeredID(connector.OpSendMessage, queued["event_id"].(string)), "sent before the upgrade, corrected")
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

		// The user's own message from the network comes in as them (double
		// puppet), encrypted with the ghost's device in the new room, and
		// its echo does not go back to the network.
		back.send(&connector.Event{Kind: connector.KindMessage, Login: testLogin, TS: time.Now().UnixMilli(),
			Chat: dmChat("bob@network"), Sender: &connector.Sender{ID: testLogin, IsMe: true}, ID: "me1", Text: "from my phone"})
		if echo := nio.do(map[string]any{"cmd": "expect", "own": true, "body": "from my phone"}); echo["encrypted"] != true ||
			echo["sender_key_owner"] != string(ghost) {
			t.Errorf("the user's own message in the new room as the client saw it = %v, want encrypted with the ghost's session", echo)
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

// TestUpgradedEncryptedDMEarlyMessage: the user upgrades the encrypted DM
// and writes in the new room at once, before the ghost joined it (here the
// bridge is down meanwhile). Their client shares the new room's key with
// the invited ghost's device; once the ghost is in, the message is read
// back, decrypted and reaches the network once, and the contact's answer
// arrives in the new room encrypted by the ghost's device.
func TestUpgradedEncryptedDMEarlyMessage(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{encryption: true})
		f, ghost, nio, _ := encryptedDMWithBob(t, s, "hello bob", "hello alice")
		old := s.roomOf("bob@network")

		s.stopBridge()
		room := s.upgradeAndInvite(old, ghost)
		nioFollows(t, nio, room, ghost)
		early := nio.do(map[string]any{"cmd": "send", "text": "written right after the upgrade"})
		s.startBridge()
		s.waitMembership(s.sync, room, ghost, event.MembershipJoin)

		waitSent(t, f, 2)
		f.send(textFrom("bob@network", "r2", "answer in the new room"))
		expectFromGhostDevice(t, s, nio, ghost, "answer in the new room")
		if sent := f.commandsOf(connector.OpSendMessage); len(sent) != 2 || sent[1].Text != "written right after the upgrade" ||
			sent[1].Txn != early["event_id"] {
			t.Errorf("send_message commands = %+v, want the message written in the new room once after the first", sent)
		}
		for _, evt := range ghostMessages(s, room) {
			if evt.Type != event.EventEncrypted {
				t.Errorf("the ghost sent %s %s in the clear into the encrypted room", evt.Type.Type, evt.ID)
			}
		}
	})
}

// nioFollows moves alice's nio client to room, the upgrade of the DM with
// ghost that her other client made, and checks that it is encrypted there.
func nioFollows(t *testing.T, nio *nioClient, room id.RoomID, ghost id.UserID) {
	t.Helper()
	if joined := nio.do(map[string]any{"cmd": "use_room", "room_id": string(room), "member": string(ghost)}); joined["encrypted"] != true {
		t.Fatalf("the upgraded room as the user's client sees it = %v, want encrypted", joined)
	}
}

// TestUpgradedEncryptedDMQuotes: after the user upgraded the encrypted DM,
// bob edits his message from before the upgrade and replies to the user's.
// Both show in the new room, encrypted, quoting the message they are
// about, which the ghost's device opens (its own with the keys of what it
// sent, the user's with the keys the user's client shared with it). The
// user's message was sent, as clients do, before the ghost took up its
// invite (held here until it was sent, which under load happens by
// itself): the ghost, having left the old room, may not read it any more,
// so the bridge reads it as the user.
func TestUpgradedEncryptedDMQuotes(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{encryption: true, hsProxy: true})
		f := s.connectFake(nil)
		ghost := s.ghost("bob@network")
		nio := startNio(t, s, "alice")
		sent := make(chan struct{})
		release := sync.OnceFunc(func() { close(sent) })
		// Before the proxy's own cleanup, which waits for the held join.
		t.Cleanup(release)
		var held atomic.Bool
		s.proxy.setRefuse(func(r *http.Request, _ []byte) (int, string) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/join") &&
				r.URL.Query().Get("user_id") == string(ghost) && held.CompareAndSwap(false, true) {
				select {
				case <-sent:
				case <-time.After(60 * time.Second):
				}
			}
			return 0, ""
		})
		nio.do(map[string]any{"cmd": "create_dm", "ghost": string(ghost), "text": "shall we meet at noon?"})
		release()
		waitSent(t, f, 1)
		if !held.Load() {
			t.Fatal("the ghost's join was not held: the test does not test a message sent before it")
		}
		f.send(textFrom("bob@network", "r1", "noon works"))
		nio.do(map[string]any{"cmd": "expect", "body": "noon works", "timeout": 60})
		hello := f.commandsOf(connector.OpSendMessage)[0]
		room := s.upgradeDM(s.roomOf("bob@network"), ghost)
		nioFollows(t, nio, room, ghost)

		edit := bobAbout(connector.KindEdit, "e1", "r1")
		edit.Text = "noon works for me"
		f.send(edit)
		expectFromGhostDevice(t, s, nio, ghost, "> noon works\n\n* noon works for me")
		reply := textFrom("bob@network", "r2", "see you then")
		reply.ReplyTo = f.answeredID(connector.OpSendMessage, hello.Txn)
		f.send(reply)
		expectFromGhostDevice(t, s, nio, ghost, "> shall we meet at noon?\n\nsee you then")
	})
}

// TestUpgradedEncryptedDMEncryptionReadFails: the ghost's read of the new
// room's m.room.encryption as it joins fails once. The bridge learns of
// the room's encryption no other way (the homeserver pushes it no state
// from before the ghost's invite), so the portal must not move there
// taking the room for a plain one: the contact's next message still
// arrives encrypted.
func TestUpgradedEncryptedDMEncryptionReadFails(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{encryption: true, hsProxy: true})
		f, ghost, nio, _ := encryptedDMWithBob(t, s, "hello bob", "hello alice")
		var reads atomic.Int32
		s.proxy.setRefuse(func(r *http.Request, _ []byte) (int, string) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/state/m.room.encryption") && reads.Add(1) == 1 {
				return http.StatusInternalServerError, "M_UNKNOWN"
			}
			return 0, ""
		})
		room := s.upgradeDM(s.roomOf("bob@network"), ghost)
		nioFollows(t, nio, room, ghost)
		if reads.Load() == 0 {
			t.Fatal("the ghost never read the new room's encryption")
		}
		f.send(textFrom("bob@network", "r2", "after the upgrade"))
		expectFromGhostDevice(t, s, nio, ghost, "after the upgrade")
	})
}

// TestUpgradedEncryptedDMPushed: the upgrade of an encrypted DM with
// encryption.appservice, where the ghost's device has no /sync loop and
// gets the user's room keys for the new room pushed: both directions stay
// encrypted in the new room.
func TestUpgradedEncryptedDMPushed(t *testing.T) {
	s := newStack(t, testdb.Targets(t)[0], stackOptions{encryption: true,
		configure: func(c *config.Config) { c.Encryption.Appservice = true }})
	startPushRelay(t, s)
	f, ghost, nio, _ := encryptedDMWithBob(t, s, "hello bob", "hello alice")
	room := s.upgradeDM(s.roomOf("bob@network"), ghost)
	nioFollows(t, nio, room, ghost)
	f.send(textFrom("bob@network", "r2", "after the upgrade"))
	expectFromGhostDevice(t, s, nio, ghost, "after the upgrade")
	nio.sendText(f, 2, "sent in the new room")
	if loops := s.br.E2EE.SyncLoops(); loops != 0 {
		t.Errorf("%d ghost /sync loops with encryption.appservice, want none", loops)
	}
}

package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// newProxiedStack is newStack with the fault proxy in front of Dendrite and
// the config adjusted before the bridge starts.
func newProxiedStack(t *testing.T, target testdb.Target, adjust func(*config.Config)) *stack {
	t.Helper()
	return newStack(t, target, stackOptions{hsProxy: true, configure: adjust})
}

// isSendTo matches a bridge's message send into a room.
func isSendTo(r *http.Request, roomID id.RoomID) bool {
	return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/send/m.room.message/") &&
		(roomID == "" || strings.Contains(r.URL.Path, "/rooms/"+string(roomID)+"/") ||
			strings.Contains(r.URL.EscapedPath(), "/rooms/"+id.RoomID(roomID).URI().PrimaryIdentifier()+"/"))
}

// TestLongRemoteTextArrives: a text above the homeserver's event size limit
// is not refused and dropped. 100 kB arrive as parts that join back to the
// text; 1 MB arrives as a file with its beginning as a text before it. The
// chat's next message arrives after them.
func TestLongRemoteTextArrives(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f := s.connectFake(nil)
		roomID := s.bobPortal(f, "m0", "hello")

		mid := strings.Repeat("A hundred kilobytes of <words> & more. ", 2600)
		big := strings.Repeat("x", 1_000_000-20) + " end of the big one"
		f.send(textFrom("bob@network", "m1", mid))
		f.send(textFrom("bob@network", "m2", big))
		f.send(textFrom("bob@network", "m3", "after"))
		s.waitMessage(roomID, "after")

		msgs := s.messagesIn(roomID)
		var joined strings.Builder
		i := 1
		for ; i < len(msgs) && joined.Len() < len(mid); i++ {
			joined.WriteString(msgs[i].Content.AsMessage().Body)
		}
		if joined.String() != mid {
			t.Fatalf("the 100 kB text arrived as %d parts that do not join back to it", i-1)
		}
		if i-1 < 2 {
			t.Fatalf("the 100 kB text arrived in %d part(s)", i-1)
		}
		rest := msgs[i:]
		if len(rest) != 3 {
			t.Fatalf("after the parts: %d messages, want preview, file and 'after'", len(rest))
		}
		preview, file := rest[0].Content.AsMessage(), rest[1].Content.AsMessage()
		if !strings.HasPrefix(preview.Body, "xxxx") || !strings.Contains(preview.Body, "attached file") {
			t.Errorf("preview of the 1 MB text: %.80q", preview.Body)
		}
		if file.MsgType != event.MsgFile || file.URL == "" {
			t.Fatalf("second event of the 1 MB text is %s, want a file", file.MsgType)
		}
		if got := s.download(file.URL); string(got) != big {
			t.Fatalf("the file holds %d bytes, not the 1 MB text", len(got))
		}
		if rest[2].Content.AsMessage().Body != "after" {
			t.Fatalf("last message %q, want after", rest[2].Content.AsMessage().Body)
		}
	})
}

// TestRefusedSendEndsOnlyThatEvent: the homeserver refuses one message for
// good (413 M_TOO_LARGE). The bridge must not try it again, must tell the
// user in the room, and the chat's next message must arrive.
func TestRefusedSendEndsOnlyThatEvent(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newProxiedStack(t, target, nil)
		f := s.connectFake(nil)
		roomID := s.bobPortal(f, "m0", "hello")
		s.proxy.setRefuse(func(r *http.Request, body []byte) (int, string) {
			if isSendTo(r, "") && strings.Contains(string(body), "poison") {
				return http.StatusRequestEntityTooLarge, "M_TOO_LARGE"
			}
			return 0, ""
		})
		f.send(textFrom("bob@network", "m1", "poison pill"))
		f.send(textFrom("bob@network", "m2", "after"))
		s.waitNotice(s.sync, roomID, s.ghost("bob@network"), "could not be bridged")
		s.waitMessage(roomID, "after")
		if n := s.proxy.refusals("M_TOO_LARGE"); n != 1 {
			t.Fatalf("the refused send was tried %d times, want once", n)
		}
	})
}

// TestRefusedPortalCreationTellsUser: a new contact's first message fails
// for good before its room exists (the homeserver refuses createRoom once).
// The user still learns of it: the portal is made for the notice.
func TestRefusedPortalCreationTellsUser(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newProxiedStack(t, target, nil)
		f := s.connectFake(nil)
		refusedOnce := false
		s.proxy.setRefuse(func(r *http.Request, body []byte) (int, string) {
			if strings.HasSuffix(r.URL.Path, "/createRoom") && !refusedOnce {
				refusedOnce = true
				return http.StatusForbidden, "M_FORBIDDEN"
			}
			return 0, ""
		})
		f.send(textFrom("carol@network", "c1", "first words"))
		roomID := s.roomOf("carol@network")
		s.waitNotice(s.sync, roomID, s.ghost("carol@network"), "could not be bridged")
		f.send(textFrom("carol@network", "c2", "second words"))
		s.waitMessage(roomID, "second words")
	})
}

// TestTransientFailureHoldsNoSlot: with one concurrency slot, a chat whose
// sends fail for a passing reason (502) must not hold up another chat while
// it waits to retry, and it must not give up after a few tries either: once
// the homeserver takes it, the message arrives, once, with no notice.
func TestTransientFailureHoldsNoSlot(t *testing.T) {
	s := newProxiedStack(t, testdb.SQLite(t), func(cfg *config.Config) {
		cfg.Bridge.HomeserverConcurrency = 1
		cfg.Bridge.RetryMaxDelay = config.Duration(time.Second)
		// A 502 leaves each send in doubt; keep the wait before looking
		// for it in the room short, so that eight tries fit the test.
		cfg.Bridge.InDoubtGrace = config.Duration(200 * time.Millisecond)
	})
	f := s.connectFake(nil)
	f.send(textFrom("bob@network", "b0", "bob 0"))
	f.send(textFrom("carol@network", "c0", "carol 0"))
	bobRoom, carolRoom := s.roomOf("bob@network"), s.roomOf("carol@network")
	s.waitMessage(bobRoom, "bob 0")
	s.waitMessage(carolRoom, "carol 0")

	s.proxy.setRefuse(func(r *http.Request, body []byte) (int, string) {
		if isSendTo(r, bobRoom) {
			return http.StatusBadGateway, "M_UNKNOWN"
		}
		return 0, ""
	})
	f.send(textFrom("bob@network", "b1", "bob 1"))
	tesths.WaitFor(t, 30*time.Second, "bob's send failing", func() (bool, error) {
		return s.proxy.refusals("M_UNKNOWN") >= 1, nil
	})
	f.send(textFrom("carol@network", "c1", "carol 1"))
	s.waitMessage(carolRoom, "carol 1")
	if s.proxy.refusals("M_UNKNOWN") == 0 {
		t.Fatal("bob's send stopped failing too early for the test")
	}
	// Well past the five tries after which the bridge used to give up.
	tesths.WaitFor(t, 60*time.Second, "eight failed tries of bob's send", func() (bool, error) {
		return s.proxy.refusals("M_UNKNOWN") >= 8, nil
	})
	s.proxy.setRefuse(nil)
	s.waitBodies(bobRoom, []string{"bob 0", "bob 1"})
}

// TestEncryptedEventGetsNotice: the user turns on encryption in a portal and
// sends an encrypted message. The bridge cannot read it; the user must be
// told in the room, and nothing may reach the network.
func TestEncryptedEventGetsNotice(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f := s.connectFake(nil)
		roomID := s.bobPortal(f, "m0", "hello")
		ctx := context.Background()
		if _, err := s.alice.SendStateEvent(ctx, roomID, event.StateEncryption, "",
			map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.alice.SendMessageEvent(ctx, roomID, event.EventEncrypted, map[string]any{
			"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg",
			"device_id": "DEVICE", "sender_key": "c2VuZGVyIGtleQ", "session_id": "c2Vzc2lvbg",
		}); err != nil {
			t.Fatal(err)
		}
		s.waitNotice(s.sync, roomID, s.ghost("bob@network"), "encrypt")
		// A plain message after it does reach the network, so the
		// encrypted one had its chance to arrive before.
		if _, err := s.alice.SendText(ctx, roomID, "plain after"); err != nil {
			t.Fatal(err)
		}
		var cmds []connector.Command
		tesths.WaitFor(t, 30*time.Second, "plain message at the connector", func() (bool, error) {
			cmds = f.commandsOf(connector.OpSendMessage)
			return len(cmds) > 0 && cmds[len(cmds)-1].Text == "plain after", nil
		})
		if len(cmds) != 1 {
			t.Fatalf("connector got %d send_message commands, want only the plain one", len(cmds))
		}
	})
}

// TestParkedMatrixEventTellsUser: the user starts a chat by inviting a
// ghost, and the homeserver refuses the ghost's join for good (400). The
// invite is tried once, and the user, whose room the bot is not in, is told
// in the management room.
func TestParkedMatrixEventTellsUser(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newProxiedStack(t, target, nil)
		s.connectFake(nil)
		mgmt, bot := s.managementRoom()
		ghost := s.ghost("dave@network")
		s.proxy.setRefuse(func(r *http.Request, body []byte) (int, string) {
			if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/join") &&
				r.URL.Query().Get("user_id") == string(ghost) {
				return http.StatusBadRequest, "M_UNKNOWN"
			}
			return 0, ""
		})
		s.createDM(s.alice, ghost)
		s.waitNotice(s.sync, mgmt, bot, "was not delivered")
		if n := s.proxy.refusals("M_UNKNOWN"); n != 1 {
			t.Fatalf("the refused join was tried %d times, want once", n)
		}
	})
}

// TestUnreachableAttachmentDoesNotBlockChat: a failure that is neither a
// refusal nor a homeserver or database outage (here the network's file
// server does not answer) is tried a few times, then the message is set
// aside with a notice and the chat goes on.
func TestUnreachableAttachmentDoesNotBlockChat(t *testing.T) {
	testdb.EachParallel(t, func(t *testing.T, target testdb.Target) {
		// The file server is on loopback: open it, so that this is a
		// server that does not answer, not a refused address.
		s := newStack(t, target, stackOptions{mediaFetchAllow: loopbackMedia})
		f := s.connectFake(nil)
		roomID := s.bobPortal(f, "m0", "hello")
		ev := textFrom("bob@network", "m1", "")
		ev.Attachments = []connector.Attachment{{
			Name: "pic.png", MimeType: "image/png",
			URL: fmt.Sprintf("http://127.0.0.1:%d/pic.png", tesths.FreePort(t)),
		}}
		f.send(ev)
		f.send(textFrom("bob@network", "m2", "after"))
		s.waitNotice(s.sync, roomID, s.ghost("bob@network"), "could not be bridged")
		s.waitMessage(roomID, "after")
	})
}

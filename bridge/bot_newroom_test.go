package bridge_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestBotAnswersFirstMessage: Element creates a DM with its first message,
// so a command written as that message comes before the bot's join, and
// the homeserver does not push it to the bridge. After its welcome the bot
// reads what followed its invite and answers it. The bot's join is held
// back here until the command is in the room.
func TestBotAnswersFirstMessage(t *testing.T) {
	s := newStack(t, testdb.Targets(t)[0], stackOptions{hsProxy: true})
	ctx := context.Background()
	bot := s.br.Link.BotMXID()
	release := make(chan struct{})
	s.proxy.setRefuse(func(r *http.Request, _ []byte) (int, string) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/join") {
			if u := r.URL.Query().Get("user_id"); u == "" || u == string(bot) {
				<-release
			}
		}
		return 0, ""
	})
	resp, err := s.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{bot}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = s.alice.SendText(ctx, resp.RoomID, "list"); err != nil {
		t.Fatal(err)
	}
	close(release)
	fromBot := func(prefix string) {
		t.Helper()
		s.sync.WaitEvent(t, 30*time.Second, func(evt *event.Event) bool {
			if evt.RoomID != resp.RoomID || evt.Sender != bot || evt.Type != event.EventMessage {
				return false
			}
			_ = evt.Content.ParseRaw(evt.Type)
			msg := evt.Content.AsMessage()
			return msg != nil && strings.HasPrefix(msg.Body, prefix)
		})
	}
	fromBot("Hello! I am the bridge bot.")
	fromBot("You have no bridged chats yet")
}

// TestEncryptedManagementRoomIsAnswered: many clients encrypt a new DM by
// default, and the bot has no device to read it. A command sent encrypted
// in the management room is answered, as a plain notice, with why it
// cannot be read and what to do, instead of going unanswered.
func TestEncryptedManagementRoomIsAnswered(t *testing.T) {
	s := newStack(t, testdb.Targets(t)[0])
	bot := s.br.Link.BotMXID()
	nio := startNio(t, s, "alice")
	nio.do(map[string]any{"cmd": "create_dm", "ghost": string(bot), "text": "hello bot"})
	if hello := nio.do(map[string]any{"cmd": "expect", "body": "Hello! I am the bridge bot.", "timeout": 60}); hello["sender"] != string(bot) {
		t.Fatalf("welcome = %v, want one from %s", hello, bot)
	}
	nio.do(map[string]any{"cmd": "send", "text": "help"})
	got := nio.do(map[string]any{"cmd": "expect", "body": "I cannot read encrypted messages", "timeout": 60})
	if got["sender"] != string(bot) || got["encrypted"] != false {
		t.Fatalf("answer to an encrypted command = %v, want a plain notice from %s", got, bot)
	}
}

package bridge_test

import (
	"testing"

	"github.com/dmbridge/dmbridge/internal/testdb"
)

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

package bridge_test

import (
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestEncryptedDMSurvivesKill: the bridge binary killed with SIGKILL between
// messages of an encrypted DM keeps every Olm and Megolm session it had
// stored. After the restart the user's next encrypted message reaches the
// network once, in plaintext, and the contact's answer arrives encrypted by
// the same ghost device, which the user's client decrypts.
func TestEncryptedDMSurvivesKill(t *testing.T) {
	target := testdb.Targets(t)[0]
	s := newProcessStack(t, target)
	s.cfg.Encryption.PickleKey = "pickle-key-for-tests-0123456789abcdef"
	proc := newBridgeProcess(t, s)
	proc.start(s.cfg.Connector.Listen)
	t.Cleanup(proc.kill)
	f, ghost, nio, before := encryptedDMWithBob(t, s, "before the kill", "answer before the kill")
	if before["sender"] != string(ghost) || before["encrypted"] != true {
		t.Fatalf("contact's message before the kill as the client saw it = %v, want encrypted by %s", before, ghost)
	}

	proc.kill()
	proc.start(s.cfg.Connector.Listen)

	nio.do(map[string]any{"cmd": "send", "text": "after the kill"})
	waitSent(t, f, 2)
	f.send(textFrom("bob@network", "r2", "answer after the kill"))
	after := nio.do(map[string]any{"cmd": "expect", "body": "answer after the kill", "timeout": 60})
	if after["sender"] != string(ghost) || after["encrypted"] != true || after["device_id"] != before["device_id"] {
		t.Fatalf("contact's message after the kill as the client saw it = %v; want encrypted by %s's device %v as before",
			after, ghost, before["device_id"])
	}
	time.Sleep(2 * time.Second) // a second delivery would show by now
	cmds := f.commandsOf(connector.OpSendMessage)
	if len(cmds) != 2 || cmds[0].Text != "before the kill" || cmds[1].Text != "after the kill" {
		t.Fatalf("send_message commands = %+v, want each message once, in plaintext, in order", cmds)
	}
}

// waitSent waits until the fake connector has executed n send_message
// commands.
func waitSent(t *testing.T, f *fakeConnector, n int) {
	t.Helper()
	tesths.WaitFor(t, 60*time.Second, "the user's message at the connector", func() (bool, error) {
		return len(f.commandsOf(connector.OpSendMessage)) >= n, nil
	})
}

package bridge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
	"github.com/dmbridge/dmbridge/internal/testlog"
)

// TestMessageLogging: each bridged message has one debug line, an info
// summary counts them per direction, and a refused event is logged at warn
// with its reason.
func TestMessageLogging(t *testing.T) {
	s := newStack(t, testdb.SQLite(t), stackOptions{noBridge: true})
	s.cfg.Logging.SummaryInterval = config.Duration(time.Second)
	logs := &testlog.Lines{}
	s.logTo = logs
	s.startBridge()
	t.Cleanup(s.stopBridge)
	f := s.connectFake(nil)
	room := s.bobPortal(f, "m1", "hello")
	s.command(room, "hi bob")
	tesths.WaitFor(t, 20*time.Second, "send_message at the connector", func() (bool, error) {
		return len(f.commandsOf(connector.OpSendMessage)) == 1, nil
	})
	group := textFrom("carol@network", "g1", "to the group")
	group.Chat.Type = "group"
	f.send(group)

	var toMatrix, toNetwork float64
	tesths.WaitFor(t, 20*time.Second, "summary lines counting both messages", func() (bool, error) {
		toMatrix, toNetwork = 0, 0
		for _, line := range logs.Find("Bridged messages") {
			if line["level"] != "info" {
				t.Errorf("summary at level %v", line["level"])
			}
			toMatrix += line["to_matrix"].(float64)
			toNetwork += line["to_network"].(float64)
		}
		return toMatrix >= 1 && toNetwork >= 1, nil
	})
	if toMatrix != 1 || toNetwork != 1 {
		t.Errorf("summaries count %v messages to Matrix and %v to the network, want 1 and 1", toMatrix, toNetwork)
	}
	for msg, want := range map[string]string{"Bridged message to Matrix": "debug", "Bridged message to the network": "debug"} {
		lines := logs.Find(msg)
		if len(lines) != 1 || lines[0]["level"] != want {
			t.Errorf("%q logged %d times (%v), want once at %s", msg, len(lines), lines, want)
		}
	}
	refused := logs.Find("Refused a frame from the connector")
	if len(refused) != 1 || refused[0]["level"] != "warn" || !strings.Contains(refused[0]["reason"].(string), "group") {
		t.Errorf("refused group event logged as %v, want one warn line with the reason", refused)
	}
}

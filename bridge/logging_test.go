package bridge_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// logLines collects the bridge's JSON log lines.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// find returns the lines with the message.
func (l *logLines) find(msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, raw := range strings.Split(l.buf.String(), "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(raw), &line) == nil && line["message"] == msg {
			out = append(out, line)
		}
	}
	return out
}

// TestMessageLogging: each bridged message has one debug line, an info
// summary counts them per direction, and a refused event is logged at warn
// with its reason.
func TestMessageLogging(t *testing.T) {
	s := newStack(t, testdb.SQLite(t), stackOptions{noBridge: true})
	s.cfg.Logging.SummaryInterval = config.Duration(time.Second)
	logs := &logLines{}
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
		for _, line := range logs.find("Bridged messages") {
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
		lines := logs.find(msg)
		if len(lines) != 1 || lines[0]["level"] != want {
			t.Errorf("%q logged %d times (%v), want once at %s", msg, len(lines), lines, want)
		}
	}
	refused := logs.find("Refused a frame from the connector")
	if len(refused) != 1 || refused[0]["level"] != "warn" || !strings.Contains(refused[0]["reason"].(string), "group") {
		t.Errorf("refused group event logged as %v, want one warn line with the reason", refused)
	}
}

package xmppconnector

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// logLines keeps a connector's log lines, for tests of what it logs.
type logLines struct {
	mu      sync.Mutex
	lines   []map[string]any
	changed chan struct{}
}

func newLogLines() *logLines { return &logLines{changed: make(chan struct{})} }

func (l *logLines) Write(p []byte) (int, error) {
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(p), &line); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// count returns how many lines of level have a message containing msg.
func (l *logLines) count(level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if line["level"] == level && strings.Contains(line["message"].(string), msg) {
			n++
		}
	}
	return n
}

// waitCount waits until count(level, msg) reaches n.
func (l *logLines) waitCount(t *testing.T, level, msg string, n int) {
	t.Helper()
	deadline := time.After(waitLong)
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		if l.count(level, msg) >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %d %s lines %q; got %d", n, level, msg, l.count(level, msg))
		}
	}
}

// On real Prosody without a message archive (XEP-0313), every catch-up
// fails. It was logged as an error every 30 s (here every sweep) and said
// nothing of what it meant; now the connection says once that the server
// has no archive and what the user loses with it, and its later sweeps do
// not ask again. Live messages are bridged all the same.
func TestMissingArchiveIsLoggedOncePerConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testxmpp.WithoutArchive())
	e.cfg.XMPP.ArchiveSweep = 50 * time.Millisecond
	logs := newLogLines()
	c, err := New(t.Context(), e.cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = c.Close()
	})
	e.bridge.waitEvent(t, "login connected", isLogin(connector.LoginConnected))
	bob := e.xmpp.Dial(t, "bob", bobPW)
	bob.SendChat(t, e.alice, "hello without an archive", "")
	e.bridge.waitEvent(t, "the live message", isMessage("hello without an archive"))

	logs.waitCount(t, zerolog.DebugLevel.String(), "not sweeping it", 5)
	if n := logs.count(zerolog.WarnLevel.String(), "no message archive"); n != 1 {
		t.Errorf("the missing archive was explained %d times on one connection, want once", n)
	}
	if n := logs.count(zerolog.ErrorLevel.String(), ""); n != 0 {
		t.Errorf("%d errors logged for a server without an archive", n)
	}
}

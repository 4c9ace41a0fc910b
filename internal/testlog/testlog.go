// Package testlog collects a component's JSON log lines (zerolog) in a
// test, for asserting on what it logged.
package testlog

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
)

// Lines is an io.Writer for a zerolog logger that keeps what is written;
// goroutines may log to it while the test reads it.
type Lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Find returns the lines with the message, each decoded.
func (l *Lines) Find(msg string) []map[string]any {
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

// FindPrefix returns the lines whose message starts with prefix, each
// decoded: for a wait that must not depend on the rest of the wording.
func (l *Lines) FindPrefix(prefix string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, raw := range strings.Split(l.buf.String(), "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(raw), &line) != nil {
			continue
		}
		if msg, _ := line["message"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, line)
		}
	}
	return out
}

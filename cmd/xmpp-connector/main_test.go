package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunFlagsAndConfigErrors(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"-version"}, &out); code != 0 || !strings.Contains(out.String(), "xmpp-connector") {
		t.Errorf("-version: exit %d, output %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"-c", filepath.Join(t.TempDir(), "missing.yaml")}, &out); code != 1 || !strings.Contains(out.String(), "reading config") {
		t.Errorf("missing config: exit %d, output %q", code, out.String())
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("bridge: {url: ws://127.0.0.1:1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"-c", path}, &out); code != 1 || !strings.Contains(out.String(), "token") {
		t.Errorf("config without token: exit %d, output %q", code, out.String())
	}
	if code := run([]string{"-nonsense"}, &out); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
}

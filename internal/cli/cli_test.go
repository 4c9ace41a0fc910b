package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFlagStatus(t *testing.T) {
	if got := FlagStatus(fmt.Errorf("parsing: %w", flag.ErrHelp)); got != 0 {
		t.Errorf("help: status %d, want 0", got)
	}
	if got := FlagStatus(errors.New("flag provided but not defined: -x")); got != 2 {
		t.Errorf("bad flag: status %d, want 2", got)
	}
}

func TestConsoleWriterColoursOnlyATerminal(t *testing.T) {
	var buf bytes.Buffer
	if w := ConsoleWriter(&buf, time.DateTime); !w.NoColor || w.TimeFormat != time.DateTime {
		t.Errorf("buffer: %+v, want no colour", w)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a regular file counts as a terminal")
	}
}

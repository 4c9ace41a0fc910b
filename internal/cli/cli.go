// Package cli holds what dmbridge's commands do alike as processes: the
// signals that stop them, the exit status of a command line that does not
// parse, and the console log output. Each command keeps its own flags and
// work; these conventions live in one place so that an operator (or a
// service manager) finds every command behaving the same way.
package cli

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
)

// StopContext returns a context that ends when the process gets SIGINT
// (Ctrl-C) or SIGTERM (what service managers and container runtimes send),
// so that a command stops in order instead of dying mid-write. Calling the
// returned function restores the default handling: a second signal during
// a slow shutdown then kills the process instead of being swallowed.
func StopContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// FlagStatus is the exit status for a non-nil error from parsing the
// command line: 0 when the user asked for the usage (-h, -help), which the
// flag package has already printed, and 2, the customary status of a usage
// error, for anything else.
func FlagStatus(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// ConsoleWriter formats log lines for people, with times in timeFormat.
// Colours only for a terminal: in a journal or a redirected file the
// escape codes are noise.
func ConsoleWriter(w io.Writer, timeFormat string) zerolog.ConsoleWriter {
	return zerolog.ConsoleWriter{Out: w, NoColor: !IsTerminal(w), TimeFormat: timeFormat}
}

// IsTerminal reports whether w is a terminal (a character device).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/cli"
)

// newLogger builds the logger the logging section asks for. The returned
// closer closes the log file, if any. It sets no zerolog globals, so tests
// and embedders are unaffected.
func newLogger(cfg config.LoggingConfig, stderr io.Writer) (zerolog.Logger, io.Closer, error) {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		// Validate already rejected unknown levels; this is only a guard.
		return zerolog.Nop(), nil, fmt.Errorf("logging.level: %w", err)
	}
	writers := []io.Writer{formatWriter(cfg.Format, stderr, true)}
	var closer io.Closer = nopCloser{}
	if cfg.File != "" {
		// Mode 0600 because log lines can contain user ids and message
		// metadata.
		f, err := os.OpenFile(cfg.File, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return zerolog.Nop(), nil, fmt.Errorf("logging.file: %w", err)
		}
		writers = append(writers, formatWriter(cfg.Format, f, false))
		closer = f
	}
	out := io.Writer(writers[0])
	if len(writers) > 1 {
		out = zerolog.MultiLevelWriter(writers...)
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger(), closer, nil
}

func formatWriter(format string, w io.Writer, color bool) io.Writer {
	if format == "json" {
		return w
	}
	out := cli.ConsoleWriter(w, time.DateTime)
	// The log file stays plain even when it is a terminal device.
	out.NoColor = out.NoColor || !color
	return out
}

// consoleLogger is for the short-lived modes (-g) that run before or
// without the configured logging.
func consoleLogger(stderr io.Writer) zerolog.Logger {
	return zerolog.New(formatWriter("pretty", stderr, true)).With().Timestamp().Logger()
}

func logWarnings(log zerolog.Logger, warnings []config.Warning) {
	for _, w := range warnings {
		ev := log.Warn().Str("file", w.File).Str("key", w.Key)
		if w.Line > 0 {
			ev = ev.Int("line", w.Line)
		}
		ev.Msg(w.Message)
	}
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/bridge"
	"github.com/dmbridge/dmbridge/config"
)

// stopTimeout bounds how long in-flight work may delay shutdown.
const stopTimeout = 30 * time.Second

// serve runs the bridge until SIGINT or SIGTERM.
func serve(opts *options, stderr io.Writer) int {
	cfg, warnings, err := config.Load(opts.configPath)
	if err != nil {
		// The only output: one line naming file, key and problem.
		fmt.Fprintln(stderr, err)
		return 1
	}
	log, logFile, err := newLogger(cfg.Logging, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", opts.configPath, err)
		return 1
	}
	defer logFile.Close()
	logWarnings(log, warnings)
	log.Info().Str("version", version).Str("config", opts.configPath).Msg("Starting dmbridge")

	// One -X main.version flag should label both the CLI and what the
	// bridge reports to connectors.
	bridge.Version = version

	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	// The signal context also aborts a slow startup (e.g. waiting for the
	// homeserver); Start only uses it while starting.
	b, err := bridge.New(ctx, cfg, log)
	if err != nil {
		log.Error().Err(err).Msg("Failed to initialize the bridge")
		return 1
	}
	if err := b.Start(ctx); err != nil {
		log.Error().Err(err).Msg("Failed to start the bridge")
		stopBridge(b, log)
		return 1
	}
	<-ctx.Done()
	// Restore default signal handling so a second Ctrl-C during a slow
	// shutdown kills the process instead of being swallowed.
	stopSignals()
	log.Info().Msg("Shutting down")
	if !stopBridge(b, log) {
		return 1
	}
	log.Info().Msg("Stopped")
	return 0
}

func stopBridge(b *bridge.Bridge, log zerolog.Logger) bool {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		log.Error().Err(err).Msg("Unclean shutdown")
		return false
	}
	return true
}

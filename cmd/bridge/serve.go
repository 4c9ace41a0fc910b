package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/bridge"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/ha"
	"github.com/dmbridge/dmbridge/internal/cli"
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
	ensurePickleKey(cfg, log)
	log.Info().Str("version", version).Str("config", opts.configPath).Msg("Starting dmbridge")

	// One -X main.version flag should label both the CLI and what the
	// bridge reports to connectors.
	bridge.Version = version

	ctx, stopSignals := cli.StopContext(context.Background())
	defer stopSignals()

	// With high availability, this instance stands by until it is elected;
	// lost stays nil (never ready) without it.
	var lost <-chan struct{}
	var lease *ha.Elector
	if cfg.HA.Enabled {
		if lease, err = bridge.WaitActive(ctx, cfg, log); err != nil {
			if ctx.Err() != nil {
				log.Info().Msg("Stopped while standing by")
				return 0
			}
			log.Error().Err(err).Msg("Failed to take part in the election")
			return 1
		}
		lost = lease.Lost()
	}

	// The signal context also aborts a slow startup (e.g. waiting for the
	// homeserver); Start only uses it while starting. So does losing the
	// lease meanwhile: an active that lost it while it waited for the
	// homeserver would otherwise wait for ever (every request refused by
	// the fence), never to come back as a standby.
	startCtx, stopStarting := context.WithCancel(ctx)
	defer stopStarting()
	if lost != nil {
		go func() {
			select {
			case <-lost:
				stopStarting()
			case <-startCtx.Done():
			}
		}()
	}
	b, err := newBridge(startCtx, cfg, log, lease)
	if err != nil {
		if isClosed(lost) {
			log.Error().Err(err).Msg("Lost the active lease while starting; exiting at once")
			return exitLostLease
		}
		log.Error().Err(err).Msg("Failed to initialize the bridge")
		return 1
	}
	if err := b.Start(startCtx); err != nil {
		if isClosed(lost) {
			// As below: no orderly shutdown, which would still write.
			log.Error().Err(err).Msg("Lost the active lease while starting; exiting at once")
			return exitLostLease
		}
		log.Error().Err(err).Msg("Failed to start the bridge")
		stopBridge(b, log)
		return 1
	}
	stopStarting()
	select {
	case <-ctx.Done():
	case <-lost:
		// Another instance may be elected any moment now: stop at once,
		// without the orderly shutdown (which would still write and send).
		// The supervisor restarts this process as a standby.
		log.Error().Msg("Lost the active lease; exiting at once")
		return exitLostLease
	}
	// Restore default signal handling so a second Ctrl-C during a slow
	// shutdown kills the process instead of being swallowed.
	stopSignals()
	log.Info().Msg("Shutting down")
	stopped := stopBridge(b, log)
	if lease != nil {
		// Only now may a standby take over: all work here has stopped.
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lease.Release(rctx)
		cancel()
	}
	if !stopped {
		return 1
	}
	log.Info().Msg("Stopped")
	return 0
}

// exitLostLease is the exit status of an instance that lost the lease.
const exitLostLease = 3

// isClosed reports whether ch is closed; a nil channel (no HA) never is.
func isClosed(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func newBridge(ctx context.Context, cfg *config.Config, log zerolog.Logger, lease *ha.Elector) (*bridge.Bridge, error) {
	if lease != nil {
		return bridge.NewActive(ctx, cfg, log, lease)
	}
	return bridge.New(ctx, cfg, log)
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

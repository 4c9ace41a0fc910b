// Command xmpp-connector bridges one-to-one XMPP chats to dmbridge: it
// logs in to the configured XMPP accounts and speaks the connector
// protocol (docs/connector-protocol.md) to the bridge.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/internal/cli"
	"github.com/dmbridge/dmbridge/xmppconnector"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is main without the process exit, returning the exit code.
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("xmpp-connector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfgPath string
	var version bool
	fs.StringVar(&cfgPath, "c", "xmpp-connector.yaml", "path to the config file")
	fs.StringVar(&cfgPath, "config", "xmpp-connector.yaml", "path to the config file")
	fs.BoolVar(&version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return cli.FlagStatus(err)
	}
	if version {
		fmt.Fprintf(stderr, "xmpp-connector %s\n", xmppconnector.Version)
		return 0
	}
	cfg, err := xmppconnector.LoadConfig(cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := newLogger(stderr, cfg.LogLevel)

	ctx, stop := cli.StopContext(context.Background())
	defer stop()
	c, err := xmppconnector.New(ctx, cfg, log)
	if err != nil {
		log.Error().Err(err).Msg("Could not start")
		return 1
	}
	defer c.Close()
	log.Info().Int("accounts", len(cfg.Accounts)).Str("bridge", cfg.Bridge.URL).Msg("XMPP connector starting")
	if err := c.Run(ctx); err != nil {
		log.Error().Err(err).Msg("XMPP connector stopped")
		return 1
	}
	log.Info().Msg("XMPP connector stopped")
	return 0
}

func newLogger(w io.Writer, level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(cli.ConsoleWriter(w, time.RFC3339)).Level(lvl).With().Timestamp().Logger()
}

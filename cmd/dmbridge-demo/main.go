// Command dmbridge-demo brings up a whole local dmbridge stack on
// loopback, with SQLite and nothing to configure: Dendrite, Prosody, the
// bridge and the XMPP connector. It then has bob send alice a message over
// XMPP, shows and checks that it arrived as a Matrix DM, and says how to
// go on chatting with ordinary clients. Ctrl-C stops everything.
//
// `make demo` runs it (through scripts/demo.sh, which installs Prosody
// first). Its state is under .demo/ and starts afresh on every run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/internal/cli"
	"github.com/dmbridge/dmbridge/internal/devstack"
)

// options are the command-line flags.
type options struct {
	stateDir       string
	binDir         string
	freePorts      bool
	exitAfterProof bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return cli.FlagStatus(err)
	}
	// Our own log is for what goes wrong; the demo's story is on stdout.
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
	ctx, stop := cli.StopContext(context.Background())
	defer stop()

	d := &demo{opts: opts, out: stdout, log: log}
	code := d.run(ctx)
	return code
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	opts := &options{}
	fs := flag.NewFlagSet("dmbridge-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opts.stateDir, "state", "", "state directory, emptied at start (default: .demo in the checkout)")
	fs.StringVar(&opts.binDir, "bin", "", "directory with the bridge and xmpp-connector binaries (default: this program's directory)")
	fs.BoolVar(&opts.freePorts, "free-ports", os.Getenv("DEMO_FREE_PORTS") == "1",
		"use free ports instead of the well-known ones (also DEMO_FREE_PORTS=1)")
	fs.BoolVar(&opts.exitAfterProof, "exit-after-proof", os.Getenv("DEMO_EXIT_AFTER_PROOF") == "1",
		"stop everything once the proof is shown, exiting 0 if it held (also DEMO_EXIT_AFTER_PROOF=1)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		return nil, errors.New("unexpected arguments")
	}
	if opts.stateDir == "" {
		root, err := devstack.RepoRoot()
		if err != nil {
			fmt.Fprintf(stderr, "run the demo inside the dmbridge checkout, or pass -state: %v\n", err)
			return nil, err
		}
		opts.stateDir = filepath.Join(root, ".demo")
	}
	if opts.binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "cannot find this program's directory, pass -bin: %v\n", err)
			return nil, err
		}
		opts.binDir = filepath.Dir(exe)
	}
	abs, err := filepath.Abs(opts.stateDir)
	if err != nil {
		return nil, err
	}
	opts.stateDir = abs
	return opts, nil
}

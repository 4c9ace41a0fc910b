// Command connector-conformance checks a dmbridge connector, written in any
// language, against the connector protocol (docs/connector-protocol.md).
//
// It listens as the bridge would and plays the bridge's side, scripted to
// withhold acks, drop the connection, claim gaps and send malformed
// commands. Point the connector at the printed URL and token and start it;
// where the suite needs new events or a restart it asks on stdout, or runs
// -produce-cmd / -restart-cmd / -start-cmd when given. Each check prints
// PASS, FAIL or SKIP with its reason; the exit status is 1 if any failed.
//
//	connector-conformance -listen 127.0.0.1:29334 -token secret \
//	    -chat bob@example.org -produce-cmd 'send-test-messages {n}'
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/conformance"
	"github.com/dmbridge/dmbridge/internal/cli"
)

func main() {
	ctx, stop := cli.StopContext(context.Background())
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process exit, returning the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("connector-conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts     conformance.Options
		op       operatorConfig
		skip     string
		chatWith string
		selfTest bool
	)
	fs.StringVar(&opts.Listen, "listen", "127.0.0.1:29334", "address to listen on, as the bridge's connector.listen")
	fs.StringVar(&opts.Token, "token", "", "bearer token the connector must present (default: a random one, printed)")
	fs.Int64Var(&opts.AckedSeq, "acked-seq", 0, "acked_seq of the first welcome: 0 for a connector with an empty store")
	fs.DurationVar(&opts.Timeout, "timeout", time.Minute, "how long to wait for each thing the connector (or you) should do")
	fs.DurationVar(&opts.Quiet, "quiet", 300*time.Millisecond, "silence that shows the connector holds back")
	fs.StringVar(&skip, "skip", "", "comma-separated checks not to run: "+strings.Join(conformance.Checks(), ", "))
	fs.StringVar(&op.login, "login", "", "login id to send commands to (default: the first login of hello)")
	fs.StringVar(&op.chat, "chat", "", "chat id of a DM of that login to send test messages to (without it the txn checks are skipped)")
	fs.StringVar(&chatWith, "chat-with", "", "contact id of that chat (default: the chat id)")
	fs.StringVar(&op.startCmd, "start-cmd", "", "shell command that runs the connector in the foreground; the suite starts and stops it itself")
	fs.StringVar(&op.restartCmd, "restart-cmd", "", "shell command that restarts the connector and returns")
	fs.StringVar(&op.produceCmd, "produce-cmd", "", "shell command that makes the connector emit {n} new events (also in $N)")
	fs.BoolVar(&selfTest, "self-test", false, "check the built-in SDK connector instead of an external one")
	if err := fs.Parse(args); err != nil {
		return cli.FlagStatus(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %q\n", fs.Args())
		return 2
	}
	for _, name := range strings.Split(skip, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !slices.Contains(conformance.Checks(), name) {
			fmt.Fprintf(stderr, "-skip: no check %q; the checks are %s\n", name, strings.Join(conformance.Checks(), ", "))
			return 2
		}
		opts.Skip = append(opts.Skip, name)
	}
	if op.chat != "" {
		op.chatWith = chatWith
		if op.chatWith == "" {
			op.chatWith = op.chat
		}
	}
	// The connector's commands write here too, from exec's copying
	// goroutines; zerolog's SyncWriter is a plain mutex around any writer.
	stdout = zerolog.SyncWriter(stdout)
	opts.Out = stdout

	var target conformance.Target = newOperator(op, stdout)
	if selfTest {
		target = conformance.NewSDKTarget()
	}
	fmt.Fprintf(stdout, "dmbridge connector conformance suite: checks %s\n", strings.Join(conformance.Checks(), ", "))
	results := conformance.Run(ctx, target, opts)
	return summarize(stdout, results)
}

// summarize prints the totals and returns the exit code.
func summarize(w io.Writer, results []conformance.Result) int {
	var pass, fail, skipped int
	for _, r := range results {
		switch {
		case r.Skipped:
			skipped++
		case r.Pass:
			pass++
		default:
			fail++
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed, %d skipped\n", pass, fail, skipped)
	if fail > 0 {
		return 1
	}
	return 0
}

// chat builds the chat the operator named, nil for none.
func (c operatorConfig) chatObject() *connector.Chat {
	if c.chat == "" {
		return nil
	}
	return &connector.Chat{ID: c.chat, Type: connector.ChatTypeDM, With: c.chatWith}
}

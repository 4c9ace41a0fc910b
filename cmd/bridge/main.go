// Command bridge runs dmbridge, the Matrix appservice that bridges private
// conversations of an external chat network into Matrix DMs.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed command-line flags.
type options struct {
	configPath       string
	registrationPath string
	generate         bool
	printExample     bool
	printVersion     bool
}

// run is main without the process exit, returning the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return cli.FlagStatus(err)
	}
	switch {
	case opts.printVersion:
		fmt.Fprintf(stdout, "dmbridge %s\n", version)
		return 0
	case opts.printExample:
		if _, err := stdout.Write(config.ExampleConfig()); err != nil {
			fmt.Fprintln(stderr, "writing example config:", err)
			return 1
		}
		return 0
	case opts.generate:
		return generate(opts, stdout, stderr)
	default:
		return serve(opts, stderr)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	opts := &options{}
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// The standard flag package accepts -name and --name alike, so every
	// option is registered under its short and long name.
	both := func(short, long string, register func(name string)) { register(short); register(long) }
	both("c", "config", func(n string) {
		fs.StringVar(&opts.configPath, n, "config.yaml", "path to the config file")
	})
	both("r", "registration", func(n string) {
		fs.StringVar(&opts.registrationPath, n, "registration.yaml", "path to the appservice registration file")
	})
	both("g", "generate-registration", func(n string) {
		fs.BoolVar(&opts.generate, n, false, "generate the registration and tokens, then exit")
	})
	both("e", "example-config", func(n string) {
		fs.BoolVar(&opts.printExample, n, false, "print the example config and exit")
	})
	fs.BoolVar(&opts.printVersion, "version", false, "print the version and exit")
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n%s", fs.Arg(0), usage)
		return nil, errors.New("unexpected arguments")
	}
	return opts, nil
}

// usage is written by hand because flag.PrintDefaults would list every
// option twice, once per name.
var usage = strings.TrimLeft(`
Usage: bridge [options]

  -c, --config PATH                config file (default "config.yaml")
  -r, --registration PATH          appservice registration file (default "registration.yaml")
  -g, --generate-registration      write the registration with fresh tokens, save the
                                   tokens into the config file, and exit
  -e, --example-config             print the example config and exit
      --version                    print the version and exit
  -h, --help                       show this help

First run: bridge -e > config.yaml, edit it, bridge -g, give registration.yaml
to the homeserver, set connector.token, then run bridge.
`, "\n")

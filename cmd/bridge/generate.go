package main

import (
	"fmt"
	"io"

	"github.com/dmbridge/dmbridge/config"
)

// generate implements -g. The config is saved before the registration is
// written: if saving fails nothing has changed on disk, whereas the opposite
// order could leave a registration whose tokens the bridge never learns.
func generate(opts *options, stdout, stderr io.Writer) int {
	cfg, warnings, err := config.LoadForRegistration(opts.configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := consoleLogger(stderr)
	logWarnings(log, warnings)

	reg := cfg.GenerateRegistration()
	if err := cfg.SaveTokens(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := cfg.SavePickleKey(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := config.WriteRegistration(opts.registrationPath, reg); err != nil {
		fmt.Fprintf(stderr, "%s: %v (the new tokens are already in %s; run -g again)\n",
			opts.registrationPath, err, opts.configPath)
		return 1
	}
	fmt.Fprintf(stdout, "Wrote %s and saved its tokens to %s.\n", opts.registrationPath, opts.configPath)
	fmt.Fprintf(stdout, "Give %s to the homeserver and restart it before starting the bridge.\n", opts.registrationPath)
	if cfg.Connector.Token == "" {
		fmt.Fprintln(stdout, "connector.token is still empty: set it (or DMBRIDGE_CONNECTOR_TOKEN) before starting the bridge.")
	}
	return 0
}

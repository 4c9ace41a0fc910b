// Command build-dendrite builds and caches the test homeserver ahead of the
// test run, so the first end-to-end test does not carry the build time.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/dmbridge/dmbridge/internal/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bins, err := devstack.EnsureDendrite(ctx, func(version string) {
		// Silence for minutes looks like a hang.
		fmt.Printf("build-dendrite: building Dendrite %s (about 3 minutes, once; cached afterwards)\n", version)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "build-dendrite:", err)
		os.Exit(1)
	}
	fmt.Println("dendrite:", bins.Dendrite)
}

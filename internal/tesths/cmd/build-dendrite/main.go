// Command build-dendrite builds and caches the test homeserver ahead of the
// test run, so the first end-to-end test does not carry the build time.
package main

import (
	"fmt"
	"os"

	"github.com/dmbridge/dmbridge/internal/tesths"
)

func main() {
	path, err := tesths.EnsureDendrite()
	if err != nil {
		fmt.Fprintln(os.Stderr, "build-dendrite:", err)
		os.Exit(1)
	}
	fmt.Println("dendrite:", path)
}

package sdk_test

import (
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector/conformance"
)

// TestSDKConformance runs the conformance suite against a minimal connector
// built on this package's Client, so a change to the SDK that breaks the
// protocol contract fails here with the check that names it.
func TestSDKConformance(t *testing.T) {
	t.Parallel()
	began := time.Now()
	// The target runs in this process, so a connector holding back shows
	// within the 60 ms that the suite's own raw target is given too; the
	// default 200 ms (for a connector across a network) made this the
	// slowest test of make unit.
	conformance.RunT(t, conformance.NewSDKTarget(), conformance.Options{Quiet: 60 * time.Millisecond})
	t.Logf("conformance suite took %s", time.Since(began).Round(time.Millisecond))
}

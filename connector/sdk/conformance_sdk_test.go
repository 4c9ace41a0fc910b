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
	conformance.RunT(t, conformance.NewSDKTarget(), conformance.Options{})
	t.Logf("conformance suite took %s", time.Since(began).Round(time.Millisecond))
}

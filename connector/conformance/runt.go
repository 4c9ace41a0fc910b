package conformance

import (
	"strings"
	"testing"
)

// RunT runs the suite inside a Go test: every PASS/FAIL/SKIP line goes to
// the test log as the check finishes, and then each check becomes a
// subtest that fails on FAIL and is skipped on SKIP. opts.Out is replaced.
//
// The checks share one connector and one stream, so they run in order
// within Run and are replayed as subtests afterwards; a subtest therefore
// cannot be selected with -run on its own.
func RunT(t *testing.T, target Target, opts Options) []Result {
	t.Helper()
	opts.Out = testLog{t}
	results := Run(t.Context(), target, opts)
	for _, r := range results {
		t.Run(r.Check, func(t *testing.T) {
			switch {
			case r.Skipped:
				t.Skip(r.Reason)
			case !r.Pass:
				t.Error(r.Reason)
			}
		})
	}
	return results
}

// testLog writes each line to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

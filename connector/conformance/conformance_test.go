package conformance

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// fast keeps the suite's own tests short; the targets are in process.
var fast = Options{Timeout: 2 * time.Second, Quiet: 60 * time.Millisecond}

// TestRawTargetConforms shows that a connector written without the SDK can
// pass every check, acked-seq-ahead included.
func TestRawTargetConforms(t *testing.T) {
	t.Parallel()
	RunT(t, newRawTarget(faults{}), fast)
}

// TestDetectsViolations breaks one rule at a time and expects the check
// that guards it to fail, so that a check that can never fail is noticed.
func TestDetectsViolations(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		f     faults
		check string
		want  string // part of the failure reason
	}{
		{"seq gap", faults{skipSeq: true}, CheckSeq, "event seq 2, want 1"},
		{"window ignored", faults{ignoreWindow: true}, CheckMaxInFlight, "more than max_in_flight 2"},
		{"no replay", faults{noReplay: true}, CheckReplayReconnect, "got seqs only up to"},
		{"changed replay", faults{alterReplay: true}, CheckReplayReconnect, "sent again with different data"},
		{"txn run twice", faults{txnTwice: true}, CheckTxnRepeat, "repeated as"},
		{"backfill newest first", faults{newestFirst: true}, CheckHistory, "not oldest first"},
		{"chat listed twice", faults{dupChats: true}, CheckHistory, "twice"},
		{"unknown op accepted", faults{okUnknownOp: true}, CheckUnknownOp, "want an err frame"},
		{"no pong", faults{noPong: true}, CheckPing, "no pong"},
		{"M_BAD_SEQ ignored", faults{ignoreBadSeq: true}, CheckBadSeqResend, "after acking"},
		{"pending dropped on store reset", faults{dropOnReset: true}, CheckAckedSeqAhead, "only 0 of 2 events arrived"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := fast
			opts.Timeout = time.Second
			opts.Skip = only(CheckHello, tc.check)
			results := Run(t.Context(), newRawTarget(tc.f), opts)
			for _, r := range results {
				switch {
				case r.Check == CheckHello && !r.Pass:
					t.Fatalf("hello failed: %s", r.Reason)
				case r.Check != tc.check:
				case r.Pass || r.Skipped:
					t.Errorf("%s: %s, want FAIL", r.Check, r.Status())
				case !strings.Contains(r.Reason, tc.want):
					t.Errorf("%s failed with %q, want it to mention %q", r.Check, r.Reason, tc.want)
				default:
					t.Logf("as expected: %s", r)
				}
			}
		})
	}
}

// only returns the Skip list that leaves just the named checks.
func only(names ...string) []string {
	var skip []string
	for _, c := range Checks() {
		if !slices.Contains(names, c) {
			skip = append(skip, c)
		}
	}
	return skip
}

package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Check names, in the order Run executes them.
const (
	CheckHello             = "hello"
	CheckPing              = "ping"
	CheckSeq               = "seq"
	CheckUnknownOp         = "err-unknown-op"
	CheckMissingFields     = "err-missing-fields"
	CheckUnknownLogin      = "err-unknown-login"
	CheckBadFrame          = "err-bad-frame"
	CheckTxnRepeat         = "txn-repeat"
	CheckHistory           = "history"
	CheckBadSeqResend      = "bad-seq-resend"
	CheckReplayReconnect   = "replay-reconnect"
	CheckMaxInFlight       = "max-in-flight"
	CheckTxnAfterReconnect = "txn-after-reconnect"
	CheckReplayRestart     = "replay-restart"
	CheckAckedSeqAhead     = "acked-seq-ahead"
	CheckFramesValid       = "frames-valid"
)

type check struct {
	name  string
	run   func(*suite, context.Context) (string, error)
	needs needs
}

// needs is what runCheck sees to before a check runs, so that the checks
// do not each begin with it.
type needs uint8

const (
	// needChat skips the check when the target names no chat to send to.
	needChat needs = 1 << iota
	// needConn (re)connects first when the connection dropped; a check
	// needing it is skipped once the connector never completed a handshake.
	needConn
)

// allChecks is the fixed order: each check leaves the stream acked and the
// connection up (or says why not), and the next one builds on that.
func allChecks() []check {
	return []check{
		{CheckHello, (*suite).checkHello, 0},
		{CheckPing, (*suite).checkPing, needConn},
		{CheckSeq, (*suite).checkSeq, needConn},
		{CheckUnknownOp, (*suite).checkUnknownOp, needConn},
		{CheckMissingFields, (*suite).checkMissingFields, needConn},
		{CheckUnknownLogin, (*suite).checkUnknownLogin, needConn},
		{CheckBadFrame, (*suite).checkBadFrame, needConn},
		{CheckTxnRepeat, (*suite).checkTxnRepeat, needChat | needConn},
		{CheckHistory, (*suite).checkHistory, needConn},
		{CheckBadSeqResend, (*suite).checkBadSeq, needConn},
		{CheckReplayReconnect, (*suite).checkReplayReconnect, needConn},
		{CheckMaxInFlight, (*suite).checkMaxInFlight, needConn},
		{CheckTxnAfterReconnect, (*suite).checkTxnAfterReconnect, needChat | needConn},
		{CheckReplayRestart, (*suite).checkReplayRestart, needConn},
		{CheckAckedSeqAhead, (*suite).checkAckedSeqAhead, needConn},
		{CheckFramesValid, (*suite).checkFramesValid, 0},
	}
}

// Checks lists the check names in the order Run executes them.
func Checks() []string {
	all := allChecks()
	names := make([]string, len(all))
	for i, c := range all {
		names[i] = c.name
	}
	return names
}

// Run starts target against the suite's bridge side, runs every check not
// in opts.Skip and stops the target again. It returns one Result per
// check, in order, skipped ones included. Checks after a failed hello are
// skipped, as are the rest once ctx ends.
func Run(ctx context.Context, target Target, opts Options) []Result {
	opts.setDefaults()
	checks := allChecks()
	results := make([]Result, 0, len(checks))
	report := func(r Result) {
		results = append(results, r)
		if opts.Out != nil {
			fmt.Fprintln(opts.Out, r)
		}
	}
	ln, err := listen(opts.Listen, opts.Token, opts.MaxFrameBytes)
	if err != nil {
		for _, c := range checks {
			report(Result{Check: c.name, Skipped: true, Reason: err.Error()})
		}
		return results
	}
	s := &suite{
		opts:   opts,
		target: target,
		ln:     ln,
		acked:  opts.AckedSeq,
		seen:   make(map[int64][]byte),
		logins: make(map[string]bool),
	}
	defer s.shutdown(ctx)

	for _, c := range checks {
		switch {
		case slices.Contains(opts.Skip, c.name):
			report(Result{Check: c.name, Skipped: true, Reason: "skipped by the options"})
			continue
		case ctx.Err() != nil:
			report(Result{Check: c.name, Skipped: true, Reason: "interrupted: " + ctx.Err().Error()})
			continue
		case c.needs&needConn != 0 && s.hello == nil:
			report(Result{Check: c.name, Skipped: true, Reason: "the connector never completed a handshake"})
			continue
		}
		report(s.runCheck(ctx, c))
	}
	return results
}

// runCheck bounds one check in time, so a hung connector costs one check.
func (s *suite) runCheck(ctx context.Context, c check) Result {
	ctx, cancel := context.WithTimeout(ctx, 6*s.opts.Timeout)
	defer cancel()
	began := time.Now()
	var reason string
	err := s.prepare(ctx, c.needs)
	if err == nil {
		reason, err = c.run(s, ctx)
	}
	r := Result{Check: c.name, Pass: err == nil, Reason: reason, Duration: time.Since(began)}
	if err != nil {
		r.Reason, r.Skipped = err.Error(), isSkip(err)
	}
	return r
}

// prepare sees to what a check needs before it runs.
func (s *suite) prepare(ctx context.Context, n needs) error {
	if n&needChat != 0 && s.target.Chat() == nil {
		return skip("the target names no chat to send to")
	}
	if n&needConn != 0 {
		return s.ensure(ctx)
	}
	return nil
}

func (s *suite) checkFramesValid(context.Context) (string, error) {
	if s.events == 0 && len(s.invalid) == 0 {
		return "", skip("no events arrived")
	}
	if len(s.invalid) > 0 {
		const show = 10
		list := s.invalid[:min(len(s.invalid), show)]
		more := ""
		if len(s.invalid) > show {
			more = fmt.Sprintf(" (and %d more)", len(s.invalid)-show)
		}
		return "", fmt.Errorf("%d malformed: %s%s", len(s.invalid), strings.Join(list, "; "), more)
	}
	return fmt.Sprintf("%d events and %d ephemerals, all with the fields their kind requires and a known login", s.events, s.ephemerals), nil
}

// shutdown stops the target and closes everything the suite opened.
func (s *suite) shutdown(ctx context.Context) {
	if s.running {
		// A target that hangs on Stop must not hang the caller for good.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Timeout)
		defer cancel()
		_ = s.target.Stop(ctx)
		s.running = false
	}
	if s.sess != nil {
		s.sess.kill()
		s.sess = nil
	}
	s.ln.close()
}

// errSkip marks a check that could not run.
type errSkip struct{ why string }

func (e *errSkip) Error() string { return e.why }

func skip(format string, args ...any) error { return &errSkip{why: fmt.Sprintf(format, args...)} }

func isSkip(err error) bool {
	var s *errSkip
	return errors.As(err, &s)
}

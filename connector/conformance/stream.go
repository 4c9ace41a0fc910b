package conformance

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// settle acks everything and reads until the connector has been quiet for
// Options.Quiet, so that a check starts with nothing in flight.
func (s *suite) settle(ctx context.Context) error {
	s.autoAck = true
	if s.sess == nil {
		return errNoSession
	}
	if last := s.expect - 1; last > s.acked {
		if err := s.ack(last); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(s.opts.Timeout)
	for time.Now().Before(deadline) {
		_, err := s.step(ctx, s.opts.Quiet)
		if errors.Is(err, errTimeout) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	// A connector that never falls silent is not wrong; go on.
	return nil
}

// collect reads until n events were accepted.
func (s *suite) collect(ctx context.Context, n int) ([]got, error) {
	var out []got
	deadline := time.Now().Add(s.opts.Timeout)
	for len(out) < n {
		ev, err := s.step(ctx, time.Until(deadline))
		if errors.Is(err, errTimeout) {
			return out, fmt.Errorf("only %d of %d events arrived within %s", len(out), n, s.opts.Timeout)
		}
		if err != nil {
			return out, err
		}
		if ev != nil {
			out = append(out, *ev)
		}
	}
	return out, nil
}

// collectThrough reads until the event with seq last was accepted.
func (s *suite) collectThrough(ctx context.Context, last int64) error {
	deadline := time.Now().Add(s.opts.Timeout)
	for s.expect <= last {
		_, err := s.step(ctx, time.Until(deadline))
		if errors.Is(err, errTimeout) {
			return fmt.Errorf("got seqs only up to %d within %s, want up to %d", s.expect-1, s.opts.Timeout, last)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// produce asks the target for n events.
func (s *suite) produce(ctx context.Context, n int) error {
	if err := s.target.Produce(ctx, n); err != nil {
		return fmt.Errorf("target could not produce %d events: %w", n, err)
	}
	return nil
}

// produceUnacked makes the connector emit n events and reads them without
// acking, after acking everything before. It returns the first and last
// seq read (at least n events; the connector may add its own).
func (s *suite) produceUnacked(ctx context.Context, n int) (first, last int64, err error) {
	if err := s.settle(ctx); err != nil {
		return 0, 0, err
	}
	s.autoAck = false
	if err := s.produce(ctx, n); err != nil {
		return 0, 0, err
	}
	evs, err := s.collect(ctx, n)
	if err != nil {
		return 0, 0, err
	}
	return evs[0].seq, s.expect - 1, nil
}

// threeAckedOne has the connector send three new events and acks only the
// first, leaving the other two in flight: the start of the replay and gap
// checks.
func (s *suite) threeAckedOne(ctx context.Context) (first, last int64, err error) {
	if first, last, err = s.produceUnacked(ctx, 3); err != nil {
		return 0, 0, err
	}
	return first, last, s.ack(first)
}

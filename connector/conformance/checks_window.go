package conformance

import (
	"context"
	"errors"
	"fmt"
	"time"
)

func (s *suite) checkMaxInFlight(ctx context.Context) (string, error) {
	w := s.opts.SmallWindow
	n := 2*w + 1
	// A backlog larger than the window, replayed on a connection whose
	// window is small, then live events on that connection.
	first, last, err := s.produceUnacked(ctx, n)
	if err != nil {
		return "", err
	}
	if err := s.reconnect(ctx, w); err != nil {
		return "", fmt.Errorf("reconnecting with max_in_flight %d: %w", w, err)
	}
	s.autoAck = false
	heldReplay, err := s.holdWindow(ctx, func(int) bool { return s.expect > last })
	if err != nil {
		return "", fmt.Errorf("replaying %d..%d under max_in_flight %d: %w", first, last, w, err)
	}
	if err := s.produce(ctx, n); err != nil {
		return "", err
	}
	heldLive, err := s.holdWindow(ctx, func(received int) bool { return received >= n })
	if err != nil {
		return "", fmt.Errorf("%d live events under max_in_flight %d: %w", n, w, err)
	}
	if heldReplay == 0 || heldLive == 0 {
		return "", fmt.Errorf("inconclusive: the window of %d was never full (replay %d times, live %d times)", w, heldReplay, heldLive)
	}
	if err := s.settle(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("welcome.max_in_flight %d: the connector held at %d unacked for %s %d times replaying %d..%d and %d times with %d live events, going on after each ack",
		w, w, s.opts.Quiet, heldReplay, first, last, heldLive, n), nil
}

// holdWindow reads events without acking until done(events read) holds.
// Whenever nothing arrives for Quiet it counts whether the window was
// full, then acks everything. step fails on an event beyond the window.
func (s *suite) holdWindow(ctx context.Context, done func(received int) bool) (held int, err error) {
	received := 0
	deadline := time.Now().Add(s.opts.Timeout)
	for !done(received) || s.expect-1 > s.acked {
		ev, err := s.step(ctx, s.opts.Quiet)
		switch {
		case errors.Is(err, errTimeout):
			if s.expect-1-s.acked >= int64(s.window) {
				held++
			}
			if s.expect-1 > s.acked {
				if err := s.ack(s.expect - 1); err != nil {
					return held, err
				}
			}
			if time.Now().After(deadline) {
				return held, fmt.Errorf("only %d events (up to seq %d) arrived within %s", received, s.expect-1, s.opts.Timeout)
			}
		case err != nil:
			return held, err
		case ev != nil:
			received++
		}
	}
	return held, nil
}

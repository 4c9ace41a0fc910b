package conformance

import (
	"context"
	"fmt"
	"time"
)

func (s *suite) checkReplayReconnect(ctx context.Context) (string, error) {
	// A cumulative ack of the first one only, so the replay must start in
	// the middle of what the connector has sent.
	first, last, err := s.threeAckedOne(ctx)
	if err != nil {
		return "", err
	}
	// The connection goes at once, so the ack may or may not be read
	// first; either way welcome's acked_seq is what counts.
	began := time.Now()
	if err := s.reconnect(ctx, s.opts.MaxInFlight); err != nil {
		return "", fmt.Errorf("after the suite dropped the connection: %w", err)
	}
	back := time.Since(began)
	if err := s.collectThrough(ctx, last); err != nil {
		return "", fmt.Errorf("dropped the connection with %d..%d unacked; after welcome acked_seq %d: %w", first+1, last, first, err)
	}
	if err := s.settle(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("dropped the connection with %d..%d unacked; reconnected after %s, welcome acked_seq %d; %d..%d resent in order with identical data",
		first+1, last, back.Round(time.Millisecond), first, first+1, last), nil
}

func (s *suite) checkReplayRestart(ctx context.Context) (string, error) {
	_, last, err := s.produceUnacked(ctx, 2)
	if err != nil {
		return "", err
	}
	note, err := s.restart(ctx)
	if err != nil {
		return "", err
	}
	acked := s.acked
	if err := s.reconnect(ctx, s.opts.MaxInFlight); err != nil {
		return "", fmt.Errorf("after the restart: %w", err)
	}
	if err := s.collectThrough(ctx, last); err != nil {
		return "", fmt.Errorf("restarted with %d..%d unacked; after welcome acked_seq %d: %w", acked+1, last, acked, err)
	}
	if err := s.settle(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("restarted the connector with %d..%d unacked; after welcome acked_seq %d they were resent in order with identical data%s",
		acked+1, last, acked, note), nil
}

// restart restarts the connector process and waits for its old
// connection to end. The note says if the suite had to end it itself.
func (s *suite) restart(ctx context.Context) (note string, err error) {
	if r, ok := s.target.(Restarter); ok {
		if err := r.Restart(ctx, s.ln.url(), s.opts.Token); err != nil {
			return "", fmt.Errorf("could not restart the connector: %w", err)
		}
	} else {
		if err := s.target.Stop(ctx); err != nil {
			return "", fmt.Errorf("could not stop the connector: %w", err)
		}
		s.running = false
	}
	if !s.sess.waitEnded(ctx, s.opts.Timeout) {
		note = "; the old connection stayed open through the restart, the suite dropped it"
	}
	s.drop()
	if !s.running {
		if err := s.target.Start(ctx, s.ln.url(), s.opts.Token); err != nil {
			return "", fmt.Errorf("could not start the connector again: %w", err)
		}
		s.running = true
	}
	return note, nil
}

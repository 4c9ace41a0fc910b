package conformance

import (
	"context"
	"fmt"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

func (s *suite) checkSeq(ctx context.Context) (string, error) {
	s.autoAck = true
	base, fresh, firstConn := s.acked, s.connEvents == 0, s.events == 0
	if err := s.produce(ctx, 3); err != nil {
		return "", err
	}
	evs, err := s.collect(ctx, 3)
	if err == nil {
		err = s.settle(ctx)
	}
	if err != nil && firstConn && base == s.opts.AckedSeq {
		return "", fmt.Errorf("%w (a connector that kept its store from an earlier run goes on with its old numbering: start it with an empty store, or set the first acked_seq with Options.AckedSeq / -acked-seq)", err)
	}
	if err != nil {
		return "", err
	}
	first := "the first after the handshake"
	if !fresh {
		first = "continuing the stream"
	}
	return fmt.Sprintf("welcome.acked_seq %d; seqs %d..%d arrived one apart (%s), %d of them produced on request",
		base, base+1, s.expect-1, first, len(evs)), nil
}

func (s *suite) checkBadSeq(ctx context.Context) (string, error) {
	// Pretend everything after first was lost on the way: ack first and
	// complain about the last seq, as the bridge does about a gap.
	first, last, err := s.threeAckedOne(ctx)
	if err != nil {
		return "", err
	}
	if err := s.sess.send(connector.Frame{Type: connector.TypeErr, Seq: last, Error: &connector.Error{
		Code: connector.ErrBadSeq, Message: fmt.Sprintf("expected seq %d", first+1), Retryable: true}}, nil); err != nil {
		return "", err
	}
	s.expect, s.expectWhy, s.resync = first+1, fmt.Sprintf("the last acked seq %d + 1, after M_BAD_SEQ", first), true
	if err := s.collectThrough(ctx, last); err != nil {
		return "", fmt.Errorf("after acking %d and M_BAD_SEQ (expected seq %d) for seq %d: %w", first, first+1, last, err)
	}
	if err := s.settle(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("acked %d, answered seq %d with M_BAD_SEQ (expected seq %d): the connector resent %d..%d in order with identical data",
		first, last, first+1, first+1, last), nil
}

// checkAckedSeqAhead plays a bridge that has accepted more than the
// connector remembers sending, as after the connector's database was
// restored from a backup. Events at or below acked_seq are dropped as
// replays (section 4), so everything the connector has not delivered yet,
// including what it stored while disconnected, must come at acked_seq+1 on.
func (s *suite) checkAckedSeqAhead(ctx context.Context) (string, error) {
	if err := s.settle(ctx); err != nil {
		return "", err
	}
	// Produce while no connection is welcomed: the connector reconnects at
	// once but waits for a welcome the suite holds back.
	s.drop()
	if err := s.produce(ctx, 2); err != nil {
		return "", err
	}
	time.Sleep(s.opts.Quiet)
	const jump = 100
	was := s.acked
	s.acked += jump
	if err := s.reconnect(ctx, s.opts.MaxInFlight); err != nil {
		return "", err
	}
	if _, err := s.collect(ctx, 2); err != nil {
		return "", fmt.Errorf("the connector had sent up to %d and stored 2 events while disconnected; after welcome acked_seq %d: %w", was, was+jump, err)
	}
	if err := s.produce(ctx, 1); err != nil {
		return "", err
	}
	if _, err := s.collect(ctx, 1); err != nil {
		return "", fmt.Errorf("a live event after welcome acked_seq %d: %w", was+jump, err)
	}
	if err := s.settle(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("the connector had sent up to %d and stored 2 events while disconnected; after welcome acked_seq %d they and a live one came as %d..%d",
		was, was+jump, was+jump+1, was+jump+3), nil
}

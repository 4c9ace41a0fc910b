package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// sendCommand is a send_message to the target's chat.
func (s *suite) sendCommand(text string) *connector.Command {
	return &connector.Command{Login: s.login, Chat: s.target.Chat(), Txn: newTxn(), Text: text}
}

func (s *suite) checkTxnRepeat(ctx context.Context) (string, error) {
	s.autoAck = true
	text := "conformance txn-repeat " + randomToken()[:8]
	cmd := s.sendCommand(text)
	first, err := s.commandRetrying(ctx, connector.OpSendMessage, cmd)
	if err != nil {
		return "", err
	}
	if first.err != nil {
		return "", fmt.Errorf("send_message failed, so txn handling cannot be tested: %s", first)
	}
	again, err := s.command(ctx, connector.OpSendMessage, cmd)
	if err != nil {
		return "", fmt.Errorf("the repeated txn: %w", err)
	}
	if again.err != nil || !bytes.Equal(first.res, again.res) {
		return "", fmt.Errorf("txn %s as %s was answered %s, repeated as %s %s", cmd.Txn, first.id, first, again.id, again)
	}
	reason := fmt.Sprintf("txn %s sent as %s and %s: both answered %s", cmd.Txn, first.id, again.id, first)
	count, err := s.delivered(ctx, text)
	if err != nil {
		return "", fmt.Errorf("%s; %w", reason, err)
	}
	return reason + count, nil
}

func (s *suite) checkTxnAfterReconnect(ctx context.Context) (string, error) {
	if err := s.settle(ctx); err != nil {
		return "", err
	}
	text := "conformance txn-after-reconnect " + randomToken()[:8]
	cmd := s.sendCommand(text)
	lost, err := s.sendCmd(connector.OpSendMessage, cmd)
	if err != nil {
		return "", err
	}
	// The connector reads the cmd before the close that follows it on the
	// same stream; its answer then has no connection to go to.
	if err := s.reconnect(ctx, s.opts.MaxInFlight); err != nil {
		return "", fmt.Errorf("after the suite dropped the connection: %w", err)
	}
	again, err := s.commandRetrying(ctx, connector.OpSendMessage, cmd)
	if err != nil {
		return "", fmt.Errorf("the re-sent txn: %w", err)
	}
	if again.err != nil {
		return "", fmt.Errorf("txn %s, re-sent as %s after its answer to %s was lost, was answered %s", cmd.Txn, again.id, lost, again)
	}
	reason := fmt.Sprintf("txn %s sent as %s, connection dropped before the answer, re-sent as %s: %s", cmd.Txn, lost, again.id, again)
	count, err := s.delivered(ctx, text)
	if err != nil {
		return "", fmt.Errorf("%s; %w", reason, err)
	}
	return reason + count, nil
}

// delivered asks a NetworkObserver target how often text reached the
// network, which must be exactly once. A marker message sent after it
// shows when everything before it has arrived, so a late duplicate is not
// missed. Without an observer it only says so.
func (s *suite) delivered(ctx context.Context, text string) (string, error) {
	obs, ok := s.target.(NetworkObserver)
	if !ok {
		return "; the network side is not observable, so only the answers were compared", nil
	}
	marker := text + " (marker)"
	r, err := s.commandRetrying(ctx, connector.OpSendMessage, s.sendCommand(marker))
	if err != nil {
		return "", fmt.Errorf("marker message: %w", err)
	}
	if r.err != nil {
		return "", fmt.Errorf("marker message failed: %s", r)
	}
	deadline := time.Now().Add(s.opts.Timeout)
	for {
		n, err := obs.Delivered(ctx, marker)
		if err != nil {
			return "", fmt.Errorf("counting deliveries: %w", err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the marker message did not reach the network within %s", s.opts.Timeout)
		}
		// Keep the stream moving: echoes of the sent messages may arrive.
		if _, err := s.step(ctx, 50*time.Millisecond); err != nil && !errors.Is(err, errTimeout) {
			return "", err
		}
	}
	n, err := obs.Delivered(ctx, text)
	if err != nil {
		return "", fmt.Errorf("counting deliveries: %w", err)
	}
	if n != 1 {
		return "", fmt.Errorf("the network got the message %d times, want once", n)
	}
	return "; the network got the message once", nil
}

package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dmbridge/dmbridge/connector"
)

func (s *suite) checkHello(ctx context.Context) (string, error) {
	if err := s.target.Start(ctx, s.ln.url(), s.opts.Token); err != nil {
		return "", fmt.Errorf("could not start the connector: %w", err)
	}
	s.running = true
	problems, err := s.connect(ctx, s.opts.MaxInFlight)
	if err != nil {
		return "", err
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	h := s.hello
	logins := make([]string, 0, len(h.Logins))
	for _, l := range h.Logins {
		logins = append(logins, l.ID+" → "+l.MatrixUser)
	}
	reason := fmt.Sprintf("%s %s (id %q), network %q, protocol %v, logins [%s]; dialled with bearer token and %s",
		h.Connector.Name, h.Connector.Version, h.Connector.ID, h.Network.ID, h.Protocol, strings.Join(logins, ", "), connector.Subprotocol)
	if refused := s.ln.takeRefusals(); len(refused) > 0 {
		reason += "; after refused attempts: " + strings.Join(refused, "; ")
	}
	return reason, nil
}

func (s *suite) checkPing(ctx context.Context) (string, error) {
	payload := "conformance-" + randomToken()[:8]
	if err := s.sess.ping(ctx, payload, s.opts.Timeout); err != nil {
		return "", fmt.Errorf("the bridge pings every 30s and drops a peer silent for 90s: %w", err)
	}
	return "a websocket ping was answered with a pong carrying its payload", nil
}

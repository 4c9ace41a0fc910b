package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
)

// suiteVersion is reported in welcome.
const suiteVersion = "1"

// connect waits for the connector's next connection, reads its hello and
// answers with a welcome carrying the suite's acked_seq and the given
// max_in_flight. Problems with the hello are returned; they do not stop
// the connection from being welcomed when the hello is usable at all.
func (s *suite) connect(ctx context.Context, window int) (problems []string, err error) {
	if s.sess != nil {
		s.drop()
	}
	var sess *session
	var in inFrame
	for {
		if sess, err = s.accept(ctx); err != nil {
			return nil, err
		}
		in, err = sess.next(ctx, s.opts.Timeout)
		var closed *closedError
		if errors.As(err, &closed) {
			// An earlier attempt that gave up while it waited in line.
			continue
		}
		if err != nil {
			sess.kill()
			return nil, fmt.Errorf("waiting for hello: %w", err)
		}
		break
	}
	if in.badErr != nil || in.frame.Type != connector.TypeHello {
		_ = sess.send(connector.Frame{Type: connector.TypeErr, Error: &connector.Error{Code: connector.ErrBadFrame, Message: "the first frame must be hello"}}, nil)
		sess.drop(connector.CloseProtocolError, "expected hello")
		return nil, fmt.Errorf("the first frame is not a hello: %.300s", in.raw)
	}
	hello, problems := validateHello(in.frame.Data, s.target.Login())
	if hello == nil {
		sess.drop(connector.CloseProtocolError, "bad hello")
		return problems, fmt.Errorf("unusable hello: %s", strings.Join(problems, "; "))
	}
	welcome := connector.Welcome{
		Protocol:      connector.ProtocolVersion,
		AckedSeq:      s.acked,
		MaxInFlight:   window,
		MaxFrameBytes: s.opts.MaxFrameBytes,
		Bridge:        connector.Software{Name: "dmbridge-conformance", Version: suiteVersion},
	}
	if err := sess.send(connector.Frame{Type: connector.TypeWelcome}, &welcome); err != nil {
		sess.kill()
		return problems, err
	}
	s.sess, s.hello, s.window = sess, hello, window
	s.expect, s.expectWhy, s.resync = s.acked+1, fmt.Sprintf("welcome.acked_seq %d + 1", s.acked), false
	s.replies, s.anonErrs, s.connEvents = make(map[string]inFrame), nil, 0
	for _, l := range hello.Logins {
		s.logins[l.ID] = true
	}
	if s.login = s.target.Login(); s.login == "" && len(hello.Logins) > 0 {
		s.login = hello.Logins[0].ID
	}
	return problems, nil
}

// accept waits for the next connection that got through authentication.
func (s *suite) accept(ctx context.Context) (*session, error) {
	timer := time.NewTimer(s.opts.Timeout)
	defer timer.Stop()
	for {
		sess, arrived := s.ln.next()
		if sess != nil {
			return sess, nil
		}
		select {
		case <-arrived:
		case <-timer.C:
			err := fmt.Errorf("the connector did not connect to %s within %s", s.ln.url(), s.opts.Timeout)
			if refused := s.ln.takeRefusals(); len(refused) > 0 {
				err = fmt.Errorf("%w; refused attempts: %s", err, strings.Join(refused, "; "))
			}
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// drop ends the current connection as a bridge that goes away would.
func (s *suite) drop() {
	if s.sess == nil {
		return
	}
	s.sess.drop(websocket.CloseGoingAway, "conformance suite reconnects")
	s.sess = nil
}

// reconnect drops the connection and welcomes the connector's next one;
// hello problems count as malformed frames.
func (s *suite) reconnect(ctx context.Context, window int) error {
	s.drop()
	problems, err := s.connect(ctx, window)
	for _, p := range problems {
		s.invalidf("hello on reconnect: %s", p)
	}
	return err
}

// ensure gives a check a live connection, waiting for the connector to
// come back if the last one ended.
func (s *suite) ensure(ctx context.Context) error {
	if s.sess != nil && !s.sess.ended() {
		return nil
	}
	s.sess = nil
	return s.reconnect(ctx, s.opts.MaxInFlight)
}

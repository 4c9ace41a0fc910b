package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// reply is the connector's answer to one command: a result or an error.
type reply struct {
	id  string
	res json.RawMessage // canonical; nil for an err
	err *connector.Error
}

func (r reply) String() string {
	if r.err != nil {
		return fmt.Sprintf("err %s (%q, retryable %v)", r.err.Code, r.err.Message, r.err.Retryable)
	}
	return "res " + string(r.res)
}

func (s *suite) newID() string {
	s.nextID++
	return fmt.Sprintf("conf-%d", s.nextID)
}

// newTxn returns a txn that no earlier run can have used.
func newTxn() string {
	return "$conformance-" + randomToken()[:12] + ":suite.invalid"
}

// sendCmd writes a cmd frame and returns its id.
func (s *suite) sendCmd(op string, cmd *connector.Command) (string, error) {
	if s.sess == nil {
		return "", errNoSession
	}
	id := s.newID()
	if err := s.sess.send(connector.Frame{Type: connector.TypeCmd, ID: id, Op: op}, cmd); err != nil {
		return "", err
	}
	return id, nil
}

// command sends a command and waits for its answer.
func (s *suite) command(ctx context.Context, op string, cmd *connector.Command) (reply, error) {
	id, err := s.sendCmd(op, cmd)
	if err != nil {
		return reply{}, err
	}
	return s.await(ctx, id)
}

// commandRetrying re-sends a command with the same txn while the answer is
// a retryable error, as the bridge does: a connector still logging in to
// its network may answer M_NETWORK at first.
func (s *suite) commandRetrying(ctx context.Context, op string, cmd *connector.Command) (reply, error) {
	deadline := time.Now().Add(s.opts.Timeout)
	for {
		r, err := s.command(ctx, op, cmd)
		if err != nil || r.err == nil || !r.err.Retryable || time.Now().After(deadline) {
			return r, err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return r, ctx.Err()
		}
	}
}

// await reads frames until the answer to id arrives.
func (s *suite) await(ctx context.Context, id string) (reply, error) {
	deadline := time.Now().Add(s.opts.Timeout)
	for {
		if in, ok := s.replies[id]; ok {
			delete(s.replies, id)
			return toReply(in), nil
		}
		_, err := s.step(ctx, time.Until(deadline))
		if errors.Is(err, errTimeout) {
			return reply{}, fmt.Errorf("no answer to cmd %s within %s", id, s.opts.Timeout)
		}
		if err != nil {
			return reply{}, fmt.Errorf("waiting for the answer to cmd %s: %w", id, err)
		}
	}
}

// awaitAnonErr reads frames until an err frame without id arrives.
func (s *suite) awaitAnonErr(ctx context.Context) (*connector.Error, error) {
	deadline := time.Now().Add(s.opts.Timeout)
	for len(s.anonErrs) == 0 {
		_, err := s.step(ctx, time.Until(deadline))
		if errors.Is(err, errTimeout) {
			return nil, fmt.Errorf("no err frame within %s", s.opts.Timeout)
		}
		if err != nil {
			return nil, err
		}
	}
	e := s.anonErrs[0]
	s.anonErrs = s.anonErrs[1:]
	return e, nil
}

func toReply(in inFrame) reply {
	r := reply{id: in.frame.ID}
	if in.frame.Type == connector.TypeErr {
		r.err = in.frame.Error
		if r.err == nil {
			r.err = &connector.Error{Code: "(none)", Message: "err frame without an error object"}
		}
		return r
	}
	data := in.frame.Data
	if len(data) == 0 {
		data = json.RawMessage("{}") // spec 7.5: a res without data means {}
	}
	r.res, _ = canonical(data)
	return r
}

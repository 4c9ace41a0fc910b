package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// suite is the scripted bridge: one connector, one connection at a time,
// and the stream state that a real bridge keeps per connector id.
type suite struct {
	opts   Options
	target Target
	ln     *listener

	running bool     // the target was started and not stopped since
	sess    *session // the welcomed connection, nil between connections
	hello   *connector.Hello
	login   string // the login commands are addressed to
	logins  map[string]bool

	acked  int64 // highest seq acked; the next welcome's acked_seq
	expect int64 // the seq the next event must carry
	// expectWhy says where expect comes from, for failure reasons.
	expectWhy string
	window    int // max_in_flight of the current connection
	// resync is set after the suite sent M_BAD_SEQ: events beyond expect
	// were sent before the connector heard of it and are dropped
	// silently, as the bridge does, until expect arrives.
	resync     bool
	autoAck    bool
	connEvents int              // events accepted on the current connection
	seen       map[int64][]byte // canonical data of every event, by seq

	replies  map[string]inFrame // res and err frames by id, not yet claimed
	anonErrs []*connector.Error // err frames without an id, not yet claimed
	nextID   int

	events, ephemerals int
	invalid            []string // malformed frames, for the frames-valid check
}

// got is one event as the suite accepted it.
type got struct {
	seq int64
	ev  connector.Event
}

// errNoSession is returned when a check needs a connection and there is none.
var errNoSession = errors.New("no connection to the connector")

// step reads and handles one frame, waiting at most wait. It returns the
// event if the frame was one the stream accepted, nil otherwise. Errors are
// errTimeout, a *closedError, or a protocol violation seen on the stream.
func (s *suite) step(ctx context.Context, wait time.Duration) (*got, error) {
	if s.sess == nil {
		return nil, errNoSession
	}
	in, err := s.sess.next(ctx, wait)
	if err != nil {
		return nil, err
	}
	if in.badErr != nil {
		s.invalidf("%v: %.200s", in.badErr, in.raw)
		return nil, s.sess.send(connector.Frame{Type: connector.TypeErr, Error: &connector.Error{Code: connector.ErrBadFrame, Message: in.badErr.Error()}}, nil)
	}
	f := &in.frame
	switch f.Type {
	case connector.TypeEvent:
		return s.onEvent(f)
	case connector.TypeEphemeral:
		s.onEphemeral(f)
	case connector.TypeRes:
		s.replies[f.ID] = in
	case connector.TypeErr:
		if f.Error == nil {
			s.invalidf("err frame without error object: %.200s", in.raw)
		}
		if f.ID != "" {
			s.replies[f.ID] = in
		} else if f.Error != nil {
			s.anonErrs = append(s.anonErrs, f.Error)
		}
	case connector.TypeHello, connector.TypeWelcome, connector.TypeAck, connector.TypeCmd:
		s.invalidf("a %s frame after the handshake: %.200s", f.Type, in.raw)
		return nil, s.sess.send(connector.Frame{Type: connector.TypeErr, ID: f.ID, Seq: f.Seq,
			Error: &connector.Error{Code: connector.ErrBadFrame, Message: f.Type + " is not expected from a connector here"}}, nil)
	default:
		s.invalidf("unknown frame type %q: %.200s", f.Type, in.raw)
		return nil, s.sess.send(connector.Frame{Type: connector.TypeErr, ID: f.ID, Seq: f.Seq,
			Error: &connector.Error{Code: connector.ErrUnknownKind, Message: "unknown frame type " + f.Type}}, nil)
	}
	return nil, nil
}

// onEvent applies the stream rules: seq continuity, the in-flight window,
// and identical data for a seq sent twice.
func (s *suite) onEvent(f *connector.Frame) (*got, error) {
	q := f.Seq
	if s.resync {
		if q > s.expect {
			return nil, nil
		}
		s.resync = false
	}
	if q != s.expect {
		err := fmt.Errorf("event seq %d, want %d (%s)", q, s.expect, s.expectWhy)
		if q > s.expect {
			// Behave like the bridge, so that the connector can recover
			// and later checks still mean something.
			s.resync = true
			if serr := s.sess.send(connector.Frame{Type: connector.TypeErr, Seq: q, Error: &connector.Error{
				Code: connector.ErrBadSeq, Message: fmt.Sprintf("expected seq %d", s.expect), Retryable: true}}, nil); serr != nil {
				return nil, errors.Join(err, serr)
			}
		}
		return nil, err
	}
	s.expect, s.expectWhy = q+1, fmt.Sprintf("one more than the previous seq %d", q)
	s.events++
	s.connEvents++

	var ev connector.Event
	canon, err := canonical(f.Data)
	if err == nil {
		err = json.Unmarshal(f.Data, &ev)
	}
	if err != nil {
		s.invalidf("event %d: data is not an event object: %v", q, err)
	} else {
		s.checkEvent(q, &ev)
	}
	var violation error
	if before, ok := s.seen[q]; ok && !bytes.Equal(before, canon) {
		violation = fmt.Errorf("seq %d was sent again with different data: first %.300s, now %.300s", q, before, canon)
	} else {
		s.seen[q] = canon
	}
	if q-s.acked > int64(s.window) {
		violation = errors.Join(violation, fmt.Errorf("seq %d arrived with acks up to %d: %d events unacked, more than max_in_flight %d",
			q, s.acked, q-s.acked, s.window))
	}
	if s.autoAck {
		if err := s.ack(q); err != nil {
			return nil, errors.Join(violation, err)
		}
	}
	if violation != nil {
		return nil, violation
	}
	return &got{seq: q, ev: ev}, nil
}

func (s *suite) checkEvent(seq int64, ev *connector.Event) {
	if err := ev.Validate(); err != nil {
		s.invalidf("event %d: %v", seq, err)
		return
	}
	if ev.Kind == connector.KindLogin {
		// A login added after hello announces itself with a login event.
		s.logins[ev.Login] = true
	} else if !s.logins[ev.Login] {
		s.invalidf("event %d (%s): login %q was announced neither in hello nor by a login event", seq, ev.Kind, ev.Login)
	}
}

func (s *suite) onEphemeral(f *connector.Frame) {
	s.ephemerals++
	var e connector.Ephemeral
	if err := json.Unmarshal(f.Data, &e); err != nil {
		s.invalidf("ephemeral: data is not an ephemeral object: %v", err)
		return
	}
	if err := e.Validate(); err != nil {
		s.invalidf("ephemeral: %v", err)
		return
	}
	if !s.logins[e.Login] {
		s.invalidf("ephemeral %s: unknown login %q", e.Kind, e.Login)
	}
}

func (s *suite) invalidf(format string, args ...any) {
	s.invalid = append(s.invalid, fmt.Sprintf(format, args...))
}

// ack acknowledges everything up to seq.
func (s *suite) ack(seq int64) error {
	if seq > s.acked {
		s.acked = seq
	}
	if err := s.sess.send(connector.Frame{Type: connector.TypeAck, Seq: seq}, nil); err != nil {
		return fmt.Errorf("ack %d: %w", seq, err)
	}
	return nil
}

// canonical re-encodes JSON with sorted keys and no spacing, so that two
// sends of one event compare equal however the connector serialises them.
func canonical(data json.RawMessage) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber() // keeps large integers exact
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

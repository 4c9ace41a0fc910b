package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/connws"
)

// maxBadInRow is how many M_BAD_FRAME answers in a row the spec tolerates.
const maxBadInRow = 100

var errTooManyBad = errors.New("more than 100 bad frames in a row")

// errCheckFailed ends a connection whose handler could not decide on an
// event for a passing reason (its database, say).
var errCheckFailed = errors.New("bridge could not check an event")

// readLoop processes frames in order until the connection fails or closes.
func (c *serverConn) readLoop() error {
	for {
		typ, msg, err := c.read()
		if err != nil {
			return err
		}
		if c.closing.Load() {
			// Closing: the peer may still send until it sees our close
			// frame, but nothing it says counts any more.
			continue
		}
		bad, err := c.dispatch(typ, msg)
		if err != nil {
			return err
		}
		if !bad {
			c.badInRow = 0
			continue
		}
		c.badInRow++
		if c.badInRow > maxBadInRow {
			c.rlog.Warn().Msg("Disconnecting connector after too many bad frames")
			c.sendClose(connector.CloseProtocolError, "too many bad frames")
			return errTooManyBad
		}
	}
}

// dispatch handles one frame. bad reports an M_BAD_FRAME answer; err ends
// the connection.
func (c *serverConn) dispatch(typ int, msg []byte) (bad bool, err error) {
	if typ != websocket.TextMessage {
		return c.badFrame(connws.Refs{}, "frames must be text frames"), nil
	}
	var f connector.Frame
	if err := json.Unmarshal(msg, &f); err != nil {
		return c.badFrame(connws.SalvageRefs(msg), "not a valid frame: "+err.Error()), nil
	}
	refs := connws.Refs{ID: f.ID, Seq: f.Seq}
	switch f.Type {
	case connector.TypeEvent:
		return c.onEvent(&f)
	case connector.TypeEphemeral:
		return c.onEphemeral(&f), nil
	case connector.TypeRes:
		return c.onRes(&f), nil
	case connector.TypeErr:
		return c.onErr(&f), nil
	case connector.TypeHello, connector.TypeWelcome, connector.TypeAck, connector.TypeCmd:
		return c.badFrame(refs, fmt.Sprintf("a %s frame is not expected from the connector here", f.Type)), nil
	case "":
		return c.badFrame(refs, "type is required"), nil
	default:
		c.refuse(refs, &connector.Error{Code: connector.ErrUnknownKind, Message: fmt.Sprintf("unknown frame type %q", f.Type)})
		return false, nil
	}
}

func (c *serverConn) badFrame(refs connws.Refs, reason string) bool {
	c.refuse(refs, &connector.Error{Code: connector.ErrBadFrame, Message: reason})
	return true
}

// refuse tells the connector why its frame changed nothing, and logs it at
// warn: every frame or event the bridge refuses leaves a trace with its reason.
func (c *serverConn) refuse(refs connws.Refs, e *connector.Error) {
	c.rlog.Warn().Str("id", refs.ID).Int64("seq", refs.Seq).Str("code", e.Code).Str("reason", e.Message).
		Msg("Refused a frame from the connector")
	c.sendErr(refs, e)
}

// onEvent applies the seq rules, then validates the event and queues it for
// storing. The rules count queued events as accepted: the committer stores
// them in order and nothing else decides their fate, except a store failure,
// which ends the connection.
func (c *serverConn) onEvent(f *connector.Frame) (bad bool, err error) {
	refs := connws.Refs{ID: f.ID, Seq: f.Seq}
	switch {
	case f.Seq < 1:
		return c.badFrame(refs, "event: seq must be an integer >= 1"), nil
	case f.Seq <= c.queued:
		// A replay; the cumulative ack covers it. If it is queued but not
		// yet stored, the ack of its batch will; acking now could only
		// repeat an older seq.
		if f.Seq <= c.committed.Load() {
			c.noteReplay()
		}
		return false, nil
	case f.Seq > c.queued+1:
		// Report the gap once, then drop everything until the connector
		// sends the expected seq: with a full window in flight, one err per
		// dropped event would only bury the one that matters.
		if !c.gapReported {
			c.gapReported = true
			c.rlog.Warn().Int64("seq", f.Seq).Int64("expected", c.queued+1).Msg("Connector skipped ahead")
			c.refuse(refs, &connector.Error{Code: connector.ErrBadSeq, Message: fmt.Sprintf("expected seq %d", c.queued+1), Retryable: true})
		}
		return false, nil
	}
	// gapReported stays set until enqueue accepts this seq: an expected
	// event refused as M_BAD_FRAME leaves the gap open, and clearing it here
	// made every resend of the window earn a fresh M_BAD_SEQ, which a
	// rewinding connector answered with the same frames again, for ever.
	if len(f.Data) == 0 {
		return c.badFrame(refs, "event: data is required"), nil
	}
	var ev connector.Event
	if err := json.Unmarshal(f.Data, &ev); err != nil {
		return c.badFrame(refs, "event: "+err.Error()), nil
	}
	if ev.Kind == "" {
		return c.badFrame(refs, "event: data.kind is required"), nil
	}
	if !connector.IsKnownEventKind(ev.Kind) {
		// Acked anyway: a newer connector must not block its own stream
		// on an older bridge.
		c.refuse(refs, &connector.Error{Code: connector.ErrUnknownKind, Message: fmt.Sprintf("unknown event kind %q", ev.Kind)})
		return false, c.enqueue(f.Seq, nil, nil)
	}
	if err := ev.Validate(); err != nil {
		return c.badFrame(refs, "event: "+err.Error()), nil
	}
	if connector.IsChatScoped(ev.Kind) && ev.Chat.Type != connector.ChatTypeDM {
		c.refuse(refs, &connector.Error{Code: connector.ErrUnsupported, Message: fmt.Sprintf("chat type %q is not bridged; only dm", ev.Chat.Type)})
		return false, c.enqueue(f.Seq, nil, nil)
	}
	if e := c.srv.opts.Handler.Check(c.ctx, c.id, &ev); e != nil {
		if e.Retryable {
			// Acking would drop an event the bridge might well take in a
			// moment later. Closing with 1011 leaves it unacked: the
			// connector reconnects and replays it, as after a store failure.
			// What was queued before it is still stored and acked.
			c.rlog.Warn().Int64("seq", f.Seq).Str("code", e.Code).Str("message", e.Message).
				Msg("Could not check event, closing so that the connector replays it")
			c.sendClose(websocket.CloseInternalServerErr, "bridge could not check the event")
			return false, fmt.Errorf("%w: seq %d: %s", errCheckFailed, f.Seq, e.Message)
		}
		c.refuse(refs, e)
		return false, c.enqueue(f.Seq, nil, nil)
	}
	return false, c.enqueue(f.Seq, &ev, storable(f.Data, &ev))
}

// storable is the event's data as the connector sent it, for the store to
// keep as it is. Data that is not valid UTF-8 decoded all the same (JSON
// decoding replaces the bad bytes), so it is encoded again from the decoded
// event: a database text column would refuse it, and the connector would
// replay it into the same failure forever.
func storable(data json.RawMessage, ev *connector.Event) json.RawMessage {
	if utf8.Valid(data) {
		return data
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil // cannot happen: Event has only plain fields
	}
	return b
}

func (c *serverConn) onEphemeral(f *connector.Frame) (bad bool) {
	refs := connws.Refs{ID: f.ID, Seq: f.Seq}
	if len(f.Data) == 0 {
		return c.badFrame(refs, "ephemeral: data is required")
	}
	var e connector.Ephemeral
	if err := json.Unmarshal(f.Data, &e); err != nil {
		return c.badFrame(refs, "ephemeral: "+err.Error())
	}
	if e.Kind == "" {
		return c.badFrame(refs, "ephemeral: data.kind is required")
	}
	if !connector.IsKnownEphemeralKind(e.Kind) {
		c.refuse(refs, &connector.Error{Code: connector.ErrUnknownKind, Message: fmt.Sprintf("unknown ephemeral kind %q", e.Kind)})
		return false
	}
	if err := e.Validate(); err != nil {
		return c.badFrame(refs, "ephemeral: "+err.Error())
	}
	if e.Chat != nil && e.Chat.Type != connector.ChatTypeDM {
		c.refuse(refs, &connector.Error{Code: connector.ErrUnsupported, Message: fmt.Sprintf("chat type %q is not bridged; only dm", e.Chat.Type)})
		return false
	}
	c.srv.opts.Handler.Ephemeral(c.ctx, c.id, &e)
	return false
}

func (c *serverConn) onRes(f *connector.Frame) (bad bool) {
	refs := connws.Refs{ID: f.ID, Seq: f.Seq}
	if f.ID == "" {
		return c.badFrame(refs, "res: id is required")
	}
	var res connector.Result
	if len(f.Data) != 0 {
		if err := json.Unmarshal(f.Data, &res); err != nil {
			// The command did get an answer, just not a usable one; fail it
			// rather than leave the caller waiting for the timeout.
			c.resolve(f.ID, cmdReply{err: &connector.Error{Code: connector.ErrBadFrame, Message: "connector sent an undecodable result: " + err.Error()}})
			return c.badFrame(refs, "res: "+err.Error())
		}
	}
	if !c.resolve(f.ID, cmdReply{res: &res}) {
		c.rlog.Warn().Str("id", f.ID).Msg("Dropping a result for a command nobody waits for (timed out?)")
	}
	return false
}

func (c *serverConn) onErr(f *connector.Frame) (bad bool) {
	refs := connws.Refs{ID: f.ID, Seq: f.Seq}
	if f.Error == nil || f.Error.Code == "" {
		return c.badFrame(refs, "err: error.code is required")
	}
	if bounded, cut := f.Error.Bounded(); cut {
		// Still the command's answer (its waiter would otherwise time
		// out and tell the user less), with what goes on cut short.
		c.rlog.Warn().Str("id", f.ID).Int("code_bytes", len(f.Error.Code)).Int("message_bytes", len(f.Error.Message)).
			Msg("Cutting an oversized error from the connector")
		f.Error = bounded
	}
	if f.ID != "" && c.resolve(f.ID, cmdReply{err: f.Error}) {
		return false
	}
	c.rlog.Warn().Str("id", f.ID).Int64("seq", f.Seq).Str("code", f.Error.Code).Str("message", f.Error.Message).
		Msg("Connector reported an error")
	return false
}

package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/matrix"
)

// A Matrix send caused by a remote event uses a deterministic transaction id,
// but the homeserver's transaction cache cannot be trusted for a request that
// was cut off: Dendrite still stores the event of a request whose client went
// away (the bridge was killed, its HTTP request timed out, the connection
// dropped), yet it does not remember the transaction id, so sending again
// posts a second copy. Such a send is "in doubt". A marker row is written
// before every send and removed in the transaction that stores the result; a
// send that finds its marker was in doubt, and resolves it against the room
// before it sends anything:
//
//  1. look for the event in the room's recent timeline, as the sender, by the
//     transaction id the bridge puts into the content (contentTxnKey); found:
//     use that event, send nothing;
//  2. not found: wait until the old request cannot land any more: it was over
//     when this process started (an earlier process's request), when the
//     former active's lease expired (high availability) or when its error
//     came back (this process's), and the homeserver gets
//     bridge.in_doubt_grace on top to finish storing what it was given;
//  3. look again: found: use that event; not found: send again.

// contentTxnKey carries a send's transaction id in the event content, so that
// the bridge can recognise its own event in the room.
const contentTxnKey = "com.github.dmbridge.txn"

// The search for an in-doubt event reads at most inDoubtPages pages of
// inDoubtPageSize of the sender's events of that type. A chat's events are
// applied one at a time, so the event in doubt is the sender's newest in that
// chat from the bridge; only the user's own messages (or the bridge's sends
// for other remote events by the same sender) can come after it.
const (
	inDoubtPageSize = 100
	inDoubtPages    = 5
)

// inDoubtRetention is how long a marker left by a parked or skipped event is
// kept.
const inDoubtRetention = 7 * 24 * time.Hour

// remoteSend is one Matrix send caused by a remote event.
type remoteSend struct {
	intent    matrix.API
	roomID    id.RoomID
	key       database.PortalKey
	remoteID  string
	part      int
	eventType event.Type
	txnID     string
	// keepEventID stores the homeserver's answer in the marker, because the
	// result is written later, with the event's other parts.
	keepEventID bool
	// unlessBridged: the send is the first part of a message not yet
	// checked for a replay; sendRemote fails with errAlreadyBridged if a
	// mapping of it is stored.
	unlessBridged bool
	// send performs the request with the given transaction id, which it
	// must also put into the content under contentTxnKey.
	send func(ctx context.Context, txnID string) (*mautrix.RespSendEvent, error)
}

func newRemoteSend(intent matrix.API, p *database.Portal, ev *connector.Event, part int, evType event.Type) *remoteSend {
	return &remoteSend{
		intent: intent, roomID: p.RoomID, key: p.PortalKey, remoteID: ev.ID, part: part,
		eventType: evType, txnID: remoteTxnID(ev, part),
	}
}

// withTxnKey adds the transaction id to a send's content.
func withTxnKey(content any, txnID string) *event.Content {
	return &event.Content{Parsed: content, Raw: map[string]any{contentTxnKey: txnID}}
}

// sendContent is the content of a send by intent with the transaction id
// added. For a ghost it is finished JSON, the content's encoding with the
// key appended: mautrix encodes an event.Content that has both Parsed and
// Raw twice and decodes it once in between to merge the two (a fifth of the
// send's CPU). A double puppet's stays an event.Content, the one form to
// which mautrix adds its double-puppet mark.
func sendContent(intent matrix.API, content any, txnID string) any {
	if intent.IsDoublePuppet() {
		return withTxnKey(content, txnID)
	}
	body, err := json.Marshal(content)
	if err != nil || len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return withTxnKey(content, txnID)
	}
	val, _ := json.Marshal(txnID)
	out := make([]byte, 0, len(body)+len(contentTxnKeyJSON)+len(val)+2)
	out = append(out, body[:len(body)-1]...)
	if len(body) > 2 {
		out = append(out, ',')
	}
	out = append(append(append(out, contentTxnKeyJSON...), ':'), val...)
	return json.RawMessage(append(out, '}'))
}

// contentTxnKeyJSON is contentTxnKey as a JSON string, encoded once rather
// than for every send.
var contentTxnKeyJSON, _ = json.Marshal(contentTxnKey)

// sendRemote performs s at most once as far as the room can tell, and returns
// the event that shows it. The caller deletes the marker (txnID) in the
// transaction that stores the result.
func (m *Manager) sendRemote(ctx context.Context, s *remoteSend) (id.EventID, error) {
	mark := &database.InDoubtSend{
		TxnID: s.txnID, RoomID: s.roomID, PortalKey: s.key, RemoteID: s.remoteID, Part: s.part,
		EventType: s.eventType.Type, StartedAt: time.Now(),
	}
	// No marker yet (the usual case): this inserts it and the send goes
	// out. Otherwise an earlier try may have landed, and the marker says.
	fresh, err := m.beginFresh(ctx, s, mark)
	if err != nil {
		return "", err
	}
	var marker *database.InDoubtSend
	if !fresh {
		if marker, err = m.db.InDoubt.Get(ctx, s.txnID); err != nil {
			return "", fmt.Errorf("load in-doubt marker: %w", err)
		}
	}
	if marker != nil {
		if marker.EventID != "" {
			return marker.EventID, nil
		}
		// Only the rare in-doubt path gets a sub-logger: one costs about
		// half a kilobyte, and most sends log nothing.
		log := zerolog.Ctx(ctx).With().Str("txn_id", s.txnID).Int("part", s.part).Logger()
		found, err := m.resolve(ctx, log, s, marker)
		if err != nil {
			return "", err
		}
		if found != "" {
			log.Info().Stringer("event_id", found).Msg("Send in doubt had landed, using that event")
			if s.keepEventID {
				if err = m.db.InDoubt.SetEventID(ctx, s.txnID, found); err != nil {
					return "", fmt.Errorf("store in-doubt answer: %w", err)
				}
			}
			return found, nil
		}
		log.Info().Msg("Send in doubt did not land, sending again")
	}
	if !fresh {
		// The marker's clock restarts with this new try.
		mark.StartedAt = time.Now()
		if err = m.db.InDoubt.Begin(ctx, mark); err != nil {
			return "", fmt.Errorf("mark send in doubt: %w", err)
		}
	}
	// The result of this send will be written next: a committer holding
	// other chats' writes may wait for it (groupcommit.go).
	m.commits.expectWrite(ctx)
	// mautrix would resend a timed-out or dropped request by itself, at
	// once: exactly the resend that posts a second copy.
	resp, err := s.send(mautrix.WithMaxRetries(ctx, 0), s.txnID)
	if err != nil {
		// No result follows soon (a retry may wait seconds): the
		// committers must not hold their groups for it meanwhile.
		if here := laneOf(ctx); here != nil {
			here.wroteOrGaveUp()
		}
		if sendNeverArrived(err) {
			// Nothing to resolve on the next attempt.
			if derr := m.db.InDoubt.Delete(ctx, s.txnID); derr != nil {
				zerolog.Ctx(ctx).Warn().Err(derr).Str("txn_id", s.txnID).Int("part", s.part).
					Msg("Failed to clear marker of a refused send")
			}
		}
		return "", err
	}
	if s.keepEventID {
		if err = m.db.InDoubt.SetEventID(ctx, s.txnID, resp.EventID); err != nil {
			return "", fmt.Errorf("store send answer: %w", err)
		}
	}
	return resp.EventID, nil
}

// errAlreadyBridged: see remoteSend.unlessBridged.
var errAlreadyBridged = errors.New("message already bridged")

// beginFresh inserts the send's marker unless one exists (and, with
// unlessBridged, unless the message is bridged already, which it reports as
// errAlreadyBridged), and reports whether it did.
func (m *Manager) beginFresh(ctx context.Context, s *remoteSend, mark *database.InDoubtSend) (bool, error) {
	// The chat's previous message may have written it already.
	if pre := takePremark(ctx, s.txnID); pre != nil {
		if sameSend(pre, mark) {
			mark.StartedAt = pre.StartedAt
			return true, nil
		}
		if err := m.db.InDoubt.Delete(ctx, pre.TxnID); err != nil {
			return false, fmt.Errorf("clear stale in-doubt marker: %w", err)
		}
	}
	// In a group transaction with other chats' writes: the marker is
	// stored before the send all the same (groupcommit.go).
	var fresh bool
	err := m.groupMarker(ctx, func(ctx context.Context) (err error) {
		if s.unlessBridged {
			fresh, err = m.db.InDoubt.BeginFreshUnlessBridged(ctx, mark)
		} else {
			fresh, err = m.db.InDoubt.BeginFresh(ctx, mark)
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("mark send in doubt: %w", err)
	} else if fresh || !s.unlessBridged {
		return fresh, nil
	}
	if existing, err := m.db.Message.GetPart(ctx, s.key, s.remoteID, 0); err != nil {
		return false, err
	} else if existing != nil {
		return false, errAlreadyBridged
	}
	return false, nil
}

// doneWithSends runs done (which stores the sends' results and marks the
// event applied) and clears the in-doubt markers of the sends, in one
// transaction.
func (m *Manager) doneWithSends(ctx context.Context, done func(context.Context) error, txnIDs ...string) error {
	return m.groupTxn(ctx, func(ctx context.Context) error {
		if err := m.db.InDoubt.Delete(ctx, txnIDs...); err != nil {
			return fmt.Errorf("clear in-doubt markers: %w", err)
		}
		return done(ctx)
	})
}

// resolve looks for the event of a send in doubt. An event that is in the
// room landed, whenever one looks; only "not there" needs the wait until the
// request cannot land any more. So it looks at once (after a crash or a
// takeover the old request has usually landed long ago: no wait at all),
// and only if that finds nothing it waits and looks again.
func (m *Manager) resolve(ctx context.Context, log zerolog.Logger, s *remoteSend, marker *database.InDoubtSend) (id.EventID, error) {
	until := settleTime(marker.StartedAt, m.started, m.formerDone, time.Now(), m.cfg.Bridge.InDoubtGrace.D())
	if time.Until(until) > 0 {
		found, err := findOwnEvent(ctx, s)
		if err != nil || found != "" {
			return found, err
		}
		if err = m.settle(ctx, log, marker, until); err != nil {
			return "", err
		}
	}
	return findOwnEvent(ctx, s)
}

// settle waits until the request behind marker can no longer land, with the
// lane's concurrency slot given back meanwhile.
func (m *Manager) settle(ctx context.Context, log zerolog.Logger, marker *database.InDoubtSend, until time.Time) error {
	wait := time.Until(until)
	if wait <= 0 {
		return nil
	}
	log.Info().Time("started_at", marker.StartedAt).Dur("wait", wait).
		Msg("Send in doubt not in the room yet, waiting until it cannot land any more before looking again")
	if !pause(ctx, wait) {
		return fmt.Errorf("waiting for a send in doubt: %w", context.Canceled)
	}
	return nil
}

// settleTime is when a send started at started can no longer land. A request
// of an earlier process ended at the latest when this one started (a killed
// process's connections are closed by the kernel), or, with high
// availability, when the former active's lease expired (formerDone, if not
// zero; see ha.Elector.FormerDone); one of this process ended before its
// error was handled, so before now (a chat's events are applied one at a
// time, so it is not running any more). The homeserver gets grace on top to
// store what it took in before it saw the request cancelled.
func settleTime(started, processStart, formerDone, now time.Time, grace time.Duration) time.Time {
	ended := now
	if started.Before(processStart) {
		ended = processStart
		if !formerDone.IsZero() && formerDone.Before(processStart) {
			ended = formerDone
		}
	}
	if ended.Before(started) {
		ended = started
	}
	return ended.Add(grace)
}

// findOwnEvent looks for the event of s in the room's recent timeline: sent by
// s's sender, of s's type, carrying s's transaction id.
func findOwnEvent(ctx context.Context, s *remoteSend) (id.EventID, error) {
	// In an encrypted room the event is m.room.encrypted, its type and
	// transaction id inside; decryptOwn opens it.
	filter := &mautrix.FilterPart{Types: []event.Type{s.eventType, event.EventEncrypted}, Senders: []id.UserID{s.intent.UserID()}}
	from := ""
	for page := 0; page < inDoubtPages; page++ {
		resp, err := s.intent.Messages(ctx, s.roomID, from, "", mautrix.DirectionBackward, filter, inDoubtPageSize)
		if err != nil {
			return "", fmt.Errorf("look for send in doubt in the room: %w", err)
		}
		if found := matchOwnEvent(decryptOwn(ctx, s.intent, resp.Chunk), s.intent.UserID(), s.eventType, s.txnID); found != "" {
			return found, nil
		}
		if len(resp.Chunk) == 0 || resp.End == "" || resp.End == from {
			break
		}
		from = resp.End
	}
	return "", nil
}

// matchOwnEvent returns the event among evts that sender sent with the type
// and the transaction id in its content. The sender is checked here too: a
// homeserver may ignore the filter, and anyone in the room can copy a key.
func matchOwnEvent(evts []*event.Event, sender id.UserID, evType event.Type, txnID string) id.EventID {
	for _, evt := range evts {
		if evt.Sender != sender || evt.Type.Type != evType.Type {
			continue
		}
		if v, ok := evt.Content.Raw[contentTxnKey].(string); ok && v == txnID {
			return evt.ID
		}
	}
	return ""
}

// sendNeverArrived reports whether err proves the homeserver did not take
// the request: it answered with a client error (it refused the event, or
// rate-limited it), or no connection was made at all. Anything else (a
// timeout, a dropped connection, a 5xx from a proxy, a cancelled context)
// leaves the send in doubt.
func sendNeverArrived(err error) bool {
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) && httpErr.Response != nil {
		return httpErr.Response.StatusCode >= 400 && httpErr.Response.StatusCode < 500
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

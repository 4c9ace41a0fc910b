package portal

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// A new portal starts with the chat's earlier history. Its portal row is
// written with a backfill_pending row (database.PortalQuery.GetOrCreate); the
// first message into the portal, or the user starting the chat, asks the
// connector for the history and posts it before anything else, then removes
// the row. Each history message goes through postMessage, the live path: the
// same deterministic transaction id and in-doubt marker, and its mapping
// stored as soon as it is in the room. A crash in the middle therefore
// resumes where it stopped (mapped messages are skipped, the one in doubt is
// looked for in the room), and a history message that also arrives live is
// recognised as already bridged.

// maxBackfillPages bounds the commands of one backfill: a connector that
// keeps answering has_more with tiny pages cannot keep the chat busy.
const maxBackfillPages = 20

// backfill posts the portal's history if it is still pending. live is the
// message that caused it (nil when the user started the chat): the history
// stops before it. It returns the last history event in the room, if any.
func (m *Manager) backfill(ctx context.Context, connectorID string, login *database.Login, p *database.Portal, live *connector.Event) (id.EventID, error) {
	pending, err := m.db.Backfill.Pending(ctx, p.PortalKey)
	if err != nil || !pending {
		return "", err
	}
	log := zerolog.Ctx(ctx).With().Str("action", "backfill").Logger()
	ctx = log.WithContext(ctx)
	limit := m.cfg.Bridge.Backfill.InitialLimit
	if limit > 0 && !m.waitConnector(ctx, connectorID) {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		log.Warn().Msg("Connector did not come back, the portal starts without its history")
		return "", m.db.Backfill.Done(ctx, p.PortalKey)
	}
	if limit <= 0 || !m.canBackfill(connectorID) {
		return "", m.db.Backfill.Done(ctx, p.PortalKey)
	}
	history, err := m.fetchHistory(ctx, connectorID, login, p, live, limit)
	if err != nil {
		// The live message must not wait for history the network cannot
		// give: it goes in without it.
		log.Warn().Err(err).Msg("Failed to fetch the chat's history, the portal starts without it")
		return "", m.db.Backfill.Done(ctx, p.PortalKey)
	}
	noop := func(context.Context) error { return nil }
	var last id.EventID
	posted := 0
	for i := range history {
		ev := &history[i]
		if parts, err := m.db.Message.GetParts(ctx, p.PortalKey, ev.ID); err != nil {
			return "", err
		} else if len(parts) > 0 {
			last = parts[len(parts)-1].MXID
			continue
		}
		if ev.Txn != "" && ev.Sender.IsMe {
			// The network's copy of a message the user sent from this
			// room, whose command's result is not stored yet (a retried
			// backfill): mapped to the user's event, not posted again.
			if echo, err := m.recogniseEcho(ctx, p.PortalKey, ev, noop); err != nil {
				return "", err
			} else if echo {
				continue
			}
		}
		evID, err := m.postMessage(ctx, login, p, ev, noop)
		switch {
		case err == nil:
		case isOutage(err) || ctx.Err() != nil:
			// The homeserver or the database is away: the live message
			// could not go in either, and both are tried again.
			return "", fmt.Errorf("backfill message %s: %w", ev.ID, err)
		default:
			// A message that fails as it is (an attachment that cannot be
			// fetched, content the homeserver refuses) is skipped: the
			// live message, and every one after it, must not wait for old
			// history, let alone be given up because of it.
			log.Warn().Err(err).Str("message_id", ev.ID).Msg("Skipping a history message that cannot be bridged")
			continue
		}
		if evID != "" {
			last = evID
		}
		posted++
	}
	if last != "" {
		m.markHistoryRead(ctx, login, p, last)
	}
	log.Info().Int("fetched", len(history)).Int("posted", posted).Msg("Backfilled the chat's history")
	return last, m.db.Backfill.Done(ctx, p.PortalKey)
}

// waitConnector waits up to the command timeout for the connector to be
// connected. After a restart the stored events are applied at once, before
// the connector has had time to reconnect; only a connected connector has
// said whether it can backfill, and only it can answer.
func (m *Manager) waitConnector(ctx context.Context, connectorID string) bool {
	if m.conn == nil || m.conn.Connected(connectorID) {
		return m.conn != nil
	}
	zerolog.Ctx(ctx).Debug().Msg("Waiting for the connector before backfilling")
	// Poll with the lane's concurrency slot given back: other chats go on.
	deadline := time.Now().Add(m.cfg.Connector.CommandTimeout.D())
	for time.Now().Before(deadline) {
		if !pause(ctx, 200*time.Millisecond) {
			return false
		}
		if m.conn.Connected(connectorID) {
			return true
		}
	}
	return false
}

func (m *Manager) canBackfill(connectorID string) bool {
	if m.conn == nil {
		return false
	}
	hello, ok := m.conn.Hello(connectorID)
	return ok && hello.Capabilities.Backfill
}

// markHistoryRead moves the user's read receipt and read marker past the
// history with their double puppet, so that old messages do not show up as
// unread. One request for the whole history; the live message after it is
// unread as it should be. Without double puppeting there is nobody who may
// set the user's markers.
func (m *Manager) markHistoryRead(ctx context.Context, login *database.Login, p *database.Portal, last id.EventID) {
	dp, err := m.dps.Intent(ctx, login.MatrixUser)
	if err != nil || dp == nil {
		return
	}
	err = dp.SetReadMarkers(ctx, p.RoomID, &mautrix.ReqSetReadMarkers{Read: last, FullyRead: last})
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Failed to mark the history read")
	}
}

// fetchHistory asks the connector for up to limit messages before live,
// page by page, newest page first, and returns the usable ones oldest first.
func (m *Manager) fetchHistory(ctx context.Context, connectorID string, login *database.Login, p *database.Portal, live *connector.Event, limit int) ([]connector.Event, error) {
	chat := &connector.Chat{ID: p.ChatID, Type: connector.ChatTypeDM, With: p.ContactID}
	var pages [][]connector.Event
	var before *string
	got := 0
	for page := 0; page < maxBackfillPages && got < limit; page++ {
		res, err := m.conn.Command(ctx, connectorID, connector.OpBackfill, &connector.Command{
			Login: login.ID, Chat: chat, Before: before, Limit: limit - got,
		})
		if err != nil {
			return nil, err
		}
		if len(res.Messages) == 0 {
			break
		}
		oldest := res.Messages[0].ID
		msgs := m.usableHistory(ctx, login, p, res.Messages)
		pages = append(pages, msgs)
		got += len(msgs)
		if !res.HasMore || oldest == "" || (before != nil && *before == oldest) {
			break
		}
		before = &oldest
	}
	var all []connector.Event
	for i := len(pages) - 1; i >= 0; i-- {
		all = append(all, pages[i]...)
	}
	return trimHistory(all, live, limit, m.cfg.Bridge.Backfill.MaxAge.D(), time.Now()), nil
}

// usableHistory keeps the messages of a backfill answer that the bridge may
// post: valid messages of this chat, from the contact or the user. The
// connector is trusted no more than for live events: a message that names
// another chat or login is skipped (posted here, it would put the user's
// words to someone else in this room, and be bridged again in its own);
// chat and login are filled in where left out.
func (m *Manager) usableHistory(ctx context.Context, login *database.Login, p *database.Portal, msgs []connector.Event) []connector.Event {
	log := zerolog.Ctx(ctx)
	out := make([]connector.Event, 0, len(msgs))
	for _, ev := range msgs {
		if (ev.Chat != nil && ev.Chat.ID != "" && ev.Chat.ID != p.ChatID) || (ev.Login != "" && ev.Login != login.ID) {
			log.Warn().Str("message_id", ev.ID).Msg("Skipping a history message of another chat or login")
			continue
		}
		ev.Login = login.ID
		ev.Chat = &connector.Chat{ID: p.ChatID, Type: connector.ChatTypeDM, With: p.ContactID}
		if ev.Kind == "" {
			ev.Kind = connector.KindMessage
		}
		if err := ev.Validate(); err != nil || ev.Kind != connector.KindMessage || ev.ID == "" {
			log.Warn().Err(err).Str("message_id", ev.ID).Str("kind", ev.Kind).Msg("Skipping an invalid history message")
			continue
		}
		if !ev.Sender.IsMe && ev.Sender.ID != p.ContactID {
			log.Warn().Str("message_id", ev.ID).Str("sender", ev.Sender.ID).Msg("Skipping a history message from someone not in the chat")
			continue
		}
		out = append(out, ev)
	}
	return out
}

// trimHistory orders nothing (the connector gives oldest first) but drops
// what must not be posted: repeats of an id, the live message and anything
// after it (those come live), messages older than maxAge (0: no limit), and
// all but the newest limit. "After it" is also by time: when the bridge was
// away, the network's newest messages may all be newer than the live one
// (which is then in none of the pages), and posting them as history would
// put them above it and mark them read.
func trimHistory(msgs []connector.Event, live *connector.Event, limit int, maxAge time.Duration, now time.Time) []connector.Event {
	// byTime: the live message is in none of the pages, so only the times
	// can say what is after it. When it is found, the network's order
	// settles it: its time and the history's come from different clocks
	// (a connector stamps a live message that has no server stamp itself),
	// and a cut by time would drop history sent just before it.
	byTime := live != nil && live.TS > 0
	if live != nil {
		for i := range msgs {
			if msgs[i].ID == live.ID {
				msgs, byTime = msgs[:i], false
				break
			}
		}
	}
	seen := make(map[string]bool, len(msgs))
	out := make([]connector.Event, 0, len(msgs))
	for _, ev := range msgs {
		if seen[ev.ID] {
			continue
		}
		seen[ev.ID] = true
		if byTime && ev.TS > live.TS {
			continue
		}
		if maxAge > 0 && ev.TS > 0 && ev.TS < now.Add(-maxAge).UnixMilli() {
			continue
		}
		out = append(out, ev)
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// remoteLoop feeds accepted connector events to the lanes, in seq order,
// without loading more than maxQueued into memory.
func (m *Manager) remoteLoop() {
	defer m.wg.Done()
	after := make(map[string]int64)
	for {
		// full: a query returned a whole page, so more may be stored;
		// otherwise everything committed before the query was loaded and
		// what commits later wakes the loop (Accepted).
		full, failed := false, false
		if m.roomFor(&m.gates.remote) {
			conns, all := m.accepted.take()
			if all {
				var err error
				if conns, err = m.db.Inbox.Connectors(m.ctx); err != nil && m.ctx.Err() == nil {
					m.log.Err(err).Msg("Failed to list connectors with pending events")
					failed = true
				}
			}
			for _, connID := range conns {
				rows, err := m.db.Inbox.Pending(m.ctx, connID, after[connID], pageSize)
				if err != nil {
					if m.ctx.Err() == nil {
						m.log.Err(err).Str("connector_id", connID).Msg("Failed to load pending events")
						failed = true
					}
					continue
				}
				for _, row := range rows {
					row := row
					var ev connector.Event
					// A row that does not parse still gets a lane; applyInbox parks it.
					_ = json.Unmarshal(row.Data, &ev)
					if !m.lanes.submit(remoteLane(row, &ev), row.Kind, func(ctx context.Context) { m.applyInbox(ctx, row, &ev) }) {
						return
					}
					after[connID] = row.Seq
				}
				full = full || len(rows) == pageSize
			}
		}
		if full || failed {
			m.accepted.setAll()
		}
		if full && m.roomFor(&m.gates.remote) {
			continue
		}
		select {
		case <-m.remoteWake:
		case <-m.ctx.Done():
			return
		case <-time.After(pollAfter(failed)):
			// A periodic look covers a wake lost to a failed query.
			m.accepted.setAll()
		}
	}
}

// remoteLane keys a connector event by login and contact. A DM chat has one
// contact, so this is one lane per chat, and a contact's profile change shares
// the lane of its chat: a portal is never created before the name it should
// carry has been applied.
func remoteLane(row *database.InboxRow, ev *connector.Event) string {
	switch {
	case ev.Chat != nil && ev.Chat.With != "":
		return "contact/" + row.LoginID + "/" + ev.Chat.With
	case ev.Chat != nil:
		return "contact/" + row.LoginID + "/" + ev.Chat.ID
	case ev.Contact != nil:
		return "contact/" + row.LoginID + "/" + ev.Contact.ID
	}
	return "login/" + row.LoginID
}

// matrixLoop feeds stored Matrix events to their room's lane.
func (m *Manager) matrixLoop() {
	defer m.wg.Done()
	var after int64
	for {
		full, failed := false, false // as in remoteLoop
		if m.roomFor(&m.gates.matrix) {
			rows, err := m.db.MXEvent.Pending(m.ctx, after, pageSize)
			if err != nil && m.ctx.Err() == nil {
				m.log.Err(err).Msg("Failed to load pending Matrix events")
				failed = true
			}
			for _, row := range rows {
				row := row
				if !m.lanes.submit("room/"+string(row.RoomID), "matrix", func(ctx context.Context) { m.applyMatrix(ctx, row) }) {
					return
				}
				after = row.Seq
			}
			full = len(rows) == pageSize
		}
		if full && m.roomFor(&m.gates.matrix) {
			continue
		}
		select {
		case <-m.matrixWake:
		case <-m.ctx.Done():
			return
		case <-time.After(pollAfter(failed)):
		}
	}
}

// applyInbox applies one connector event. The handler marks the row done in
// the same transaction as its own writes. A transient failure is retried
// until it passes (see retry); a permanent one parks the row with its error,
// and the user is told.
func (m *Manager) applyInbox(ctx context.Context, row *database.InboxRow, ev *connector.Event) {
	log := m.log.With().Str("connector_id", row.ConnectorID).Int64("seq", row.Seq).
		Str("login_id", row.LoginID).Str("chat_id", row.ChatID).Str("kind", row.Kind).Logger()
	ctx = log.WithContext(ctx)
	if ev.Kind == "" {
		m.park(ctx, row, fmt.Errorf("%w: stored event does not parse", errPermanent))
		m.noticeFailure(ctx, row, ev, errors.New("the stored event does not parse"))
		return
	}
	done := func(ctx context.Context) error {
		return m.db.Inbox.MarkDone(ctx, row.ConnectorID, row.Seq, "")
	}
	m.retry(ctx, row.Attempts, func(ctx context.Context) error {
		err := m.applyRemote(ctx, row.ConnectorID, ev, done)
		if err == nil {
			m.metrics.RemoteApplied(row.ConnectorID, row.Seq, row.Kind)
		}
		return err
	}, func(ctx context.Context, err error, attempts int) error {
		return m.db.Inbox.AddAttempt(ctx, row.ConnectorID, row.Seq, err.Error())
	}, func(ctx context.Context, err error) {
		m.park(ctx, row, err)
		m.noticeFailure(ctx, row, ev, err)
	})
}

// pollAfter is how long a dispatcher waits for a wake before it looks
// anyway: soon after a failed query (no wake may come for what it missed),
// else a minute, which covers a wake that was lost.
func pollAfter(failed bool) time.Duration {
	if failed {
		return time.Second
	}
	return time.Minute
}

func (m *Manager) park(ctx context.Context, row *database.InboxRow, err error) {
	zerolog.Ctx(ctx).Error().Err(err).Msg("Giving up on connector event, parking it")
	m.metrics.RemoteParked(row.ConnectorID, row.Seq, row.Kind)
	if err := m.db.Inbox.MarkDone(ctx, row.ConnectorID, row.Seq, err.Error()); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to park connector event")
	}
}

// applyMatrix handles one stored Matrix event; failures as in applyInbox.
func (m *Manager) applyMatrix(ctx context.Context, row *database.MXEvent) {
	log := m.log.With().Stringer("event_id", row.EventID).Stringer("room_id", row.RoomID).Logger()
	ctx = log.WithContext(ctx)
	m.retry(ctx, row.Attempts, func(ctx context.Context) error {
		return m.handleMatrix(ctx, row)
	}, func(ctx context.Context, err error, attempts int) error {
		return m.db.MXEvent.AddAttempt(ctx, row.Seq, err.Error())
	}, func(ctx context.Context, err error) {
		log.Error().Err(err).Msg("Giving up on Matrix event, parking it")
		m.metrics.MatrixParked()
		if err := m.db.MXEvent.MarkDone(ctx, row.Seq, err.Error()); err != nil {
			log.Err(err).Msg("Failed to park Matrix event")
		}
		m.noticeMatrixFailure(ctx, row, err)
	})
}

// retry runs fn until it succeeds, fails permanently, panics maxPanics times
// in a row, fails maxOtherTries times for a reason that is not an outage, or
// the bridge stops. An outage of the homeserver or the database, of any
// length, must not lose the event, so such failures are tried again with
// capped backoff for as long as it takes (see isOutage). Each failure is counted
// in the row (attempts), so the backoff carries on where it was after a
// restart. While it waits the job holds no concurrency slot (see pause): its
// chat's later events wait behind it, other chats go on.
func (m *Manager) retry(ctx context.Context, attempts int, fn func(context.Context) error,
	failed func(context.Context, error, int) error, giveUp func(context.Context, error)) {
	panics, others := 0, 0
	for {
		err := safely(ctx, fn)
		if err == nil || ctx.Err() != nil {
			return
		}
		attempts++
		var pe *panicError
		if errors.As(err, &pe) {
			panics++
		} else {
			panics = 0
		}
		if !isPermanent(err) && !isOutage(err) && !m.databaseDown(ctx) {
			others++
		}
		if isPermanent(err) || panics >= maxPanics || others >= maxOtherTries {
			giveUp(ctx, err)
			return
		}
		wait := backoff(attempts, m.cfg.Bridge.RetryMaxDelay.D())
		zerolog.Ctx(ctx).Warn().Err(err).Int("attempt", attempts).Stringer("retry_in", wait).Msg("Failed, will retry")
		if ferr := failed(ctx, err, attempts); ferr != nil {
			zerolog.Ctx(ctx).Err(ferr).Msg("Failed to count attempt")
		}
		if !pause(ctx, wait) {
			return
		}
	}
}

// databaseDown tells an outage of the database apart from other failures
// whatever error type the driver used: a failure while the database does
// not answer a ping is not counted against the event.
func (m *Manager) databaseDown(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return m.db.RawDB.PingContext(ctx) != nil
}

// backoff doubles from 500 ms up to limit (30 s when unset).
func backoff(attempt int, limit time.Duration) time.Duration {
	if limit <= 0 {
		limit = 30 * time.Second
	}
	d := 500 * time.Millisecond
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

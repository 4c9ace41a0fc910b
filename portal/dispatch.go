package portal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/inbox"
)

// remoteLoop feeds stored connector events to the lanes, in seq order,
// without loading more than maxQueued into memory.
func (m *Manager) remoteLoop() {
	defer m.wg.Done()
	reader := m.inbox.Reader()
	for {
		// more: a connector filled its page, so more may be stored;
		// otherwise everything committed before the look was loaded and
		// what commits later wakes the loop (the inbox's Woken).
		more, failed := false, false
		if m.roomFor(&m.gates.remote) {
			var entries []*inbox.Entry
			entries, more, failed = reader.Next(m.ctx, pageSize)
			for _, e := range entries {
				// The entry is the peek: the event before it in the lane
				// may write its first send's marker (premark.go).
				if !m.lanes.submitPeek(remoteLane(e), e.Kind, e, func(ctx context.Context) { m.applyInbox(ctx, e) }) {
					return
				}
			}
		}
		if more && m.roomFor(&m.gates.remote) {
			continue
		}
		select {
		case <-m.inbox.Woken():
		case <-m.ctx.Done():
			return
		case <-time.After(pollAfter(failed)):
			// A periodic look covers a wake lost to a failed query.
			reader.Rescan()
		}
	}
}

// remoteLane keys a connector event by login and contact. A DM chat has one
// contact, so this is one lane per chat, and a contact's profile change shares
// the lane of its chat: a portal is never created before the name it should
// carry has been applied. An event that does not parse still gets a lane
// (its login's); applyInbox parks it.
func remoteLane(e *inbox.Entry) string {
	ev := e.Event
	switch {
	case ev == nil:
	case ev.Chat != nil && ev.Chat.With != "":
		return "contact/" + e.LoginID + "/" + ev.Chat.With
	case ev.Chat != nil:
		return "contact/" + e.LoginID + "/" + ev.Chat.ID
	case ev.Contact != nil:
		return "contact/" + e.LoginID + "/" + ev.Contact.ID
	}
	return "login/" + e.LoginID
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

// applyInbox applies one connector event. The handler marks the entry done
// in the same transaction as its own writes. A transient failure is retried
// until it passes (see retry); a permanent one parks the entry with its
// error, and the user is told. Told first: the notice's transaction id is
// named after the entry, so a kill between the two repeats a notice the
// room shows once, where the other order would leave the user without a
// word about an event that is never tried again.
func (m *Manager) applyInbox(ctx context.Context, e *inbox.Entry) {
	log := m.log.Hook(entryFields{e})
	ctx = context.WithValue(log.WithContext(ctx), entryKey{}, e)
	if e.Event == nil {
		m.noticeFailure(ctx, e, errors.New("the stored event does not parse"))
		m.park(ctx, e, fmt.Errorf("%w: %w", errPermanent, inbox.ErrUnparsable))
		return
	}
	m.retry(ctx, e.Attempts, func(ctx context.Context) error {
		err := m.applyRemote(ctx, e.ConnectorID, e.Event, e.Done)
		if err == nil {
			m.metrics.RemoteApplied(e.ConnectorID, e.Seq, e.Kind)
		}
		return err
	}, func(ctx context.Context, err error, attempts int) error {
		return e.Failed(ctx, err)
	}, func(ctx context.Context, err error) {
		m.noticeFailure(ctx, e, err)
		m.park(ctx, e, err)
	})
}

type entryKey struct{}

// entryFields puts the entry's fields on every line logged while it is
// applied. It is a hook rather than Logger.With, which for every message
// allocated a 500-byte context and formatted the five fields into it,
// though at the usual levels nothing is logged for a message that goes
// well; a hook formats them only for a line that is written.
type entryFields struct{ e *inbox.Entry }

func (h entryFields) Run(ev *zerolog.Event, _ zerolog.Level, _ string) {
	ev.Str("connector_id", h.e.ConnectorID).Int64("seq", h.e.Seq).
		Str("login_id", h.e.LoginID).Str("chat_id", h.e.ChatID).Str("kind", h.e.Kind)
}

// entryOf returns the inbox entry whose event ev is, when ctx belongs to
// its application (applyInbox): the done that applyRemote was given is then
// the entry's Done.
func entryOf(ctx context.Context, ev *connector.Event) *inbox.Entry {
	if e, ok := ctx.Value(entryKey{}).(*inbox.Entry); ok && e.Event == ev {
		return e
	}
	return nil
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

func (m *Manager) park(ctx context.Context, e *inbox.Entry, err error) {
	zerolog.Ctx(ctx).Error().Err(err).Msg("Giving up on connector event, parking it")
	m.metrics.RemoteParked(e.ConnectorID, e.Seq, e.Kind)
	if err := e.Park(ctx, err); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to park connector event")
	}
}

// applyMatrix handles one stored Matrix event; failures as in applyInbox,
// the user told before the event is parked.
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
		m.noticeMatrixFailure(ctx, row, err)
		if err := m.db.MXEvent.MarkDone(ctx, row.Seq, err.Error()); err != nil {
			log.Err(err).Msg("Failed to park Matrix event")
		}
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
		wait := backoff(m.retryFirst, attempts, m.cfg.Bridge.RetryMaxDelay.D())
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

// firstRetry is the wait before the first retry (Manager.retryFirst).
const firstRetry = 500 * time.Millisecond

// backoff doubles from first (firstRetry) up to limit (30 s when unset).
func backoff(first time.Duration, attempt int, limit time.Duration) time.Duration {
	if limit <= 0 {
		limit = 30 * time.Second
	}
	d := first
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

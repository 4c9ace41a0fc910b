package portal

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"
)

// A redaction can reach the bridge before the event it removes, or before
// the command for that event has gone out: with double_puppet.sync
// (package dpsync) it comes from the user's /sync while the homeserver's
// push of the event waits out a retry, and a message sent and deleted while
// the connector is away has a queued command but no mapping yet. Skipping
// such a redaction would let the deleted message reach the network later.
// So it is noted (early_redaction); the event, when it comes, is not
// handled, and a queued command for it is dropped. Both run on the room's
// lane, like the redaction, so no send is under way while it is noted.
//
// earlyRedactions counts the notes this process knows of (set at start and
// after each prune, raised by each note): while it is 0, which is nearly
// always, the check costs no database read.

// noteEarlyRedaction records that redaction removed eventID before the
// bridge handled it.
func (m *Manager) noteEarlyRedaction(ctx context.Context, eventID id.EventID, roomID id.RoomID, redaction id.EventID) error {
	if err := m.db.EarlyRed.Add(ctx, eventID, roomID, redaction); err != nil {
		return err
	}
	m.earlyRedactions.Add(1)
	return nil
}

// redactedEarly reports whether the user deleted eventID before the bridge
// handled it.
func (m *Manager) redactedEarly(ctx context.Context, eventID id.EventID) (bool, error) {
	if m.earlyRedactions.Load() == 0 {
		return false, nil
	}
	return m.db.EarlyRed.Has(ctx, eventID)
}

// countEarlyRedactions sets earlyRedactions from the table. A failed count
// leaves it at least 1, so that the check reads the table rather than
// missing a note.
func (m *Manager) countEarlyRedactions(ctx context.Context) {
	n, err := m.db.EarlyRed.Count(ctx)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("Could not count early redactions; checking every event for one")
		n = max(1, m.earlyRedactions.Load())
	}
	m.earlyRedactions.Store(n)
}

// pruneEarlyRedactions forgets notes as old as the intake's rows: an event
// that has not come in a day will not come.
func (m *Manager) pruneEarlyRedactions(ctx context.Context) error {
	if err := m.db.EarlyRed.Prune(ctx, time.Now().Add(-intakeRetention)); err != nil {
		return err
	}
	m.countEarlyRedactions(ctx)
	return nil
}

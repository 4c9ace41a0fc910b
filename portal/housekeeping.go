package portal

import (
	"time"
)

// housekeepingInterval is how often handled rows are deleted. The tables
// only need to hold work in progress; dedup lives in the message table.
const housekeepingInterval = 10 * time.Minute

// intakeRetention keeps appservice transaction ids and handled event ids
// long enough to recognise any retry a homeserver could still send.
const intakeRetention = 24 * time.Hour

func (m *Manager) housekeepingLoop() {
	defer m.wg.Done()
	ticker := time.NewTicker(housekeepingInterval)
	defer ticker.Stop()
	for {
		m.prune()
		select {
		case <-ticker.C:
		case <-m.ctx.Done():
			return
		}
	}
}

func (m *Manager) prune() {
	if err := m.inbox.Prune(m.ctx); err != nil && m.ctx.Err() == nil {
		m.log.Warn().Err(err).Msg("Failed to prune applied connector events")
	}
	if err := m.db.MXEvent.Prune(m.ctx, time.Now().Add(-intakeRetention)); err != nil && m.ctx.Err() == nil {
		m.log.Warn().Err(err).Msg("Failed to prune handled Matrix events")
	}
	if err := m.pruneEarlyRedactions(m.ctx); err != nil && m.ctx.Err() == nil {
		m.log.Warn().Err(err).Msg("Failed to prune old early redactions")
	}
	if err := m.db.ASTxn.Prune(m.ctx, time.Now().Add(-intakeRetention)); err != nil && m.ctx.Err() == nil {
		m.log.Warn().Err(err).Msg("Failed to prune old transaction ids")
	}
	if err := m.db.InDoubt.Prune(m.ctx, time.Now().Add(-inDoubtRetention)); err != nil && m.ctx.Err() == nil {
		m.log.Warn().Err(err).Msg("Failed to prune old in-doubt markers")
	}
	if err := m.db.EncMedia.Prune(m.ctx, time.Now().Add(-encryptedMediaRetention)); err != nil && m.ctx.Err() == nil {
		m.log.Warn().Err(err).Msg("Failed to prune the keys of old encrypted files")
	}
}

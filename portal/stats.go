package portal

import (
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// bridgeStats counts what was bridged since the last summary. Each message
// is logged on its own at debug level only; at info, the summary line is
// what an operator reads (see logging.summary_interval).
type bridgeStats struct {
	// toMatrix counts network messages posted in Matrix; toNetwork the
	// user's Matrix messages the network confirmed.
	toMatrix, toNetwork atomic.Int64
	// matrixErrors counts failed attempts to apply a connector event
	// (retried or given up); networkErrors Matrix events that failed and
	// commands the network refused.
	matrixErrors, networkErrors atomic.Int64
}

// logSummary writes one info line with the counts since the last call and
// starts counting afresh. An interval in which nothing happened logs nothing.
func (s *bridgeStats) logSummary(log *zerolog.Logger, interval time.Duration) {
	toMatrix, toNetwork := s.toMatrix.Swap(0), s.toNetwork.Swap(0)
	matrixErrors, networkErrors := s.matrixErrors.Swap(0), s.networkErrors.Swap(0)
	if toMatrix+toNetwork+matrixErrors+networkErrors == 0 {
		return
	}
	log.Info().Dur("interval", interval).
		Int64("to_matrix", toMatrix).Int64("to_network", toNetwork).
		Int64("errors_to_matrix", matrixErrors).Int64("errors_to_network", networkErrors).
		Msg("Bridged messages")
}

// summaryLoop logs the summary every logging.summary_interval, and once
// more at shutdown for the last partial interval.
func (m *Manager) summaryLoop() {
	defer m.wg.Done()
	interval := m.cfg.Logging.SummaryInterval.D()
	if interval <= 0 {
		return
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			m.stats.logSummary(&m.log, interval)
		case <-m.ctx.Done():
			m.stats.logSummary(&m.log, interval)
			return
		}
	}
}

package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// E2EERenewFailuresFunc reports how many ghost devices whose access token
// the homeserver dropped could not log in again (e2ee.Manager.RenewFailures).
type E2EERenewFailuresFunc func() int

// WatchE2EE serves dmbridge_ghost_device_renew_failures_total, read from fn
// at each scrape: the count lives in the e2ee manager, which has no metrics
// of its own. Called only while encryption is on; without it the family is
// absent. A second call keeps the first function.
func (m *Metrics) WatchE2EE(renewFailures E2EERenewFailuresFunc) {
	if m == nil {
		return
	}
	_ = m.Registry.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: Namespace + "_ghost_device_renew_failures_total",
		Help: "Ghost devices whose access token the homeserver dropped and that could not log in again; each stopped its /sync loop, and the ghost's next need makes it a new device.",
	}, func() float64 { return float64(renewFailures()) }))
}

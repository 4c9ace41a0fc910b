package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// E2EERenewFailuresFunc reports how many ghost devices whose access token
// the homeserver dropped could not log in again (e2ee.Manager.RenewFailures).
type E2EERenewFailuresFunc func() int

// e2eeCollector serves dmbridge_ghost_device_renew_failures_total while
// encryption is on; without it the family is absent. The count lives in
// the e2ee manager, which has no metrics of its own: read at each scrape,
// it costs nothing in between.
type e2eeCollector struct {
	renewFailures atomic.Pointer[E2EERenewFailuresFunc]
}

var descE2EERenewFailures = prometheus.NewDesc(Namespace+"_ghost_device_renew_failures_total",
	"Ghost devices whose access token the homeserver dropped and that could not log in again; each stopped its /sync loop, and the ghost's next need makes it a new device.",
	nil, nil)

func (c *e2eeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descE2EERenewFailures }

func (c *e2eeCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.renewFailures.Load()
	if fn == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descE2EERenewFailures, prometheus.CounterValue, float64((*fn)()))
}

// WatchE2EE makes dmbridge_ghost_device_renew_failures_total read fn at each
// scrape.
func (m *Metrics) WatchE2EE(renewFailures E2EERenewFailuresFunc) {
	if m == nil {
		return
	}
	m.e2ee.renewFailures.Store(&renewFailures)
}

package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// DoublePuppetSyncFunc reports the double puppets' /sync loops
// (double_puppet.sync): how many run, and how many of them failed their
// last try.
type DoublePuppetSyncFunc func() (following, failing int)

// dpSyncCollector serves dmbridge_double_puppet_syncs while the option is
// on; without it the family is absent.
type dpSyncCollector struct {
	fn atomic.Pointer[DoublePuppetSyncFunc]
}

var descDPSyncs = prometheus.NewDesc(Namespace+"_double_puppet_syncs",
	"Users whose /sync the bridge follows (double_puppet.sync), by whether their last try worked (ok) or failed (failing).",
	[]string{"state"}, nil)

func (c *dpSyncCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descDPSyncs }

func (c *dpSyncCollector) Collect(ch chan<- prometheus.Metric) {
	fn := c.fn.Load()
	if fn == nil {
		return
	}
	following, failing := (*fn)()
	ch <- prometheus.MustNewConstMetric(descDPSyncs, prometheus.GaugeValue, float64(following-failing), "ok")
	ch <- prometheus.MustNewConstMetric(descDPSyncs, prometheus.GaugeValue, float64(failing), "failing")
}

// WatchDoublePuppetSync makes dmbridge_double_puppet_syncs read fn at each
// scrape.
func (m *Metrics) WatchDoublePuppetSync(fn DoublePuppetSyncFunc) {
	if m == nil {
		return
	}
	m.dpSync.fn.Store(&fn)
}

package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// RoleFunc reports this instance's high-availability role: whether it is
// the active one, and the epoch it was elected in.
type RoleFunc func() (active bool, epoch int64)

// roleCollector serves dmbridge_ha_active and dmbridge_ha_epoch. Without
// high availability an instance is always active, in epoch 0.
type roleCollector struct {
	fn atomic.Pointer[RoleFunc]
}

var (
	descHAActive = prometheus.NewDesc(Namespace+"_ha_active",
		"1 while this instance is the active one (always 1 without high availability), 0 on a standby or after losing the lease.", nil, nil)
	descHAEpoch = prometheus.NewDesc(Namespace+"_ha_epoch",
		"The election epoch this instance became active in; 0 while standby or without high availability.", nil, nil)
)

func (c *roleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHAActive
	ch <- descHAEpoch
}

func (c *roleCollector) Collect(ch chan<- prometheus.Metric) {
	active, epoch := true, int64(0)
	if fn := c.fn.Load(); fn != nil {
		active, epoch = (*fn)()
	}
	v := 0.0
	if active {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(descHAActive, prometheus.GaugeValue, v)
	ch <- prometheus.MustNewConstMetric(descHAEpoch, prometheus.GaugeValue, float64(epoch))
}

// WatchRole makes the role gauges read fn at each scrape.
func (m *Metrics) WatchRole(fn RoleFunc) {
	m.role.fn.Store(&fn)
}

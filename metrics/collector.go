package metrics

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// scrapeTimeout bounds the database queries of one scrape, so that a slow
// database makes a scrape report database_up 0 rather than hang.
const scrapeTimeout = 5 * time.Second

// Sources is what the scrape-time gauges are read from.
type Sources struct {
	DB *database.Database
	// Connectors lists the connector ids with a live connection.
	Connectors func() []string
	Log        zerolog.Logger
}

// WatchState registers the gauges that are read when Prometheus scrapes:
// queue depths, parked events, portals, ghosts, logins by state and
// connector connections. They cost nothing between scrapes; a scrape costs
// two queries.
func (m *Metrics) WatchState(src Sources) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(&stateCollector{src: src})
}

var (
	descDBUp = prometheus.NewDesc(Namespace+"_database_up",
		"1 if the scrape's database queries succeeded, else 0 (the gauges read from the database are then absent).", nil, nil)
	descQueue = prometheus.NewDesc(Namespace+"_queue_depth",
		"Work stored and not yet done: inbox (connector events to apply), matrix_events (Matrix events to handle), commands (commands awaiting the connector's result).",
		[]string{"queue"}, nil)
	descParked = prometheus.NewDesc(Namespace+"_parked_events",
		"Events the bridge gave up on and keeps with their error, by direction (kept until deleted by hand; alert on the increase).",
		[]string{"direction"}, nil)
	descPortals = prometheus.NewDesc(Namespace+"_portals", "Portals (one per login and chat).", nil, nil)
	descGhosts  = prometheus.NewDesc(Namespace+"_ghosts", "Ghost users (one per contact).", nil, nil)
	descLogins  = prometheus.NewDesc(Namespace+"_logins",
		"Logins by connector and last reported state (connected, disconnected, bad_credentials; anything else is other).",
		[]string{"connector", "state"}, nil)
	descConnected = prometheus.NewDesc(Namespace+"_connector_connected",
		"1 if the connector has a live, welcomed connection, else 0; every connector that has logins is listed.",
		[]string{"connector"}, nil)
)

type stateCollector struct {
	src Sources
	// dbDown remembers the last scrape's outcome, so that a database that
	// stays down is logged once, not on every scrape.
	dbDown atomic.Bool
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDBUp, descQueue, descParked, descPortals, descGhosts, descLogins, descConnected} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	stats := c.src.DB.Stats()
	counts, err := stats.Counts(ctx)
	var logins []*database.LoginStateCount
	if err == nil {
		logins, err = stats.LoginStates(ctx)
	}
	live := c.src.Connectors()
	if wasDown := c.dbDown.Swap(err != nil); err != nil && !wasDown {
		c.src.Log.Warn().Err(err).Msg("Metrics scrape could not read the database")
	} else if err == nil && wasDown {
		c.src.Log.Info().Msg("Metrics scrape reads the database again")
	}
	if err != nil {
		ch <- gauge(descDBUp, 0)
		for _, id := range live {
			ch <- gauge(descConnected, 1, id)
		}
		return
	}
	ch <- gauge(descDBUp, 1)
	ch <- gauge(descQueue, float64(counts.InboxPending), "inbox")
	ch <- gauge(descQueue, float64(counts.MatrixPending), "matrix_events")
	ch <- gauge(descQueue, float64(counts.PendingCommands), "commands")
	ch <- gauge(descParked, float64(counts.ParkedRemote), RemoteToMatrix)
	ch <- gauge(descParked, float64(counts.ParkedMatrix), MatrixToRemote)
	ch <- gauge(descPortals, float64(counts.Portals))
	ch <- gauge(descGhosts, float64(counts.Ghosts))

	// States come from the connector; unknown ones are folded into "other"
	// so that a label never grows without bound.
	byState := make(map[[2]string]int64)
	known := slices.Clone(live)
	for _, l := range logins {
		byState[[2]string{l.ConnectorID, loginState(l.State)}] += l.Count
		known = append(known, l.ConnectorID)
	}
	for k, n := range byState {
		ch <- gauge(descLogins, float64(n), k[0], k[1])
	}
	slices.Sort(known)
	for _, id := range slices.Compact(known) {
		v := 0.0
		if slices.Contains(live, id) {
			v = 1
		}
		ch <- gauge(descConnected, v, id)
	}
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func loginState(s string) string {
	switch s {
	case connector.LoginConnected, connector.LoginDisconnected, connector.LoginBadCredentials:
		return s
	}
	return "other"
}
